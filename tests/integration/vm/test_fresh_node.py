"""A fresh real node (Debian 12 VM, modular kernel, systemd): what the audit sees before anything is done."""

import pytest

pytestmark = pytest.mark.real_node


def test_a_fresh_node_is_a_vm_and_not_ready_modules_exist_but_are_not_loaded(salt_master, fresh_vm):
    node = fresh_vm("bookworm")
    facts = node.sh(
        "systemd-detect-virt || true; uname -r; "
        "test -e /.dockerenv && echo dockerenv || echo no-dockerenv; "
        "cat /proc/modules | cut -d' ' -f1 | sort | tr '\\n' ' '; echo; "
        "ls /proc/sys/net/bridge 2>/dev/null | wc -l"
    ).splitlines()
    virt, kernel, dockerenv, loaded, bridge_keys = facts
    # systemd treats a container differently (no fstab swap, ...): this must be a VM.
    assert virt in ("qemu", "kvm", "none"), virt
    assert dockerenv == "no-dockerenv"
    assert "overlay" not in loaded.split() and "br_netfilter" not in loaded.split(), loaded
    assert bridge_keys == "0"

    report = salt_master.salt_cli(timeout=120).run("k8snode.audit", minion_tgt=node.minion_id).data
    assert report["ready"] is False
    assert report["kernel"] == kernel
    for module in ("overlay", "br_netfilter"):
        check = report["checks"][f"module:{module}"]
        # A real modular kernel: the module is there (modules.dep), not built in, not loaded.
        assert check["live"] == "available", check
        assert check["status"] == "fail", check
        assert check["boot"] == "not persisted", check
        assert "available but not loaded" in check["detail"], check
    for key in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"):
        check = report["checks"][f"sysctl:{key}"]
        assert check["live"] is None, check
        assert "does not exist" in check["detail"] and "br_netfilter is available" in check["detail"], check
    assert report["checks"]["sysctl:net.ipv4.ip_forward"]["live"] == "0"
    assert "module:overlay" in report["failing"] and "module:br_netfilter" in report["failing"]
