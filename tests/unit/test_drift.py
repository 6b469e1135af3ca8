"""Drift between polls: the watch's fingerprints, status changes as events, the beacon's memory."""

import os

import pytest

from _modules.k8snode import checks, drift

MANAGED = "/etc/sysctl.d/99-k8snode.conf"
RESOLVED = {"files": {"sysctl": {"path": MANAGED}}, "sysctls": {"a": {"value": "1", "compare": "exact"}}}


def _prepared(k8snode, tree):
    tree.debian().prepared_kubeadm()
    tree.sysctl_d("99-k8snode.conf", "net.ipv4.ip_forward = 1\n")
    resolved = k8snode.requirements(root=tree.path)
    return resolved


def _watch(resolved, tree):
    return drift.Watch(tree.path, sorted(resolved["sysctls"]))


def test_nothing_changed_gives_the_same_fingerprints(k8snode, tree):
    resolved = _prepared(k8snode, tree)
    watch = _watch(resolved, tree)
    assert (watch.live(), watch.boot()) == (watch.live(), watch.boot())


def test_a_live_value_change_changes_the_live_fingerprint_only(k8snode, tree):
    resolved = _prepared(k8snode, tree)
    watch = _watch(resolved, tree)
    live, boot = watch.live(), watch.boot()
    tree.sysctl("net.ipv4.ip_forward", 0)
    assert watch.live() != live
    assert watch.boot() == boot


@pytest.mark.parametrize(
    "change",
    [
        lambda tree: tree.sysctl_d("zz-local.conf", "net.ipv4.ip_forward = 0\n"),  # a new file
        lambda tree: tree.sysctl_d("k8s.conf", "net.ipv4.ip_forward = 0\n"),  # an edit in place
        lambda tree: tree.remove("etc/sysctl.d/k8s.conf"),
        lambda tree: tree.sysctl_d("50-x.conf", "a = 1\n", directory="usr/lib/sysctl.d"),
        lambda tree: tree.modules_load("extra.conf", ["ip_vs"]),
        lambda tree: tree.fstab("/swapfile none swap sw 0 0\n"),
        lambda tree: tree.write("etc/sysctl.conf", "net.ipv4.ip_forward = 0\n"),
    ],
    ids=["new-file", "edit-in-place", "removed", "usr-lib", "modules-load", "fstab", "sysctl-conf"],
)
def test_a_boot_configuration_change_changes_the_boot_fingerprint(k8snode, tree, change):
    resolved = _prepared(k8snode, tree)
    watch = _watch(resolved, tree)
    before = watch.boot()
    # A different size or inode is seen whatever the clock's granularity.
    change(tree)
    assert watch.boot() != before


