"""
The audit and prepare for a network plugin and a kube-proxy mode, on fake trees:
kernel version floors, modules missing or built in, rp_filter (exact for Cilium,
0 or 1 for Calico), the BPF filesystem and the IPVS deprecation.
"""

import pytest

from tests.unit.faketree import GOOD_KERNEL_CONFIG

RP_FILTER = "net.ipv4.conf.all.rp_filter"
# systemd >= 245's /usr/lib/sysctl.d/50-default.conf as the issue describes it (Ubuntu's
# 10-network-security.conf sets the same key to 2 as well).
SYSTEMD_DEFAULT = "net.ipv4.conf.default.rp_filter = 2\nnet.ipv4.conf.all.rp_filter = 2\n"

#: Kernel config options named in the projects' own documents (see test_cni.py), by module.
DOCUMENTED_CONFIG = {
    "nf_tables": "NF_TABLES",
    "ip_set": "IP_SET",
    "ip_set_hash_ip": "IP_SET_HASH_IP",
    "xt_set": "NETFILTER_XT_SET",
    "xt_comment": "NETFILTER_XT_MATCH_COMMENT",
    "vxlan": "VXLAN",
    "geneve": "GENEVE",
    "xt_TPROXY": "NETFILTER_XT_TARGET_TPROXY",
    # CONFIG_NETFILTER_XT_TARGET_MARK and _MATCH_MARK both select NETFILTER_XT_MARK (xt_mark.ko).
    "xt_mark": "NETFILTER_XT_MARK",
    "xt_CT": "NETFILTER_XT_TARGET_CT",
    "xt_socket": "NETFILTER_XT_MATCH_SOCKET",
    "ip6_tables": "IP6_NF_IPTABLES",
    "ipt_REJECT": "IP_NF_TARGET_REJECT",
    "ipt_rpfilter": "IP_NF_MATCH_RPFILTER",
    "nf_conntrack_netlink": "NF_CT_NETLINK",
    "xt_addrtype": "NETFILTER_XT_MATCH_ADDRTYPE",
    "xt_conntrack": "NETFILTER_XT_MATCH_CONNTRACK",
    "xt_multiport": "NETFILTER_XT_MATCH_MULTIPORT",
    "xt_u32": "NETFILTER_XT_MATCH_U32",
    "xt_ipvs": "NETFILTER_XT_MATCH_IPVS",
    "ipip": "NET_IPIP",
    "wireguard": "WIREGUARD",
}
# Calico's required modules (its optional ipip, vxlan, wireguard, xt_ipvs left out).
CALICO_MODULES = [
    "ip_set", "ip_tables", "ip6_tables", "ipt_REJECT", "ipt_rpfilter", "nf_conntrack_netlink",
    "xt_addrtype", "xt_conntrack", "xt_mark", "xt_multiport", "xt_set", "xt_u32",
]  # fmt: skip


def _node(tree, modules=(), rp_filter=None):
    """A Debian 12 node prepared for the distribution, with ``modules`` available (not loaded)."""
    tree.debian(12, sysctl_conf="").modular(loaded=["overlay", "br_netfilter", "nf_conntrack"], available=modules)
    tree.kernel_defaults({"net.ipv4.ip_forward": 1}).kernel_config(GOOD_KERNEL_CONFIG).mounts().swaps()
    tree.fstab("UUID=0a1b / ext4 errors=remount-ro 0 1\n")
    tree.modules_load("k8s.conf", ["overlay", "br_netfilter", "nf_conntrack"])
    tree.sysctl_d(
        "90-kubernetes.conf",
        "net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n",
    )
    if rp_filter is not None:
        tree.sysctl(RP_FILTER, rp_filter)
    return tree


# ----------------------------------------------------------- kernel version floors


