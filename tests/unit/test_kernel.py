"""
Kernel modules: loaded, built in, available or missing, and loaded at boot.

Real-world semantics encoded here (Salt's salt/modules/kmod.py, users' WSL2 and
Firecracker threads): Salt's kmod.present and
``lsmod | grep`` only read /proc/modules, so built-in modules (WSL2,
Firecracker, custom kernels) look missing; the reliable evidence is
modules.builtin, the kernel config, /sys/module without initstate, or the
capability itself. A module loaded by hand is lost at reboot unless a
modules-load.d file (or Debian's /etc/modules) lists it.
"""

import pytest

from tests.unit.faketree import GOOD_KERNEL_CONFIG


def checks(result):
    return result["checks"]


# ---------------------------------------------------------------- modular kernel


def test_modular_kernel_loaded_available_missing(k8snode, tree):
    tree.debian().modular(loaded=["overlay"], available=["br_netfilter"])

    overlay = k8snode.module_status("overlay", root=tree.path)
    assert overlay["state"] == "loaded"
    assert overlay["evidence"] == "listed in /proc/modules"
    assert overlay["module_support"] is True

    br = k8snode.module_status("br_netfilter", root=tree.path)
    assert br["state"] == "available"
    assert "modules.dep" in br["evidence"]

    ipvs = k8snode.module_status("ip_vs", root=tree.path)
    assert ipvs["state"] == "missing"
    assert "not loaded, not built in" in ipvs["evidence"]
    assert f"no ip_vs.ko under /lib/modules/{tree.release}" in ipvs["evidence"]


def test_kernel_facts_reads_the_usual_files(k8snode, tree):
    tree.modular(loaded=["overlay", "br_netfilter"], available=["ip_vs"], builtin=["bridge"])
    tree.kernel_config({"OVERLAY_FS": "m", "BRIDGE": "y"})
    facts = k8snode.kernel_facts(root=tree.path)
    assert facts["release"] == tree.release
    assert facts["module_support"] is True
    assert facts["loaded"] == ["br_netfilter", "overlay"]
    assert facts["available"] == ["br_netfilter", "ip_vs", "overlay"]
    assert facts["builtin"] == ["bridge"]
    assert facts["config"] == {"OVERLAY_FS": "m", "BRIDGE": "y"}
    assert facts["config_source"] == "/proc/config.gz"
    assert "overlay" in facts["filesystems"]


def test_kernel_config_falls_back_to_boot_config(k8snode, tree):
    tree.modular()
    tree.kernel_config({"OVERLAY_FS": "y"}, where=f"boot/config-{tree.release}")
    facts = k8snode.kernel_facts(root=tree.path)
    assert facts["config"] == {"OVERLAY_FS": "y"}
    assert facts["config_source"] == f"/boot/config-{tree.release}"


def test_compressed_module_names_and_dashes_are_normalised(k8snode, tree):
    tree.modular()
    tree.write(
        f"lib/modules/{tree.release}/modules.dep",
        "kernel/net/bridge/br_netfilter.ko.xz: kernel/net/bridge/bridge.ko.xz\n"
        "kernel/fs/overlayfs/overlay.ko.zst:\n"
        "kernel/net/netfilter/nf-conntrack.ko.gz:\n",
    )
    assert k8snode.module_status("br_netfilter", root=tree.path)["state"] == "available"
    assert k8snode.module_status("overlay", root=tree.path)["state"] == "available"
    assert k8snode.module_status("nf_conntrack", root=tree.path)["state"] == "available"


def test_audit_modular_kernel_reports_each_state(k8snode, tree):
    tree.debian().modular(loaded=["overlay"], available=[]).kernel_defaults()
    tree.modules_load("containerd.conf", ["overlay"])
    result = k8snode.audit(root=tree.path)
    overlay = checks(result)["module:overlay"]
    assert overlay["status"] == "ok"
    assert overlay["live"] == "loaded"
    assert overlay["boot"] == "/etc/modules-load.d/containerd.conf"

    br = checks(result)["module:br_netfilter"]
    assert br["status"] == "fail"
    assert br["live"] == "missing"
    assert "br_netfilter is not in this kernel" in br["detail"]
    assert "module:br_netfilter" in result["failing"]
    assert result["ready"] is False


def test_available_module_fails_and_says_how_to_fix(k8snode, tree):
    tree.redhat().modular(loaded=["overlay"], available=["br_netfilter"])
    tree.modules_load("k8s.conf", ["overlay", "br_netfilter"])
    check = checks(k8snode.audit(root=tree.path))["module:br_netfilter"]
    assert check["status"] == "fail"
    assert check["live"] == "available"
    assert "available but not loaded" in check["detail"]
    assert "listed in /etc/modules-load.d/k8s.conf for boot" in check["detail"]
    # It is not loaded now, so nothing is "lost" at reboot: it comes back then.
    assert check["lost_at_reboot"] is False


