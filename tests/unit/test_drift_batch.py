"""The drift engine's batches: ``k8snode.drift_events`` (one confirmation publish for all
the minions a batch names) and the engine's gathering of events (_engines/k8snode_drift.py).

Salt's side is the counting fake of test_heal_trust.py: each test asserts what was asked
of Salt, publish by publish.
"""

import queue
import threading
import time

import pytest

from _engines import k8snode_drift as engine
from _runners import k8snode as runner
from tests.unit.test_heal_trust import CHECK, MANAGED, counts, event, tag
from tests.unit.test_heal_trust import salt as salt  # noqa: PLC0414 - the fixture, shared

OTHER = "module:br_netfilter"


def failing(*kinds):
    """A fresh k8snode.audit return in which ``kinds`` fail."""
    checks = {
        kind: {"status": "fail", "required": True, "live": "0", "boot": "1", "boot_file": MANAGED, "detail": "d"}
        for kind in kinds
    }
    return {"ready": False, "checks": checks, "failing": list(kinds)}


def storm(minions, kinds=(CHECK, OTHER)):
    return [[tag(minion, kind), event(minion, check=kind)] for minion in minions for kind in kinds]


def test_a_storm_batch_is_one_publish_one_heal_per_minion_and_one_word_per_silent_one(salt):
    """node1 confirms both failures, node2 is silent: one publish names both; node1 is
    healed once (its second event stops at the cooldown the heal set, as a later event
    would), node2 gets one not_confirmed, not one per event."""
    salt.audits["node1"] = failing(CHECK, OTHER)
    summary = runner.drift_events(storm(["node1", "node2"]))
    assert salt.publishes == [["node1", "node2"]]
    assert salt.calls["apply"] == 1
    assert sorted(salt.fired) == [("node1", "applied"), ("node2", "not_confirmed")]
    assert summary["events"] == 4 and summary["remembered"] == 4 and summary["confirmations"] == 2
    assert summary["outcomes"] == {"applied": 1, "ignored": 2, "not_confirmed": 1}
    assert summary["errors"] == []
    assert counts() == {
        "remember_calls": 4,
        "claims_recorded": 4,
        "heal_calls": 4,
        "confirmations": 2,
        "confirmed": 1,
        "not_confirmed": 1,
        "pillar_compiles": 1,  # node1's, once: its second event stops at the cooldown
        "heals": 1,
        "skipped:cooldown": 1,
        "skipped:silent": 1,
    }
    # Both claims are released.
    for minion in ("node1", "node2"):
        assert "claim" not in runner._read_json(runner._store("heal", minion))


def test_the_same_storm_again_at_once_publishes_nothing(salt):
    salt.audits["node1"] = failing(CHECK, OTHER)
    runner.drift_events(storm(["node1", "node2"]))
    summary = runner.drift_events(storm(["node1", "node2"]))
    assert salt.publishes == [["node1", "node2"]]  # no second publish
    assert summary["confirmations"] == 0
    assert summary["outcomes"] == {"ignored": 4}
    skipped = {key: value for key, value in counts().items() if key.startswith("skipped:")}
    assert skipped == {"skipped:silent": 1 + 2, "skipped:cooldown": 1 + 2}  # the first batch's, then these


def test_ok_again_and_summaries_are_remembered_and_confirm_nothing(salt):
    events = [
        [tag(), event(old_status="fail", new_status="ok")],
        [tag(kind="summary"), {"id": "node1", "ready": True, "failing": []}],
    ]
    summary = runner.drift_events(events)
    assert summary["remembered"] == 2 and summary["confirmations"] == 0
    assert salt.publishes == [] and salt.calls["apply"] == 0


def test_a_bad_event_is_refused_by_name_and_the_rest_go_on(salt):
    salt.audits["node1"] = failing(CHECK)
    events = [["salt/beacon/node9/k8snode/x", {"id": "node1"}], ["not a pair"], [tag(), event()]]
    summary = runner.drift_events(events)
    assert len(summary["errors"]) == 2
    assert "carries id 'node1': the ids must agree" in summary["errors"][0]
    assert summary["outcomes"] == {"applied": 1}


