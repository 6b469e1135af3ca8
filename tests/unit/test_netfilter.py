"""
Two iptables backends, and conntrack headroom. Expected values from the sources:

* /proc/modules (proc(5)): name, size, use count, users ("-" for none), state, address.
  A Debian 12 node where iptables-nft holds rules lists
  ``nf_tables 290816 5 nft_compat,nft_chain_nat, Live 0x0000000000000000``.
* /proc/net/ip_tables_names (net/ipv4/netfilter/ip_tables.c, xt_proto_seq): one line per
  legacy table registered in the namespace (``filter``, ``nat``, ...).
* kubernetes/kubernetes#71305 and projectcalico/calico#3709: rules in both backends break
  Services and pods.
* Linux 6.17 net/netfilter/Kconfig: NETFILTER_XTABLES_LEGACY ("Netfilter legacy tables
  support"); without it the legacy tables are not built.
* kube-proxy's conntrack defaults (pkg/proxy/apis/config/v1alpha1/defaults.go): maxPerCore
  32768, min 131072.
"""

from tests.unit.faketree import GOOD_KERNEL_CONFIG

NFT_IN_USE = "nf_tables 290816 5 nft_compat,nft_chain_nat, Live 0x0000000000000000\n"
NFT_IDLE = "nf_tables 290816 0 - Live 0x0000000000000000\n"


def node(tree, modules="", legacy="", alternative=None):
    tree.debian(12).fresh_node()
    tree.write("proc/modules", tree.read("proc/modules") + modules)
    if legacy is not None:
        tree.write("proc/net/ip_tables_names", legacy)
    if alternative:
        tree.symlink("etc/alternatives/iptables", f"/usr/sbin/{alternative}")
    return tree


def found(k8snode, tree, name, **kwargs):
    return k8snode.audit(root=tree.path, **kwargs)["checks"].get(name)


def test_no_backend_in_use_no_check(k8snode, tree):
    assert found(k8snode, node(tree, NFT_IDLE), "iptables_backends") is None


def test_one_backend_is_ok(k8snode, tree):
    check = found(k8snode, node(tree, NFT_IN_USE, alternative="iptables-nft"), "iptables_backends")
    assert (check["status"], check["nf_tables_users"], check["live"]) == (
        "ok",
        ["nft_compat", "nft_chain_nat"],
        "iptables-nft",
    )
    check = found(k8snode, node(tree, NFT_IDLE, "filter\nnat\n", "iptables-legacy"), "iptables_backends")
    assert (check["status"], check["legacy_tables"]) == ("ok", ["filter", "nat"])


def test_both_backends_hold_rules(k8snode, tree):
    check = found(k8snode, node(tree, NFT_IN_USE, "filter\n", "iptables-legacy"), "iptables_backends")
    assert (check["status"], check["required"]) == ("warn", False)
    assert "legacy tables filter" in check["detail"] and "nf_tables (5 users" in check["detail"]
    assert "kubernetes/kubernetes#71305" in check["detail"]


def test_legacy_userland_on_a_kernel_without_legacy_tables(k8snode, make_tree):
    tree = node(make_tree("k617", release="6.17.0-1-amd64"), NFT_IDLE, None, "iptables-legacy")
    check = found(k8snode, tree, "iptables_backends")
    assert check["status"] == "warn"
    assert "CONFIG_NETFILTER_XTABLES_LEGACY is not set in /proc/config.gz" in check["detail"]
    tree.kernel_config({**GOOD_KERNEL_CONFIG, "CONFIG_NETFILTER_XTABLES_LEGACY": "y"})
    assert found(k8snode, tree, "iptables_backends") is None


def test_the_same_config_on_6_16_has_legacy_tables(k8snode, make_tree):
    tree = node(make_tree("k616", release="6.16.9-amd64"), NFT_IDLE, None, "iptables-legacy")
    assert found(k8snode, tree, "iptables_backends") is None


def test_conntrack_headroom(k8snode, tree):
    node(tree).sysctl("net.netfilter.nf_conntrack_max", 65536).sysctl("net.netfilter.nf_conntrack_count", 1000)
    assert found(k8snode, tree, "conntrack_headroom")["status"] == "ok"
    tree.sysctl("net.netfilter.nf_conntrack_count", 60000)
    check = found(k8snode, tree, "conntrack_headroom")
    assert (check["status"], check["required"], check["live"]) == ("warn", False, "60000/65536")
    assert "92 % " not in check["detail"] and "92%" in check["detail"]
    assert "at least 131072" in check["detail"]


def test_no_conntrack_no_check(k8snode, tree):
    assert found(k8snode, node(tree), "conntrack_headroom") is None