def test_missing_module_hint_for_split_kernel_packages(k8snode, tree):
    """RHEL 10 / Fedora ship br_netfilter in kernel-modules-extra; SUSE's kernel-default-base lacks it."""
    tree.redhat(os_id="rhel", version="10.0").modular(loaded=["overlay"])
    detail = checks(k8snode.audit(root=tree.path))["module:br_netfilter"]["detail"]
    assert "kernel-modules-extra" in detail

    suse = tree.__class__(tree.root.parent / "suse").suse().modular(loaded=["overlay"])
    detail = checks(k8snode.audit(root=suse.path))["module:br_netfilter"]["detail"]
    assert "kernel-default-base" in detail


# ------------------------------------------------------- built-in / monolithic


def test_monolithic_kernel_without_proc_modules_builtin_via_modules_builtin(k8snode, tree):
    tree.debian().monolithic(builtin=["overlay", "br_netfilter"])
    assert not tree.exists("proc/modules")
    for name in ("overlay", "br_netfilter"):
        status = k8snode.module_status(name, root=tree.path)
        assert status["state"] == "builtin", status
        assert "modules.builtin" in status["evidence"]
        assert status["module_support"] is False


def test_builtin_via_kernel_config_y(k8snode, tree):
    tree.monolithic(config={"OVERLAY_FS": "y", "BRIDGE_NETFILTER": "y"})
    overlay = k8snode.module_status("overlay", root=tree.path)
    assert overlay["state"] == "builtin"
    assert overlay["evidence"] == "CONFIG_OVERLAY_FS=y in /proc/config.gz"
    br = k8snode.module_status("br_netfilter", root=tree.path)
    assert br["state"] == "builtin"
    assert "CONFIG_BRIDGE_NETFILTER=y" in br["evidence"]


def test_config_m_is_not_builtin(k8snode, tree):
    """=m means a loadable module: not present until loaded."""
    tree.modular().kernel_config({"OVERLAY_FS": "m"})
    assert k8snode.module_status("overlay", root=tree.path)["state"] == "missing"


def test_builtin_via_sys_module_without_initstate(k8snode, tree):
    tree.monolithic()
    tree.sys_module("br_netfilter", initstate=False)
    status = k8snode.module_status("br_netfilter", root=tree.path)
    assert status["state"] == "builtin"
    assert status["evidence"] == "/sys/module/br_netfilter without initstate"


def test_sys_module_with_initstate_is_a_module_not_builtin(k8snode, tree):
    """A loadable module has /sys/module/<m>/initstate: that is not evidence of built-in."""
    tree.modular()
    tree.sys_module("ip_vs", initstate=True)
    assert k8snode.module_status("ip_vs", root=tree.path)["state"] == "missing"


def test_builtin_via_capability_overlay_in_proc_filesystems(k8snode, tree):
    tree.monolithic()
    tree.filesystems("overlay")
    status = k8snode.module_status("overlay", root=tree.path)
    assert status["state"] == "builtin"
    assert status["evidence"] == "overlay listed in /proc/filesystems"


def test_builtin_via_capability_bridge_sysctl(k8snode, tree):
    tree.monolithic()
    tree.sysctl("net.bridge.bridge-nf-call-iptables", 1)
    status = k8snode.module_status("br_netfilter", root=tree.path)
    assert status["state"] == "builtin"
    assert status["evidence"] == "/proc/sys/net/bridge/bridge-nf-call-iptables exists"


def test_builtin_kernel_audit_counts_overlay_and_br_netfilter_as_present(k8snode, tree):
    """WSL2/Firecracker-style kernel: everything built in, no /proc/modules, nothing persisted."""
    tree.debian().monolithic(config={**GOOD_KERNEL_CONFIG, "NF_CONNTRACK": "y"})
    tree.filesystems("overlay")
    tree.kernel_defaults({"net.ipv4.ip_forward": "1"})
    tree.sysctl("net.bridge.bridge-nf-call-iptables", 1)
    tree.sysctl("net.bridge.bridge-nf-call-ip6tables", 1)
    result = k8snode.audit(root=tree.path)
    for name in ("overlay", "br_netfilter"):
        check = checks(result)[f"module:{name}"]
        assert check["status"] == "ok", check
        assert check["live"] == "builtin"
        # Built in: no modules-load.d entry is needed for boot.
        assert check["boot"] == "built in"
        assert check["lost_at_reboot"] is False
    assert not [name for name in result["failing"] if name.startswith("module:")]