def test_a_5_10_kernel_fails_nftables_naming_5_13(k8snode, make_tree):
    tree = _node(make_tree("old", release="5.10.0-28-amd64"), modules=["nf_tables"])
    result = k8snode.audit(root=tree.path, kube_proxy_mode="nftables")
    check = result["checks"]["kernel_version"]
    assert check["status"] == "fail"
    assert check["required"] is True
    assert check["expected"] == ">= 5.13"
    assert check["live"] == "5.10.0-28-amd64"
    assert check["source"] == "kube_proxy_mode:nftables"
    assert check["detail"] == (
        "kernel 5.10.0-28-amd64 is older than 5.13, which kube_proxy_mode:nftables requires "
        "(kube-proxy's nftables mode)"
    )
    assert result["ready"] is False
    assert "kernel_version" in result["failing"]


def test_a_5_15_kernel_passes_both_floors(k8snode, make_tree):
    tree = _node(make_tree("azure", release="5.15.0-1043-azure"), modules=["nf_tables"])
    result = k8snode.audit(root=tree.path, kube_proxy_mode="nftables", cni="flannel")
    check = result["checks"]["kernel_version"]
    assert (check["status"], check["expected"], check["live"]) == ("ok", ">= 5.13", "5.15.0-1043-azure")
    assert "kube_proxy_mode:nftables" in check["detail"]


def test_each_floor_below_is_named_with_its_source(k8snode, make_tree):
    tree = _node(make_tree("ancient", release="4.19.0-26-amd64"))
    result = k8snode.audit(root=tree.path, kube_proxy_mode="nftables", cni="cilium")
    check = result["checks"]["kernel_version"]
    assert check["status"] == "fail"
    assert "5.10, which cni:cilium requires" in check["detail"]
    assert "5.13, which kube_proxy_mode:nftables requires" in check["detail"]
    assert check["expected"] == ">= 5.13"


def test_rhel_4_18_passes_the_cni_floor_but_not_nftables(k8snode, make_tree):
    tree = make_tree("rhel8", release="4.18.0-513.el8.x86_64")
    tree.redhat(os_id="rhel", version="8.10").modular(loaded=["overlay", "br_netfilter"]).mounts()
    assert k8snode.audit(root=tree.path, cni="calico")["checks"]["kernel_version"]["status"] == "ok"
    check = k8snode.audit(root=tree.path, cni="calico", kube_proxy_mode="nftables")["checks"]["kernel_version"]
    assert check["status"] == "fail"
    assert "4.18.0-513.el8.x86_64 is older than 5.13" in check["detail"]


def test_the_same_release_on_debian_fails_the_cni_floor(k8snode, make_tree):
    tree = make_tree("debian-old", release="4.19.0-26-amd64")
    tree.debian(10, sysctl_conf="").modular()
    check = k8snode.audit(root=tree.path, cni="cilium")["checks"]["kernel_version"]
    assert check["status"] == "fail"
    assert check["detail"].startswith("kernel 4.19.0-26-amd64 is older than 5.10, which cni:cilium requires")


def test_an_unreadable_release_fails_the_floor_clearly(k8snode, tree):
    _node(tree)
    tree.remove("proc/sys/kernel/osrelease")
    check = k8snode.audit(root=tree.path, kube_proxy_mode="nftables")["checks"]["kernel_version"]
    assert check["status"] == "fail"
    assert "is not a version: cannot check kube_proxy_mode:nftables" in check["detail"]


def test_no_floor_no_kernel_version_check(k8snode, tree):
    _node(tree)
    assert "kernel_version" not in k8snode.audit(root=tree.path)["checks"]
    assert "kernel_version" not in k8snode.audit(root=tree.path, kube_proxy_mode="ipvs")["checks"]


# ------------------------------------------------------------------------ modules


def test_a_kernel_without_nf_tables_fails_naming_it(k8snode, tree):
    _node(tree)  # 6.1, modular, no nf_tables.ko
    result = k8snode.audit(root=tree.path, kube_proxy_mode="nftables")
    check = result["checks"]["module:nf_tables"]
    assert check["status"] == "fail"
    assert check["live"] == "missing"
    assert check["detail"].startswith("nf_tables is not in this kernel")
    assert check["source"] == "kube_proxy_mode:nftables"
    assert result["checks"]["kernel_version"]["status"] == "ok"
    assert result["ready"] is False

    ret = k8snode._prepare(root=tree.path, kube_proxy_mode="nftables")
    assert ret["result"] is False
    assert "module:nf_tables" in ret["failures"]
    assert "Module nf_tables not found" in ret["failures"]["module:nf_tables"]


