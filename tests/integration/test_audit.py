"""`salt '*' k8snode.audit` through the master, on the three Debian minion containers."""

import pytest

from tests.support import nodes
from tests.support.harness import RELEASES, salt_run

CHECK_KEYS = {"status", "required", "expected", "live", "boot", "detail"}


@pytest.mark.parametrize("release", RELEASES)
def test_a_fresh_container_is_not_ready_and_the_audit_says_why(salt_master, fresh_nodes, release):
    minion = fresh_nodes[release]
    before = nodes.snapshot(minion)
    report = nodes.audit(salt_master, minion)

    assert set(report) >= {"ready", "distribution", "os_family", "summary", "checks", "failing", "lost_at_reboot"}
    assert report["ready"] is False
    assert report["distribution"] == "kubeadm"
    assert report["os_family"] == "Debian"
    for name, check in report["checks"].items():
        assert set(check) >= CHECK_KEYS, name
        assert check["status"] in ("ok", "fail", "warn"), name
    assert sum(report["summary"].values()) == len(report["checks"])

    # A docker container: its net.* values are its own namespace's, and the audit says so (issue 22).
    where = report["checks"]["network_namespace"]
    assert (where["status"], where["required"], where["container"]) == ("warn", False, "docker"), where
    assert "runs in a container (docker: /.dockerenv)" in where["detail"], where

    # The CI kernel has no module support: overlay and br_netfilter are built in.
    for module in ("overlay", "br_netfilter"):
        check = report["checks"][f"module:{module}"]
        assert check["status"] == "ok", check
        assert check["live"] in ("builtin", "loaded"), check

    # Docker leaves forwarding on in the container, but nothing persists it.
    forward = report["checks"]["sysctl:net.ipv4.ip_forward"]
    assert forward["status"] == "fail"
    assert forward["live"] == "1"
    assert forward["boot"] is None
    assert "lost at the next reboot" in forward["detail"]
    assert "sysctl:net.ipv4.ip_forward" in report["lost_at_reboot"]
    assert "sysctl:net.ipv4.ip_forward" in report["failing"]

    # Read-only: nothing in /etc or /proc/sys changed.
    assert nodes.snapshot(minion) == before


def test_one_call_audits_the_whole_fleet(salt_master, fresh_nodes):
    ids = [minion.id for minion in fresh_nodes.values()]
    reports = salt_run(salt_master, "k8snode.audit", tgt=ids, tgt_type="list")
    assert set(reports) == set(ids)
    assert {report["os"].split("-")[1] for report in reports.values()} == {"11", "12", "13"}
    assert all(report["ready"] is False for report in reports.values())


def test_a_later_sysctl_file_that_overrides_the_value_is_named(salt_master, fresh_nodes):
    minion = fresh_nodes["bookworm"]
    nodes.sh(
        minion,
        "printf 'net.ipv4.ip_forward = 1\\n' > /etc/sysctl.d/99-k8snode.conf; "
        "printf 'net.ipv4.ip_forward = 0\\n' > /etc/sysctl.conf; "
        "ln -sf ../sysctl.conf /etc/sysctl.d/99-sysctl.conf",
    )
    try:
        check = nodes.audit(salt_master, minion)["checks"]["sysctl:net.ipv4.ip_forward"]
    finally:
        nodes.sh(minion, "rm -f /etc/sysctl.d/99-sysctl.conf /etc/sysctl.conf")
    assert check["status"] == "fail"
    assert check["boot"] == "0"
    # A container runs no systemd: the detail may end by naming the boot model it assumed.
    detail = check["detail"].split(" (boot model: ")[0]
    # It may go on to count the other lines that write the key at boot (ours among them).
    # No systemd here: procps' `sysctl --system` reads /etc/sysctl.conf through the link and
    # then once more, last (test_sysctl_procps_oracle.py::test_rules, etc_sysctl_conf_read_again_after_its_link).
    assert detail.startswith("net.ipv4.ip_forward is 1 now but /etc/sysctl.conf:1 sets 0 at boot"), detail


def test_a_module_that_does_not_exist_fails_clearly(salt_master, fresh_nodes):
    report = nodes.audit(salt_master, fresh_nodes["trixie"], extras=["ipvs"])
    check = report["checks"]["module:ip_vs"]
    assert check["status"] == "fail"
    assert check["live"] == "missing"
    assert "ip_vs is not in this kernel" in check["detail"]
    assert report["ready"] is False


def test_requirements_say_where_each_value_came_from(salt_master, fresh_nodes):
    resolved = salt_run(salt_master, "k8snode.requirements", tgt=fresh_nodes["bullseye"].id)
    assert resolved["distribution"] == "kubeadm"
    assert resolved["sysctls"]["net.ipv4.ip_forward"]["source"] == "distribution:kubeadm"
    # Decided by the host's sysctl applier (systemd-sysctl or `sysctl --system`), not the OS release.
    assert resolved["boot"]["reads_etc_sysctl_conf"] is None
    trixie = salt_run(salt_master, "k8snode.requirements", tgt=fresh_nodes["trixie"].id)
    assert trixie["boot"]["reads_etc_sysctl_conf"] is None
    assert not any(source.startswith("os_release:") for source in trixie["order"])
