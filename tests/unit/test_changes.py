"""
prepare and revert on fake trees; ``cmd.run_all`` is the tree's fake kernel.

What a user expects (and what Salt's kmod.present and sysctl.present get wrong:
lsmod-only checks, a key written before it exists, no notice of a later file):
modules loaded with an argv list (never a shell string) and listed for boot;
sysctls set live and persisted in a file that actually wins at boot; a second
run changes nothing; test=True changes nothing and previews what the real run
does; one failing item does not stop the others; files that are not ours are
never overwritten; floors are never lowered; swap lines are commented out
(with a backup) and restored exactly by revert.
"""

import os
import stat

import pytest

from _modules.k8snode import writer

MODULES_FILE = "etc/modules-load.d/k8snode.conf"
SYSCTL_FILE = "etc/sysctl.d/99-k8snode.conf"


def managed(k8snode, *lines):
    return writer.MANAGED_HEADER + "".join(line + "\n" for line in lines)


KUBEADM_SYSCTLS = (
    "net.bridge.bridge-nf-call-ip6tables = 1",
    "net.bridge.bridge-nf-call-iptables = 1",
    "net.ipv4.ip_forward = 1",
)


# ------------------------------------------------------------ a fresh node


def test_prepare_fresh_node(k8snode, tree):
    tree.redhat().fresh_node()
    ret = k8snode._prepare(root=tree.path)
    assert ret["result"] is True, ret["comment"]
    assert ret["failures"] == {}
    assert ret["distribution"] == "kubeadm"

    # Modules: an argv list with "--", never through a shell.
    # nf_conntrack: kube-proxy writes nf_conntrack_max at start (kubernetes/kops#17968).
    assert tree.argvs() == [
        ["modprobe", "--", "overlay"],
        ["modprobe", "--", "br_netfilter"],
        ["modprobe", "--", "nf_conntrack"],
    ]
    assert all(call["python_shell"] is False for call in tree.calls)
    assert set(tree.loaded()) == {"overlay", "br_netfilter", "nf_conntrack"}

    # The two managed files, with the header, mode 0644.
    assert tree.read(MODULES_FILE) == managed(k8snode, "br_netfilter", "nf_conntrack", "overlay")
    assert tree.read(SYSCTL_FILE) == managed(k8snode, *KUBEADM_SYSCTLS)
    for relative in (MODULES_FILE, SYSCTL_FILE):
        assert tree.mode(relative) == 0o644
        assert stat.S_ISREG(tree.p(relative).lstat().st_mode)

    # Live values written under /proc/sys.
    assert tree.live("net.ipv4.ip_forward") == "1"

    assert set(ret["changes"]) == {
        "module:overlay",
        "module:br_netfilter",
        "module:nf_conntrack",
        "sysctl:net.ipv4.ip_forward",
        "file:/etc/modules-load.d/k8snode.conf",
        "file:/etc/sysctl.d/99-k8snode.conf",
    }
    assert ret["changes"]["sysctl:net.ipv4.ip_forward"] == {"old": "0", "new": "1"}
    assert ret["changes"]["file:/etc/sysctl.d/99-k8snode.conf"]["old"] is None
    assert ret["comment"] == "6 change(s) made"

    audit = k8snode.audit(root=tree.path)
    assert audit["ready"] is True, audit["failing"]


def test_second_run_changes_nothing(k8snode, tree):
    tree.debian(13, sysctl_link=False).fresh_node()
    assert k8snode._prepare(root=tree.path)["result"] is True
    before = tree.snapshot()
    calls = len(tree.calls)
    ret = k8snode._prepare(root=tree.path)
    assert ret["result"] is True
    assert ret["changes"] == {}
    assert ret["comment"] == "kubeadm node already prepared"
    assert len(tree.calls) == calls, "no modprobe for modules already loaded"
    # Only the lock file may be touched.
    assert tree.snapshot() == before


