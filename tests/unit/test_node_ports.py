"""
Ephemeral ports inside the NodePort range. Expected values from the sources:

* Documentation/networking/ip-sysctl.rst: ``ip_local_port_range`` "defines the local port
  range that is used by TCP and UDP to choose the local port", default 32768 60999;
  ``ip_local_reserved_ports`` "a comma-separated list of ranges", e.g. ``1,2-4,10-10``,
  skipped by automatic port assignment.
* kube-apiserver ``--service-node-port-range`` default 30000-32767.
* kubernetes/kubernetes#111682: a NodePort in the ephemeral range clashes with outgoing
  connections' local ports; reserving the range is the fix the thread gives.
"""

import pytest


def node(tree, port_range="32768\t60999", reserved=""):
    tree.debian(12).fresh_node()
    tree.sysctl("net.ipv4.ip_local_port_range", port_range)
    tree.sysctl("net.ipv4.ip_local_reserved_ports", reserved)
    return tree


def node_ports(k8snode, tree, **kwargs):
    return k8snode.audit(root=tree.path, **kwargs)["checks"]["node_ports"]


def test_the_kernels_default_range_leaves_nodeports_alone(k8snode, tree):
    check = node_ports(k8snode, node(tree))
    assert (check["status"], check["live"], check["boot"]) == ("ok", "32768 60999", "32768 60999")


def test_a_wide_range_takes_nodeports_now_and_at_boot(k8snode, tree):
    node(tree, "10000 65000").sysctl_d("90-ports.conf", "net.ipv4.ip_local_port_range = 10000 65000\n")
    check = node_ports(k8snode, tree)
    assert (check["status"], check["required"], check["taken_now"]) == ("warn", False, "30000-32767")
    assert check["taken_at_boot"] == "30000-32767"
    assert 'pillar k8snode:sysctls: {net.ipv4.ip_local_reserved_ports: "30000-32767"}' in check["detail"]


def test_reserved_ports_cover_the_range(k8snode, tree):
    node(tree, "10000 65000", "22,30000-32767")
    tree.sysctl_d(
        "90-ports.conf",
        "net.ipv4.ip_local_port_range = 10000 65000\nnet.ipv4.ip_local_reserved_ports = 22,30000-32767\n",
    )
    assert node_ports(k8snode, tree)["status"] == "ok"


def test_a_partial_reservation_names_what_is_left(k8snode, tree):
    node(tree, "31000 60999", "31000-31999,32500")
    check = node_ports(k8snode, tree)
    assert check["taken_now"] == "32000-32499,32501-32767"


def test_reserved_now_but_not_at_boot_is_lost_at_reboot(k8snode, tree):
    node(tree, "10000 65000", "30000-32767").sysctl_d("90-ports.conf", "net.ipv4.ip_local_port_range = 10000 65000\n")
    check = node_ports(k8snode, tree)
    assert (check["status"], check["lost_at_reboot"], check["taken_now"]) == ("warn", True, "")
    assert (
        "at the next boot net.ipv4.ip_local_port_range is 10000 65000 (/etc/sysctl.d/90-ports.conf)"
        in (check["detail"])
    )


def test_the_pillars_nodeport_range(k8snode, tree):
    node(tree)
    check = node_ports(k8snode, tree, node_port_range="40000-40100")
    assert (check["status"], check["taken_now"]) == ("warn", "40000-40100")


def test_prepare_reserves_the_range_from_the_pillars_sysctls(k8snode, tree):
    node(tree, "10000 65000").sysctl_d("90-ports.conf", "net.ipv4.ip_local_port_range = 10000 65000\n")
    wanted = {"net.ipv4.ip_local_reserved_ports": "30000-32767"}
    assert k8snode._prepare(root=tree.path, sysctls=wanted)["result"] is True
    assert tree.live("net.ipv4.ip_local_reserved_ports") == "30000-32767"
    assert "net.ipv4.ip_local_reserved_ports = 30000-32767" in tree.read("etc/sysctl.d/99-k8snode.conf")
    check = node_ports(k8snode, tree, sysctls=wanted)
    assert check["status"] == "ok", check["detail"]


@pytest.mark.parametrize("bad", ["30000", "32767-30000", "0-10", "30000-70000", 30000, "３００００-32767"])
def test_a_bad_range_names_itself(k8snode, tree, bad):
    node(tree)
    with pytest.raises(Exception, match="node_port_range.*30000-32767"):
        k8snode.audit(root=tree.path, node_port_range=bad)


@pytest.mark.parametrize(
    ("written", "stored"),
    # ip-sysctl.rst's own example "1,2-4,10-10" reads back merged, as proc_do_large_bitmap prints bits.
    [("1,2-4,10-10", "1-4,10"), ("30000-32767,22", "22,30000-32767"), ("", ""), ("8080", "8080")],
)
def test_a_reserved_port_list_is_kept_as_the_kernel_prints_it(written, stored):
    from _modules.k8snode.validate import normalize_sysctl_value

    assert normalize_sysctl_value(written, "pillar k8snode", "net.ipv4.ip_local_reserved_ports") == stored


@pytest.mark.parametrize("bad", ["30000-", "a-b", "70000", "5-3", "1;2"])
def test_a_bad_reserved_port_list_names_itself(bad):
    from _modules.k8snode.validate import normalize_sysctl_value

    with pytest.raises(Exception, match=r"ip_local_reserved_ports.*ports and ranges separated by commas"):
        normalize_sysctl_value(bad, "pillar k8snode", "net.ipv4.ip_local_reserved_ports")
