"""
Swap: active now (/proc/swaps) and back at boot (fstab, systemd .swap units,
zram-generator). kubeadm's kubelet refuses swap (failSwapOn; a preflight
warning since v1.23); K3s, RKE2 and MicroK8s run with it (a warning only).
"""

import pytest

from _modules.k8snode import swap

FSTAB = (
    "# /etc/fstab: static file system information.\n"
    "UUID=0a1b / ext4 errors=remount-ro 0 1\n"
    "UUID=2c3d none swap sw 0 0\n"
    "#/dev/sdb1 none swap sw 0 0\n"
    "  /swapfile   none  swap  defaults 0 0\n"
    "tmpfs /tmp tmpfs defaults 0 0\n"
)


def test_no_swap(k8snode, tree):
    tree.swaps().fstab("UUID=0a1b / ext4 defaults 0 1\n")
    assert k8snode.swap_status(root=tree.path) == {"active": [], "at_boot": []}


def test_missing_files_mean_no_swap(k8snode, tree):
    assert k8snode.swap_status(root=tree.path) == {"active": [], "at_boot": []}


def test_active_swap_from_proc_swaps(k8snode, tree):
    tree.swaps("/dev/vda2", "/swapfile")
    assert k8snode.swap_status(root=tree.path)["active"] == ["/dev/vda2", "/swapfile"]


def test_fstab_swap_lines_but_not_comments(k8snode, tree):
    tree.fstab(FSTAB)
    assert k8snode.swap_status(root=tree.path)["at_boot"] == ["/etc/fstab: /swapfile", "/etc/fstab: UUID=2c3d"]
    indexes, devices = swap.fstab_swap_lines(FSTAB)
    assert indexes == [2, 4]
    assert devices == ["UUID=2c3d", "/swapfile"]


def test_systemd_swap_units(k8snode, tree):
    tree.write("etc/systemd/system/swapfile.swap", "[Swap]\nWhat=/swapfile\n")  # not enabled
    tree.symlink("etc/systemd/system/swap.target.wants/dev-zram0.swap", "../dev-zram0.swap")
    tree.symlink("etc/systemd/system/swap.target.wants/dev-vda3.swap", "/dev/null")  # masked: never activated
    tree.write("etc/systemd/zram-generator.conf", "[zram0]\n")
    at_boot = k8snode.swap_status(root=tree.path)["at_boot"]
    assert "/etc/systemd/system/swapfile.swap" not in at_boot
    assert "/etc/systemd/system/swap.target.wants/dev-zram0.swap" in at_boot
    assert "/etc/systemd/zram-generator.conf" in at_boot
    assert not any("dev-vda3" in where for where in at_boot)


@pytest.mark.parametrize(
    ("distribution", "policy", "status", "required"),
    [("kubeadm", "off", "fail", True), ("k3s", "warn", "warn", False), ("rke2", "warn", "warn", False)],
)
def test_swap_policy_per_distribution(k8snode, tree, distribution, policy, status, required):
    tree.redhat().modular().swaps("/dev/vda2").fstab(FSTAB)
    result = k8snode.audit(distribution, root=tree.path)
    check = result["checks"]["swap"]
    assert check["status"] == status
    assert check["required"] is required
    assert check["live"] == ["/dev/vda2"]
    assert "active: /dev/vda2" in check["detail"]
    assert "at boot: /etc/fstab: UUID=2c3d" in check["detail"]
    assert ("swap" in result["failing"]) is (status == "fail")


def test_swap_policy_ignore(k8snode, tree):
    tree.redhat().modular().swaps("/dev/vda2")
    check = k8snode.audit(root=tree.path, swap="ignore")["checks"]["swap"]
    assert check["status"] == "ok"
    assert check["required"] is False
    assert "policy ignore" in check["detail"]


def test_swap_only_at_boot_still_fails_under_off(k8snode, tree):
    """swapoff -a alone is not enough: the fstab line brings swap back at reboot."""
    tree.redhat().modular().swaps().fstab(FSTAB)
    check = k8snode.audit(root=tree.path)["checks"]["swap"]
    assert check["status"] == "fail"
    assert check["live"] == []
    assert check["boot"] == ["/etc/fstab: /swapfile", "/etc/fstab: UUID=2c3d"]


def test_no_swap_is_ok_under_every_policy(k8snode, tree):
    tree.redhat().modular().swaps().fstab("UUID=0a1b / ext4 defaults 0 1\n")
    for policy in ("off", "warn", "ignore"):
        assert k8snode.audit(root=tree.path, swap=policy)["checks"]["swap"]["status"] == "ok"


def test_yaml_off_read_as_false_means_off(k8snode, tree):
    """YAML 1.1 reads a bare ``off`` as False."""
    tree.redhat()
    assert k8snode.requirements(root=tree.path, pillar={"swap": False})["swap"] == {
        "policy": "off",
        "source": "pillar",
    }


def test_noauto_fstab_swap_does_not_come_back_at_boot(k8snode, tree):
    tree.fstab("/dev/vda3 none swap sw,noauto 0 0\n/swapfile none swap sw 0 0\n")
    assert k8snode.swap_status(root=tree.path)["at_boot"] == ["/etc/fstab: /swapfile"]


def test_a_masked_swap_target_means_no_swap_at_boot(k8snode, tree):
    tree.fstab("/swapfile none swap sw 0 0\n")
    tree.symlink("etc/systemd/system/swap.target.wants/dev-zram0.swap", "../dev-zram0.swap")
    tree.symlink("etc/systemd/system/swap.target", "/dev/null")
    assert k8snode.swap_status(root=tree.path)["at_boot"] == []
