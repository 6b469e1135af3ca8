"""The heal runner's order of decisions, its trust in the named minion, and its claim.

Salt's side (the cached pillar, a compile, the confirmation publish, the state run, the
event bus) is replaced by a counting fake: each test asserts what was, and what was
not, asked of Salt for an event.
"""

import threading
import time
from pathlib import Path

import pytest

from _runners import _k8snode_fleet as fleet
from _runners import k8snode as runner

CHECK = "sysctl:net.ipv4.ip_forward"
MANAGED = "/etc/sysctl.d/99-k8snode.conf"
HEAL = {"k8snode": {"drift": {"heal": True, "heal_cooldown": 30, "heal_limit": 2, "heal_window": 3600}}}


def tag(minion="node1", kind=CHECK):
    return f"salt/beacon/{minion}/k8snode/{kind}"


def event(minion="node1", **changes):
    data = {"id": minion, "check": CHECK, "old_status": "ok", "new_status": "fail", "fixable": True}
    data.update({"boot_file": MANAGED, "managed_file": MANAGED, "ready": False}, **changes)
    return data


def audit(status="fail", boot_file=MANAGED):
    check = {"status": status, "required": True, "live": "0", "boot": "1", "boot_file": boot_file, "detail": "d"}
    return {"ready": status == "ok", "checks": {CHECK: check}, "failing": [CHECK] if status == "fail" else []}


class FakeSalt:
    """What the runner asks of Salt, counted; ``audits`` is what each minion returns."""

    def __init__(self):
        self.calls = {"cached_pillar": 0, "compile": 0, "confirm": 0, "apply": 0}
        self.cached, self.compiled, self.audits, self.fired = {}, HEAL, {}, []
        self.confirm_delay = 0.0
        self.publishes = []  # the minions of each confirmation publish (drift_events)
        self.lock = threading.Lock()

    def _add(self, name):
        with self.lock:
            self.calls[name] += 1

    def cached_pillar(self, minion):
        self._add("cached_pillar")
        return self.cached.get(minion)

    def compile_pillar(self, minion):
        self._add("compile")
        return self.compiled

    def confirm(self, minion):
        self._add("confirm")
        time.sleep(self.confirm_delay)
        return self.audits.get(minion)

    def confirm_many(self, minions):
        with self.lock:
            self.publishes.append(list(minions))
        return {minion: self.confirm(minion) for minion in minions}

    def apply(self, minion, timeout):
        self._add("apply")
        return True

    def fire(self, minion, outcome, data):
        with self.lock:
            self.fired.append((minion, outcome))


@pytest.fixture
def salt(tmp_path, monkeypatch):
    pki = tmp_path / "pki" / "minions"
    pki.mkdir(parents=True)
    for minion in ("node1", "node2"):
        (pki / minion).write_text("key")
    opts = {"cachedir": str(tmp_path), "pki_dir": str(tmp_path / "pki"), "timeout": 5}
    monkeypatch.setattr(runner, "__opts__", opts, raising=False)
    fake = FakeSalt()
    monkeypatch.setattr(runner, "_cached_pillar", fake.cached_pillar)
    monkeypatch.setattr(runner, "_compile_pillar", fake.compile_pillar)
    monkeypatch.setattr(runner, "_confirm", fake.confirm)
    monkeypatch.setattr(runner, "_confirm_many", fake.confirm_many)
    monkeypatch.setattr(runner, "_apply", fake.apply)
    monkeypatch.setattr(runner, "_fire", fake.fire)
    return fake


def counts():
    return runner.heal_stats()["counts"]


def test_a_confirmed_failure_is_healed_and_remembered_as_confirmed(salt):
    salt.audits["node1"] = audit("fail")
    assert runner.heal(tag(), event())["outcome"] == "applied"
    assert salt.calls == {"cached_pillar": 1, "compile": 1, "confirm": 1, "apply": 1}
    known = runner._read_memory("node1")["last_known"]
    assert (known["status"], known["failing"], known["source"]) == ("not ready", [CHECK], "confirmed")
    assert counts() == {"heal_calls": 1, "confirmations": 1, "confirmed": 1, "pillar_compiles": 1, "heals": 1}


