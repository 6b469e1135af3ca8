"""The master side of drift: heal decisions (pure), fleet memory, the report's aggregation."""

import types

import pytest

from _runners import _k8snode_fleet as fleet
from _runners import k8snode as runner

TAG = "salt/beacon/node1/k8snode/sysctl:net.ipv4.ip_forward"
MANAGED = "/etc/sysctl.d/99-k8snode.conf"


def _event(**changes):
    data = {
        "id": "node1",
        "check": "sysctl:net.ipv4.ip_forward",
        "old_status": "ok",
        "new_status": "fail",
        "boot_file": MANAGED,
        "managed_file": MANAGED,
        "fixable": True,
        "ready": False,
    }
    data.update(changes)
    return data


def decide(data, settings, history, now=10_000.0, kind="sysctl:net.ipv4.ip_forward"):
    return fleet.heal_decision(kind, data, settings, history, now)


def test_a_fixable_failure_is_healed_when_the_pillar_says_so():
    assert decide(_event(), {"heal": True}, {})[0] == "heal"
    assert decide(_event(), {}, {}) == ("ignored", "pillar k8snode:drift:heal is not true")


@pytest.mark.parametrize(
    "data",
    [_event(new_status="ok", old_status="fail"), _event(new_status="warn")],
    ids=["ok-again", "warn"],
)
def test_ok_again_and_non_failures_never_heal(data):
    assert decide(data, {"heal": True}, {})[0] == "ignored"


def test_a_summary_never_heals():
    assert decide({"id": "node1", "ready": False}, {"heal": True}, {}, kind="summary")[0] == "ignored"


def test_a_user_file_that_wins_at_boot_is_reported_not_fought():
    data = _event(boot_file="/etc/sysctl.d/zz-local.conf", fixable=False)
    outcome, reason = decide(data, {"heal": True}, {})
    assert outcome == "not_healed"
    assert "/etc/sysctl.d/zz-local.conf wins at boot" in reason


def test_unfixable_kinds_are_not_healed_even_if_the_event_says_fixable():
    assert decide(_event(fixable=True), {"heal": True}, {}, kind="swap")[0] == "not_healed"


def test_at_most_the_limit_per_window_then_gave_up_once():
    settings = {"heal": True, "heal_limit": 2, "heal_window": 600}
    history = {}
    outcomes = [decide(_event(), settings, history, now=1000.0 + 60 * step)[0] for step in range(5)]
    assert outcomes == ["heal", "heal", "gave_up", "ignored", "ignored"]
    # The window passes: healing again.
    assert decide(_event(), settings, history, now=1000.0 + 60 * 4 + 700)[0] == "heal"


def test_a_second_event_of_the_same_drift_does_not_heal_twice():
    history = {}
    assert decide(_event(), {"heal": True}, history, now=100.0)[0] == "heal"
    assert decide(_event(), {"heal": True}, history, now=105.0) == ("ignored", "a heal ran moments ago")


@pytest.mark.parametrize("bad", [0, -1, "3", True])
def test_a_bad_limit_is_named(bad):
    with pytest.raises(ValueError, match="heal_limit"):
        decide(_event(), {"heal": True, "heal_limit": bad}, {})


def test_remember_keeps_a_claim_never_the_last_known_state(master_cache, monkeypatch):
    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(runner, "time", types.SimpleNamespace(time=lambda: clock.now))
    runner.remember("salt/beacon/node1/k8snode/summary", {"id": "node1", "ready": True, "failing": []})
    clock.now = 1010.0
    runner.remember(TAG, _event())
    assert runner._read_memory("node1")["last_claim"]["failing"] == ["sysctl:net.ipv4.ip_forward"]
    clock.now = 1020.0
    runner.remember(TAG, _event(old_status="fail", new_status="ok", ready=True))
    remembered = runner._read_memory("node1")
    assert "last_known" not in remembered
    assert remembered["last_claim"] == {"status": "ready", "failing": [], "time": 1020.0, "source": "beacon claim"}
    assert [event[1:] for event in remembered["drift_events"]] == [
        ["sysctl:net.ipv4.ip_forward", "fail"],
        ["sysctl:net.ipv4.ip_forward", "ok"],
    ]
    report = fleet.summarize({}, {"node1"}, {"node1": remembered}, now=1062.0, window=3600)
    host = report["hosts"]["node1"]
    assert host["status"] == "no answer"
    assert "last_known" not in host
    assert host["last_claim"]["age_seconds"] == 42
    assert host["detail"] == "no answer, beacon claim (unconfirmed): ready, 42 s ago"
    assert host["drift_events"] == 2
    assert (
        fleet.summarize({}, {"node1"}, {"node1": remembered}, now=5000.0, window=60)["hosts"]["node1"]["drift_events"]
        == 0
    )


def test_the_report_names_where_each_state_came_from():
    known = {"status": "ready", "failing": [], "time": 1000.0, "source": "audit return"}
    claim = {"status": "not ready", "failing": ["swap"], "time": 1050.0, "source": "beacon claim"}
    host = fleet.summarize({}, {"n"}, {"n": {"last_known": known, "last_claim": claim}}, now=1060.0)["hosts"]["n"]
    assert host["last_known"]["source"] == "audit return" and host["last_claim"]["source"] == "beacon claim"
    assert host["detail"] == (
        "no answer, last known: ready, 60 s ago (audit return); beacon claim (unconfirmed): not ready, 10 s ago"
    )
    # A claim older than what the minion returned is not shown.
    older = dict(claim, time=900.0)
    host = fleet.summarize({}, {"n"}, {"n": {"last_known": known, "last_claim": older}}, now=1060.0)["hosts"]["n"]
    assert "last_claim" not in host and host["detail"] == "no answer, last known: ready, 60 s ago (audit return)"
    # Memory written before: "beacon" was a claim, "report" an audit return.
    legacy = fleet.summarize({}, {"n"}, {"n": {"last_known": dict(known, source="beacon")}}, now=1060.0)
    assert "last_known" not in legacy["hosts"]["n"]
    assert legacy["hosts"]["n"]["last_claim"]["source"] == "beacon claim"
    legacy = fleet.summarize({}, {"n"}, {"n": {"last_known": dict(known, source="report")}}, now=1060.0)
    assert legacy["hosts"]["n"]["last_known"]["source"] == "audit return"


def test_an_id_without_an_accepted_key_is_not_remembered(master_cache):
    result = runner.remember("salt/beacon/ghost/k8snode/summary", {"id": "ghost", "ready": False})
    assert result["recorded"] is False
    assert not (master_cache / "k8snode" / "fleet" / "ghost.json").exists()
    assert runner.heal_stats()["counts"] == {"remember_calls": 1, "skipped:no_key": 1}


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/b", "", None, ".hidden"])
def test_a_bad_minion_id_never_names_a_file(master_cache, bad):
    with pytest.raises(ValueError, match="invalid minion id"):
        runner.remember("salt/beacon/x/k8snode/summary", {"id": bad, "ready": True})


def test_a_tag_that_is_not_the_beacons_is_refused(master_cache):
    with pytest.raises(ValueError, match="not a k8snode beacon event tag"):
        runner.remember("salt/beacon/node1/other/x", {"id": "node1"})


@pytest.mark.parametrize("runner_function", ["remember", "heal"])
def test_an_event_whose_tag_and_data_name_different_minions_is_refused(master_cache, runner_function):
    with pytest.raises(ValueError, match="ids must agree"):
        getattr(runner, runner_function)(TAG, _event(id="node2"))
    assert not (master_cache / "k8snode" / "fleet" / "node2.json").exists()