@pytest.mark.parametrize(
    ("events", "heal_workers", "message"),
    [
        ({"tag": "x"}, 10, "events must be a list of [tag, data] pairs"),
        ([], 0, "heal_workers must be a whole number, 1 or more, not 0"),
        ([], True, "heal_workers must be a whole number, 1 or more, not True"),
    ],
)
def test_bad_arguments_are_named(salt, events, heal_workers, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        runner.drift_events(events, heal_workers=heal_workers)


def test_heals_of_many_minions_run_side_by_side(salt, monkeypatch, tmp_path):
    """Each minion's heal after the one publish runs beside the others', heal_workers at a time."""
    minions = [f"node{index}" for index in range(1, 7)]
    for minion in minions:
        (tmp_path / "pki" / "minions" / minion).write_text("key")
        salt.audits[minion] = failing(CHECK)
    running, most = [0], [0]
    lock = threading.Lock()

    def slow_apply(minion, timeout):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return True

    monkeypatch.setattr(runner, "_apply", slow_apply)
    summary = runner.drift_events(storm(minions, kinds=(CHECK,)), heal_workers=3)
    assert summary["outcomes"] == {"applied": 6}
    assert most[0] == 3


def _heal_node1_then(monkeypatch, then):
    """One heal worker: node1's heal runs first, and ``then(node2's heal log)`` happens
    while it runs (what the time a long heal takes does to node2's claim)."""
    applied = []

    def apply_then(minion, timeout):
        applied.append(minion)
        if minion == "node1":
            with runner._locked_json(runner._store("heal", "node2")) as history:
                then(history)
        return True

    monkeypatch.setattr(runner, "_apply", apply_then)
    return applied


def test_a_claim_that_expired_behind_other_heals_is_renewed_when_nobody_took_it(salt, monkeypatch):
    """node2's claim, taken when the batch began, expires while node1 heals (one worker):
    nobody took it over, so node2's heal renews it, runs, and releases it."""
    salt.audits.update(node1=failing(CHECK), node2=failing(CHECK))
    applied = _heal_node1_then(monkeypatch, lambda history: history["claim"].update(until=time.time() - 1))
    summary = runner.drift_events(storm(["node1", "node2"], kinds=(CHECK,)), heal_workers=1)
    assert applied == ["node1", "node2"]
    assert summary["outcomes"] == {"applied": 2}
    assert "claim" not in runner._read_json(runner._store("heal", "node2"))


def test_a_claim_another_runner_took_over_after_it_expired_stops_this_batchs_heal(salt, monkeypatch):
    """While node1 heals, node2's claim expires and another runner (a reactor thread, a
    second master) takes it: the batch must not heal node2 beside that runner, nor
    release that runner's claim."""
    salt.audits.update(node1=failing(CHECK), node2=failing(CHECK))
    other = {"token": "other runner", "until": time.time() + 60}
    applied = _heal_node1_then(monkeypatch, lambda history: history.update(claim=dict(other)))
    summary = runner.drift_events(storm(["node1", "node2"], kinds=(CHECK,)), heal_workers=1)
    assert applied == ["node1"]
    assert summary["outcomes"] == {"applied": 1, "ignored": 1}
    assert counts()["skipped:under_way"] == 1
    assert runner._read_json(runner._store("heal", "node2"))["claim"] == other


def test_the_engine_takes_only_k8snode_beacon_events():
    assert engine.is_k8snode_event("salt/beacon/node1/k8snode/module:overlay")
    assert engine.is_k8snode_event("salt/beacon/node1/k8snode/summary")
    assert not engine.is_k8snode_event("salt/beacon/node1/inotify//etc")
    assert not engine.is_k8snode_event("salt/job/1/ret/node1")
    assert not engine.is_k8snode_event(None)


def test_a_batch_is_what_comes_within_batch_seconds_of_its_first_event():
    events = queue.Queue()
    for index in range(5):
        events.put(index)

    def late():
        time.sleep(0.6)
        events.put("late")

    threading.Thread(target=late).start()
    assert engine.next_batch(events, 0.3, 100) == [0, 1, 2, 3, 4]
    assert engine.next_batch(events, 0.3, 100) == ["late"]  # waits for the next first event


def test_a_batch_stops_at_max_batch():
    events = queue.Queue()
    for index in range(5):
        events.put(index)
    assert engine.next_batch(events, 5, 2) == [0, 1]
    assert engine.next_batch(events, 0.1, 2) == [2, 3]


def test_an_empty_batch_once_stopped():
    stop = threading.Event()
    stop.set()
    assert engine.next_batch(queue.Queue(), 0.1, 10, stop) == []


@pytest.mark.parametrize(
    ("setting", "value"),
    [("batch_seconds", 0), ("max_batch", 1.5), ("timeout", -1), ("heal_workers", True)],
)
def test_the_engine_names_a_bad_setting(setting, value):
    with pytest.raises(ValueError, match=f"k8snode_drift engine: {setting}: invalid {value!r}: a number > 0"):
        engine.start(**{setting: value})


def test_the_readmes_engine_configuration_is_what_the_tests_run():
    """README "For large fleets: the drift engine": its master.d snippet is salt/reactor/master.conf
    with the engine in the drift reactor's place (harness.with_drift_engine, which the
    integration tests and bench/storm.py use), and names exactly the engine's settings."""
    import inspect
    import re

    import yaml

    from tests.support import harness

    readme = (harness.REPO_ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n(# /etc/salt/master.d/k8snode-engine.conf.*?)```", readme, re.DOTALL).group(1)
    snippet = yaml.safe_load(block)
    shipped = yaml.safe_load((harness.REPO_ROOT / "salt" / "reactor" / "master.conf").read_text())
    settings = snippet["engines"][0]["k8snode_drift"]
    assert snippet == harness.with_drift_engine(shipped, **settings)
    assert list(settings) == list(inspect.signature(engine.start).parameters)