@pytest.mark.parametrize(
    ("answer", "said"),
    [(audit("ok"), f"says {CHECK} is ok"), (None, "did not answer k8snode.audit")],
    ids=["says-ok", "silent"],
)
def test_a_forged_event_the_named_minion_does_not_confirm_heals_nothing(salt, answer, said):
    """Another minion sent node1's failure: node1's own fresh audit is what counts."""
    salt.audits["node1"] = answer
    result = runner.heal(tag(), event())
    assert result == {"minion": "node1", "outcome": "not_confirmed", "reason": f"not confirmed: node1 {said}"}
    assert salt.calls == {"cached_pillar": 1, "compile": 0, "confirm": 1, "apply": 0}
    assert salt.fired == [("node1", "not_confirmed")]
    assert "last_known" not in runner._read_memory("node1")
    # node1's heal budget is untouched: a forger cannot use it up.
    history = runner._read_json(runner._store("heal", "node1"))
    assert not history.get("heals") and "claim" not in history
    assert counts()["not_confirmed"] == 1 and "heals" not in counts()


def test_a_silent_minion_is_asked_once_per_cooldown(salt, monkeypatch):
    """A minion that did not answer cannot be healed either: the events that follow within
    the cooldown cost no publish (a dead minion must not hold the reactor's threads)."""
    clock = [10_000.0]
    monkeypatch.setattr(runner.time, "time", lambda: clock[0])
    assert runner.heal(tag(), event())["outcome"] == "not_confirmed"
    clock[0] += 10
    assert runner.heal(tag(), event())["reason"] == "the minion did not answer moments before this event or since"
    assert salt.calls["confirm"] == 1 and counts()["skipped:silent"] == 1
    clock[0] += 30
    salt.audits["node1"] = audit("fail")
    assert runner.heal(tag(), event())["outcome"] == "applied"


def _stamp(epoch, salt_major):
    """An event's ``_stamp`` as Salt's event bus writes it (salt/utils/event.py
    ``fire_event``): 3006 ``datetime.utcnow().isoformat()`` (naive, UTC), 3008
    ``datetime.now(timezone.utc).isoformat()`` (with its offset)."""
    import datetime

    aware = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return (aware.replace(tzinfo=None) if salt_major == 3006 else aware).isoformat()


@pytest.mark.parametrize("salt_major", [3006, 3008])
def test_behind_a_backlog_the_silence_counts_from_when_the_event_was_fired(salt, monkeypatch, salt_major):
    """A storm's second event about a silent minion, fired 10 s after the first but worked
    100 s later (a reactor backlog): the minion had not answered 10 s before it was fired,
    so no second publish (bench/storm.py measured two confirmations per silent minion)."""
    clock = [10_000.0]
    monkeypatch.setattr(runner.time, "time", lambda: clock[0])
    assert runner.heal(tag(), event(_stamp=_stamp(9_990.0, salt_major)))["outcome"] == "not_confirmed"
    clock[0] += 100
    second = runner.heal(tag(), event(_stamp=_stamp(10_010.0, salt_major)))
    assert second["reason"] == "the minion did not answer moments before this event or since"
    # Fired a cooldown (30 s) after the minion went unanswered: asked again.
    salt.audits["node1"] = audit("fail")
    assert runner.heal(tag(), event(_stamp=_stamp(10_031.0, salt_major)))["outcome"] == "applied"
    assert salt.calls["confirm"] == 2 and counts()["skipped:silent"] == 1


def test_an_event_fired_before_the_last_heal_starts_nothing(salt, monkeypatch):
    """The heal that ran after an event was fired already answered it, however late the
    event reaches the runner."""
    clock = [10_000.0]
    monkeypatch.setattr(runner.time, "time", lambda: clock[0])
    salt.audits["node1"] = audit("fail")
    assert runner.heal(tag(), event(_stamp=_stamp(9_999.0, 3008)))["outcome"] == "applied"
    clock[0] += 300
    late = runner.heal(tag(), event(_stamp=_stamp(9_995.0, 3008)))
    assert late["reason"] == "a heal ran moments before this event or since"
    assert salt.calls["confirm"] == 1


