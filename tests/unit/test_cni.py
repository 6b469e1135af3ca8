"""
The network plugin (``cni``) and kube-proxy mode (``kube_proxy_mode``) layers:
what each one resolves to, with the source of every value.

The expected values are written here from each project's own documentation, not
copied from tables.py:

* Cilium, Documentation/operations/system_requirements.rst: kernel >= 5.10 (4.18 on
  RHEL 8.10); "Requirements for Iptables-based Masquerading" (the default):
  CONFIG_NETFILTER_XT_SET, IP_SET, IP_SET_HASH_IP, NETFILTER_XT_MATCH_COMMENT;
  "Tunneling and Routing": VXLAN (the default tunnel), GENEVE (tunnel-protocol=geneve);
  "L7 and FQDN Policies": TPROXY, MARK, CT, socket (with a fallback without xt_socket);
  bpffs at /sys/fs/bpf (Cilium mounts it itself when missing). Its tools/sysctlfix
  writes net.ipv4.conf.all.rp_filter = 0 and the patterns net.ipv4.conf.lxc*.rp_filter
  and net.ipv4.conf.cilium_*.rp_filter = 0 (cilium/cilium#10645, flatcar/Flatcar#181).
* Calico, "System requirements" (docs.tigera.io): kernel >= 5.10 (RHEL 8 listed as
  working); the kernel dependencies list; ipip / vxlan / wireguard by encapsulation;
  Felix: "net.ipv4.conf.all.rp_filter to be set to 0 or 1".
* Flannel README: br_netfilter (kubeadm stopped checking it in 1.30), the vxlan backend.
* kubernetes.io "Linux Kernel Version Requirements": nftables mode needs kernel >= 5.13.
* KEP-5495: kube-proxy's IPVS mode is deprecated in v1.35.
"""

import copy

import pytest
from salt.exceptions import SaltInvocationError

from _modules.k8snode import kernel, tables

CILIUM_REQUIRED = {"ip_set", "xt_set", "ip_set_hash_ip", "xt_comment", "vxlan"}
CILIUM_OPTIONAL = {"geneve", "xt_TPROXY", "xt_mark", "xt_CT", "xt_socket"}
CALICO_REQUIRED = {
    "ip_set",
    "ip_tables",
    "ip6_tables",
    "ipt_REJECT",
    "ipt_rpfilter",
    "nf_conntrack_netlink",
    "xt_addrtype",
    "xt_conntrack",
    "xt_mark",
    "xt_multiport",
    "xt_set",
    "xt_u32",
}
CALICO_OPTIONAL = {"xt_ipvs", "ipip", "vxlan", "wireguard"}
FLANNEL_REQUIRED = {"br_netfilter", "vxlan"}
IPVS_MODULES = {"ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"}

EXPECTED_CNI = {
    "cilium": {
        "required": CILIUM_REQUIRED,
        "optional": CILIUM_OPTIONAL,
        "sysctls": {
            "net.ipv4.conf.all.rp_filter": ("0", "exact", None),
            "net.ipv4.conf.lxc*.rp_filter": ("0", "exact", None),
            "net.ipv4.conf.cilium_*.rp_filter": ("0", "exact", None),
        },
        "floor": "5.10",
        "mounts": {"/sys/fs/bpf": ("bpf", False)},
    },
    "calico": {
        "required": CALICO_REQUIRED,
        "optional": CALICO_OPTIONAL,
        "sysctls": {"net.ipv4.conf.all.rp_filter": ("1", "one_of", ["0", "1"])},
        "floor": "5.10",
        "mounts": {},
    },
    "flannel": {
        "required": FLANNEL_REQUIRED,
        "optional": set(),
        "sysctls": {"net.bridge.bridge-nf-call-iptables": ("1", "exact", None)},
        "floor": None,
        "mounts": {},
    },
}