def test_missing_module_on_kernel_without_module_support_fails_clearly(k8snode, tree):
    tree.debian().monolithic(builtin=["overlay"])
    check = checks(k8snode.audit(root=tree.path))["module:br_netfilter"]
    assert check["status"] == "fail"
    assert check["live"] == "missing"
    assert "no module support in this kernel" in check["detail"]
    assert "br_netfilter" in check["detail"]


# ---------------------------------------------------------------- alternatives


def test_alternatives_prefer_nf_conntrack(k8snode, tree):
    tree.modular(loaded=["nf_conntrack"], available=["nf_conntrack_ipv4"])
    status = k8snode.module_status("nf_conntrack", root=tree.path, alternatives=["nf_conntrack", "nf_conntrack_ipv4"])
    assert status["name"] == "nf_conntrack"
    assert status["state"] == "loaded"


def test_alternatives_fall_back_to_nf_conntrack_ipv4(k8snode, tree):
    """Older kernels (< 4.19) have nf_conntrack_ipv4 only; RHEL 8.3 can't be told apart by version."""
    tree.modular(loaded=["nf_conntrack_ipv4"])
    status = k8snode.module_status("nf_conntrack", root=tree.path, alternatives=["nf_conntrack", "nf_conntrack_ipv4"])
    assert status["name"] == "nf_conntrack_ipv4"
    assert status["state"] == "loaded"


def test_alternatives_present_beats_available(k8snode, tree):
    tree.modular(loaded=["nf_conntrack_ipv4"], available=["nf_conntrack"])
    status = k8snode.module_status("nf_conntrack", root=tree.path, alternatives=["nf_conntrack", "nf_conntrack_ipv4"])
    assert (status["name"], status["state"]) == ("nf_conntrack_ipv4", "loaded")


def test_alternatives_first_available_then_missing_reports_first(k8snode, tree):
    tree.modular(available=["nf_conntrack_ipv4"])
    status = k8snode.module_status("nf_conntrack", root=tree.path, alternatives=["nf_conntrack", "nf_conntrack_ipv4"])
    assert (status["name"], status["state"]) == ("nf_conntrack_ipv4", "available")

    empty = tree.__class__(tree.root.parent / "empty").modular()
    status = k8snode.module_status("nf_conntrack", root=empty.path, alternatives=["nf_conntrack", "nf_conntrack_ipv4"])
    assert (status["name"], status["state"]) == ("nf_conntrack", "missing")


def test_k3s_audit_accepts_nf_conntrack_ipv4(k8snode, tree):
    tree.debian().modular(loaded=["overlay", "br_netfilter", "nf_conntrack_ipv4"])
    tree.modules_load("k8s.conf", ["overlay", "br_netfilter", "nf_conntrack_ipv4"])
    check = checks(k8snode.audit("k3s", root=tree.path))["module:nf_conntrack"]
    assert check["status"] == "ok"
    assert check["module"] == "nf_conntrack_ipv4"


# ----------------------------------------------------------------- persistence


def test_loaded_but_not_persisted_is_lost_at_reboot(k8snode, tree):
    tree.redhat().modular(loaded=["overlay", "br_netfilter"])
    tree.modules_load("k8s.conf", ["overlay"])
    result = k8snode.audit(root=tree.path)
    check = checks(result)["module:br_netfilter"]
    assert check["status"] == "fail"
    assert check["live"] == "loaded"
    assert check["boot"] == "not persisted"
    assert check["lost_at_reboot"] is True
    assert "lost at the next reboot" in check["detail"]
    assert "module:br_netfilter" in result["lost_at_reboot"]
    assert "module:overlay" not in result["lost_at_reboot"]


def test_persistence_in_any_modules_load_directory(k8snode, tree):
    tree.redhat().modular(loaded=["overlay", "br_netfilter"])
    tree.modules_load("overlay.conf", ["overlay"], directory="usr/lib/modules-load.d")
    tree.modules_load("br.conf", ["# comment", "; also a comment", "br-netfilter"], directory="run/modules-load.d")
    persisted = k8snode.boot_modules(root=tree.path)
    assert persisted["overlay"] == ["/usr/lib/modules-load.d/overlay.conf"]
    # modules-load.d accepts dashes; the kernel name uses underscores.
    assert persisted["br_netfilter"] == ["/run/modules-load.d/br.conf"]
    assert checks(k8snode.audit(root=tree.path))["module:br_netfilter"]["status"] == "ok"


