"""
Two iptables backends, and conntrack headroom. Expected values from the sources:

* include/uapi/linux/netlink.h (nlmsghdr), netfilter/nfnetlink.h (nfgenmsg,
  NFNL_SUBSYS_NFTABLES = 10), netfilter/nf_tables.h (NFT_MSG_NEWTABLE = 0, GETTABLE = 1,
  NFTA_TABLE_NAME = 1), netfilter.h (NFPROTO_INET 1, IPV4 2, BRIDGE 7, IPV6 10); nft(8)
  names the families inet, ip, ip6, bridge.
* /proc/net/ip_tables_names (net/ipv4/netfilter/ip_tables.c, xt_proto_seq): one line per
  legacy table registered in the namespace (``filter``, ``nat``, ...).
* kubernetes/kubernetes#71305 and projectcalico/calico#3709: rules in both backends break
  Services and pods.
* Linux 6.17 net/netfilter/Kconfig: NETFILTER_XTABLES_LEGACY ("Netfilter legacy tables
  support"); without it the legacy tables are not built.
* kube-proxy's conntrack defaults (pkg/proxy/apis/config/v1alpha1/defaults.go): maxPerCore
  32768, min 131072.
"""

import struct

import pytest

from _modules.k8snode import kernel, netfilter, nftables_netlink
from tests.unit.faketree import GOOD_KERNEL_CONFIG


def node(tree, legacy="", alternative=None, nf_tables=True):
    tree.debian(12).fresh_node(modules=("overlay", "br_netfilter", "nf_conntrack", "nf_tables"))
    if nf_tables:
        tree.load("nf_tables")
    if legacy is not None:
        tree.write("proc/net/ip_tables_names", legacy)
    if alternative:
        tree.symlink("etc/alternatives/iptables", f"/usr/sbin/{alternative}")
    return tree


def found(k8snode, tree, name, **kwargs):
    return k8snode.audit(root=tree.path, **kwargs)["checks"].get(name)


def backends(tree, nft):
    return netfilter.iptables_backends_check(kernel.kernel_facts(tree.path), tree.path, nft)


def test_no_backend_in_use_no_check(k8snode, tree):
    assert backends(node(tree), []) is None


def test_nf_tables_not_loaded_is_not_asked(k8snode, tree):
    """A netlink request would load nf_tables: the audit reads no table then."""
    facts = kernel.kernel_facts(node(tree, nf_tables=False).path)
    assert netfilter.nft_tables(facts, "/") == []


def test_one_backend_is_ok(tree):
    check = backends(node(tree, alternative="iptables-nft"), ["ip filter", "ip nat"])
    assert (check["status"], check["nf_tables"], check["live"]) == ("ok", ["ip filter", "ip nat"], "iptables-nft")
    check = backends(node(tree, "filter\nnat\n", "iptables-legacy"), [])
    assert (check["status"], check["legacy_tables"]) == ("ok", ["filter", "nat"])


def test_both_backends_have_tables(tree):
    check = backends(node(tree, "filter\n", "iptables-legacy"), ["inet kube-proxy"])
    assert (check["status"], check["required"]) == ("warn", False)
    assert "legacy filter (/proc/net/ip_tables_names) and nf_tables inet kube-proxy" in check["detail"]
    assert "kubernetes/kubernetes#71305" in check["detail"]


def test_nf_tables_unreadable_is_said(k8snode, tree):
    """On a fake root the tables cannot be read: a warning that says so, never "ok"."""
    check = found(k8snode, node(tree, "filter\n", "iptables-legacy"), "iptables_backends")
    assert check["status"] == "warn" and "could not be read" in check["detail"]


def test_legacy_userland_on_a_kernel_without_legacy_tables(make_tree):
    tree = node(make_tree("k617", release="6.17.0-1-amd64"), None, "iptables-legacy")
    check = backends(tree, [])
    assert check["status"] == "warn"
    assert "CONFIG_NETFILTER_XTABLES_LEGACY is not set in /proc/config.gz" in check["detail"]
    tree.kernel_config({**GOOD_KERNEL_CONFIG, "CONFIG_NETFILTER_XTABLES_LEGACY": "y"})
    assert backends(tree, []) is None


def test_the_same_config_on_6_16_has_legacy_tables(make_tree):
    tree = node(make_tree("k616", release="6.16.9-amd64"), None, "iptables-legacy")
    assert backends(tree, []) is None


def _message(kind, body, flags=2):
    return struct.pack("=IHHII", 16 + len(body), kind, flags, 1, 0) + body + b"\0" * (-len(body) % 4)


def _table(family, name):
    """An NFT_MSG_NEWTABLE answer as nf_tables_fill_table_info() builds it: nfgenmsg, then
    NFTA_TABLE_NAME (a NUL-terminated string, padded to 4), NFTA_TABLE_FLAGS, NFTA_TABLE_USE."""
    name = name.encode() + b"\0"
    attrs = struct.pack("=HH", 4 + len(name), 1) + name + b"\0" * (-len(name) % 4)
    attrs += struct.pack("=HH", 8, 2) + struct.pack(">I", 0) + struct.pack("=HH", 8, 3) + struct.pack(">I", 2)
    return _message(0x0A00, struct.pack("=BBH", family, 0, 0) + attrs)


def test_the_netlink_dump_is_parsed_as_nft_names_the_tables():
    data = _table(2, "filter") + _table(1, "kube-proxy") + _table(10, "nat") + _message(3, struct.pack("=i", 0))
    assert nftables_netlink.parse(data) == (["ip filter", "inet kube-proxy", "ip6 nat"], True)
    assert nftables_netlink.parse(_table(7, "cilium")) == (["bridge cilium"], False)


def test_a_netlink_error_is_raised_with_its_errno():
    with pytest.raises(OSError) as raised:
        nftables_netlink.parse(_message(2, struct.pack("=i", -1) + b"\0" * 16))
    assert raised.value.errno == 1  # EPERM: no CAP_NET_ADMIN


def test_the_request_is_a_dump_of_every_family():
    request = nftables_netlink.request(seq=7)
    assert struct.unpack("=IHHII", request[:16]) == (20, 0x0A01, 0x301, 7, 0)
    assert request[16:] == b"\0\0\0\0"


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
