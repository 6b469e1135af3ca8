"""
Where the audit runs. Expected values from the sources:

* Documentation/networking/ip-sysctl.rst and net/core/net_namespace.c: ``net.*`` sysctls
  belong to a network namespace; a process sees its own namespace's under /proc/sys/net.
* proc(5), /proc/[pid]/ns/: "net:[4026531840]"-style links; two processes share a
  namespace exactly when the links' targets are equal (what ``ip netns identify`` uses).
* systemd src/basic/virt.c detect_container_files(): ``/run/.containerenv`` (podman) and
  ``/.dockerenv`` (docker); ``/run/systemd/container`` holds the manager's name.
"""

import os


def node(tree):
    tree.debian(12).fresh_node()
    return tree


def namespace_check(k8snode, tree):
    return k8snode.audit(root=tree.path)["checks"].get("network_namespace")


def link(tree, relative, target):
    full = tree.p(relative)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    os.symlink(target, full)


def test_the_hosts_own_namespace_has_no_check(k8snode, tree):
    node(tree)
    link(tree, "proc/self/ns/net", "net:[4026531840]")
    link(tree, "proc/1/ns/net", "net:[4026531840]")
    assert namespace_check(k8snode, tree) is None


def test_another_namespace_than_pid_1_is_said(k8snode, tree):
    node(tree)
    link(tree, "proc/self/ns/net", "net:[4026532301]")
    link(tree, "proc/1/ns/net", "net:[4026531840]")
    report = k8snode.audit(root=tree.path)
    check = report["checks"]["network_namespace"]
    assert (check["status"], check["required"], check["live"]) == ("warn", False, "net:[4026532301]")
    assert "another network namespace (net:[4026532301]) than PID 1 (net:[4026531840])" in check["detail"]
    assert "network_namespace" not in report["failing"]


def test_a_docker_container_is_said_with_its_marker(k8snode, tree):
    node(tree)
    tree.write(".dockerenv", "")
    check = namespace_check(k8snode, tree)
    assert check["status"] == "warn" and check["container"] == "docker", check
    assert "runs in a container (docker: /.dockerenv)" in check["detail"]
    assert "vm.*, fs.* and kernel.* are the host's" in check["detail"]


def test_systemds_container_file_names_the_manager(k8snode, tree):
    node(tree)
    tree.write("run/systemd/container", "lxc\n")
    tree.write("run/.containerenv", "")
    check = namespace_check(k8snode, tree)
    assert check["container"] == "lxc" and "(lxc: /run/systemd/container)" in check["detail"], check
