"""
Whether a module will really load: on demand, and what modprobe.d and
kernel.modules_disabled stop. Expected values from the sources:

* fs/filesystems.c get_fs_type() calls request_module("fs-%s"), and overlayfs declares
  MODULE_ALIAS_FS("overlay"): an overlay mount loads the module.
* Linux 5.15 (commit 2199f562730d): the IPVS generic netlink family autoloads ip_vs.
* modprobe.d(5): "blacklist: ... all of that particular module's internal aliases are to
  be ignored" (an explicit modprobe still loads it); "install: ... run the shell command
  instead of inserting the module". systemd-modules-load applies kmod's deny-list and
  logs "Module 'x' is deny-listed (by kmod)" (module-util.c, KMOD_PROBE_APPLY_BLACKLIST).
* kernel/module/kmod.c __request_module(): ``if (!modprobe_path[0]) return -ENOENT``;
  Documentation/admin-guide/sysctl/kernel.rst, modprobe: the usermode helper the kernel
  runs to autoload modules; set to the empty string, autoloading is disabled altogether.
* Documentation/admin-guide/sysctl/kernel.rst, modules_disabled: "once true, modules can
  be neither loaded nor unloaded".
"""

import pytest


def node(tree, **kwargs):
    """A Debian 12 node with everything kubeadm needs but the modules under test."""
    tree.debian(12).fresh_node(**kwargs)
    tree.kernel_defaults({"net.ipv4.ip_forward": 1})
    tree.sysctl_d("90-k8s.conf", "net.ipv4.ip_forward = 1\n")
    return tree


def test_overlay_not_loaded_is_loaded_on_demand_and_not_a_failure(k8snode, tree):
    node(tree)
    check = k8snode.audit(root=tree.path)["checks"]["module:overlay"]
    assert check["status"] == "warn"
    assert "on the first overlay mount" in check["detail"]
    assert "state.apply k8snode persists it" in check["detail"]
    tree.modules_load("k8s.conf", ["overlay"])
    assert k8snode.audit(root=tree.path)["checks"]["module:overlay"]["status"] == "ok"


@pytest.mark.parametrize("helper", ["", "/bin/false"])
def test_no_autoloading_helper_no_on_demand_loading(k8snode, tree, helper):
    node(tree).sysctl("kernel.modprobe", helper)
    check = k8snode.audit(root=tree.path)["checks"]["module:overlay"]
    assert check["status"] == "fail", check
    assert "on the first overlay mount" not in check["detail"]
    tree.sysctl("kernel.modprobe", "/sbin/modprobe")
    assert k8snode.audit(root=tree.path)["checks"]["module:overlay"]["status"] == "warn"


def test_br_netfilter_is_not_loaded_on_demand(k8snode, tree):
    node(tree)
    check = k8snode.audit(root=tree.path)["checks"]["module:br_netfilter"]
    assert check["status"] == "fail"
    assert "run state.apply k8snode" in check["detail"]


@pytest.mark.parametrize(("release", "status"), [("5.10.0-30-amd64", "fail"), ("6.1.0-21-amd64", "warn")])
def test_ip_vs_loads_on_demand_from_515(k8snode, make_tree, release, status):
    tree = node(make_tree("n", release=release), modules=("overlay", "br_netfilter", "nf_conntrack", "ip_vs"))
    assert k8snode.audit(root=tree.path, kube_proxy_mode="ipvs")["checks"]["module:ip_vs"]["status"] == status


def test_install_bin_false_forbids_it_with_the_right_reason_and_prepare_does_not_run_modprobe(k8snode, tree):
    node(tree)
    tree.write("etc/modprobe.d/cis.conf", "# hardening\ninstall overlay /bin/false\n")
    check = k8snode.audit(root=tree.path)["checks"]["module:overlay"]
    assert check["status"] == "fail"
    assert "/etc/modprobe.d/cis.conf:2" in check["detail"] and "/bin/false" in check["detail"]
    assert "state.apply" in check["detail"] and "run state.apply k8snode" not in check["detail"]
    ret = k8snode._prepare(root=tree.path)
    assert ret["result"] is False
    assert "/etc/modprobe.d/cis.conf:2" in ret["failures"]["module:overlay"]
    assert ["modprobe", "--", "overlay"] not in tree.argvs("modprobe")


def test_a_loaded_module_that_is_blacklisted_is_lost_at_the_next_boot(k8snode, tree):
    node(tree)
    tree.load("br_netfilter")
    tree.modules_load("k8s.conf", ["br_netfilter"])
    tree.write("usr/lib/modprobe.d/bridge.conf", "blacklist br_netfilter\n")
    report = k8snode.audit(root=tree.path)
    check = report["checks"]["module:br_netfilter"]
    assert check["status"] == "fail" and check["lost_at_reboot"] is True
    assert "blacklisted (/usr/lib/modprobe.d/bridge.conf:1)" in check["detail"]
    assert "module:br_netfilter" in report["lost_at_reboot"]
    ret = k8snode._prepare(root=tree.path)
    assert "/usr/lib/modprobe.d/bridge.conf:1" in ret["failures"]["module:br_netfilter"]


def test_a_blacklisted_overlay_is_not_loaded_on_demand(k8snode, tree):
    node(tree)
    tree.write("etc/modprobe.d/no-overlay.conf", "blacklist overlay\n")
    check = k8snode.audit(root=tree.path)["checks"]["module:overlay"]
    assert check["status"] == "fail"
    assert "blacklisted (/etc/modprobe.d/no-overlay.conf:1)" in check["detail"]


def test_etc_masks_the_same_name_in_usr_lib(k8snode, tree):
    node(tree)
    tree.write("usr/lib/modprobe.d/overlay.conf", "install overlay /bin/false\n")
    tree.write("etc/modprobe.d/overlay.conf", "# allowed here\n")
    assert k8snode.audit(root=tree.path)["checks"]["module:overlay"]["status"] == "warn"


def test_an_install_line_that_still_loads_the_module_is_not_a_ban(k8snode, tree):
    node(tree)
    tree.write("etc/modprobe.d/x.conf", "install overlay /sbin/modprobe --ignore-install overlay && echo hi\n")
    assert k8snode.audit(root=tree.path)["checks"]["module:overlay"]["status"] == "warn"


def test_modules_disabled_stops_every_load(k8snode, tree):
    node(tree)
    tree.sysctl("kernel.modules_disabled", 1)
    checks = k8snode.audit(root=tree.path)["checks"]
    assert checks["module:overlay"]["status"] == "fail"  # no on-demand load either
    assert "kernel.modules_disabled is 1" in checks["module:br_netfilter"]["detail"]
    ret = k8snode._prepare(root=tree.path)
    assert ret["failures"]["module:br_netfilter"].startswith("kernel.modules_disabled is 1")