def _from(resolved, source):
    modules = {name for name, spec in resolved["modules"].items() if spec["source"] == source}
    sysctls = {key for key, spec in resolved["sysctls"].items() if spec["source"] == source}
    return modules, sysctls


@pytest.mark.parametrize("cni", sorted(EXPECTED_CNI))
def test_each_cni_resolves_to_its_documented_needs(k8snode, tree, cni):
    tree.debian(12, sysctl_conf="")
    resolved = k8snode.requirements(root=tree.path, pillar={"cni": cni})
    expected = EXPECTED_CNI[cni]
    source = f"cni:{cni}"

    assert resolved["cni"] == {"name": cni, "source": "pillar k8snode"}
    modules, sysctls = _from(resolved, source)
    assert modules == expected["required"] | expected["optional"]
    for name in modules:
        assert resolved["modules"][name]["required"] is (name in expected["required"]), name
        assert resolved["modules"][name]["alternatives"] == [name]
    assert sysctls == set(expected["sysctls"])
    for key, (value, compare, accepted) in expected["sysctls"].items():
        spec = resolved["sysctls"][key]
        assert (spec["value"], spec["compare"], spec.get("accepted")) == (value, compare, accepted)
        assert spec["required"] is True
    floors = [(floor["version"], floor["source"]) for floor in resolved["kernel_floors"]]
    assert floors == ([(expected["floor"], source)] if expected["floor"] else [])
    assert {path: (m["fstype"], m["required"]) for path, m in resolved["mounts"].items()} == expected["mounts"]
    for mount in resolved["mounts"].values():
        assert mount["source"] == source
    assert resolved["order"] == [
        "distribution:kubeadm",
        source,
        "os_family:Debian",
        "pillar",
        "arguments",
        "kube_proxy:conntrack",
    ]
    # The distribution's own values keep their source (Flannel re-asserts br_netfilter).
    assert resolved["sysctls"]["net.ipv4.ip_forward"]["source"] == "distribution:kubeadm"
    assert resolved["modules"]["overlay"]["source"] == "distribution:kubeadm"


def test_no_cni_by_default_and_none_is_accepted(k8snode, tree):
    tree.debian(12, sysctl_conf="")
    default = k8snode.requirements(root=tree.path)
    assert default["cni"] == {"name": None, "source": "defaults"}
    assert default["kube_proxy_mode"] == {"mode": "iptables", "source": "defaults"}
    assert default["kernel_floors"] == [] and default["mounts"] == {} and default["deprecations"] == []
    assert default["order"] == [
        "distribution:kubeadm",
        "os_family:Debian",
        "pillar",
        "arguments",
        "kube_proxy:conntrack",
    ]
    explicit = k8snode.requirements(root=tree.path, pillar={"cni": "cilium"}, cni="none")
    assert explicit["cni"] == {"name": None, "source": "arguments"}
    # nf_conntrack: kubeadm's kube-proxy (kubernetes/kops#17968), whatever the plugin.
    assert set(explicit["modules"]) == {"overlay", "br_netfilter", "nf_conntrack"}


def test_the_rhel_kernel_floor_is_4_18_for_both_cnis(k8snode, tree):
    """Cilium: ">= 5.10 or >= 4.18 on RHEL 8.10"; Calico lists "RHEL 8 or later" (4.18)."""
    tree.redhat()
    for cni in ("cilium", "calico"):
        resolved = k8snode.requirements(root=tree.path, cni=cni)
        assert [(f["version"], f["source"]) for f in resolved["kernel_floors"]] == [("4.18", f"cni:{cni}")]