def test_test_mode_reports_and_writes_nothing(k8snode, tree):
    tree.redhat().fresh_node()
    before = tree.snapshot()
    ret = k8snode._prepare(root=tree.path, test=True)
    assert tree.snapshot() == before
    assert tree.calls == []
    assert ret["result"] is None, ret["comment"]
    assert ret["failures"] == {}
    assert {"module:overlay", "module:br_netfilter", "sysctl:net.ipv4.ip_forward"} <= set(ret["changes"])
    assert "would be made" in ret["comment"]
    preview = ret["changes"]["file:/etc/sysctl.d/99-k8snode.conf"]["new"]

    # The preview is what the real run writes: the bridge keys appear once
    # br_netfilter loads (Salt's sysctl.present fails on them instead).
    real = k8snode._prepare(root=tree.path)
    assert real["result"] is True, real["comment"]
    assert preview == tree.read(SYSCTL_FILE)
    assert set(real["changes"]) <= set(ret["changes"])


def test_test_mode_on_prepared_node_is_true_without_changes(k8snode, tree):
    tree.redhat().fresh_node()
    k8snode._prepare(root=tree.path)
    ret = k8snode._prepare(root=tree.path, test=True)
    assert ret["result"] is True
    assert ret["changes"] == {}


def test_builtin_kernel_runs_no_modprobe(k8snode, tree):
    tree.debian(12, sysctl_conf="").monolithic(builtin=["overlay", "br_netfilter", "nf_conntrack"]).kernel_defaults()
    tree.sysctl("net.bridge.bridge-nf-call-iptables", 1)
    tree.sysctl("net.bridge.bridge-nf-call-ip6tables", 1)
    ret = k8snode._prepare(root=tree.path)
    assert ret["result"] is True, ret["comment"]
    assert tree.argvs("modprobe") == []
    assert k8snode.audit(root=tree.path)["ready"] is True


def test_k3s_conntrack_alternatives(k8snode, tree):
    tree.redhat().modular(available=["overlay", "br_netfilter", "nf_conntrack_ipv4"]).kernel_defaults()
    ret = k8snode._prepare("k3s", root=tree.path)
    assert ret["result"] is True, ret["comment"]
    assert ["modprobe", "--", "nf_conntrack_ipv4"] in tree.argvs()
    assert ["modprobe", "--", "nf_conntrack"] not in tree.argvs()
    assert "nf_conntrack_ipv4\n" in tree.read(MODULES_FILE)


def test_alternatives_tried_in_order_when_nothing_is_known(k8snode, tree):
    tree.redhat().modular(available=["overlay", "br_netfilter"]).kernel_defaults()
    # Not in modules.dep (e.g. an out-of-tree build): modprobe still gets a chance.
    tree.modprobe_fails["nf_conntrack"] = "modprobe: FATAL: Module nf_conntrack not found"
    tree.write(f"lib/modules/{tree.release}/modules.dep", "kernel/fs/overlayfs/overlay.ko:\n")
    ret = k8snode._prepare("k3s", root=tree.path)
    assert ["modprobe", "--", "nf_conntrack"] in tree.argvs()
    assert ["modprobe", "--", "nf_conntrack_ipv4"] in tree.argvs()
    assert tree.argvs().index(["modprobe", "--", "nf_conntrack"]) < tree.argvs().index(
        ["modprobe", "--", "nf_conntrack_ipv4"]
    )
    assert "module:nf_conntrack" in ret["failures"]
    assert "Module nf_conntrack not found" in ret["failures"]["module:nf_conntrack"]


# --------------------------------------------- failures don't stop the rest