@pytest.mark.parametrize("module", sorted(DOCUMENTED_CONFIG))
def test_new_modules_built_in_by_config_are_recognised(k8snode, tree, module):
    """CI's kernel: no module support, every option =y in /proc/config.gz."""
    tree.debian(12, sysctl_conf="").monolithic(config={DOCUMENTED_CONFIG[module]: "y"})
    status = k8snode.module_status(module, root=tree.path)
    assert status["state"] == "builtin", status
    assert status["evidence"] == f"CONFIG_{DOCUMENTED_CONFIG[module]}=y in /proc/config.gz"


def test_ip6_tables_built_in_is_recognised_by_its_proc_file(k8snode, tree):
    tree.debian(12, sysctl_conf="").monolithic()
    tree.write("proc/net/ip6_tables_names", "filter\n")
    assert k8snode.module_status("ip6_tables", root=tree.path)["evidence"] == "/proc/net/ip6_tables_names exists"


def test_built_in_nf_tables_in_modules_builtin_passes_nftables(k8snode, tree):
    _node(tree)
    tree.write(f"lib/modules/{tree.release}/modules.builtin", "kernel/net/netfilter/nf_tables.ko\n")
    result = k8snode.audit(root=tree.path, kube_proxy_mode="nftables")
    assert result["checks"]["module:nf_tables"]["status"] == "ok"
    assert result["ready"] is True, result["failing"]


def test_cilium_missing_optional_modules_warn_and_prepare_still_succeeds(k8snode, tree):
    required = ["ip_set", "xt_set", "ip_set_hash_ip", "xt_comment", "vxlan"]
    _node(tree, modules=required, rp_filter=0)
    ret = k8snode._prepare(root=tree.path, cni="cilium")
    assert ret["result"] is True, ret
    # CONFIG_NETFILTER_XT_MATCH_COMMENT=y is in kubeadm's list (GOOD_KERNEL_CONFIG): built in.
    for name in set(required) - {"xt_comment"}:
        assert ret["changes"][f"module:{name}"] == {"old": "not loaded", "new": f"{name} loaded"}
    assert "module:xt_comment" not in ret["changes"]
    assert "optional module geneve unavailable" in ret["comment"]
    listed = tree.read("etc/modules-load.d/k8snode.conf").splitlines()[1:]
    assert set(required) - {"xt_comment"} <= set(listed)
    assert "geneve" not in listed

    result = k8snode.audit(root=tree.path, cni="cilium")
    assert result["ready"] is True, result["failing"]
    geneve = result["checks"]["module:geneve"]
    assert (geneve["status"], geneve["required"]) == ("warn", False)


def test_cilium_missing_required_vxlan_fails_naming_it(k8snode, tree):
    _node(tree, modules=["ip_set", "xt_set", "ip_set_hash_ip", "xt_comment"], rp_filter=0)
    ret = k8snode._prepare(root=tree.path, cni="cilium")
    assert ret["result"] is False
    assert list(ret["failures"]) == ["module:vxlan"]
    assert "modprobe vxlan" in ret["failures"]["module:vxlan"]


# ----------------------------------------------------------------------- rp_filter


