"""
Sysctls at boot, the way systemd-sysctl computes them (sysctl.d(5)):

* it reads /etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d,
  /usr/lib/sysctl.d, /lib/sysctl.d; a file name in an earlier directory masks
  the same name in a later one (a link to /dev/null masks it to nothing);
* all files are sorted by name and the last assignment wins;
* an explicit key wins over a glob; ``-key`` only hides errors;
* a key whose first separator is ``/`` keeps its dots (``eth0.1``).

Distros add ``/etc/sysctl.d/99-sysctl.conf -> ../sysctl.conf`` which sorts after
``99-k8snode.conf`` / ``99-kubernetes.conf`` and silently overrides it
(openshift-ansible#6818). Debian 13 no longer reads /etc/sysctl.conf; procps'
``sysctl --system`` reads it last where there is no link.
"""

import os

import pytest

from _modules.k8snode import sysctl_boot, writer

IP_FORWARD = "net/ipv4/ip_forward"


def boot_value(k8snode, tree, key=IP_FORWARD, **kwargs):
    entry = k8snode.effective_boot_sysctls(root=tree.path, **kwargs)["values"].get(key)
    return None if entry is None else (entry["value"], entry["file"])


def ours(k8snode, text):
    return writer.MANAGED_HEADER + text


# ---------------------------------------------------- the 99-sysctl.conf link


def test_99_sysctl_conf_link_overrides_99_k8snode(k8snode, tree):
    tree.debian(12, sysctl_conf="net.ipv4.ip_forward=0\n").modular().kernel_defaults({"net.ipv4.ip_forward": 1})
    tree.sysctl_d("99-k8snode.conf", ours(k8snode, "net.ipv4.ip_forward = 1\n"))

    assert sorted(["99-k8snode.conf", "99-sysctl.conf"]) == ["99-k8snode.conf", "99-sysctl.conf"]
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert boot["files"] == ["/etc/sysctl.d/99-k8snode.conf", "/etc/sysctl.d/99-sysctl.conf"]
    entry = boot["values"][IP_FORWARD]
    assert (entry["value"], entry["file"]) == ("0", "/etc/sysctl.d/99-sysctl.conf")
    assert entry["assignments"] == [["/etc/sysctl.d/99-k8snode.conf", "1"], ["/etc/sysctl.d/99-sysctl.conf", "0"]]

    check = k8snode.audit(root=tree.path)["checks"]["sysctl:net.ipv4.ip_forward"]
    assert check["status"] == "fail"
    assert check["live"] == "1"
    assert check["boot"] == "0"
    assert check["boot_file"] == "/etc/sysctl.d/99-sysctl.conf"
    assert "/etc/sysctl.d/99-sysctl.conf" in check["detail"]
    assert check["lost_at_reboot"] is True


def test_99_sysctl_conf_link_read_once_not_twice(k8snode, tree):
    """With the link, /etc/sysctl.conf is read through it only (not again at the end)."""
    tree.redhat(sysctl_conf="net.ipv4.ip_forward = 1\n")
    tree.sysctl_d("zz-late.conf", "net.ipv4.ip_forward = 0\n")
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert boot["files"] == ["/etc/sysctl.d/99-sysctl.conf", "/etc/sysctl.d/zz-late.conf"]
    assert boot_value(k8snode, tree) == ("0", "/etc/sysctl.d/zz-late.conf")


def test_a_file_sorting_after_99_sysctl_wins(k8snode, tree):
    tree.redhat(sysctl_conf="net.ipv4.ip_forward = 0\n")
    tree.sysctl_d("zz-k8snode.conf", "net.ipv4.ip_forward = 1\n")
    assert boot_value(k8snode, tree) == ("1", "/etc/sysctl.d/zz-k8snode.conf")


# ------------------------------------------------------------------ masking