def test_etc_modules_load_d_masks_same_name_in_usr_lib(k8snode, tree):
    tree.redhat().modular(loaded=["overlay", "br_netfilter"])
    tree.modules_load("k8s.conf", ["overlay", "br_netfilter"], directory="usr/lib/modules-load.d")
    tree.symlink("etc/modules-load.d/k8s.conf", "/dev/null")
    persisted = k8snode.boot_modules(root=tree.path)
    assert "br_netfilter" not in persisted
    result = k8snode.audit(root=tree.path)
    assert checks(result)["module:br_netfilter"]["lost_at_reboot"] is True

    # An ordinary file of the same name in /etc masks too: only its content counts.
    tree.modules_load("k8s.conf", ["overlay"])
    persisted = k8snode.boot_modules(root=tree.path)
    assert persisted == {"overlay": ["/etc/modules-load.d/k8s.conf"]}


def test_only_conf_files_are_read(k8snode, tree):
    tree.modular(loaded=["br_netfilter"])
    tree.modules_load("k8s.conf.disabled", ["br_netfilter"])
    tree.modules_load(".k8snode.conf.k8snode-tmp-abcd", ["br_netfilter"])
    assert k8snode.boot_modules(root=tree.path) == {}


def test_debian_etc_modules_counts_for_boot(k8snode, tree):
    tree.debian(etc_modules="br_netfilter\noverlay  # for containerd\n").modular(loaded=["overlay", "br_netfilter"])
    persisted = k8snode.boot_modules(root=tree.path)
    # Debian links /etc/modules-load.d/modules.conf to ../modules: read once, not twice.
    assert persisted["br_netfilter"] == ["/etc/modules-load.d/modules.conf"]
    result = k8snode.audit(root=tree.path)
    assert checks(result)["module:br_netfilter"]["status"] == "ok"
    assert checks(result)["module:overlay"]["status"] == "ok"


def test_debian_etc_modules_without_the_link(k8snode, tree):
    tree.debian(etc_modules="br_netfilter\n").modular(loaded=["br_netfilter"])
    tree.remove("etc/modules-load.d/modules.conf")
    assert k8snode.boot_modules(root=tree.path)["br_netfilter"] == ["/etc/modules"]


def test_etc_modules_is_not_read_on_redhat(k8snode, tree):
    tree.redhat().modular(loaded=["br_netfilter"])
    tree.write("etc/modules", "br_netfilter\n")
    assert "br_netfilter" not in k8snode.boot_modules(root=tree.path)
    check = checks(k8snode.audit(root=tree.path))["module:br_netfilter"]
    assert check["lost_at_reboot"] is True


@pytest.mark.parametrize("name", ["overlay", "br_netfilter"])
def test_module_status_reports_persisting_files(k8snode, tree, name):
    tree.redhat().modular(loaded=[name])
    tree.modules_load("a.conf", [name])
    tree.modules_load("b.conf", [name], directory="usr/lib/modules-load.d")
    status = k8snode.module_status(name, root=tree.path)
    assert status["persisted"] == ["/etc/modules-load.d/a.conf", "/usr/lib/modules-load.d/b.conf"]


def test_dashed_module_names_are_the_same_module(k8snode, tree):
    """modprobe and modules-load.d accept nf-conntrack for nf_conntrack; the kernel lists nf_conntrack."""
    tree.redhat().fresh_node(modules=("overlay", "br_netfilter", "nf_conntrack"))
    settings = {"modules": {"nf-conntrack": {}, "br-netfilter": {"alternatives": ["br-netfilter"]}}}
    resolved = k8snode.requirements(root=tree.path, pillar=settings)
    assert set(resolved["modules"]) == {"overlay", "br_netfilter", "nf_conntrack"}
    assert resolved["modules"]["br_netfilter"]["alternatives"] == ["br_netfilter"]

    before = checks(k8snode.audit(root=tree.path, pillar=settings))["module:nf_conntrack"]
    assert before["live"] == "available"

    ret = k8snode._prepare(root=tree.path, pillar=settings)
    assert ret["result"] is True, ret["comment"]
    result = k8snode.audit(root=tree.path, pillar=settings)
    assert checks(result)["module:nf_conntrack"]["status"] == "ok"
    assert result["ready"] is True, result["failing"]
    # Dropping by either spelling works.
    dropped = k8snode.requirements(root=tree.path, pillar={"modules": {"br-netfilter": False}})
    assert "br_netfilter" not in dropped["modules"]
    assert k8snode.module_status("nf-conntrack", root=tree.path)["state"] == "loaded"
