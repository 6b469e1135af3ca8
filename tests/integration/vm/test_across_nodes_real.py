"""Across nodes (issue 20, scenario 3): two real Debian 12 nodes on a private L2 link, a pod on
each, routes as flannel's host-gw writes them (tests/support/across_nodes.py).

The seed's case for ``net.ipv4.ip_forward``: without it "pods cannot reach other nodes". Here:

1. fresh nodes: the audit fails ``ip_forward`` on both (0, no file sets it). The CNI
   ``bridge`` plugin as a gateway turns it on at the pod's ADD (``ip.EnableForward``), and the
   pods talk; set back to 0 on both (what the node boots with, before any pod, and what a
   sysctl reload with nothing persisted leaves) the pod on node 1 cannot reach the pod on
   node 2, and the audit says ``fail`` on both;
2. ``state.apply k8snode`` on both: the pods talk, the audit is ready on both;
3. both nodes rebooted: ``ip_forward`` is 1 before any pod exists (k8snode's file, not the
   plugin), the pods (made again, as the kubelet and flannel make them at boot) talk, the
   audit is ready on both.
"""

import pytest

from tests.support.across_nodes import audits, on_both, pod_to_pod, start_pods
from tests.support.vm import reboot_together

pytestmark = pytest.mark.real_node(release="bookworm", nodes=2)

IP_FORWARD = "sysctl:net.ipv4.ip_forward"


def test_pods_on_two_nodes_need_ip_forward_on_both_and_keep_it_across_a_reboot(salt_master, vm_pair, start_next_vm):
    nodes = vm_pair()
    for report in audits(salt_master, nodes):  # each salt call reaches both nodes at once
        check = report["checks"][IP_FORWARD]
        assert (check["status"], check["live"], check["boot"]) == ("fail", "0", None), check

    seen = start_pods(nodes)
    # The link's NICs are left to the test (the image's 10-k8snode-link.network), as a plugin's would be.
    assert [node["networkd"] for node in seen] == ["unmanaged", "unmanaged"], seen
    assert [(node["before"], node["after"]) for node in seen] == [("0", "1"), ("0", "1")], seen
    assert pod_to_pod(nodes) == "answered"  # the plugin turned forwarding on

    for node in nodes:
        node.sh("sysctl -qw net.ipv4.ip_forward=0")
    assert pod_to_pod(nodes).startswith("failed"), "pods talked across nodes that forward nothing"
    for report in audits(salt_master, nodes):
        check = report["checks"][IP_FORWARD]
        assert (check["status"], check["live"]) == ("fail", "0"), check

    for ret in on_both(salt_master, nodes, "state.apply", "k8snode").values():
        (state,) = ret.values()
        assert state["result"] is True, state
    assert pod_to_pod(nodes) == "answered"
    for report in audits(salt_master, nodes):
        assert report["ready"] is True, report["failing"]
        assert report["checks"][IP_FORWARD]["boot"] == "1"

    start_next_vm()  # the next test's node boots beside these two reboots
    reboot_together(list(nodes))
    seen = start_pods(nodes)
    assert [node["before"] for node in seen] == ["1", "1"], seen  # k8snode's file, before any pod
    assert pod_to_pod(nodes) == "answered"
    for report in audits(salt_master, nodes):
        assert report["ready"] is True, report["failing"]