def test_etc_masks_same_name_in_usr_lib(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("50-default.conf", "net.ipv4.ip_forward = 0\nkernel.panic = 3\n", directory="usr/lib/sysctl.d")
    tree.sysctl_d("50-default.conf", "kernel.panic = 10\n")
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert "/usr/lib/sysctl.d/50-default.conf" not in boot["files"]
    assert IP_FORWARD not in boot["values"]
    assert boot["values"]["kernel/panic"]["value"] == "10"


def test_dev_null_link_masks(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("50-pid-max.conf", "kernel.pid_max = 4194304\n", directory="usr/lib/sysctl.d")
    tree.sysctl_d("10-forward-off.conf", "net.ipv4.ip_forward = 0\n", directory="usr/lib/sysctl.d")
    tree.symlink("etc/sysctl.d/10-forward-off.conf", "/dev/null")
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert IP_FORWARD not in boot["values"]
    assert boot["values"]["kernel/pid_max"]["value"] == "4194304"
    assert not any(name.endswith("10-forward-off.conf") for name in boot["files"])


def test_run_masks_usr_lib_and_etc_masks_run(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("60-x.conf", "net.ipv4.ip_forward = 0\n", directory="lib/sysctl.d")
    tree.sysctl_d("60-x.conf", "net.ipv4.ip_forward = 2\n", directory="usr/local/lib/sysctl.d")
    assert boot_value(k8snode, tree) == ("2", "/usr/local/lib/sysctl.d/60-x.conf")
    tree.sysctl_d("60-x.conf", "net.ipv4.ip_forward = 3\n", directory="run/sysctl.d")
    assert boot_value(k8snode, tree) == ("3", "/run/sysctl.d/60-x.conf")
    tree.sysctl_d("60-x.conf", "net.ipv4.ip_forward = 1\n")
    assert boot_value(k8snode, tree) == ("1", "/etc/sysctl.d/60-x.conf")


def test_files_sort_by_name_across_directories(k8snode, tree):
    """The directory only decides masking: /usr/lib's 70-x.conf is read after /etc's 60-y.conf."""
    tree.redhat()
    tree.sysctl_d("60-y.conf", "net.ipv4.ip_forward = 1\n")
    tree.sysctl_d("70-x.conf", "net.ipv4.ip_forward = 0\n", directory="usr/lib/sysctl.d")
    assert boot_value(k8snode, tree) == ("0", "/usr/lib/sysctl.d/70-x.conf")


def test_only_conf_files_are_read(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("99-k8snode.conf.rpmsave", "net.ipv4.ip_forward = 0\n")
    tree.sysctl_d(".99-k8snode.conf.k8snode-tmp-x1y2", "net.ipv4.ip_forward = 0\n")
    tree.sysctl_d("README", "net.ipv4.ip_forward = 0\n")
    assert boot_value(k8snode, tree) is None


# ------------------------------------------------------ /etc/sysctl.conf


def without_systemd(tree):
    """A host that boots without systemd: procps' `sysctl --system` applies sysctl.d."""
    tree.remove("run/systemd/system/.keep")
    os.rmdir(tree.p("run/systemd/system"))
    tree.write("usr/sbin/sysctl", "")
    tree.write("etc/init.d/procps", "")
    return tree


@pytest.mark.parametrize("version", [11, 12, 13])
def test_systemd_debian_without_link_ignores_etc_sysctl_conf(k8snode, tree, version):
    """systemd-sysctl reads /etc/sysctl.conf only through the 99-sysctl.conf link (the model read it last)."""
    tree.debian(version, sysctl_link=False, sysctl_conf="net.ipv4.ip_forward=0\n")
    tree.sysctl_d("99-k8snode.conf", "net.ipv4.ip_forward = 1\n")
    resolved = k8snode.requirements(root=tree.path)
    assert resolved["boot"]["reads_etc_sysctl_conf"] is None
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert boot["applier"] == "systemd-sysctl"
    assert "/etc/sysctl.conf" not in boot["files"]
    assert boot_value(k8snode, tree) == ("1", "/etc/sysctl.d/99-k8snode.conf")


@pytest.mark.parametrize("family", ["redhat", "suse", "ubuntu"])
def test_systemd_other_families_with_link_masked_ignore_etc_sysctl_conf(k8snode, tree, family):
    getattr(tree, family)()
    tree.write("etc/sysctl.conf", "net.ipv4.ip_forward=0\n")
    tree.symlink("etc/sysctl.d/99-sysctl.conf", "/dev/null")
    assert boot_value(k8snode, tree) is None
    assert "/etc/sysctl.conf" not in k8snode.effective_boot_sysctls(root=tree.path)["files"]


def test_debian13_with_a_leftover_link_still_reads_it(k8snode, tree):
    """Upgraded from 12, the link may remain: systemd-sysctl reads whatever sysctl.d holds."""
    tree.debian(13, sysctl_link=True, sysctl_conf="net.ipv4.ip_forward=0\n")
    tree.sysctl_d("99-k8snode.conf", "net.ipv4.ip_forward = 1\n")
    assert boot_value(k8snode, tree) == ("0", "/etc/sysctl.d/99-sysctl.conf")


def test_without_systemd_procps_reads_etc_sysctl_conf_last(k8snode, tree):
    without_systemd(tree.debian(12, sysctl_link=False, sysctl_conf="net.ipv4.ip_forward=0\n"))
    tree.sysctl_d("zz-k8snode.conf", "net.ipv4.ip_forward = 1\n")
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert boot["applier"] == "sysctl --system"
    assert boot["files"][-1] == "/etc/sysctl.conf"
    assert boot_value(k8snode, tree) == ("0", "/etc/sysctl.conf")


def test_reads_etc_sysctl_conf_argument_applies_to_procps_hosts(k8snode, tree):
    without_systemd(tree.debian(12, sysctl_link=False, sysctl_conf="net.ipv4.ip_forward=0\n"))
    assert boot_value(k8snode, tree, reads_etc_sysctl_conf=False) is None
    assert boot_value(k8snode, tree, reads_etc_sysctl_conf=True) == ("0", "/etc/sysctl.conf")


def test_init_detection_says_when_it_guesses(k8snode, tree):
    tree.debian(12)
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    # A tree that is not the running host: its /run/systemd/system is a hint, not proof.
    assert boot["applier"] == "systemd-sysctl"
    assert "not the running host" in boot["ambiguous"]
    tree.remove("run/systemd/system/.keep")
    os.rmdir(tree.p("run/systemd/system"))
    tree.write("usr/lib/systemd/systemd-sysctl", "")
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert boot["applier"] == "systemd-sysctl"
    assert "installed" in boot["ambiguous"] and "not running" in boot["ambiguous"]
    tree.remove("usr/lib/systemd/systemd-sysctl")
    tree.write("usr/sbin/sysctl", "")
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert boot["applier"] == "sysctl --system"
    assert "no /etc/init.d/procps" in boot["ambiguous"]
    check = k8snode.audit(root=tree.path)["checks"]["sysctl:net.ipv4.ip_forward"]
    assert "boot model: sysctl --system" in check["detail"]


# ----------------------------------------------------------- parsing rules


def test_dash_prefixed_keys_count(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("90-k8s.conf", "-net.bridge.bridge-nf-call-iptables = 1\n- net.ipv4.ip_forward=1\n")
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert boot["values"]["net/bridge/bridge-nf-call-iptables"]["value"] == "1"
    assert boot["values"][IP_FORWARD]["value"] == "1"
    assert boot["problems"] == []


def test_last_assignment_in_a_file_wins_and_whitespace_is_free(k8snode, tree):
    tree.redhat()
    tree.sysctl_d(
        "90-k8s.conf",
        "# comment\n; another\n\n  net.ipv4.ip_forward=0\r\nnet.ipv4.ip_forward\t=\t 1  \r\n"
        "net.ipv4.ip_local_port_range =  1024\t 65000\n",
    )
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    entry = boot["values"][IP_FORWARD]
    assert (entry["value"], entry["line"]) == ("1", 5)
    # Values are shown with one space between fields; the kernel parses what was written.
    assert boot["values"]["net/ipv4/ip_local_port_range"]["value"] == "1024 65000"


def test_explicit_key_beats_a_later_glob(k8snode, tree):
    """systemd >= 240's 50-default.conf sets net.ipv4.conf.*.rp_filter = 2 (calico, cilium break)."""
    tree.redhat()
    tree.sysctl_d("10-cni.conf", "net.ipv4.conf.all.rp_filter = 0\n")
    tree.sysctl_d("50-default.conf", "net.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\n",
                  directory="usr/lib/sysctl.d")  # fmt: skip
    tree.sysctl("net.ipv4.conf.all.rp_filter", 0)
    tree.sysctl("net.ipv4.conf.eth0.rp_filter", 2)
    all_status = k8snode.sysctl_status("net.ipv4.conf.all.rp_filter", 0, root=tree.path)
    # systemd's own "-net.ipv4.conf.all.rp_filter" (a different value: none) replaces the
    # earlier explicit line: nothing writes the key at boot (seen with the real binary,
    # tests/integration/test_sysctl_oracle.py::test_rule[negative_key_after_explicit_drops_it]).
    assert (all_status["boot"], all_status["boot_file"]) == (None, None)
    assert all_status["live_ok"] and not all_status["boot_ok"]
    eth0 = k8snode.sysctl_status("net.ipv4.conf.eth0.rp_filter", 0, root=tree.path)
    assert (eth0["boot"], eth0["boot_file"]) == ("2", "/usr/lib/sysctl.d/50-default.conf")
    assert eth0["boot_ok"] is False
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert boot["globs"][0]["pattern"] == "net/ipv4/conf/*/rp_filter"


def test_last_glob_wins_among_globs(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("50-a.conf", "net.ipv4.conf.*.rp_filter = 2\n")
    tree.sysctl_d("60-b.conf", "net.ipv4.conf.e*.rp_filter = 1\n")
    status = k8snode.sysctl_status("net.ipv4.conf.eth0.rp_filter", root=tree.path)
    assert (status["boot"], status["boot_file"]) == ("1", "/etc/sysctl.d/60-b.conf")


def test_slashed_keys_keep_dots_in_names(k8snode, tree):
    tree.redhat()
    assert sysctl_boot.sysctl_path("net/ipv4/conf/eth0.1/forwarding") == "net/ipv4/conf/eth0.1/forwarding"
    assert sysctl_boot.sysctl_path("net.ipv4.conf.eth0/1.forwarding") == "net/ipv4/conf/eth0.1/forwarding"
    assert sysctl_boot.sysctl_path("net.ipv4.ip_forward") == "net/ipv4/ip_forward"
    tree.sysctl_d("90-vlan.conf", "net.ipv4.conf.eth0/1.forwarding = 1\n")
    tree.sysctl("net/ipv4/conf/eth0.1/forwarding", 1)
    status = k8snode.sysctl_status("net/ipv4/conf/eth0.1/forwarding", 1, root=tree.path)
    assert status["exists"] is True
    assert status["live"] == "1"
    assert status["boot"] == "1"
    assert status["boot_file"] == "/etc/sysctl.d/90-vlan.conf"
    assert status["live_ok"] and status["boot_ok"]


def test_slashed_key_in_requirements_audited(k8snode, tree):
    tree.redhat().modular(loaded=["overlay", "br_netfilter"]).kernel_defaults()
    tree.sysctl("net/ipv4/conf/eth0.1/forwarding", 0)
    result = k8snode.audit(root=tree.path, pillar={"sysctls": {"net/ipv4/conf/eth0.1/forwarding": 1}, "modules": {}})
    check = result["checks"]["sysctl:net/ipv4/conf/eth0.1/forwarding"]
    assert check["live"] == "0"
    assert check["status"] == "fail"


def test_non_assignments_are_problems(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("90-bad.conf", "net.ipv4.ip_forward 1\n = 3\nnet.ipv4.ip_forward = 1\n")
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert boot["problems"] == [
        "/etc/sysctl.d/90-bad.conf:1: not an assignment",
        "/etc/sysctl.d/90-bad.conf:2: empty key",
    ]
    assert boot["values"][IP_FORWARD]["line"] == 3
    assert k8snode.audit(root=tree.path)["boot_problems"] == boot["problems"]


def test_non_utf8_bytes_do_not_hide_the_rest(k8snode, tree):
    tree.redhat()
    tree.write("etc/sysctl.d/90-latin1.conf", b"# r\xe9seau\nnet.ipv4.ip_forward = 1\n")
    assert boot_value(k8snode, tree) == ("1", "/etc/sysctl.d/90-latin1.conf")


# ------------------------------------------------------------------- floors


@pytest.mark.parametrize(
    ("live", "expected", "ok"),
    [("8192", "8192", True), ("524288", "8192", True), ("128", "8192", False), (None, "8192", False)],
)
def test_floor_accepts_higher(k8snode, live, expected, ok):
    assert sysctl_boot.value_satisfies(live, expected, "min") is ok


def test_exact_compares_every_field(k8snode):
    assert sysctl_boot.value_satisfies("1024  65000", "1024 65000")
    assert not sysctl_boot.value_satisfies("1024 65001", "1024 65000")
    assert not sysctl_boot.value_satisfies("2", "1")
    assert not sysctl_boot.value_satisfies("abc", "1", "min")


def test_microk8s_floor_accepts_higher_live_and_boot(k8snode, tree):
    tree.debian(12, sysctl_conf="").modular(loaded=["overlay", "br_netfilter", "nf_conntrack"]).kernel_defaults()
    tree.sysctl("fs.inotify.max_user_instances", 8192)
    tree.sysctl_d("60-big.conf", "fs.inotify.max_user_instances = 8192\n")
    check = k8snode.audit("microk8s", root=tree.path)["checks"]["sysctl:fs.inotify.max_user_instances"]
    assert check["status"] == "ok"
    assert check["expected"] == ">= 1024"
    assert (check["live"], check["boot"]) == ("8192", "8192")


# ---------------------------------------------------- live right, boot wrong


def test_live_right_but_nothing_at_boot(k8snode, tree):
    tree.redhat().modular(loaded=["overlay", "br_netfilter"]).kernel_defaults({"net.ipv4.ip_forward": 1})
    result = k8snode.audit(root=tree.path)
    check = result["checks"]["sysctl:net.ipv4.ip_forward"]
    assert check["status"] == "fail"
    assert check["live"] == "1"
    assert check["boot"] is None
    assert "no sysctl.d file sets it" in check["detail"]
    assert check["lost_at_reboot"] is True
    assert "sysctl:net.ipv4.ip_forward" in result["lost_at_reboot"]
    assert result["ready"] is False


def test_boot_right_live_wrong_is_not_lost(k8snode, tree):
    tree.redhat().modular(loaded=["overlay", "br_netfilter"]).kernel_defaults()
    tree.sysctl_d("99-kubernetes.conf", "net.ipv4.ip_forward = 1\n")
    check = k8snode.audit(root=tree.path)["checks"]["sysctl:net.ipv4.ip_forward"]
    assert check["status"] == "fail"
    assert check["lost_at_reboot"] is False
    assert "is 0 now, needs 1" in check["detail"]


def test_missing_bridge_key_names_br_netfilter(k8snode, tree):
    tree.redhat().modular(available=["br_netfilter", "overlay"]).kernel_defaults()
    check = k8snode.audit(root=tree.path)["checks"]["sysctl:net.bridge.bridge-nf-call-iptables"]
    assert check["status"] == "fail"
    assert check["live"] is None
    assert "does not exist in this kernel" in check["detail"]
    assert "br_netfilter is available" in check["detail"]


def test_sysctl_status_without_a_wanted_value(k8snode, tree):
    tree.redhat(sysctl_conf="net.ipv4.ip_forward = 1\n").kernel_defaults()
    status = k8snode.sysctl_status("net.ipv4.ip_forward", root=tree.path)
    assert {key: status[key] for key in ("key", "exists", "live", "boot", "boot_file", "boot_line", "boot_via")} == {
        "key": "net.ipv4.ip_forward",
        "exists": True,
        "live": "0",
        "boot": "1",
        "boot_file": "/etc/sysctl.d/99-sysctl.conf",
        "boot_line": 1,
        "boot_via": "net/ipv4/ip_forward",
    }
    assert status["applier"] == "systemd-sysctl"
    missing = k8snode.sysctl_status("net.bridge.bridge-nf-call-iptables", 1, root=tree.path)
    assert (missing["exists"], missing["live"], missing["live_ok"], missing["boot_ok"]) == (False, None, False, False)