def test_one_failure_does_not_stop_the_others(k8snode, tree):
    tree.redhat().modular(available=["overlay", "nf_conntrack"]).kernel_defaults()
    ret = k8snode._prepare(root=tree.path, sysctls={"net.ipv4.tcp_no_such_key": 1})
    assert ret["result"] is False
    assert set(ret["failures"]) == {
        "module:br_netfilter",
        "sysctl:net.bridge.bridge-nf-call-iptables",
        "sysctl:net.bridge.bridge-nf-call-ip6tables",
        "sysctl:net.ipv4.tcp_no_such_key",
    }
    for item in ret["failures"]:
        assert item in ret["comment"]
    assert "br_netfilter is not loaded" in ret["failures"]["sysctl:net.bridge.bridge-nf-call-iptables"]
    assert "does not exist in this kernel" in ret["failures"]["sysctl:net.ipv4.tcp_no_such_key"]
    # The rest was done.
    assert "overlay" in tree.loaded()
    assert tree.live("net.ipv4.ip_forward") == "1"
    assert tree.read(MODULES_FILE) == managed(k8snode, "nf_conntrack", "overlay")
    assert tree.read(SYSCTL_FILE) == managed(k8snode, "net.ipv4.ip_forward = 1")


def test_modprobe_error_is_reported_with_the_hint(k8snode, tree):
    tree.redhat(os_id="rhel", version="10.0").modular(available=["overlay", "br_netfilter"]).kernel_defaults()
    tree.modprobe_fails["br_netfilter"] = "modprobe: ERROR: could not insert 'br_netfilter': Operation not permitted"
    ret = k8snode._prepare(root=tree.path)
    reason = ret["failures"]["module:br_netfilter"]
    assert "Operation not permitted" in reason
    assert "kernel-modules-extra" in reason


def test_optional_missing_module_is_a_note(k8snode, tree):
    tree.redhat().modular(available=["overlay", "br_netfilter", "nf_conntrack"]).kernel_defaults()
    ret = k8snode._prepare(root=tree.path, modules={"ip_vs": {"required": False}})
    assert ret["result"] is True, ret["comment"]
    assert "optional module ip_vs unavailable" in ret["comment"]


def test_optional_missing_sysctl_is_a_note(k8snode, tree):
    tree.redhat().modular(available=["overlay", "br_netfilter", "nf_conntrack"]).kernel_defaults()
    ret = k8snode._prepare(root=tree.path, sysctls={"net.ipv4.tcp_no_such_key": {"value": 1, "required": False}})
    assert ret["result"] is True, ret["comment"]
    assert "net.ipv4.tcp_no_such_key does not exist" in ret["comment"]


# --------------------------------------------------------- files not ours


def test_user_file_at_the_managed_path_is_not_clobbered(k8snode, tree):
    tree.redhat().fresh_node()
    user = "# my own settings\nnet.ipv4.ip_forward = 1\n"
    tree.sysctl_d("99-k8snode.conf", user)
    ret = k8snode._prepare(root=tree.path)
    assert ret["result"] is False
    assert "not written by k8snode" in ret["failures"]["file:/etc/sysctl.d/99-k8snode.conf"]
    assert tree.read(SYSCTL_FILE) == user
    # Everything else was still done.
    assert tree.read(MODULES_FILE) == managed(k8snode, "br_netfilter", "nf_conntrack", "overlay")


def test_hand_edited_managed_file_is_restored(k8snode, tree):
    tree.redhat().fresh_node()
    k8snode._prepare(root=tree.path)
    tree.write(SYSCTL_FILE, tree.read(SYSCTL_FILE).replace("net.ipv4.ip_forward = 1", "net.ipv4.ip_forward = 0"))
    ret = k8snode._prepare(root=tree.path)
    assert ret["result"] is True, ret["comment"]
    assert tree.read(SYSCTL_FILE) == managed(k8snode, *KUBEADM_SYSCTLS)
    assert "/etc/sysctl.d/99-k8snode.conf restored (it was edited by hand)" in ret["comment"]
    assert "net.ipv4.ip_forward = 0" in ret["changes"]["file:/etc/sysctl.d/99-k8snode.conf"]["old"]


# ------------------------------------------------------ boot precedence


def test_later_file_overriding_a_value_fails_naming_it(k8snode, tree):
    tree.redhat().fresh_node()
    tree.sysctl_d("99-zz-docker.conf", "net.ipv4.ip_forward = 0\n")
    ret = k8snode._prepare(root=tree.path)
    assert ret["result"] is False
    reason = ret["failures"]["sysctl:net.ipv4.ip_forward"]
    assert "/etc/sysctl.d/99-zz-docker.conf sets 0 at boot" in reason
    assert "files: sysctl" in reason
    assert list(ret["failures"]) == ["sysctl:net.ipv4.ip_forward"]


