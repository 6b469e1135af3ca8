"""
Pattern keys (``net.ipv4.conf.lxc*.rp_filter``) on fake trees with several
interfaces: validation, the audit naming the interfaces that are off, prepare
setting every match live and writing the pattern, and the boot model's rules
between systemd's 50-default.conf glob, our patterns and explicit keys.
"""

from _modules.k8snode import sysctl_boot

LXC = "net.ipv4.conf.lxc*.rp_filter"
CILIUM = "net.ipv4.conf.cilium_*.rp_filter"
# systemd >= 245's upstream /usr/lib/sysctl.d/50-default.conf (Fedora, Arch, Ubuntu, Flatcar).
FIFTY_DEFAULT = "net.ipv4.conf.default.rp_filter = 2\nnet.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\n"
INTERFACES = {"all": "0", "default": "2", "lo": "2", "eth0": "2", "lxc1": "0", "lxc2": "2", "cilium_host": "0"}


def _cilium_node(tree, interfaces=INTERFACES, fifty_default=True):
    cilium_modules = ["ip_set", "xt_set", "ip_set_hash_ip", "xt_comment", "vxlan"]
    tree.debian(12, sysctl_conf="").modular(loaded=["overlay", "br_netfilter", *cilium_modules])
    tree.kernel_defaults({"net.ipv4.ip_forward": 1})
    tree.write("run/systemd/system/.keep", "")
    for name, value in interfaces.items():
        tree.write(f"proc/sys/net/ipv4/conf/{name}/rp_filter", value + "\n")
    if fifty_default:
        tree.sysctl_d("50-default.conf", FIFTY_DEFAULT, directory="usr/lib/sysctl.d")
    return tree


def test_the_audit_names_the_interface_that_is_off_now(k8snode, make_tree):
    tree = _cilium_node(make_tree("lxc2-off"))
    tree.sysctl_d("99-k8snode.conf", f"# managed by k8snode\n{LXC} = 0\n")
    check = k8snode.audit(root=tree.path, cni="cilium")["checks"][f"sysctl:{LXC}"]
    assert check["status"] == "fail"
    assert check["live"] == {"net.ipv4.conf.lxc1.rp_filter": "0", "net.ipv4.conf.lxc2.rp_filter": "2"}
    assert check["off_now"] == ["lxc2"]
    assert check["off_at_boot"] == []
    assert "1 of 2 off now, needs 0: lxc2 (2)" in check["detail"]
    assert check["lost_at_reboot"] is False


def test_fifty_default_glob_gives_new_interfaces_2_without_our_pattern(k8snode, make_tree):
    tree = _cilium_node(make_tree("fresh"), interfaces={"all": "0", "default": "2"})
    check = k8snode.audit(root=tree.path, cni="cilium")["checks"][f"sysctl:{LXC}"]
    # No lxc interface yet: nothing is off now, but the next pod's veth gets 2.
    assert (check["status"], check["live"], check["boot_new_match"]) == ("fail", {}, "2")
    assert check["boot_file"] == "/usr/lib/sysctl.d/50-default.conf"
    assert "glob net/ipv4/conf/*/rp_filter" in check["detail"]


