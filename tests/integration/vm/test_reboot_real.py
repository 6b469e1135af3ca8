"""Precedence for real (issue 11, test 4): which file wins at boot is what the audit says.

The other reboots: test_lifecycle_real.py (Debian 12: prepare, reboot, absent, reboot)
and test_power_cut.py (Debian 13: the boot after a hard reset).
"""

import pytest

from tests.support.vm_checks import (
    SYSCTL_FILE,
    apply,
    audit,
    live_sysctls,
    pillar,
    read_files,
    sysctl_checks,
)

pytestmark = pytest.mark.real_node


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