def test_cilium_fails_on_systemd_rp_filter_2_naming_the_file_and_prepare_fixes_it(k8snode, tree):
    _node(tree, modules=["ip_set", "xt_set", "ip_set_hash_ip", "xt_comment", "vxlan"], rp_filter=2)
    tree.sysctl_d("50-default.conf", SYSTEMD_DEFAULT, directory="usr/lib/sysctl.d")
    check = k8snode.audit(root=tree.path, cni="cilium")["checks"][f"sysctl:{RP_FILTER}"]
    assert check["status"] == "fail"
    assert (check["expected"], check["live"], check["boot"]) == ("0", "2", "2")
    assert check["boot_file"] == "/usr/lib/sysctl.d/50-default.conf"
    # The fake tree is not the running host: the detail ends by naming the boot model it assumed.
    detail = check["detail"].split(" (boot model: ")[0]
    assert detail == f"{RP_FILTER} is 2 now, needs 0; /usr/lib/sysctl.d/50-default.conf:2 sets 2 at boot"
    assert check["source"] == "cni:cilium"

    ret = k8snode._prepare(root=tree.path, cni="cilium")
    assert ret["result"] is True, ret
    assert ret["changes"][f"sysctl:{RP_FILTER}"] == {"old": "2", "new": "0"}
    assert tree.live(RP_FILTER) == "0"
    assert f"{RP_FILTER} = 0" in tree.read("etc/sysctl.d/99-k8snode.conf").splitlines()
    boot = k8snode.effective_boot_sysctls(root=tree.path)["values"]["net/ipv4/conf/all/rp_filter"]
    assert boot["assignments"] == [["/usr/lib/sysctl.d/50-default.conf", "2"], ["/etc/sysctl.d/99-k8snode.conf", "0"]]
    after = k8snode.audit(root=tree.path, cni="cilium")["checks"][f"sysctl:{RP_FILTER}"]
    assert after["status"] == "ok", after
    assert after["boot_file"] == "/etc/sysctl.d/99-k8snode.conf"


def test_a_sysctl_file_sorting_after_ours_makes_cilium_prepare_fail_naming_it(k8snode, tree):
    _node(tree, rp_filter=2)
    tree.sysctl_d("99-zz-site.conf", f"{RP_FILTER} = 2\n")
    ret = k8snode._prepare(root=tree.path, cni="cilium")
    assert ret["result"] is False
    assert "/etc/sysctl.d/99-zz-site.conf sets 2 at boot" in ret["failures"][f"sysctl:{RP_FILTER}"]


@pytest.mark.parametrize(
    ("live", "boot", "status", "detail"),
    [
        (2, "2", "fail", f"{RP_FILTER} is 2 now, needs 0 or 1; /usr/lib/sysctl.d/50-default.conf:1 sets 2 at boot"),
        (0, "1", "ok", f"{RP_FILTER} is 0, set at boot by /usr/lib/sysctl.d/50-default.conf:1"),
        (1, "0", "ok", f"{RP_FILTER} is 1, set at boot by /usr/lib/sysctl.d/50-default.conf:1"),
        (1, "2", "fail", f"{RP_FILTER} is 1 now but /usr/lib/sysctl.d/50-default.conf:1 sets 2 at boot"),
    ],
)
def test_calico_accepts_rp_filter_0_or_1_now_and_at_boot(k8snode, tree, live, boot, status, detail):
    _node(tree, rp_filter=live)
    tree.sysctl_d("50-default.conf", f"{RP_FILTER} = {boot}\n", directory="usr/lib/sysctl.d")
    check = k8snode.audit(root=tree.path, cni="calico")["checks"][f"sysctl:{RP_FILTER}"]
    assert (check["status"], check["expected"], check["detail"].split(" (boot model: ")[0]) == (
        status,
        "0 or 1",
        detail,
    )
    assert check["lost_at_reboot"] is (live in (0, 1) and boot == "2")