def test_99_sysctl_conf_link_overriding_fails_naming_it(k8snode, tree):
    tree.debian(12, sysctl_conf="net.ipv4.ip_forward=0\n").fresh_node()
    ret = k8snode._prepare(root=tree.path)
    assert "/etc/sysctl.d/99-sysctl.conf sets 0 at boot" in ret["failures"]["sysctl:net.ipv4.ip_forward"]


def test_a_file_name_sorting_last_wins(k8snode, tree):
    tree.debian(12, sysctl_conf="net.ipv4.ip_forward=0\n").fresh_node()
    tree.sysctl_d("99-zz-docker.conf", "net.ipv4.ip_forward = 0\n")
    ret = k8snode._prepare(root=tree.path, files={"sysctl": "/etc/sysctl.d/zz-k8snode.conf"})
    assert ret["result"] is True, ret["comment"]
    assert tree.read("etc/sysctl.d/zz-k8snode.conf") == managed(k8snode, *KUBEADM_SYSCTLS)
    assert not tree.exists(SYSCTL_FILE)
    audit = k8snode.audit(root=tree.path, files={"sysctl": "/etc/sysctl.d/zz-k8snode.conf"})
    assert audit["checks"]["sysctl:net.ipv4.ip_forward"]["boot_file"] == "/etc/sysctl.d/zz-k8snode.conf"
    assert audit["ready"] is True


def test_etc_sysctl_conf_read_last_cannot_be_beaten_by_a_name(k8snode, tree):
    """A host without systemd: procps' `sysctl --system` reads /etc/sysctl.conf after every sysctl.d file."""
    tree.debian(12, sysctl_link=False, sysctl_conf="net.ipv4.ip_forward=0\n").fresh_node()
    tree.remove("run/systemd/system/.keep")
    os.rmdir(tree.p("run/systemd/system"))
    tree.write("usr/sbin/sysctl", "")
    ret = k8snode._prepare(root=tree.path, files={"sysctl": "/etc/sysctl.d/zz-k8snode.conf"})
    assert "/etc/sysctl.conf sets 0 at boot" in ret["failures"]["sysctl:net.ipv4.ip_forward"]


def test_debian12_systemd_without_link_ignores_etc_sysctl_conf(k8snode, tree):
    """systemd-sysctl reads /etc/sysctl.conf only through the 99-sysctl.conf link."""
    tree.debian(12, sysctl_link=False, sysctl_conf="net.ipv4.ip_forward=0\n").fresh_node()
    ret = k8snode._prepare(root=tree.path)
    assert ret["result"] is True, ret["comment"]


def test_later_alias_turning_forwarding_off_fails_naming_it(k8snode, tree):
    """net.ipv4.conf.all.forwarding is ip_forward: a hardening file applied after ours wins."""
    tree.redhat().fresh_node()
    tree.sysctl_d("99-zz-hardening.conf", "net.ipv4.conf.all.forwarding = 0\n")
    ret = k8snode._prepare(root=tree.path)
    reason = ret["failures"]["sysctl:net.ipv4.ip_forward"]
    assert "/etc/sysctl.d/99-zz-hardening.conf sets 0 through net/ipv4/conf/all/forwarding at boot" in reason


def test_debian13_ignores_etc_sysctl_conf(k8snode, tree):
    tree.debian(13, sysctl_link=False, sysctl_conf="net.ipv4.ip_forward=0\n").fresh_node()
    ret = k8snode._prepare(root=tree.path)
    assert ret["result"] is True, ret["comment"]


def test_usr_lib_file_masked_by_our_name_is_not_a_conflict(k8snode, tree):
    tree.redhat().fresh_node()
    tree.sysctl_d("99-k8snode.conf", "net.ipv4.ip_forward = 0\n", directory="usr/lib/sysctl.d")
    ret = k8snode._prepare(root=tree.path)
    assert ret["result"] is True, ret["comment"]
    assert k8snode.audit(root=tree.path)["ready"] is True