def test_an_unreadable_stamp_is_measured_from_now():
    assert runner._fired_at({}) is None
    assert runner._fired_at({"_stamp": "yesterday"}) is None
    assert runner._fired_at({"_stamp": "1970-01-01T00:01:40"}) == 100.0
    assert runner._fired_at({"_stamp": "1970-01-01T00:01:40+00:00"}) == 100.0


def test_a_minion_that_says_ok_is_asked_again_at_the_next_event(salt):
    """No memo of "it said ok": a forged event must not hide the real drift that follows."""
    salt.audits["node1"] = audit("ok")
    assert runner.heal(tag(), event())["outcome"] == "not_confirmed"
    salt.audits["node1"] = audit("fail")
    assert runner.heal(tag(), event())["outcome"] == "applied"
    assert salt.calls["confirm"] == 2


def test_what_the_minion_returns_replaces_what_the_event_claims(salt):
    """The event says k8snode's own file wins at boot; node1 says someone else's does."""
    salt.audits["node1"] = audit("fail", boot_file="/etc/sysctl.d/zz-local.conf")
    result = runner.heal(tag(), event(fixable=False))
    assert result["outcome"] == "not_healed"
    assert result["reason"] == "/etc/sysctl.d/zz-local.conf wins at boot: reported, not fought"
    assert salt.calls["apply"] == 0


@pytest.mark.parametrize(
    "data", [event(new_status="ok", old_status="fail"), {"id": "node1", "ready": False}], ids=["ok-again", "summary"]
)
def test_ok_again_and_summaries_ask_nothing_of_salt(salt, data):
    kind = CHECK if "check" in data else "summary"
    assert runner.heal(tag(kind=kind), data)["outcome"] == "ignored"
    assert salt.calls == {"cached_pillar": 0, "compile": 0, "confirm": 0, "apply": 0}
    assert counts() == {"heal_calls": 1, "skipped:not_fail": 1}


def test_an_id_without_an_accepted_key_costs_no_publish(salt):
    assert runner.heal(tag("ghost"), event("ghost"))["reason"] == "ghost has no accepted key"
    assert salt.calls == {"cached_pillar": 0, "compile": 0, "confirm": 0, "apply": 0}
    assert not Path(runner._store("heal", "ghost")).exists()
    assert counts() == {"heal_calls": 1, "skipped:no_key": 1}


def test_the_cooldown_stops_an_event_before_any_pillar_or_publish(salt):
    salt.audits["node1"] = audit("fail")
    assert runner.heal(tag(), event())["outcome"] == "applied"
    salt.calls.update(dict.fromkeys(salt.calls, 0))
    for other in ("sysctl:net.bridge.bridge-nf-call-iptables", "module:br_netfilter", CHECK):
        result = runner.heal(tag(kind=other), event(check=other))
        assert result == {
            "minion": "node1",
            "outcome": "ignored",
            "reason": "a heal ran moments before this event or since",
        }
    assert salt.calls == {"cached_pillar": 0, "compile": 0, "confirm": 0, "apply": 0}
    assert counts()["skipped:cooldown"] == 3


def test_the_limit_gives_up_once_then_stops_events_before_any_pillar(salt, monkeypatch):
    salt.audits["node1"] = audit("fail")
    clock = [10_000.0]
    monkeypatch.setattr(runner.time, "time", lambda: clock[0])
    outcomes = []
    for _ in range(4):
        outcomes.append(runner.heal(tag(), event())["outcome"])
        clock[0] += 60  # past the cooldown (30 s)
    assert outcomes == ["applied", "applied", "gave_up", "ignored"]
    assert salt.calls["compile"] == 3  # the fourth was stopped by the heal log alone
    assert salt.calls["confirm"] == 3
    assert salt.fired.count(("node1", "gave_up")) == 1
    assert counts()["skipped:gave_up_already"] == 1


def test_settings_come_from_salts_cached_pillar_when_it_has_them(salt):
    salt.cached["node1"] = HEAL
    salt.audits["node1"] = audit("fail")
    assert runner.heal(tag(), event())["outcome"] == "applied"
    assert salt.calls["compile"] == 0
    assert counts()["pillar_cache_reads"] == 1 and "pillar_compiles" not in counts()


