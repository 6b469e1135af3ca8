"""The audit's contract: what the state, runner and outputter rely on."""

import pytest

from tests.unit.faketree import GOOD_KERNEL_CONFIG

TOP_KEYS = {"ready", "distribution", "os_family", "summary", "checks", "failing", "lost_at_reboot"}
CHECK_KEYS = {"status", "required", "expected", "live", "boot", "detail"}


def fully_prepared(tree, distribution="kubeadm"):
    """A host prepared by hand for every distribution's needs, persisted for boot."""
    tree.redhat().modular(loaded=["overlay", "br_netfilter", "nf_conntrack"])
    tree.kernel_defaults(
        {
            "net.ipv4.ip_forward": 1,
            "fs.inotify.max_user_instances": 8192,
            "fs.inotify.max_user_watches": 1048576,
            "fs.aio-max-nr": 1048576,
        }
    )
    tree.modules_load("k8s.conf", ["overlay", "br_netfilter", "nf_conntrack"])
    tree.sysctl_d(
        "90-kubernetes.conf",
        "net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n"
        "fs.inotify.max_user_instances = 8192\nfs.inotify.max_user_watches = 1048576\nfs.aio-max-nr = 1048576\n",
    )
    tree.kernel_config(GOOD_KERNEL_CONFIG)
    tree.mounts("cgroup2")
    tree.cgroup_controllers()
    tree.swaps()
    tree.fstab("UUID=0a1b / xfs defaults 0 0\n")
    # What kubeadm's preflight looks for from 1.33 on (checks_linux.go: crictl, mount, losetup, cp).
    tree.binaries("crictl", "mount", "losetup", "cp")
    return tree


@pytest.mark.parametrize("distribution", ["kubeadm", "rke2", "k3s", "microk8s"])
def test_fully_prepared_tree_is_ready(k8snode, tree, distribution):
    fully_prepared(tree)
    result = k8snode.audit(distribution, root=tree.path)
    assert set(result) >= TOP_KEYS
    assert result["ready"] is True, result["failing"]
    assert result["failing"] == []
    assert result["lost_at_reboot"] == []
    assert result["distribution"] == distribution
    assert result["os_family"] == "RedHat"
    assert result["summary"] == {"ok": len(result["checks"]), "fail": 0, "warn": 0}


def test_every_check_has_the_contract_keys(k8snode, tree):
    tree.debian(12, sysctl_conf="net.ipv4.ip_forward = 0\n").modular(loaded=["overlay"]).kernel_defaults()
    tree.swaps("/dev/vda2")
    result = k8snode.audit("microk8s", root=tree.path, extras=["ipvs", "protect_kernel_defaults"])
    assert set(result) >= TOP_KEYS
    expected_names = {f"module:{name}" for name in ("overlay", "br_netfilter", "nf_conntrack", "ip_vs", "ip_vs_rr")} | {
        "sysctl:net.ipv4.ip_forward",
        "sysctl:kernel.panic",
        "swap",
        "kernel_config",
        "cgroup",
    }
    assert expected_names <= set(result["checks"])
    for name, check in result["checks"].items():
        assert set(check) >= CHECK_KEYS, name
        assert check["status"] in {"ok", "fail", "warn"}, name
        assert isinstance(check["required"], bool), name
        assert isinstance(check["detail"], str) and check["detail"], name
        if not check["required"]:
            assert check["status"] != "fail", name
    counts = {"ok": 0, "fail": 0, "warn": 0}
    for check in result["checks"].values():
        counts[check["status"]] += 1
    assert result["summary"] == counts
    assert result["failing"] == sorted(name for name, c in result["checks"].items() if c["status"] == "fail")
    assert result["ready"] is False


def test_ready_only_when_all_required_checks_are_ok(k8snode, tree):
    fully_prepared(tree)
    assert k8snode.audit(root=tree.path)["ready"] is True
    # One required check wrong makes it not ready...
    tree.sysctl("net.bridge.bridge-nf-call-ip6tables", 0)
    result = k8snode.audit(root=tree.path)
    assert result["ready"] is False
    assert result["failing"] == ["sysctl:net.bridge.bridge-nf-call-ip6tables"]
    tree.sysctl("net.bridge.bridge-nf-call-ip6tables", 1)
    # ...but optional checks (kernel config, cgroup v1 for a 1.34 kubelet) only warn.
    tree.remove("proc/config.gz")
    tree.mounts("v1")
    result = k8snode.audit(root=tree.path, kubernetes_version="1.34")
    assert result["ready"] is True
    assert result["checks"]["kernel_config"]["status"] == "warn"
    assert result["checks"]["cgroup"]["status"] == "warn"
    assert "cgroup v1" in result["checks"]["cgroup"]["detail"]


def test_kernel_config_missing_options_are_listed(k8snode, tree):
    fully_prepared(tree)
    config = dict(GOOD_KERNEL_CONFIG, MEMCG="n", CPUSETS="m")
    tree.kernel_config(config)
    check = k8snode.audit(root=tree.path)["checks"]["kernel_config"]
    assert check["status"] == "warn"
    # =m passes like =y (k8s.io/system-validators).
    assert check["live"] == ["MEMCG"]
    assert "CONFIG_MEMCG" in check["detail"]


def test_audit_is_read_only(k8snode, tree):
    fully_prepared(tree)
    tree.sysctl("net.ipv4.ip_forward", 0)
    tree.swaps("/dev/vda2")
    before = tree.snapshot()
    k8snode.audit("k3s", root=tree.path, extras=["ipvs"])
    assert tree.snapshot() == before
    assert tree.calls == []


def test_sources_are_reported(k8snode, tree):
    fully_prepared(tree)
    result = k8snode.audit(root=tree.path, pillar={"sysctls": {"vm.max_map_count": 65530}})
    assert result["checks"]["sysctl:vm.max_map_count"]["source"] == "pillar"
    assert result["checks"]["module:overlay"]["source"] == "distribution:kubeadm"
    assert result["checks"]["swap"]["required"] is True
