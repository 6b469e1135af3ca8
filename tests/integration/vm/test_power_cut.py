"""A power cut (hard reset, no shutdown) right after `state.apply k8snode` returns, on
Debian 13, with kube-proxy's nftables mode.

The boot after the cut is a real boot of Debian 13 (systemd 257, kernel 6.12): besides
issue 11's test 6 (the files are whole, the node is ready) it shows on this release what
test_lifecycle_real.py shows after a clean reboot on Debian 12: every sysctl's ``boot``
value the audit reported before is its live value after, and systemd-modules-load
inserted the modules only it loads (nf_tables among them: issue 14's nftables mode on a
real kernel, loaded by ``modprobe`` first and by systemd at boot).

Issue 22 on the same node: systemd-networkd (257) removes a route written as a network
plugin writes it when it restarts, and the audit says it will (``networkd``: its
ManageForeignRoutes default); ``unmanage_plugin_interfaces: true`` makes the apply write
networkd's drop-in, which the audit calls pending until networkd starts again; after the
boot the route stays. Then a rule in each iptables backend: the audit reads both (the
legacy tables' file and nf_tables' netlink dump) and says so, and one backend once the
other's table is gone.
"""

import pytest

from tests.support.vm_checks import (
    MODULES_FILE,
    PLUGIN_ROUTE_SCRIPT,
    SYSCTL_FILE,
    TWO_BACKENDS_SCRIPT,
    apply,
    audit,
    live_sysctls,
    modules_load_journal,
    pillar,
    proc_modules,
    read_files,
    sysctl_checks,
)

# The next test's node starts at the cut, not beside this test's first steps (start_next_vm).
pytestmark = pytest.mark.real_node(release="trixie", start_next="by_test")

NAIVE_FILE = "/etc/sysctl.d/50-naive-writer.conf"
NAIVE_TEXT = "net.ipv4.conf.all.log_martians = 1\n"
SETTINGS = {"kube_proxy_mode": "nftables", "extras": ["max_map_count"], "unmanage_plugin_interfaces": True}
NETWORKD_DROP_IN = "/etc/systemd/networkd.conf.d/90-k8snode-foreign.conf"
# Modules that nothing but systemd-modules-load loads at boot on these nodes.
ONLY_SYSTEMD_LOADS = ("overlay", "br_netfilter", "nf_tables")


def test_a_power_cut_right_after_apply_keeps_the_managed_files_whole(salt_master, fresh_vm, start_next_vm):
    """The cut is real enough to lose data, so this test can fail.

    Right after the apply returns, in the very call that precedes the cut, a file of the
    same kind is written the naive way: a shell redirect, no fsync (what a writer without
    ``atomic_write``'s fsync and rename does).  After the boot it is empty or missing:
    the cut that k8snode's files survive loses the data of a write without fsync.  Had
    k8snode written its files that way, systemd would find them empty or absent at boot
    and load and set nothing.
    """
    node = fresh_vm()
    kernel = node.sh("uname -r").strip()
    assert not set(ONLY_SYSTEMD_LOADS) & proc_modules(node)
    fresh = audit(salt_master, node, **SETTINGS)
    check = fresh["checks"]["module:nf_tables"]
    # nft's first netlink call would load it (test_lifecycle_real shows it): a warning.
    assert (check["status"], check["live"]) == ("warn", "available"), check
    assert "nf_tables is not loaded; the kernel loads it on the first nftables netlink call" in check["detail"], check
    floor = fresh["checks"]["kernel_version"]
    assert (floor["status"], floor["expected"], floor["live"]) == ("ok", ">= 5.13", kernel), floor
    # systemd-networkd's defaults remove a plugin's route when it restarts; the audit said so.
    check = fresh["checks"]["networkd"]
    assert check["status"] == "warn" and "ManageForeignRoutes=yes (systemd-networkd's default)" in check["detail"]
    assert node.sh(PLUGIN_ROUTE_SCRIPT).strip() == "route removed"

    code, state = apply(salt_master, node, pillar=pillar(SETTINGS))
    assert code == 0 and state["result"] is True, state
    assert state["changes"]["module:nf_tables"] == {"old": "not loaded", "new": "nf_tables loaded"}, state
    assert "nf_tables" in proc_modules(node)  # modprobe, as the kernel's own list shows
    written = {path: state["changes"][f"file:{path}"]["new"] for path in (SYSCTL_FILE, MODULES_FILE, NETWORKD_DROP_IN)}
    predicted = audit(salt_master, node, **SETTINGS)
    assert predicted["ready"] is True, predicted["failing"]
    # The drop-in is written; the running networkd has not read it yet, and the audit says so.
    assert predicted["checks"]["networkd"]["pending"] == [NETWORKD_DROP_IN], predicted["checks"]["networkd"]
    assert predicted["checks"]["module:nf_tables"]["status"] == "ok"
    assert predicted["checks"]["kernel_version"]["status"] == "ok"

    # At once: no shutdown, no sync.
    start_next_vm()
    node.power_cut(last_script=f"printf '{NAIVE_TEXT}' > {NAIVE_FILE}")

    after = read_files(node, SYSCTL_FILE, MODULES_FILE, NETWORKD_DROP_IN, NAIVE_FILE)
    assert after[NAIVE_FILE] != NAIVE_TEXT, "the write without fsync survived: the cut proves nothing"
    for path, text in written.items():
        assert after[path] == text, f"{path} after the cut: {after[path]!r}"
    strays = node.sh("ls -a /etc/sysctl.d /etc/modules-load.d | grep k8snode-tmp || true").strip()
    assert strays == ""

    # What systemd did at this boot is what the audit predicted before the cut.
    assert set(ONLY_SYSTEMD_LOADS) <= proc_modules(node)
    journal = modules_load_journal(node)
    for module in ONLY_SYSTEMD_LOADS:
        assert f"Inserted module '{module}'" in journal, journal
    boot_values = {key: check["boot"] for key, check in sysctl_checks(predicted).items()}
    assert None not in boot_values.values(), boot_values
    assert live_sysctls(node, boot_values) == boot_values
    assert (boot_values["net.ipv4.ip_forward"], boot_values["vm.max_map_count"]) == ("1", "262144")
    report = audit(salt_master, node, **SETTINGS)
    assert report["ready"] is True, report["failing"]
    assert report["checks"]["module:nf_tables"]["live"] == "loaded"
    assert report["checks"]["networkd"]["status"] == "ok", report["checks"]["networkd"]
    # Debian's kernel boots with AppArmor on; the image has no apparmor package. Debian 13's
    # containerd (2.x) is past 1.6.17: a warning, not the failure of every container create.
    check = report["checks"]["apparmor"]
    assert (check["status"], check["required"]) == ("warn", False), check
    assert check["containerd"] and not check["containerd"].startswith("1.6."), check
    assert node.sh(PLUGIN_ROUTE_SCRIPT).strip() == "route kept"
    _two_iptables_backends(salt_master, node)


def _two_iptables_backends(salt_master, node):
    assert "iptables_backends" not in audit(salt_master, node, **SETTINGS)["checks"]  # neither in use yet
    node.sh(TWO_BACKENDS_SCRIPT)
    check = audit(salt_master, node, **SETTINGS)["checks"]["iptables_backends"]
    assert (check["status"], check["legacy_tables"], check["nf_tables"]) == ("warn", ["filter"], ["ip filter"]), check
    node.sh("nft delete table ip filter")
    check = audit(salt_master, node, **SETTINGS)["checks"]["iptables_backends"]
    assert (check["status"], check["nf_tables"]) == ("ok", []), check