def test_an_edit_with_the_same_size_is_seen_by_its_mtime(k8snode, tree):
    resolved = _prepared(k8snode, tree)
    watch = _watch(resolved, tree)
    before = watch.boot()
    path = tree.p("etc/sysctl.d/99-k8snode.conf")
    stat = os.stat(path)
    with open(path, "r+") as handle:
        handle.write("net.ipv4.ip_forward = 0\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert watch.boot() != before


def test_status_changes_become_one_event_each(k8snode, tree):
    resolved = _prepared(k8snode, tree)
    before = checks.audit(resolved, tree.path)
    assert before["ready"] is True, before["failing"]
    tree.sysctl("net.ipv4.ip_forward", 0)
    after = checks.audit(resolved, tree.path)
    events = drift.changed_checks(drift.statuses(before), after, resolved)
    assert [event["check"] for event in events] == ["sysctl:net.ipv4.ip_forward"]
    (event,) = events
    assert event["tag"] == "sysctl:net.ipv4.ip_forward"
    assert (event["old_status"], event["new_status"]) == ("ok", "fail")
    # kubeadm's own k8s.conf sorts after 99-k8snode.conf but sets the same value: systemd-sysctl
    # keeps the first write of a value in its place, so ours is the one that sets it at boot.
    assert (event["live"], event["boot"], event["boot_file"]) == ("0", "1", "/etc/sysctl.d/99-k8snode.conf")
    assert event["managed_file"] == MANAGED
    assert event["fixable"] is True and event["ready"] is False
    assert "is 0 now, needs 1" in event["detail"]
    # The same statuses again: no event.
    assert drift.changed_checks(drift.statuses(after), after, resolved) == []


def test_a_user_file_that_wins_at_boot_is_not_fixable(k8snode, tree):
    resolved = _prepared(k8snode, tree)
    before = checks.audit(resolved, tree.path)
    tree.sysctl_d("zz-local.conf", "net.ipv4.ip_forward = 0\n")
    (event,) = drift.changed_checks(drift.statuses(before), checks.audit(resolved, tree.path), resolved)
    assert event["boot_file"] == "/etc/sysctl.d/zz-local.conf"
    assert (event["live"], event["boot"]) == ("1", "0")
    assert event["fixable"] is False


def test_first_poll_and_new_checks_are_no_events(k8snode, tree):
    resolved = _prepared(k8snode, tree)
    audit = checks.audit(resolved, tree.path)
    assert drift.changed_checks({}, audit, resolved) == []


@pytest.mark.parametrize(
    ("name", "check", "expected"),
    [
        ("sysctl:a", {"status": "fail", "live": "0", "boot": None, "boot_file": None}, True),
        ("sysctl:a", {"status": "fail", "live": "0", "boot": "0", "boot_file": MANAGED}, True),
        ("sysctl:a", {"status": "fail", "live": "0", "boot": "1", "boot_file": "/etc/sysctl.d/k8s.conf"}, True),
        ("sysctl:a", {"status": "fail", "live": "0", "boot": "0", "boot_file": "/etc/sysctl.d/zz-local.conf"}, False),
        (
            "sysctl:a",
            {
                "status": "fail",
                "live": "1",
                "boot": "0",
                "boot_file": "/etc/sysctl.d/zz-local.conf",
                "lost_at_reboot": True,
            },
            False,
        ),
        ("sysctl:a", {"status": "fail", "live": None, "boot": None, "boot_file": None}, False),
        ("sysctl:a", {"status": "ok", "live": "1", "boot": "1", "boot_file": MANAGED}, False),
        ("module:br_netfilter", {"status": "fail", "live": "available", "boot": "not persisted"}, True),
        ("module:br_netfilter", {"status": "fail", "live": "loaded", "boot": "not persisted"}, True),
        ("module:ip_vs", {"status": "fail", "live": "missing", "boot": "not persisted"}, False),
        ("swap", {"status": "fail", "live": ["/swapfile"], "boot": []}, False),
        ("cgroup", {"status": "warn", "live": "v1", "boot": None}, False),
    ],
)
def test_only_what_a_state_run_can_repair_is_fixable(name, check, expected):
    assert drift.fixable(name, check, RESOLVED) is expected


def test_memory_survives_on_disk_and_a_damaged_file_is_forgotten(tmp_path):
    assert drift.load_memory(str(tmp_path)) == {}
    drift.save_memory(str(tmp_path), {"swap": "ok"}, 12.5)
    assert drift.load_memory(str(tmp_path)) == {"statuses": {"swap": "ok"}, "timestamp": 12.5}
    assert oct(os.stat(tmp_path / drift.STATE_FILE).st_mode & 0o777) == "0o600"
    (tmp_path / drift.STATE_FILE).write_text("{not json")
    assert drift.load_memory(str(tmp_path)) == {}


def test_summary_event_carries_the_verdict(k8snode, tree):
    resolved = _prepared(k8snode, tree)
    event = drift.summary_event(checks.audit(resolved, tree.path), 100.0)
    assert event["tag"] == "summary"
    assert event["ready"] is True and event["failing"] == [] and event["timestamp"] == 100.0
