"""
AppArmor enabled without apparmor_parser. Expected values from the sources:

* containerd pkg/apparmor/apparmor_linux.go ``hostSupports``: /sys/kernel/security/apparmor
  exists, /sbin/apparmor_parser exists, /sys/module/apparmor/parameters/enabled starts with Y.
* containerd/containerd#7547 (1.6.2: "get apparmor_parser version: exec: apparmor_parser:
  executable file not found"), releases/v1.6.18.toml ("Revert removal of
  /sbin/apparmor_parser check", #8087): 1.6.0-1.6.17 fail, 1.6.18 and 1.7 do not.
"""

import pytest


def node(tree, enabled="Y", parser=False, containerd=None):
    tree.debian(12).fresh_node()
    tree.write("sys/module/apparmor/parameters/enabled", enabled + "\n")
    tree.write("sys/kernel/security/apparmor/profiles", "")
    if parser:
        tree.write("usr/sbin/apparmor_parser", "", mode=0o755)
    if containerd:
        tree.dpkg_installed(containerd=containerd)
    return tree


def apparmor(k8snode, tree):
    return k8snode.audit(root=tree.path)["checks"].get("apparmor")


def test_with_its_parser_no_check(k8snode, tree):
    assert apparmor(k8snode, node(tree, parser=True)) is None


def test_disabled_no_check(k8snode, tree):
    assert apparmor(k8snode, node(tree, enabled="N")) is None


@pytest.mark.parametrize("version", ["1.6.2-1", "1.6.17~ds1-1"])
def test_containerd_that_fails_every_container(k8snode, tree, version):
    node(tree, containerd=version)
    report = k8snode.audit(root=tree.path)
    check = report["checks"]["apparmor"]
    assert (check["status"], check["required"]) == ("fail", True)
    assert "fails every container create" in check["detail"]
    assert "apparmor" in report["failing"] and report["ready"] is False


@pytest.mark.parametrize("version", ["1.6.18-1", "1.6.20~ds1-1+b1", "1.7.24~ds1-6", "2.1.4~ds1-1", None])
def test_containerd_that_runs_them_unconfined(k8snode, tree, version):
    check = apparmor(k8snode, node(tree, containerd=version))
    assert (check["status"], check["required"]) == ("warn", False)
    assert "without AppArmor confinement" in check["detail"]
