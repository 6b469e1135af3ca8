"""`state.apply k8snode` on a real node: modprobe really loads the modules."""

import pytest

from tests.support.vm_checks import MODULES_FILE, apply, audit, pillar, proc_modules, read_files

pytestmark = pytest.mark.real_node

K3S_IPVS = {"distribution": "k3s", "extras": ["ipvs"]}
K3S_IPVS_MODULES = ("overlay", "br_netfilter", "nf_conntrack", "ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh")


def test_state_apply_loads_the_modules_with_modprobe_and_the_node_is_ready(salt_master, fresh_vm):
    node = fresh_vm("bookworm")
    assert not set(K3S_IPVS_MODULES) & proc_modules(node), "a fresh node has none of them loaded"

    code, state = apply(salt_master, node, pillar=pillar(K3S_IPVS))
    assert code == 0 and state["result"] is True, state
    for module in K3S_IPVS_MODULES:
        assert state["changes"][f"module:{module}"] == {"old": "not loaded", "new": f"{module} loaded"}, module

    # The kernel's own list, not k8snode's word for it.
    loaded = proc_modules(node)
    assert set(K3S_IPVS_MODULES) <= loaded, loaded
    listed = read_files(node, MODULES_FILE)[MODULES_FILE].splitlines()[1:]
    assert sorted(listed) == sorted(K3S_IPVS_MODULES)

    report = audit(salt_master, node, distribution="k3s", extras=["ipvs"])
    assert report["ready"] is True, report["failing"]
    assert report["lost_at_reboot"] == []
    for module in K3S_IPVS_MODULES:
        check = report["checks"][f"module:{module}"]
        assert (check["status"], check["live"], check["boot"]) == ("ok", "loaded", MODULES_FILE), check
    for key in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables", "net.ipv4.ip_forward"):
        assert report["checks"][f"sysctl:{key}"]["live"] == "1", key
