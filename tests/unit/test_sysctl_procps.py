"""
The procps model (``sysctl --system`` on a host without systemd) on fake trees: the
version read from the host, what procps 3.3 and 4.0 each do with the same files
(measured on the real binaries by tests/integration/test_sysctl_procps_oracle.py),
and what prepare and the audit make of a pattern key where procps expands no globs.
"""

import pytest

from _modules.k8snode import sysctl_boot, sysctl_procps

LXC = "net.ipv4.conf.lxc*.rp_filter"
CILIUM = "net.ipv4.conf.cilium_*.rp_filter"
DEFAULT = "net.ipv4.conf.default.rp_filter"
INTERFACES = {"all": "0", "default": "0", "lo": "0", "eth0": "0", "lxc1": "2"}


def _procps_host(tree, version="3.3.17", where="usr/sbin/sysctl", interfaces=None):
    """A Debian host without systemd whose sysctl binary says ``version`` (``None``: no
    binary nor dpkg status says it)."""
    tree.os_release(ID="debian", VERSION_ID="11")
    tree.write("etc/init.d/procps", "#!/bin/sh\n/sbin/sysctl -q --system\n")
    if version is not None:
        tree.write(where, f"\x7fELF\0sysctl\0procps-ng {version}\0%s from %s\n")
    for name, value in (interfaces or {}).items():
        tree.write(f"proc/sys/net/ipv4/conf/{name}/rp_filter", value + "\n")
    return tree


def _cilium_host(tree, version):
    _procps_host(tree, version, interfaces=INTERFACES)
    tree.modular(
        loaded=["overlay", "br_netfilter", "nf_conntrack", "ip_set", "xt_set", "ip_set_hash_ip", "xt_comment", "vxlan"]
    )
    tree.kernel_defaults({"net.ipv4.ip_forward": 1})
    return tree


# ------------------------------------------------------------------ the version


def test_the_version_comes_from_the_sysctl_binary(make_tree):
    tree = _procps_host(make_tree(), "3.3.17", where="sbin/sysctl")
    found = sysctl_procps.procps_version(tree.path)
    assert found == {
        "version": "3.3.17",
        "evidence": "/sbin/sysctl says procps-ng 3.3.17",
        "expands_globs": False,
        "assumed": None,
    }


def test_the_version_comes_from_dpkg_status_without_a_readable_binary(make_tree):
    tree = _procps_host(make_tree(), None)
    tree.write(
        "var/lib/dpkg/status",
        "Package: procps-extra\nStatus: install ok installed\nVersion: 1:9.9-1\n\n"
        "Package: procps\nStatus: install ok installed\nPriority: important\nVersion: 2:4.0.2-3\n"
        "Description: /proc file system utilities\n with a continuation: line\n",
    )
    found = sysctl_procps.procps_version(tree.path)
    assert (found["version"], found["expands_globs"], found["assumed"]) == ("4.0.2", True, None)
    assert found["evidence"] == "/var/lib/dpkg/status: procps 2:4.0.2-3"


def test_an_unknown_version_is_assumed_current_and_the_boot_model_says_so(k8snode, make_tree):
    tree = _procps_host(make_tree(), None)
    tree.sysctl_d("10-a.conf", f"{LXC} = 0\n")
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert boot["procps"]["version"] is None
    # No sysctl binary either: both guesses are said.
    assert boot["ambiguous"].endswith("; procps version unknown: assuming procps >= 4.0 rules (globs expand)")
    assert [glob["pattern"] for glob in boot["globs"]] == ["net/ipv4/conf/lxc*/rp_filter"]


# ------------------------------------------------------------------ the same files, two generations