# ------------------------------------------------------------------ floors


def test_floors_are_raised_but_never_lowered(k8snode, tree):
    tree.redhat().fresh_node(modules=("overlay", "br_netfilter", "nf_conntrack"))
    tree.sysctl("fs.inotify.max_user_watches", 2097152)  # higher than microk8s' 1048576
    ret = k8snode._prepare("microk8s", root=tree.path)
    assert ret["result"] is True, ret["comment"]
    assert tree.live("fs.inotify.max_user_watches") == "2097152"
    assert tree.live("fs.inotify.max_user_instances") == "1024"
    assert tree.live("fs.aio-max-nr") == "1048576"
    text = tree.read(SYSCTL_FILE)
    assert "fs.inotify.max_user_watches = 2097152\n" in text
    assert "fs.inotify.max_user_instances = 1024\n" in text
    assert "sysctl:fs.inotify.max_user_watches" not in ret["changes"]
    assert ret["changes"]["sysctl:fs.inotify.max_user_instances"] == {"old": "128", "new": "1024"}

    # Raised by hand later: kept, and not brought back down at the next boot.
    tree.sysctl("fs.inotify.max_user_instances", 8192)
    k8snode._prepare("microk8s", root=tree.path)
    assert tree.live("fs.inotify.max_user_instances") == "8192"
    assert "fs.inotify.max_user_instances = 8192\n" in tree.read(SYSCTL_FILE)


def test_floor_in_an_earlier_user_file_is_not_lowered_at_boot(k8snode, tree):
    """Our 99-k8snode.conf sorts after the user's 60-*.conf: writing the bare floor there
    would lower the user's higher value at every boot."""
    tree.redhat().fresh_node(modules=("overlay", "br_netfilter", "nf_conntrack"))
    assert k8snode._prepare("microk8s", root=tree.path)["result"] is True
    assert "fs.inotify.max_user_instances = 1024\n" in tree.read(SYSCTL_FILE)

    tree.sysctl_d("60-inotify.conf", "fs.inotify.max_user_instances = 8192\n")
    ret = k8snode._prepare("microk8s", root=tree.path)
    assert ret["result"] is True, ret["comment"]
    status = k8snode.sysctl_status("fs.inotify.max_user_instances", root=tree.path)
    assert status["boot"] == "8192"
    # Live already meets the floor: left alone (the user's file raises it at boot).
    assert status["live"] == "1024"


# -------------------------------------------------------------------- swap

FSTAB = (
    "# <file system> <mount point> <type> <options> <dump> <pass>\n"
    "UUID=0a1b / ext4 errors=remount-ro 0 1\n"
    "UUID=2c3d none swap sw 0 0\n"
    "/swapfile none swap sw,pri=5 0 0\n"
    "#/dev/old none swap sw 0 0"  # no final newline: must come back byte for byte
)