def test_calico_prepare_writes_strict_when_loose_and_keeps_an_accepted_value(k8snode, tree, make_tree, monkeypatch):
    loose = _node(tree, modules=CALICO_MODULES, rp_filter=2)
    loose.sysctl_d("50-default.conf", SYSTEMD_DEFAULT, directory="usr/lib/sysctl.d")
    ret = k8snode._prepare(root=loose.path, cni="calico")
    assert ret["result"] is True, ret
    assert ret["changes"][f"sysctl:{RP_FILTER}"] == {"old": "2", "new": "1"}
    assert loose.live(RP_FILTER) == "1"
    assert f"{RP_FILTER} = 1" in loose.read("etc/sysctl.d/99-k8snode.conf").splitlines()

    off = _node(make_tree("off"), modules=CALICO_MODULES, rp_filter=0)
    monkeypatch.setattr(k8snode, "__salt__", {"cmd.run_all": off.run_all})  # modprobe acts on this tree
    ret = k8snode._prepare(root=off.path, cni="calico")
    assert ret["result"] is True, ret
    assert f"sysctl:{RP_FILTER}" not in ret["changes"]
    assert off.live(RP_FILTER) == "0"
    # Persisted as it is, so that the next boot keeps 0 rather than moving the node to 1.
    assert f"{RP_FILTER} = 0" in off.read("etc/sysctl.d/99-k8snode.conf").splitlines()
    assert k8snode._prepare(root=off.path, cni="calico")["changes"] == {}


# ------------------------------------------------------- mounts and deprecations


def test_cilium_bpffs_mounted_or_not(k8snode, make_tree):
    without = _node(make_tree("without"), rp_filter=0)
    result = k8snode.audit(root=without.path, cni="cilium")
    check = result["checks"]["mount:/sys/fs/bpf"]
    assert (check["status"], check["required"], check["live"]) == ("warn", False, None)
    assert check["detail"].startswith("no bpf filesystem at /sys/fs/bpf: Cilium keeps its eBPF maps there")
    assert "mount -t bpf bpffs /sys/fs/bpf" in check["detail"]
    assert check["source"] == "cni:cilium"

    mounted = _node(make_tree("mounted"), rp_filter=0)
    mounted.write("proc/mounts", mounted.read("proc/mounts") + "bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec 0 0\n")
    check = k8snode.audit(root=mounted.path, cni="cilium")["checks"]["mount:/sys/fs/bpf"]
    assert (check["status"], check["live"]) == ("ok", "bpf")

    wrong = _node(make_tree("wrong"), rp_filter=0)
    wrong.write("proc/mounts", wrong.read("proc/mounts") + "tmpfs /sys/fs/bpf tmpfs rw 0 0\n")
    check = k8snode.audit(root=wrong.path, cni="cilium")["checks"]["mount:/sys/fs/bpf"]
    assert check["status"] == "warn"
    assert "(found tmpfs)" in check["detail"]


@pytest.mark.parametrize("settings", [{"kube_proxy_mode": "ipvs"}, {"extras": ["ipvs"]}])
def test_ipvs_mode_warns_of_its_deprecation_without_blocking_ready(k8snode, tree, settings):
    _node(tree)
    tree.monolithic(config={"IP_VS": "y", "IP_VS_RR": "y", "IP_VS_WRR": "y", "IP_VS_SH": "y", "NF_CONNTRACK": "y"})
    tree.modules_load("k8s.conf", ["overlay", "br_netfilter"])
    tree.write("proc/sys/net/bridge/bridge-nf-call-iptables", "1\n")
    tree.write("proc/sys/net/bridge/bridge-nf-call-ip6tables", "1\n")
    tree.write("sys/module/overlay/parameters/.keep", "")
    tree.write("sys/module/br_netfilter/parameters/.keep", "")
    result = k8snode.audit(root=tree.path, pillar=settings)
    source = "kube_proxy_mode:ipvs" if "kube_proxy_mode" in settings else "extras:ipvs"
    check = result["checks"][f"deprecated:{source}"]
    assert (check["status"], check["required"]) == ("warn", False)
    assert "deprecated since Kubernetes 1.35 (KEP-5495)" in check["detail"]
    assert result["kube_proxy_mode"] == "ipvs"
    assert result["ready"] is True, result["failing"]


def test_audit_names_the_cni_and_mode(k8snode, tree):
    _node(tree, rp_filter=0)
    result = k8snode.audit(root=tree.path, pillar={"cni": "flannel"})
    assert (result["cni"], result["kube_proxy_mode"]) == ("flannel", "iptables")
    assert result["checks"]["module:vxlan"]["source"] == "cni:flannel"