@pytest.mark.parametrize(
    ("name", "files", "key", "old", "new"),
    [
        ("glob_expands_only_from_4_0", {"etc/sysctl.d/10-a.conf": f"{LXC} = 0\n"}, "net/ipv4/conf/lxc1/rp_filter",
         None, "0"),
        ("glob_skips_a_key_named_anywhere",
         {"etc/sysctl.d/10-a.conf": "net.ipv4.conf.lxc1.rp_filter = 1\n", "etc/sysctl.d/20-b.conf": f"{LXC} = 0\n"},
         "net/ipv4/conf/lxc1/rp_filter", "1", "1"),
        ("double_dots_do_not_keep_a_glob_off",
         {"etc/sysctl.d/10-a.conf": "net.ipv4..ip_forward = 1\n", "etc/sysctl.d/20-b.conf": "net.*.ip_forward = 0\n"},
         "net/ipv4/ip_forward", "1", "0"),
        ("negative_key_is_refused_before_4_0_and_keeps_globs_off_after",
         {"etc/sysctl.d/10-a.conf": "net.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\n"},
         "net/ipv4/conf/all/rp_filter", None, None),
        ("negative_key_does_not_undo_a_value",
         {"etc/sysctl.d/10-a.conf": "net.ipv4.conf.all.rp_filter = 0\n-net.ipv4.conf.all.rp_filter\n"},
         "net/ipv4/conf/all/rp_filter", "0", "0"),
        ("braces_are_literal", {"etc/sysctl.d/10-a.conf": "net.ipv4.conf.*{all,lo}.forwarding = 0\n"},
         "net/ipv4/ip_forward", None, None),
        ("hidden_files_are_read", {"etc/sysctl.d/.10-a.conf": "net.ipv4.ip_forward = 0\n"}, "net/ipv4/ip_forward",
         "0", "0"),
        ("etc_sysctl_conf_read_again_after_its_link",
         {"etc/sysctl.conf": "net.ipv4.ip_forward = 0\n", "etc/sysctl.d/zz.conf": "net.ipv4.ip_forward = 1\n",
          "etc/sysctl.d/99-sysctl.conf": ("link", "../sysctl.conf")},
         "net/ipv4/ip_forward", "0", "0"),
        ("carriage_return_ends_the_value_only_before_4_0",
         {"etc/sysctl.d/10-a.conf": "net.ipv4.ip_forward = 0\rnet.ipv4.ip_forward = 1\r"}, "net/ipv4/ip_forward",
         "0", None),
        ("vertical_tab_stripped_from_4_0", {"etc/sysctl.d/10-a.conf": "net.ipv4.ip_forward = 0\x0b\n"},
         "net/ipv4/ip_forward", None, "0"),
        ("trailing_dot_finds_no_key", {"etc/sysctl.d/10-a.conf": "net.ipv4.ip_forward. = 0\n"},
         "net/ipv4/ip_forward", None, None),
        ("nul_ends_the_line_text", {"etc/sysctl.d/10-a.conf": "net.ipv4.ip_forward = 0\0x = 1\n"},
         "net/ipv4/ip_forward", "0", "0"),
    ],
    ids=lambda value: value if isinstance(value, str) and value.isidentifier() else "",
)  # fmt: skip
def test_procps_3_and_4_on_the_same_files(k8snode, make_tree, name, files, key, old, new):
    for version, expected in (("3.3.17", old), ("4.0.2", new)):
        tree = _procps_host(make_tree(f"{name}-{version}"), version)
        for path, content in files.items():
            if isinstance(content, tuple):
                tree.symlink(path, content[1])
            else:
                tree.write(path, content)
        boot = k8snode.effective_boot_sysctls(root=tree.path)
        assert boot["applier"] == sysctl_boot.PROCPS and boot["procps"]["version"] == version
        winner = sysctl_boot.boot_assignment(key, boot)
        assert (winner["value"] if winner else None) == expected, (version, winner, boot["problems"])


def test_an_ignored_glob_line_is_a_boot_problem_with_its_file_and_line(k8snode, make_tree):
    tree = _procps_host(make_tree(), "3.3.17")
    tree.sysctl_d("99-k8snode.conf", f"# Managed by Salt (k8snode)\n{LXC} = 0\n")
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert boot["globs"] == []
    assert [(line["file"], line["line"], line["pattern"]) for line in boot["ignored"]] == [
        ("/etc/sysctl.d/99-k8snode.conf", 2, "net/ipv4/conf/lxc*/rp_filter")
    ]
    assert "/etc/sysctl.d/99-k8snode.conf:2: procps 3.3.17 does not expand globs (4.0 does)" in boot["problems"][0]


# ------------------------------------------------------------------ prepare and the audit


