"""
The systemd-sysctl and kernel rules of the boot model, one unit test each on a fake
tree (the same rules are checked against the real binary in
tests/integration/test_sysctl_oracle.py).
"""

import pytest

from _modules.k8snode import sysctl_syntax

IP_FORWARD = "net.ipv4.ip_forward"


def boot(k8snode, tree, key=IP_FORWARD):
    status = k8snode.sysctl_status(key, root=tree.path)
    return status["boot"], status["boot_file"]


def test_forwarding_alias_later_hardening_file_is_a_false_ready_no_more(k8snode, tree):
    tree.redhat().modular(loaded=["overlay", "br_netfilter"]).kernel_defaults({IP_FORWARD: 1})
    tree.sysctl_d("10-k8s.conf", "net.ipv4.ip_forward = 1\n")
    tree.sysctl_d("90-hardening.conf", "net.ipv4.conf.all.forwarding = 0\n")
    check = k8snode.audit(root=tree.path)["checks"]["sysctl:net.ipv4.ip_forward"]
    assert (check["status"], check["boot"], check["boot_via"]) == ("fail", "0", "net/ipv4/conf/all/forwarding")
    assert "90-hardening.conf:1 (through net/ipv4/conf/all/forwarding)" in check["detail"]


def test_same_value_keeps_its_place_in_the_order(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("10-a.conf", "net.ipv4.ip_forward = 1\n")
    tree.sysctl_d("20-b.conf", "net.ipv4.conf.all.forwarding = 0\n")
    tree.sysctl_d("99-k8snode.conf", "net.ipv4.ip_forward = 1\n")
    assert boot(k8snode, tree) == ("0", "/etc/sysctl.d/20-b.conf")


def test_ipv6_all_forwarding_sets_default(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("10-a.conf", "net.ipv6.conf.default.forwarding = 0\nnet.ipv6.conf.all.forwarding = 1\n")
    assert boot(k8snode, tree, "net.ipv6.conf.default.forwarding") == ("1", "/etc/sysctl.d/10-a.conf")


@pytest.mark.parametrize(
    ("written", "stored"),
    [("1 # routing", "1"), ("01", "1"), ("010", "8"), ("0x10", "16"), ("-1", "-1"), ("1\t2", "1"), (" 1", "1")],
)
def test_integers_parse_as_the_kernel_does(k8snode, tree, written, stored):
    tree.redhat()
    tree.sysctl_d("99-k8s.conf", f"net.ipv4.ip_forward = {written}\n")
    assert boot(k8snode, tree) == (stored, "/etc/sysctl.d/99-k8s.conf")


@pytest.mark.parametrize("written", ["+1", '"1"', "", "1x", "08", "4294967297", "1\x0b"])
def test_refused_values_are_reported_not_set(k8snode, tree, written):
    tree.redhat()
    tree.sysctl_d("10-a.conf", "net.ipv4.ip_forward = 0\n")
    tree.sysctl_d("99-k8s.conf", f"net.ipv4.ip_forward = {written}\n")
    status = k8snode.sysctl_status(IP_FORWARD, 1, root=tree.path)
    # The later line replaced the earlier one (systemd keeps one value per key) and the
    # kernel refuses it: nothing is set at boot, and the refused line is named.
    assert (status["boot"], status["boot_file"], status["boot_ok"]) == (None, None, False)
    assert [(w["file"], w["line"]) for w in status["boot_refused"]] == [("/etc/sysctl.d/99-k8s.conf", 1)]
    problems = k8snode.effective_boot_sysctls(root=tree.path)["problems"]
    assert any(p.startswith("/etc/sysctl.d/99-k8s.conf:1: the kernel refuses") for p in problems)


def test_bridge_keys_clamp_to_one(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("99-k8s.conf", "net.bridge.bridge-nf-call-iptables = 2\n")
    assert boot(k8snode, tree, "net.bridge.bridge-nf-call-iptables") == ("1", "/etc/sysctl.d/99-k8s.conf")


def test_negative_key_keeps_globs_off_and_drops_an_earlier_line(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("10-cni.conf", "net.ipv4.conf.all.rp_filter = 0\n")
    tree.sysctl_d("50-default.conf", "net.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\n",
                  directory="usr/lib/sysctl.d")  # fmt: skip
    assert boot(k8snode, tree, "net.ipv4.conf.all.rp_filter") == (None, None)
    assert boot(k8snode, tree, "net.ipv4.conf.lo.rp_filter") == ("2", "/usr/lib/sysctl.d/50-default.conf")


def test_glob_order_follows_the_last_change(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("10-a.conf", "net.ipv4.conf.*.rp_filter = 1\n")
    tree.sysctl_d("20-b.conf", "net.ipv4.conf.a*.rp_filter = 2\n")
    tree.sysctl_d("30-c.conf", "net.ipv4.conf.*.rp_filter = 1\n")
    assert boot(k8snode, tree, "net.ipv4.conf.all.rp_filter") == ("2", "/etc/sysctl.d/20-b.conf")
    tree.sysctl_d("30-c.conf", "net.ipv4.conf.*.rp_filter = 0\n")
    assert boot(k8snode, tree, "net.ipv4.conf.all.rp_filter") == ("0", "/etc/sysctl.d/30-c.conf")


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("net/*/ip_forward", "net/ipv4/ip_forward", True),
        ("net/*/forwarding", "net/ipv4/conf/all/forwarding", False),
        ("net/ipv4/conf/[^d]*/rp_filter", "net/ipv4/conf/all/rp_filter", True),
        ("net/ipv4/conf/[^a]*/rp_filter", "net/ipv4/conf/all/rp_filter", False),
        ("net/ipv4/conf/[!a]*/rp_filter", "net/ipv4/conf/all/rp_filter", False),
        ("net/ipv4/conf/*{all,lo}/forwarding", "net/ipv4/conf/lo/forwarding", True),
        ("net/ipv{4,6}/conf/all/forwarding", "net/ipv6/conf/all/forwarding", True),
    ],
)
def test_globs_are_glob3_with_braces(pattern, key, matches):
    assert sysctl_syntax.glob_matches(pattern, key) is matches


def test_braces_alone_are_not_a_glob(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("10-g.conf", "net.ipv4.conf.{all,lo}.forwarding = 0\n")
    assert boot(k8snode, tree) == (None, None)


def test_hidden_files_are_skipped(k8snode, tree):
    tree.redhat()
    tree.sysctl_d(".99-k8s.conf", "net.ipv4.ip_forward = 0\n")
    assert boot(k8snode, tree) == (None, None)


@pytest.mark.parametrize(
    ("key", "path"),
    [("net.ipv4..ip_forward", "net/ipv4/ip_forward"), ("net.ipv4.ip_forward.", "net/ipv4/ip_forward"),
     ("/net/ipv4/ip_forward", "net/ipv4/ip_forward"), ("net/ipv4/./ip_forward", "net/ipv4/ip_forward")],
)  # fmt: skip
def test_key_paths_are_simplified(key, path):
    assert sysctl_syntax.sysctl_path(key) == path


def test_lines_end_at_lf_cr_and_nul_only(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("99-k8s.conf", "net.ipv4.ip_forward = 0\rnet.ipv4.ip_forward = 1\0junk\x0cmore\n")
    assert boot(k8snode, tree) == ("1", "/etc/sysctl.d/99-k8s.conf")
    assert [n for n, _ in sysctl_syntax.split_lines("a\r\nb\n\nc\0d")] == [1, 2, 3, 4, 5]


def test_lib_symlinked_to_usr_lib_is_read_once(k8snode, tree):
    tree.redhat()
    tree.sysctl_d("60-x.conf", "net.ipv4.ip_forward = 1\n", directory="usr/lib/sysctl.d")
    tree.symlink("lib", "usr/lib")
    assert k8snode.effective_boot_sysctls(root=tree.path)["files"].count("/usr/lib/sysctl.d/60-x.conf") == 1