def test_swap_off_comments_fstab_with_backup_and_revert_restores_it(k8snode, tree):
    tree.debian(13, sysctl_link=False).fresh_node()
    tree.fstab(FSTAB).swaps("/dev/vda2")
    user_sysctl = "vm.swappiness = 10\n"
    tree.sysctl_d("10-user.conf", user_sysctl)
    tree.modules_load("user.conf", ["veth"])

    ret = k8snode._prepare(root=tree.path)
    assert ret["result"] is True, ret["comment"]
    assert ["swapoff", "--", "/dev/vda2"] in tree.argvs()
    fstab = tree.read("etc/fstab")
    assert "#k8snode-swap-off# UUID=2c3d none swap sw 0 0\n" in fstab
    assert "#k8snode-swap-off# /swapfile none swap sw,pri=5 0 0\n" in fstab
    assert "\nUUID=0a1b / ext4 errors=remount-ro 0 1\n" in fstab
    assert fstab.endswith("\n#/dev/old none swap sw 0 0")
    assert tree.read("etc/fstab.k8snode.bak") == FSTAB
    assert tree.mode("etc/fstab") == 0o644
    assert k8snode.swap_status(root=tree.path) == {"active": [], "at_boot": []}
    assert k8snode.audit(root=tree.path)["checks"]["swap"]["status"] == "ok"

    # Idempotent.
    assert k8snode._prepare(root=tree.path)["changes"] == {}

    ret = k8snode._revert(root=tree.path)
    assert ret["result"] is True, ret["comment"]
    assert tree.read("etc/fstab") == FSTAB
    assert not tree.exists(MODULES_FILE)
    assert not tree.exists(SYSCTL_FILE)
    # Only our files: the user's stay.
    assert tree.read("etc/sysctl.d/10-user.conf") == user_sysctl
    assert tree.read("etc/modules-load.d/user.conf") == "veth\n"
    assert tree.read("etc/modules") is not None
    assert "left as they are" in ret["comment"]
    # Live state is untouched: unloading br_netfilter would cut a live node's pods off.
    assert "br_netfilter" in tree.loaded()


def test_swap_warn_policy_leaves_swap_alone(k8snode, tree):
    tree.redhat().fresh_node()
    tree.fstab(FSTAB).swaps("/dev/vda2")
    ret = k8snode._prepare("k3s", root=tree.path, modules={"nf_conntrack": False})
    assert ret["result"] is True, ret["comment"]
    assert tree.argvs("swapoff") == []
    assert tree.read("etc/fstab") == FSTAB
    assert not tree.exists("etc/fstab.k8snode.bak")


def test_swap_unit_is_reported_not_edited(k8snode, tree):
    tree.redhat().fresh_node()
    tree.write("etc/systemd/system/swapfile.swap", "[Swap]\nWhat=/swapfile\n")
    tree.symlink("etc/systemd/system/swap.target.wants/swapfile.swap", "../swapfile.swap")
    ret = k8snode._prepare(root=tree.path)
    assert "/etc/systemd/system/swap.target.wants/swapfile.swap" in ret["failures"]["swap"]
    assert tree.read("etc/systemd/system/swapfile.swap") == "[Swap]\nWhat=/swapfile\n"


def test_swap_test_mode_writes_nothing(k8snode, tree):
    tree.redhat().fresh_node()
    tree.fstab(FSTAB).swaps("/dev/vda2")
    before = tree.snapshot()
    ret = k8snode._prepare(root=tree.path, test=True)
    assert tree.snapshot() == before
    assert ret["changes"]["swap:/dev/vda2"] == {"old": "active", "new": "off"}
    assert "file:/etc/fstab" in ret["changes"]


# ------------------------------------------------------------------ revert