def test_heal_off_in_the_cached_pillar_costs_no_publish(salt):
    salt.cached["node1"] = {"k8snode": {"drift": {"heal": False}}}
    assert runner.heal(tag(), event())["reason"] == "pillar k8snode:drift:heal is not true"
    assert salt.calls == {"cached_pillar": 1, "compile": 0, "confirm": 0, "apply": 0}
    assert counts()["skipped:heal_off"] == 1


def test_concurrent_runners_for_one_minion_heal_it_once(salt):
    """A storm: many events for one minion at once, each in a thread of the reactor."""
    kinds = [CHECK] + [f"sysctl:net.ipv4.conf.eth{index}.rp_filter" for index in range(1, 12)]
    salt.audits["node1"] = audit("fail")
    salt.audits["node1"]["checks"].update(dict.fromkeys(kinds, salt.audits["node1"]["checks"][CHECK]))
    salt.confirm_delay = 0.2
    barrier = threading.Barrier(12)
    results = []

    def one(index):
        kind = kinds[index]
        barrier.wait()
        results.append(runner.heal(tag(kind=kind), event(check=kind)))

    threads = [threading.Thread(target=one, args=(index,)) for index in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [result["outcome"] for result in results].count("applied") == 1
    assert salt.calls["apply"] == 1 and salt.calls["confirm"] == 1 and salt.calls["compile"] <= 1
    assert {result["reason"] for result in results if result["outcome"] == "ignored"} <= {
        "a heal of this minion is under way",
        "a heal ran moments before this event or since",  # the gate
        "a heal ran moments ago",  # the decision, after a confirmation
    }
    assert counts()["heal_calls"] == 12


def test_a_claim_left_by_a_runner_that_died_expires(salt, monkeypatch):
    salt.audits["node1"] = audit("fail")
    with runner._locked_json(runner._store("heal", "node1")) as history:
        history["claim"] = {"token": "dead", "until": time.time() - 1}
    assert runner.heal(tag(), event())["outcome"] == "applied"


def test_another_minions_claim_does_not_stop_this_one(salt):
    salt.audits.update(node1=audit("fail"), node2=audit("fail"))
    with runner._locked_json(runner._store("heal", "node2")) as history:
        history["claim"] = {"token": "other", "until": time.time() + 60}
    assert runner.heal(tag(), event())["outcome"] == "applied"
    assert runner.heal(tag("node2"), event("node2"))["reason"] == "a heal of this minion is under way"


def test_heal_stats_reset(salt):
    runner.heal(tag(kind="summary"), {"id": "node1"})
    first = runner.heal_stats(reset=True)
    assert first["counts"] == {"heal_calls": 1, "skipped:not_fail": 1} and first["since"] > 0
    assert runner.heal_stats()["counts"] == {}


def test_the_gate_is_pure_and_needs_no_settings():
    assert fleet.gate({}, 100.0) is None
    assert fleet.gate({"claim": {"until": 101.0}}, 100.0)[0] == "under_way"
    limits = {"limit": 2, "window": 600, "cooldown": 30}
    assert fleet.gate({"limits": limits, "heals": [80.0]}, 100.0)[0] == "cooldown"
    assert fleet.gate({"limits": limits, "heals": [60.0]}, 100.0) is None
    assert fleet.gate({"limits": limits, "heals": [0.0], "gave_up": 50.0}, 100.0)[0] == "gave_up_already"
    assert fleet.gate({"limits": limits, "gave_up": 50.0}, 700.0) is None
    assert fleet.gate({"silent": 90.0}, 100.0)[0] == "silent"  # the default cooldown, 30 s
    assert fleet.gate({"silent": 90.0, "limits": dict(limits, cooldown=5)}, 100.0) is None
    # Measured from when the event was fired, never later than now.
    assert fleet.gate({"silent": 90.0}, 500.0, fired=100.0)[0] == "silent"
    assert fleet.gate({"silent": 90.0}, 500.0, fired=50.0)[0] == "silent"  # fired before the silence
    assert fleet.gate({"silent": 90.0}, 500.0, fired=120.0) is None
    assert fleet.gate({"silent": 90.0}, 100.0, fired=900.0)[0] == "silent"  # a stamp ahead: now counts
    assert fleet.gate({"limits": limits, "heals": [60.0]}, 500.0, fired=70.0)[0] == "cooldown"
    assert fleet.gate({"limits": limits, "heals": [60.0]}, 500.0, fired=90.0) is None


@pytest.mark.parametrize("layout", ["3006", "3008"])
def test_the_cached_pillar_is_read_where_each_salt_keeps_it(tmp_path, monkeypatch, layout):
    """Salt 3006 keeps the minion's pillar beside its grains (bank ``minions/<id>``, key
    ``data``); 3007 and later keep the master's last compile in bank ``pillar``."""
    import copy

    import salt.cache
    import salt.config

    opts = copy.deepcopy(salt.config.DEFAULT_MASTER_OPTS)
    opts.update(cachedir=str(tmp_path), extension_modules=str(tmp_path / "extmods"), pillar_cache_ttl=3600)
    monkeypatch.setattr(runner, "__opts__", opts, raising=False)
    cache = salt.cache.factory(opts)
    if layout == "3006":
        cache.store("minions/node1", "data", {"grains": {"id": "node1"}, "pillar": HEAL})
    else:
        cache.store("pillar", "node1", HEAL)
    assert runner._cached_pillar("node1") == HEAL
    assert runner._cached_pillar("node2") is None
    monkeypatch.setattr(runner.time, "time", lambda: cache.updated(*_where(layout)) + 3601)
    assert runner._cached_pillar("node1") is None  # older than pillar_cache_ttl: compiled again
    monkeypatch.setitem(opts, "minion_data_cache", False)
    assert runner._cached_pillar("node1") is None


def _where(layout):
    return ("minions/node1", "data") if layout == "3006" else ("pillar", "node1")


def test_a_confirmation_waits_the_timeout_then_two_seconds_not_gather_job_timeout(monkeypatch):
    """After the master's timeout Salt asks a silent minion whether the job still runs and
    waits gather_job_timeout (10 s by default) for the answer; a confirmation bounds that
    wait to 2 s, so a silent minion holds a reactor worker for timeout + 2 s."""
    asked = []

    class Client:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def cmd(self, tgt, fun, **kwargs):
            asked.append((tgt, fun, kwargs))
            return {}

    monkeypatch.setattr(runner, "__opts__", {"conf_file": "/x", "timeout": 5, "gather_job_timeout": 10}, raising=False)
    monkeypatch.setattr(runner.salt.client, "get_local_client", lambda conf_file: Client())
    assert runner._confirm("node1") is None
    ((tgt, fun, kwargs),) = asked
    assert (tgt, fun, kwargs["tgt_type"], kwargs["timeout"], kwargs["gather_job_timeout"]) == (
        ["node1"],
        "k8snode.audit",
        "list",
        5,
        2,
    )


def test_the_reactor_makes_one_runner_call_per_event(salt):
    """salt/reactor/k8snode_drift.sls calls k8snode.drift once per event (Salt's reactor
    drops runner calls beyond reactor_worker_hwm): it remembers every event and heals
    only a check that turned fail."""
    sls = (Path(runner.__file__).parent.parent / "salt" / "reactor" / "k8snode_drift.sls").read_text()
    assert sls.count("runner.") == 1 and "runner.k8snode.drift:" in sls
    salt.audits["node1"] = audit("fail")
    result = runner.drift(tag(), event())
    assert result["remember"]["recorded"] is True and result["heal"]["outcome"] == "applied"
    back = runner.drift(tag(), event(old_status="fail", new_status="ok"))
    assert back == {"remember": {"minion": "node1", "event": CHECK, "recorded": True}, "heal": None}
    summary = runner.drift(tag(kind="summary"), {"id": "node1", "ready": True, "failing": []})
    assert summary["heal"] is None
    assert counts() == {
        "remember_calls": 3,
        "claims_recorded": 3,
        "heal_calls": 1,
        "confirmations": 1,
        "confirmed": 1,
        "pillar_compiles": 1,
        "heals": 1,
    }
    assert salt.calls["apply"] == 1
