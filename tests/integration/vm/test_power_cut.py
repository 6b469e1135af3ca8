"""A power cut (QEMU killed and started again, no shutdown) right after `state.apply k8snode` returns, on
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

Issue 21 last, on the guest's own kernel and systemd-sysctl: the boot model against them
for the ``vm.*``, ``fs.*`` and ``kernel.*`` keys no container may write (200 generated
trees and 8 named ones, tests/support/vm_sysctl_oracle.py).
"""

import time

import pytest

from tests.support import vm_sysctl_oracle
from tests.support.sysctl_oracle import drawn
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


def test_a_power_cut_right_after_apply_keeps_the_managed_files_whole(salt_master, fresh_vm, start_next_vm, api):
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
    _non_net_keys_agree_with_the_guests_kernel(node, api)


def _two_iptables_backends(salt_master, node):
    assert "iptables_backends" not in audit(salt_master, node, **SETTINGS)["checks"]  # neither in use yet
    node.sh(TWO_BACKENDS_SCRIPT)
    check = audit(salt_master, node, **SETTINGS)["checks"]["iptables_backends"]
    assert (check["status"], check["legacy_tables"], check["nf_tables"]) == ("warn", ["filter"], ["ip filter"]), check
    node.sh("nft delete table ip filter")
    check = audit(salt_master, node, **SETTINGS)["checks"]["iptables_backends"]
    assert (check["status"], check["nf_tables"]) == ("ok", []), check


# Issue 21 on the guest's own kernel (6.12) and systemd-sysctl (257): the vm.*, fs.* and
# kernel.* keys no container may write. Each named tree's value is worked out from the
# kernel source (the handler in sysctl_kernel.KERNEL_HANDLERS' row), not from the model.
NAMED_TREES = {
    # proc_dointvec_minmax: "0x" and a hex digit is base 16.
    "hex": ("vm.max_map_count = 0x40000", "vm/max_map_count", "262144"),
    # a leading 0 is base 8: 0400000 is 131072.
    "octal": ("vm.max_map_count = 0400000", "vm/max_map_count", "131072"),
    # overcommit_policy_handler: SYSCTL_ZERO .. SYSCTL_TWO; 3 refused, the sentinel stays.
    "above_max": ("vm.overcommit_memory = 3", "vm/overcommit_memory", "0"),
    # proc_doulongvec_minmax: "if (neg) continue" skips the element: nothing stored.
    "sign_for_unsigned_long": ("fs.inotify.max_user_watches = -1", "fs/inotify/max_user_watches", "8193"),
    # proc_dointvec: one element; the space ends the number, "# why" is never read.
    "inline_comment": ("kernel.panic = 10 # why", "kernel/panic", "10"),
    # key_sysctls: SYSCTL_ONE .. SYSCTL_INT_MAX; 0 refused.
    "below_min": ("kernel.keys.root_maxkeys = 0", "kernel/keys/root_maxkeys", "1000001"),
    # proc_wspace_sep: only space, tab and newline may follow; U+00A0 (c2 a0) refused.
    "nbsp_after": ("kernel.panic_on_oops = 1\xa0", "kernel/panic_on_oops", "0"),
    # vm.swappiness: SYSCTL_ZERO .. SYSCTL_TWO_HUNDRED.
    "above_two_hundred": ("vm.swappiness = 201", "vm/swappiness", "59"),
}
GENERATED_TREES = 200


def _non_net_keys_agree_with_the_guests_kernel(node, api):
    # Every non-net key a profile or extra requires is among those compared.
    assert set(vm_sysctl_oracle.REQUIRED) <= set(vm_sysctl_oracle.KEYS)
    version = int(node.sh("systemctl --version").split()[1])
    named = [{"files": {"/etc/sysctl.d/50-named.conf": {"text": line + "\n"}}} for line, _, _ in NAMED_TREES.values()]
    generated = drawn(vm_sysctl_oracle.trees(), GENERATED_TREES)
    trees = named + generated
    started = time.monotonic()
    observed = vm_sysctl_oracle.run_in_guest(node, trees)
    node.record_time(f"systemd-sysctl on {len(trees)} trees (issue 21's oracle)", time.monotonic() - started)
    for (name, (line, key, expected)), seen in zip(NAMED_TREES.items(), observed):
        assert seen["after"][key] == expected, f"{name}: {line!r} left {key} = {seen['after'][key]!r} in the guest"
    mismatches = []
    for tree, seen in zip(trees, observed):
        found = vm_sysctl_oracle.disagreements(api, tree, seen, version)
        if found:
            mismatches.append((tree["files"], found, seen["log"]))
    assert not mismatches, f"{len(mismatches)} of {len(trees)} trees disagree; the first: {mismatches[0]}"
