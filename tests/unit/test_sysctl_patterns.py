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
    tree.debian(12, sysctl_conf="").modular(loaded=["overlay", "br_netfilter", "nf_conntrack", *cilium_modules])
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


# ------------------------------------------------------------------ who owns a key


def _forwarding_node(tree):
    tree.debian(12, sysctl_conf="net.ipv4.ip_forward = 0\n").modular(loaded=["overlay", "br_netfilter", "nf_conntrack"])
    tree.kernel_defaults({"net.ipv4.ip_forward": 1}).write("run/systemd/system/.keep", "")
    tree.sysctl_d("10-a.conf", "net.ipv4.conf.*.forwarding = 0\n")
    tree.sysctl_d("90-k8s.conf", "net.ipv4.ip_forward = 1\n")
    return tree


def test_sysctl_status_lists_every_line_at_boot_and_the_runtime_writers(k8snode, make_tree):
    tree = _forwarding_node(make_tree("owners"))
    tree.write("usr/bin/dockerd", "")
    tree.symlink("etc/systemd/system/multi-user.target.wants/docker.service", "/lib/systemd/system/docker.service")
    tree.write("usr/lib/firewalld/zones/public.xml", "<zone/>\n")
    tree.write("etc/systemd/network/10-br.network", "[Match]\nName=br0\n[Network]\nIPForward=ipv6\n")
    tree.write("etc/systemd/network/20-eth.network", "[Network]\nIPForward=yes\n")
    status = k8snode.sysctl_status("net.ipv4.ip_forward", 1, root=tree.path)
    writes = [(w["file"], w["line"], w["value"], w["via"], w.get("pattern")) for w in status["boot_writes"]]
    assert writes == [
        # The glob writes conf/all/forwarding, one variable with ip_forward; then
        # Debian's 99-sysctl.conf link to /etc/sysctl.conf. 90-k8s.conf's line is never
        # written: systemd-sysctl keeps only the last value of a key.
        ("/etc/sysctl.d/10-a.conf", 1, "0", "net/ipv4/conf/all/forwarding", "net/ipv4/conf/*/forwarding"),
        ("/etc/sysctl.d/99-sysctl.conf", 1, "0", "net/ipv4/ip_forward", None),
    ]
    assert status["boot_assignments"] == [["/etc/sysctl.d/90-k8s.conf", "1"], ["/etc/sysctl.d/99-sysctl.conf", "0"]]
    assert (status["boot"], status["boot_file"]) == ("0", "/etc/sysctl.d/99-sysctl.conf")
    writers = {(w["name"], w["evidence"]): w["keys"] for w in status["runtime_writers"]}
    assert writers == {
        ("docker", "/usr/bin/dockerd exists; enabled (/etc/systemd/system/multi-user.target.wants/docker.service)"): [
            "net/ipv4/ip_forward"
        ],
        ("firewalld", "/usr/lib/firewalld exists; not enabled at boot"): [
            "net/ipv4/ip_forward",
            "net/ipv6/conf/all/forwarding",
        ],
        # IPForward=ipv6 in 10-br.network does not touch IPv4.
        ("systemd-networkd", "/etc/systemd/network/20-eth.network:2: IPForward=yes"): [
            "net/ipv4/ip_forward",
            "net/ipv6/conf/all/forwarding",
        ],
    }


def test_the_audit_detail_names_the_winner_the_others_and_the_writers(k8snode, make_tree):
    tree = _forwarding_node(make_tree("audit-owners"))
    tree.write("usr/sbin/NetworkManager", "")
    check = k8snode.audit(root=tree.path)["checks"]["sysctl:net.ipv4.ip_forward"]
    assert check["status"] == "fail"
    assert check["detail"].startswith(
        "net.ipv4.ip_forward is 1 now but /etc/sysctl.d/99-sysctl.conf:1 sets 0 at boot; "
        "1 other line at boot; written after boot by NetworkManager (installed) (boot model: "
    )
    assert [w["file"] for w in check["boot_writes"]] == ["/etc/sysctl.d/10-a.conf", "/etc/sysctl.d/99-sysctl.conf"]
    assert check["runtime_writers"][0]["name"] == "NetworkManager"
    # Nothing installed: no writers, and the detail says nothing of them.
    bare = _forwarding_node(make_tree("bare"))
    assert k8snode.audit(root=bare.path)["checks"]["sysctl:net.ipv4.ip_forward"]["runtime_writers"] == []


def test_sysctl_status_refuses_a_pattern_key(k8snode, make_tree):
    import pytest
    from salt.exceptions import SaltInvocationError

    tree = _forwarding_node(make_tree("status-pattern"))
    with pytest.raises(SaltInvocationError, match="k8snode.audit checks pattern keys"):
        k8snode.sysctl_status(LXC, root=tree.path)
