"""Real reboots of real nodes: what systemd does at boot is what the audit predicted.

Evidence the kernel would not produce by itself: ``net.ipv4.ip_forward`` (0 at boot
unless a file sets it), ``vm.max_map_count`` raised to a floor (65530 by default), and
modules nothing else loads at boot (overlay, br_netfilter, ip_vs_rr/wrr/sh).  The
bridge sysctls are no evidence alone: they read 1 as soon as br_netfilter loads.
"""

import pytest

from tests.support.vm_checks import (
    MODULES_FILE,
    SYSCTL_FILE,
    apply,
    audit,
    live_sysctls,
    modules_load_journal,
    pillar,
    proc_modules,
    read_files,
    sysctl_checks,
)

pytestmark = pytest.mark.real_node

SETTINGS = {"extras": ["ipvs", "max_map_count"]}
# Modules that nothing but systemd-modules-load loads at boot on these nodes.
ONLY_SYSTEMD_LOADS = ("overlay", "br_netfilter", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh")


@pytest.mark.parametrize("release", ["bookworm", "trixie"])
def test_after_a_real_reboot_systemd_loads_and_sets_what_the_audit_predicted(salt_master, fresh_vm, release):
    node = fresh_vm(release)
    defaults = live_sysctls(node, ["net.ipv4.ip_forward", "vm.max_map_count"])
    assert defaults == {"net.ipv4.ip_forward": "0", "vm.max_map_count": "65530"}, defaults

    code, state = apply(salt_master, node, pillar=pillar(SETTINGS))
    assert code == 0 and state["result"] is True, state
    predicted = audit(salt_master, node, **SETTINGS)
    assert predicted["ready"] is True, predicted["failing"]
    assert predicted["lost_at_reboot"] == []
    listed = read_files(node, MODULES_FILE)[MODULES_FILE].splitlines()[1:]
    assert set(ONLY_SYSTEMD_LOADS) <= set(listed)

    node.reboot()  # and no state run after it

    assert set(listed) <= proc_modules(node)
    journal = modules_load_journal(node)
    for module in ONLY_SYSTEMD_LOADS:
        assert f"Inserted module '{module}'" in journal, journal
    assert node.sh("systemctl show -p Result --value systemd-sysctl.service").strip() == "success"
    boot_values = {key: check["boot"] for key, check in sysctl_checks(predicted).items()}
    assert None not in boot_values.values(), boot_values
    assert live_sysctls(node, boot_values) == boot_values
    assert boot_values["net.ipv4.ip_forward"] == "1"
    assert boot_values["vm.max_map_count"] == "262144"

    after = audit(salt_master, node, **SETTINGS)
    assert after["ready"] is True, after["failing"]
    assert after["lost_at_reboot"] == []


def test_a_later_file_wins_at_boot_as_the_audit_says_and_a_name_that_sorts_last_fixes_it(salt_master, fresh_vm):
    node = fresh_vm("bookworm")
    # Debian 12: procps links 99-sysctl.conf to /etc/sysctl.conf, read after 99-k8snode.conf.
    assert node.sh("readlink /etc/sysctl.d/99-sysctl.conf").strip() == "../sysctl.conf"
    node.sh("echo 'net.ipv4.ip_forward = 0' >> /etc/sysctl.conf; sync")

    report = audit(salt_master, node)
    check = report["checks"]["sysctl:net.ipv4.ip_forward"]
    assert (check["boot"], check["boot_file"]) == ("0", "/etc/sysctl.d/99-sysctl.conf"), check

    code, state = apply(salt_master, node)
    assert code != 0 and state["result"] is False, state
    assert "sysctl:net.ipv4.ip_forward: /etc/sysctl.d/99-sysctl.conf sets 0 at boot" in state["comment"], state
    predicted = audit(salt_master, node)
    check = predicted["checks"]["sysctl:net.ipv4.ip_forward"]
    assert (check["status"], check["live"], check["boot"]) == ("fail", "1", "0"), check
    assert "sysctl:net.ipv4.ip_forward" in predicted["lost_at_reboot"]
    assert "net.ipv4.ip_forward = 1" in read_files(node, SYSCTL_FILE)[SYSCTL_FILE]

    node.reboot()
    boot_values = {key: check["boot"] for key, check in sysctl_checks(predicted).items()}
    assert live_sysctls(node, boot_values) == boot_values  # ip_forward: 0, as predicted

    later = {"files": {"sysctl": "/etc/sysctl.d/zz-k8snode.conf"}}
    code, state = apply(salt_master, node, pillar=pillar(later))
    assert code == 0 and state["result"] is True, state
    predicted = audit(salt_master, node)
    check = predicted["checks"]["sysctl:net.ipv4.ip_forward"]
    assert (check["status"], check["boot"], check["boot_file"]) == ("ok", "1", "/etc/sysctl.d/zz-k8snode.conf")
    assert predicted["ready"] is True, predicted["failing"]

    node.reboot()
    assert live_sysctls(node, ["net.ipv4.ip_forward"]) == {"net.ipv4.ip_forward": "1"}
    assert audit(salt_master, node)["ready"] is True


def test_absent_then_a_reboot_leaves_nothing_of_ours_loaded_or_set(salt_master, fresh_vm):
    node = fresh_vm("bookworm")
    settings = {"extras": ["max_map_count"]}
    code, state = apply(salt_master, node, pillar=pillar(settings))
    assert code == 0 and state["result"] is True, state
    code, state = apply(salt_master, node, "k8snode.absent")
    assert code == 0 and state["result"] is True, state
    assert {f"file:{SYSCTL_FILE}", f"file:{MODULES_FILE}"} <= set(state["changes"])

    # Still loaded and set now, but nothing persists them: the audit says so.
    predicted = audit(salt_master, node, **settings)
    lost = {
        "module:overlay",
        "module:br_netfilter",
        "sysctl:net.ipv4.ip_forward",
        "sysctl:vm.max_map_count",
        "sysctl:net.bridge.bridge-nf-call-iptables",
    }
    assert lost <= set(predicted["lost_at_reboot"]), predicted["lost_at_reboot"]
    assert {check["boot"] for check in sysctl_checks(predicted).values()} == {None}

    node.reboot()
    assert not {"overlay", "br_netfilter"} & proc_modules(node)
    journal = modules_load_journal(node)
    assert "overlay" not in journal and "br_netfilter" not in journal, journal
    assert node.sh("grep -rl k8snode /etc/sysctl.d /etc/modules-load.d || true").strip() == ""
    assert live_sysctls(node, ["net.ipv4.ip_forward", "vm.max_map_count", "net.bridge.bridge-nf-call-iptables"]) == {
        "net.ipv4.ip_forward": "0",
        "vm.max_map_count": "65530",
        "net.bridge.bridge-nf-call-iptables": None,
    }
    after = audit(salt_master, node, **settings)
    assert after["ready"] is False
    assert after["lost_at_reboot"] == []
    for module in ("overlay", "br_netfilter"):
        check = after["checks"][f"module:{module}"]
        assert (check["live"], check["boot"]) == ("available", "not persisted"), check
