"""Verdicts by Kubernetes release on the test bed's container nodes (issue 19).

The containers share this machine's cgroup v1 hierarchy (TESTBED.md: ``stat -fc %T
/sys/fs/cgroup`` is ``tmpfs``), the case every supported kubelet (1.35 and later) refuses
by default: kubernetes/kubernetes#134298 (KEP-5573) made ``failCgroupV1`` default to true,
and the kubelet's config validation then exits on a cgroup v1 host. Their minion config
carries the grain with which pillar/top.sls gives them ``kubelet: {fail_cgroup_v1: false}``.
"""

import pytest

from tests.support import nodes
from tests.support.harness import RELEASES

KUBEADM_ONLY = {"distribution": "kubeadm"}


@pytest.fixture
def prepared(salt_master, fresh_nodes):
    """The bookworm container after state.apply k8snode."""
    minion = fresh_nodes["bookworm"]
    code, _ = nodes.apply(salt_master, minion)
    assert code == 0
    return minion


def test_the_containers_really_are_on_cgroup_v1(fresh_nodes):
    for release in RELEASES:
        assert nodes.sh(fresh_nodes[release], "stat -fc %T /sys/fs/cgroup").strip() == "tmpfs"


def test_cgroup_v1_by_release_and_by_the_kubelets_setting(salt_master, prepared):
    """One prepared node, four verdicts (each an apply less than a test apiece)."""
    # 1.35 with nothing said of the kubelet: pillar= replaces the node's pillar.
    report = nodes.audit(salt_master, prepared, pillar=KUBEADM_ONLY, kubernetes_version="1.35")
    assert report["ready"] is False
    assert report["failing"] == ["cgroup"]
    check = report["checks"]["cgroup"]
    assert check["setting"] == "failCgroupV1"
    assert "the kubelet 1.35 exits at start, failCgroupV1 is true (the kubelet's 1.35 default:" in check["detail"]
    assert report["kubernetes"] == {"version": "1.35", "source": "arguments", "assumed": None, "stale": None}

    # 1.34: maintenance mode, a warning.
    report = nodes.audit(salt_master, prepared, pillar=KUBEADM_ONLY, kubernetes_version="1.34")
    assert report["ready"] is True, report["failing"]
    assert report["checks"]["cgroup"]["status"] == "warn"
    assert "maintenance mode" in report["checks"]["cgroup"]["detail"]

    # The site's pillar for cgroup v1 hosts (pillar/top.sls, by grain).
    pillar = salt_master.salt_cli().run("pillar.get", "k8snode", minion_tgt=prepared.id)
    assert pillar.data["kubelet"] == {"fail_cgroup_v1": False}, pillar
    report = nodes.audit(salt_master, prepared, kubernetes_version="1.35")
    assert report["ready"] is True, report["failing"]
    cgroup = report["checks"]["cgroup"]
    assert cgroup["status"] == "warn"
    assert "failCgroupV1 is false (pillar k8snode:kubelet:fail_cgroup_v1)" in cgroup["detail"]

    # A kubelet configuration on the node decides, whatever the pillar.
    nodes.sh(prepared, "mkdir -p /var/lib/kubelet && printf 'failCgroupV1: false\\n' > /var/lib/kubelet/config.yaml")
    report = nodes.audit(salt_master, prepared, pillar=KUBEADM_ONLY, kubernetes_version="1.35")
    assert report["ready"] is True, report["failing"]
    assert "(/var/lib/kubelet/config.yaml: failCgroupV1)" in report["checks"]["cgroup"]["detail"]


def test_the_kubelet_package_gives_the_release(salt_master, prepared):
    """Without pillar or argument, dpkg's status says which kubelet will run."""
    stanza = "Package: kubelet\\nStatus: install ok installed\\nVersion: 1.34.3-1.1\\n\\n"
    nodes.sh(
        prepared,
        f"cp /var/lib/dpkg/status /var/lib/dpkg/status.k8snode-test && printf '{stanza}' >> /var/lib/dpkg/status",
    )
    try:
        report = nodes.audit(salt_master, prepared, pillar=KUBEADM_ONLY)
    finally:
        nodes.sh(prepared, "mv /var/lib/dpkg/status.k8snode-test /var/lib/dpkg/status")
    assert report["kubernetes"]["version"] == "1.34"
    assert report["kubernetes"]["source"] == "/var/lib/dpkg/status: kubelet 1.34.3-1.1"
    assert report["ready"] is True, report["failing"]
    unknown = nodes.audit(salt_master, prepared, pillar=KUBEADM_ONLY)["kubernetes"]
    assert unknown["assumed"].startswith(f"assumed {unknown['version']}: no kubeadm kubelet found")