def test_prepare_on_procps_3_persists_conf_default_for_the_patterns_and_says_so(k8snode, make_tree):
    tree = _cilium_host(make_tree(), "3.3.17")
    tree.sysctl(DEFAULT, 2)
    ret = k8snode._prepare(root=tree.path, cni="cilium")
    assert ret["result"] is True, ret
    written = tree.read("etc/sysctl.d/99-k8snode.conf").splitlines()
    assert f"{DEFAULT} = 0" in written
    assert not [line for line in written if "*" in line], written
    assert "procps 3.3.17 here (/usr/sbin/sysctl says procps-ng 3.3.17) does not expand globs" in ret["comment"]
    assert f"{LXC} = 0 is persisted as {DEFAULT} = 0" in ret["comment"]
    # Set now too: an interface created before the next boot copies it as well.
    assert ret["changes"][f"sysctl:{DEFAULT}"] == {"old": "2", "new": "0"}
    assert tree.live(DEFAULT) == "0"
    assert tree.live("net.ipv4.conf.lxc1.rp_filter") == "0"

    check = k8snode.audit(root=tree.path, cni="cilium")["checks"][f"sysctl:{LXC}"]
    assert check["status"] == "ok", check["detail"]
    assert check["boot"] == {"net.ipv4.conf.lxc1.rp_filter": "0"}
    assert f"copied from {DEFAULT} when the interface appears" in check["detail"]


def test_prepare_on_procps_4_writes_the_pattern_lines(k8snode, make_tree):
    tree = _cilium_host(make_tree(), "4.0.2")
    ret = k8snode._prepare(root=tree.path, cni="cilium")
    assert ret["result"] is True, ret
    written = tree.read("etc/sysctl.d/99-k8snode.conf").splitlines()
    assert f"{LXC} = 0" in written and f"{CILIUM} = 0" in written
    assert not [line for line in written if line.startswith(DEFAULT)]
    assert "does not expand globs" not in ret["comment"]
    assert k8snode.audit(root=tree.path, cni="cilium")["checks"][f"sysctl:{LXC}"]["status"] == "ok"


def test_the_audit_says_which_pattern_line_procps_3_ignores(k8snode, make_tree):
    """A pattern line (an older k8snode's file) on procps 3.3: no line reaches a new lxc
    interface, which copies conf.default (2 here, set by a file): off at boot, and the
    detail names the ignored line."""
    tree = _cilium_host(make_tree(), "3.3.17")
    tree.sysctl_d("50-site.conf", f"{DEFAULT} = 2\n")
    tree.sysctl_d("99-k8snode.conf", f"# Managed by Salt (k8snode)\n{LXC} = 0\n")
    check = k8snode.audit(root=tree.path, cni="cilium")["checks"][f"sysctl:{LXC}"]
    assert check["status"] == "fail"
    assert check["off_at_boot"] == ["lxc1"]
    assert check["boot_ignored"] == ["/etc/sysctl.d/99-k8snode.conf:2"]
    assert (
        f"/etc/sysctl.d/99-k8snode.conf:2 ({LXC} = 0) sets nothing at boot: procps 3.3.17 does not expand globs"
        in check["detail"]
    )


def test_prepare_fails_when_a_file_after_ours_sets_conf_default_on_procps_3(k8snode, make_tree):
    tree = _cilium_host(make_tree(), "3.3.17")
    tree.sysctl_d("99-zz-site.conf", f"{DEFAULT} = 2\n")
    ret = k8snode._prepare(root=tree.path, cni="cilium")
    assert ret["result"] is False
    assert "/etc/sysctl.d/99-zz-site.conf sets 2" in ret["failures"][f"sysctl:{LXC}"]


def test_a_pattern_on_a_key_no_interface_copies_fails_on_procps_3(k8snode, make_tree):
    tree = _cilium_host(make_tree(), "3.3.17")
    tree.write("proc/sys/net/ipv4/neigh/eth0/gc_stale_time", "60\n")
    ret = k8snode._prepare(root=tree.path, pillar={"sysctls": {"net.ipv4.neigh.*.gc_stale_time": 120}})
    assert ret["result"] is False
    reason = ret["failures"]["sysctl:net.ipv4.neigh.*.gc_stale_time"]
    assert (
        "does not expand globs in sysctl.d (4.0 does), and net.ipv4.neigh.*.gc_stale_time is not a per-interface key"
        in reason
    )