def test_prepare_sets_every_match_and_our_pattern_wins_over_fifty_default(k8snode, make_tree):
    tree = _cilium_node(make_tree("prepare"))
    ret = k8snode._prepare(root=tree.path, cni="cilium")
    assert ret["failures"] == {}, ret
    assert ret["changes"][f"sysctl:{LXC}"] == {
        "old": {"net.ipv4.conf.lxc2.rp_filter": "2"},
        "new": {"net.ipv4.conf.lxc2.rp_filter": "0"},
    }
    assert tree.read("proc/sys/net/ipv4/conf/lxc2/rp_filter").strip() == "0"
    # Other interfaces are not the pattern's.
    assert tree.read("proc/sys/net/ipv4/conf/eth0/rp_filter").strip() == "2"
    written = tree.read("etc/sysctl.d/99-k8snode.conf")
    # Patterns first (procps applies in file order), as systemd reads them.
    assert written.index(CILIUM) < written.index(LXC) < written.index("net.ipv4.conf.all.rp_filter")
    assert f"{LXC} = 0\n" in written
    result = k8snode.audit(root=tree.path, cni="cilium")
    for key in (LXC, CILIUM):
        check = result["checks"][f"sysctl:{key}"]
        assert check["status"] == "ok", check
        assert (check["boot_new_match"], check["boot_file"]) == ("0", "/etc/sysctl.d/99-k8snode.conf")
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    # What systemd-sysctl does: our later glob beats 50-default's for lxc*, not for eth0.
    assert sysctl_boot.boot_assignment("net/ipv4/conf/lxc2/rp_filter", boot)["value"] == "0"
    assert sysctl_boot.boot_assignment("net/ipv4/conf/eth0/rp_filter", boot)["value"] == "2"
    # -net.ipv4.conf.all.rp_filter keeps 50-default's glob off conf.all; our explicit 0 wins.
    assert sysctl_boot.boot_assignment("net/ipv4/conf/all/rp_filter", boot)["value"] == "0"
    assert k8snode._prepare(root=tree.path, cni="cilium")["changes"] == {}


def test_an_explicit_key_beats_our_pattern_whatever_the_file_order(k8snode, make_tree):
    tree = _cilium_node(make_tree("explicit"))
    tree.sysctl_d("60-lxc1.conf", "net.ipv4.conf.lxc1.rp_filter = 2\n")
    ret = k8snode._prepare(root=tree.path, cni="cilium")
    assert "an explicit line beats every pattern" in ret["failures"][f"sysctl:{LXC}"]
    assert "for net.ipv4.conf.lxc1.rp_filter" in ret["failures"][f"sysctl:{LXC}"]
    check = k8snode.audit(root=tree.path, cni="cilium")["checks"][f"sysctl:{LXC}"]
    assert check["status"] == "fail"
    assert check["off_at_boot"] == ["lxc1"]
    assert "lxc1 (2 from /etc/sysctl.d/60-lxc1.conf:1)" in check["detail"]
    # systemd-sysctl: the explicit line wins though 60-lxc1.conf is read before ours.
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert sysctl_boot.boot_assignment("net/ipv4/conf/lxc1/rp_filter", boot)["file"] == "/etc/sysctl.d/60-lxc1.conf"


def test_an_excluded_interface_copies_conf_default(k8snode, make_tree):
    tree = _cilium_node(make_tree("excluded"))
    tree.sysctl_d("10-keep.conf", "-net.ipv4.conf.lxc1.rp_filter\n")
    k8snode._prepare(root=tree.path, cni="cilium")
    check = k8snode.audit(root=tree.path, cni="cilium")["checks"][f"sysctl:{LXC}"]
    # lxc1 is kept out of every glob: at its next creation it copies conf.default (2).
    assert check["off_at_boot"] == ["lxc1"]
    assert "copied from net.ipv4.conf.default.rp_filter" in check["detail"]


def test_listing_proc_sys_uses_the_glob_model(k8snode, make_tree):
    from _modules.k8snode import host

    tree = _cilium_node(make_tree("listing"))
    tree.write("proc/sys/net/ipv4/conf/.hidden/rp_filter", "2\n")
    tree.write("proc/sys/net/ipv4/conf/lxc3/forwarding", "1\n")
    assert host.sysctl_keys_matching(tree.path, "net/ipv4/conf/*/rp_filter") == [
        f"net/ipv4/conf/{name}/rp_filter" for name in sorted(INTERFACES)
    ]
    assert host.sysctl_keys_matching(tree.path, "net/ipv4/conf/lxc?/rp_filter") == [
        "net/ipv4/conf/lxc1/rp_filter",
        "net/ipv4/conf/lxc2/rp_filter",
    ]
    assert host.sysctl_keys_matching(tree.path, "net/ipv6/conf/*/rp_filter") == []