@pytest.mark.parametrize(
    ("mode", "modules", "floor", "deprecated"),
    [
        ("iptables", set(), None, False),
        ("ipvs", IPVS_MODULES, None, True),
        ("nftables", {"nf_tables"}, "5.13", False),
        ("none", set(), None, False),
    ],
)
def test_each_kube_proxy_mode(k8snode, tree, mode, modules, floor, deprecated):
    tree.debian(12, sysctl_conf="")
    resolved = k8snode.requirements(root=tree.path, kube_proxy_mode=mode)
    source = f"kube_proxy_mode:{mode}"
    assert resolved["kube_proxy_mode"] == {"mode": mode, "source": "arguments"}
    assert _from(resolved, source) == (modules, set())
    for name in modules:
        assert resolved["modules"][name]["required"] is True
    assert [(f["version"], f["source"]) for f in resolved["kernel_floors"]] == ([(floor, source)] if floor else [])
    if deprecated:
        (entry,) = resolved["deprecations"]
        assert entry["source"] == source
        assert "1.35" in entry["detail"] and "KEP-5495" in entry["detail"]
    else:
        assert resolved["deprecations"] == []
    # A mode chosen explicitly shows in the order, even one that adds nothing.
    assert source in resolved["order"]
    if "nf_conntrack" in modules:
        assert resolved["modules"]["nf_conntrack"]["alternatives"] == ["nf_conntrack", "nf_conntrack_ipv4"]


def test_cni_and_mode_together_every_value_has_its_source(k8snode, tree):
    tree.debian(12, sysctl_conf="")
    resolved = k8snode.requirements(root=tree.path, pillar={"cni": "cilium", "kube_proxy_mode": "nftables"})
    assert resolved["kube_proxy_mode"] == {"mode": "nftables", "source": "pillar k8snode"}
    assert resolved["modules"]["nf_tables"]["source"] == "kube_proxy_mode:nftables"
    assert resolved["modules"]["xt_set"]["source"] == "cni:cilium"
    assert sorted((f["source"], f["version"]) for f in resolved["kernel_floors"]) == [
        ("cni:cilium", "5.10"),
        ("kube_proxy_mode:nftables", "5.13"),
    ]
    for section in ("modules", "sysctls", "mounts"):
        for name, spec in resolved[section].items():
            assert spec["source"] in resolved["order"], (section, name)


def test_extras_ipvs_is_an_alias_of_kube_proxy_mode_ipvs(k8snode, tree):
    tree.debian(12, sysctl_conf="")
    alias = k8snode.requirements(root=tree.path, pillar={"extras": ["ipvs"]})
    assert alias["kube_proxy_mode"] == {"mode": "ipvs", "source": "extras:ipvs"}
    assert alias["extras"] == ["ipvs"]
    assert _from(alias, "extras:ipvs")[0] == IPVS_MODULES
    assert [entry["source"] for entry in alias["deprecations"]] == ["extras:ipvs"]
    assert "extras:ipvs" in alias["order"]

    both = k8snode.requirements(root=tree.path, pillar={"extras": ["ipvs"], "kube_proxy_mode": "ipvs"})
    assert both["kube_proxy_mode"] == {"mode": "ipvs", "source": "pillar k8snode"}
    assert _from(both, "kube_proxy_mode:ipvs")[0] == IPVS_MODULES
    # Applied once, in its own stage.
    assert "extras:ipvs" not in both["order"]
    assert len(both["deprecations"]) == 1


def test_extras_ipvs_contradicting_the_mode_is_refused(k8snode, tree):
    tree.debian(12, sysctl_conf="")
    with pytest.raises(SaltInvocationError) as error:
        k8snode.requirements(root=tree.path, pillar={"extras": ["ipvs"]}, kube_proxy_mode="nftables")
    message = str(error.value)
    assert "'nftables'" in message and "extras: [ipvs] means kube_proxy_mode: ipvs" in message