def test_revert_leaves_files_that_are_not_ours(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("99-k8snode.conf", "net.ipv4.ip_forward = 1\n")
    ret = k8snode._revert(root=tree.path)
    assert ret["result"] is True
    assert tree.read(SYSCTL_FILE) == "net.ipv4.ip_forward = 1\n"
    assert "was not written by k8snode: left alone" in ret["comment"]


def test_revert_test_mode_and_custom_names(k8snode, tree):
    tree.redhat().fresh_node()
    files = {"sysctl": "/etc/sysctl.d/zz-k8snode.conf", "modules_load": "/etc/modules-load.d/zz-k8snode.conf"}
    assert k8snode._prepare(root=tree.path, files=files)["result"] is True
    before = tree.snapshot()
    ret = k8snode._revert(root=tree.path, files=files, test=True)
    assert ret["result"] is None
    assert set(ret["changes"]) == {
        "file:/etc/sysctl.d/zz-k8snode.conf",
        "file:/etc/modules-load.d/zz-k8snode.conf",
    }
    assert tree.snapshot() == before
    ret = k8snode._revert(root=tree.path, files=files, distribution="k3s")
    assert ret["result"] is True
    assert not tree.exists("etc/sysctl.d/zz-k8snode.conf")
    assert not tree.exists("etc/modules-load.d/zz-k8snode.conf")


def test_revert_with_nothing_to_do(k8snode, tree):
    tree.redhat()
    ret = k8snode._revert(root=tree.path)
    assert ret["result"] is True
    assert ret["changes"] == {}
    assert ret["comment"].startswith("nothing of k8snode's to remove")


@pytest.mark.parametrize("distribution", ["kubeadm", "rke2", "k3s", "microk8s"])
def test_prepare_then_audit_is_ready_for_each_distribution(k8snode, tree, distribution):
    tree.debian(12, sysctl_conf="").fresh_node(modules=("overlay", "br_netfilter", "nf_conntrack"))
    tree.fstab(FSTAB).swaps("/dev/vda2")
    ret = k8snode._prepare(distribution, root=tree.path)
    assert ret["result"] is True, ret["comment"]
    audit = k8snode.audit(distribution, root=tree.path)
    assert audit["ready"] is True, audit["failing"]
    assert audit["lost_at_reboot"] == []


# ------------------------------------------- a file of ours under an old name


def test_prepare_with_a_new_file_name_removes_ours_under_the_old_one(k8snode, tree):
    # The header of every file k8snode writes says "k8snode.absent removes this file"
    # (writer.MANAGED_HEADER); a file it wrote under the default name before ``files:``
    # named another would otherwise act at boot, beside the new one, for good.
    tree.redhat().fresh_node()
    assert k8snode._prepare(root=tree.path)["result"] is True
    old_text = tree.read(SYSCTL_FILE)
    tree.sysctl_d("50-user.conf", "vm.swappiness = 10\n")  # not ours: it stays
    files = {"sysctl": "/etc/sysctl.d/zz-k8snode.conf", "modules_load": "/etc/modules-load.d/zz-k8snode.conf"}

    preview = k8snode._prepare(root=tree.path, files=files, test=True)
    assert preview["changes"]["file:/etc/sysctl.d/99-k8snode.conf"] == {"old": old_text, "new": None}
    assert tree.exists(SYSCTL_FILE)

    ret = k8snode._prepare(root=tree.path, files=files)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"]["file:/etc/sysctl.d/99-k8snode.conf"] == {"old": old_text, "new": None}
    assert ret["changes"]["file:/etc/modules-load.d/k8snode.conf"]["new"] is None
    assert "/etc/sysctl.d/99-k8snode.conf removed (k8snode wrote it before;" in ret["comment"]
    assert not tree.exists(SYSCTL_FILE) and not tree.exists(MODULES_FILE)
    assert tree.read("etc/sysctl.d/zz-k8snode.conf") == managed(k8snode, *KUBEADM_SYSCTLS)
    assert tree.read("etc/sysctl.d/50-user.conf") == "vm.swappiness = 10\n"
    assert k8snode.audit(root=tree.path, files=files)["ready"] is True


def test_revert_removes_ours_under_an_old_name_too(k8snode, tree):
    # What a node prepared before its pillar named another file looks like: both of ours.
    tree.redhat().fresh_node()
    tree.sysctl_d("99-k8snode.conf", managed(k8snode, "net.ipv4.ip_forward = 1"))
    files = {"sysctl": "/etc/sysctl.d/zz-k8snode.conf"}
    tree.sysctl_d("zz-k8snode.conf", managed(k8snode, "net.ipv4.ip_forward = 1"))
    tree.sysctl_d("10-user.conf", "net.ipv4.ip_forward = 1\n")
    ret = k8snode._revert(root=tree.path, files=files)
    assert ret["result"] is True, ret["comment"]
    assert {"file:/etc/sysctl.d/zz-k8snode.conf", "file:/etc/sysctl.d/99-k8snode.conf"} <= set(ret["changes"])
    assert not tree.exists("etc/sysctl.d/zz-k8snode.conf") and not tree.exists(SYSCTL_FILE)
    assert tree.read("etc/sysctl.d/10-user.conf") == "net.ipv4.ip_forward = 1\n"