@pytest.mark.parametrize(
    ("settings", "named", "accepted"),
    [
        ({"cni": "weave"}, "invalid cni 'weave'", "one of calico, cilium, flannel, none"),
        ({"cni": ["cilium"]}, "invalid cni ['cilium']", "one of calico, cilium, flannel, none"),
        ({"kube_proxy_mode": "userspace"}, "'userspace'", "one of iptables, ipvs, nftables, none"),
        ({"extras": ["nftables"]}, "'nftables'", "inotify, ipv6, ipvs"),
        (
            {"sysctls": {"net.ipv4.conf.all.rp_filter": {"value": 2, "compare": "one_of", "accepted": [0, 1]}}},
            "invalid value for net.ipv4.conf.all.rp_filter '2'",
            "one of its accepted values 0, 1",
        ),
        (
            {"sysctls": {"net.ipv4.conf.all.rp_filter": {"value": 1, "compare": "one_of"}}},
            "net.ipv4.conf.all.rp_filter",
            "compare: one_of needs accepted",
        ),
        (
            {"sysctls": {"net.ipv4.conf.all.rp_filter": {"value": 1, "accepted": [0, 1]}}},
            "invalid accepted for net.ipv4.conf.all.rp_filter [0, 1]",
            "only with compare: one_of",
        ),
        (
            {"sysctls": {"net.ipv4.conf.all.rp_filter": {"value": 1, "compare": "one_of", "accepted": []}}},
            "[]",
            "a non-empty list of values",
        ),
        (
            {"sysctls": {"net.ipv4.conf.all.rp_filter": {"value": 1, "compare": "one_of", "accepted": ["on"]}}},
            "'on'",
            "an integer",
        ),
        (
            {"sysctls": {"net.ipv4.conf.all.rp_filter": {"value": 1, "compare": "any"}}},
            "'any'",
            "one of exact, min, one_of",
        ),
    ],
)
def test_bad_settings_are_refused_naming_the_value(k8snode, tree, settings, named, accepted):
    tree.debian(12, sysctl_conf="")
    with pytest.raises(SaltInvocationError) as error:
        k8snode.requirements(root=tree.path, pillar=settings)
    assert named in str(error.value)
    assert accepted in str(error.value)


def test_pillar_can_change_a_one_of_requirement(k8snode, tree):
    tree.debian(12, sysctl_conf="")
    loose_ok = {"sysctls": {"net.ipv4.conf.all.rp_filter": {"value": 2, "compare": "exact"}}, "cni": "calico"}
    spec = k8snode.requirements(root=tree.path, pillar=loose_ok)["sysctls"]["net.ipv4.conf.all.rp_filter"]
    # Felix's IgnoreLooseRPF: the site says 2; the accepted list goes with one_of.
    assert spec == {"value": "2", "compare": "exact", "required": True, "needs_module": None, "source": "pillar"}
    keep_zero = {"sysctls": {"net.ipv4.conf.all.rp_filter": 0}, "cni": "calico"}
    spec = k8snode.requirements(root=tree.path, pillar=keep_zero)["sysctls"]["net.ipv4.conf.all.rp_filter"]
    assert (spec["value"], spec["compare"], spec["accepted"]) == ("0", "one_of", ["0", "1"])


def test_resolution_does_not_mutate_the_new_tables(k8snode, tree):
    tree.debian(12, sysctl_conf="")
    before = copy.deepcopy((tables.CNIS, tables.KUBE_PROXY_MODES))
    for cni in tables.CNIS:
        k8snode.requirements(root=tree.path, cni=cni, kube_proxy_mode="nftables", sysctls={"vm.max_map_count": 1})
    assert before == (tables.CNIS, tables.KUBE_PROXY_MODES)


@pytest.mark.parametrize(
    ("release", "version"),
    [
        ("6.1.0-21-amd64", (6, 1, 0)),
        ("4.18.0-513.el8.x86_64", (4, 18, 0)),
        ("5.15.0-1043-azure", (5, 15, 0)),
        ("6.18.44-fc-v669", (6, 18, 44)),
        ("6.8.0-rc1", (6, 8, 0)),
        ("5.13", (5, 13, 0)),
        ("5.10.217\n", (5, 10, 217)),
        ("", None),
        ("linux", None),
        ("6", None),
        (None, None),
    ],
)
def test_parse_kernel_version(release, version):
    assert kernel.parse_kernel_version(release) == version
