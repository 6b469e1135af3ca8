"""The report for large fleets: from the fleet memory (no publish), in batches, and the
memory's hygiene (deleted keys, a maximum age), on a master's cachedir and pki dir in a
temp dir. Targets expand through Salt's real ``CkMinions``; the LocalClient is a fake
that counts its publishes."""

import fnmatch
import json
import os
import threading
import time
import types

import pytest

from _runners import _k8snode_fleet as fleet
from _runners import k8snode as runner
from tests.support.fake_master import master_opts_under

CHECK = "sysctl:net.ipv4.ip_forward"
DETAIL = "net.ipv4.ip_forward is 0 now, needs 1"
#: The report's clock, frozen (file times are real: the memory's age is its file's).
NOW = float(int(time.time()))


def audit(ready):
    check = {"status": "ok" if ready else "fail", "required": True, "detail": DETAIL}
    return {"ready": ready, "checks": {CHECK: check}, "failing": [] if ready else [CHECK], "lost_at_reboot": []}


class FakeLocalClient:
    """Answers ``k8snode.audit`` for the minions in ``audits`` that the target names;
    ``publishes`` records every publish as ``(tgt, tgt_type)``."""

    def __init__(self, audits):
        self.audits, self.publishes = audits, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def cmd_iter(self, tgt, fun, kwarg=None, tgt_type="glob", timeout=None):
        assert fun == "k8snode.audit"
        self.publishes.append((list(tgt) if tgt_type == "list" else tgt, tgt_type))
        named = set(tgt) if tgt_type == "list" else set(fnmatch.filter(self.audits, tgt))
        for minion in sorted(named & set(self.audits)):
            yield {minion: {"ret": self.audits[minion], "retcode": 0}}


@pytest.fixture
def master(tmp_path, monkeypatch):
    """A master's config, cachedir and pki dir in ``tmp_path``; ``master.accept(id)``
    accepts a key; ``master.client`` is the fake LocalClient every publish goes to."""
    opts = master_opts_under(tmp_path)
    keys = tmp_path / "pki_dir" / "minions"
    monkeypatch.setattr(runner, "__opts__", opts, raising=False)
    monkeypatch.setattr(runner, "__context__", {}, raising=False)
    monkeypatch.setattr(runner, "time", types.SimpleNamespace(time=lambda: NOW))
    client = FakeLocalClient({})
    monkeypatch.setattr(runner.salt.client, "get_local_client", lambda conf_file: client)
    cache = tmp_path / "cachedir" / "k8snode"
    return types.SimpleNamespace(
        opts=opts,
        client=client,
        keys=keys,
        fleet=cache / "fleet",
        heal=cache / "heal",
        accept=lambda *ids: [(keys / minion).write_text("a public key") for minion in ids],
    )


def remember(directory, minion, memory, age=None):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{minion}.json"
    path.write_text(json.dumps(memory))
    if age is not None:
        os.utime(path, (NOW - age, NOW - age))
    return path


def known(status, failing=(), age=60, source="audit return", **more):
    state = {"status": status, "failing": list(failing), "time": NOW - age, "source": source}
    return dict(state, **more)


def report(**kwargs):
    return runner.report(**kwargs)["data"]


# --------------------------------------------------------------------------
# From memory
# --------------------------------------------------------------------------


def test_a_report_from_memory_publishes_nothing_and_says_where_each_state_came_from(master):
    master.accept("ready1", "broken", "claimed", "drifted", "never")
    remember(master.fleet, "ready1", {"last_known": known("ready", age=120)})
    failing = {"failing_detail": {CHECK: DETAIL}, "lost_at_reboot": ["module:overlay"]}
    remember(master.fleet, "broken", {"last_known": known("not ready", [CHECK], source="confirmed", **failing)})
    claim = {"status": "ready", "failing": [], "time": NOW - 5, "source": "beacon claim"}
    remember(master.fleet, "claimed", {"last_claim": claim, "drift_events": [[NOW - 10, CHECK, "fail"]]})
    remember(
        master.fleet, "drifted", {"last_known": known("ready", age=300), "last_claim": dict(claim, status="not ready")}
    )

    data = report(from_memory=True)

    assert master.client.publishes == []
    assert data["from_memory"] is True
    hosts = data["hosts"]
    assert {minion: host["status"] for minion, host in hosts.items()} == {
        "broken": "not ready",
        "claimed": "unknown",
        "drifted": "ready",
        "never": "unknown",
        "ready1": "ready",
    }
    assert hosts["ready1"]["last_known"]["age_seconds"] == 120
    assert hosts["ready1"]["detail"] == "last known: ready, 120 s ago (audit return)"
    assert hosts["broken"]["failing"] == {CHECK: DETAIL}
    assert hosts["broken"]["lost_at_reboot"] == ["module:overlay"]
    assert hosts["broken"]["last_known"]["source"] == "confirmed"
    # A beacon claim is kept apart: it never decides a status.
    assert "last_known" not in hosts["claimed"] and hosts["claimed"]["last_claim"]["age_seconds"] == 5
    assert hosts["claimed"]["detail"] == (
        "unknown: no audit return from this host remembered; beacon claim (unconfirmed): ready, 5 s ago"
    )
    assert hosts["claimed"]["drift_events"] == 1
    assert hosts["drifted"]["last_claim"]["status"] == "not ready"
    assert hosts["never"]["detail"] == "unknown: no audit return from this host remembered"
    # The live report's rules: counts, common failures, exit code.
    assert data["counts"] == {"ready": 2, "not ready": 1, "unknown": 2}
    assert data["common_failures"] == [[CHECK, 1]]
    assert (data["ready"], data["retcode"], runner.__context__["retcode"]) == (False, 1, 1)


def test_a_report_from_memory_after_a_live_one_shows_what_the_minions_returned(master):
    master.accept("node-a", "node-b", "silent")
    master.client.audits.update({"node-a": audit(True), "node-b": audit(False)})

    live = report(tgt="node-*")
    cached = report(tgt="node-*", from_memory=True)

    assert len(master.client.publishes) == 1
    assert live["from_memory"] is False and cached["from_memory"] is True
    assert {minion: host["status"] for minion, host in live["hosts"].items()} == {
        "node-a": "ready",
        "node-b": "not ready",
    }
    assert {minion: host["status"] for minion, host in cached["hosts"].items()} == {
        "node-a": "ready",
        "node-b": "not ready",
    }
    assert cached["hosts"]["node-b"]["failing"] == live["hosts"]["node-b"]["failing"] == {CHECK: DETAIL}
    assert cached["hosts"]["node-a"]["last_known"]["source"] == "audit return"
    # Every accepted key: the silent one too, never seen.
    assert report(from_memory=True)["hosts"]["silent"]["status"] == "unknown"


def test_every_host_ready_in_memory_exits_zero():
    memory = {"a": {"last_known": known("ready")}}
    data = fleet.summarize_memory({"a"}, memory, now=NOW)
    assert (data["ready"], data["retcode"]) == (True, 0)
    assert fleet.summarize_memory(set(), {}, now=NOW)["retcode"] == 1


def test_memory_written_before_the_details_were_kept_still_reports():
    host = fleet.remembered_host({"last_known": known("not ready", [CHECK])}, NOW)
    assert host["failing"] == {CHECK: "failing (no detail remembered)"}
    assert host["lost_at_reboot"] == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"from_memory": True, "batch": 10}, "from_memory=True publishes nothing: batch cannot apply"),
        ({"from_memory": True, "distribution": "k3s"}, "from_memory=True publishes nothing: distribution"),
        ({"from_memory": "yes please"}, "from_memory: invalid 'yes please': True or False"),
    ],
)
def test_a_report_from_memory_refuses_what_cannot_apply(master, arguments, message):
    with pytest.raises(ValueError, match=message):
        runner.report(**arguments)
    assert master.client.publishes == []


# --------------------------------------------------------------------------
# In batches
# --------------------------------------------------------------------------


def test_a_batched_report_publishes_n_at_a_time_and_says_the_same(master):
    minions = [f"node{index}" for index in range(7)]
    master.accept(*minions)
    master.client.audits.update({minion: audit(index % 2 == 0) for index, minion in enumerate(minions[:-1])})

    whole = report(memory_max_age=0)
    assert master.client.publishes == [("*", "glob")]
    master.client.publishes.clear()
    batched = report(batch=3, memory_max_age=0)

    assert master.client.publishes == [
        (["node0", "node1", "node2"], "list"),
        (["node3", "node4", "node5"], "list"),
        (["node6"], "list"),
    ]
    assert batched == whole
    assert batched["counts"] == {"ready": 3, "not ready": 3, "no answer": 1, "error": 0}


def test_a_batch_larger_than_the_fleet_is_one_publish_and_none_for_no_minion(master):
    master.accept("a", "b")
    report(batch=500)
    assert master.client.publishes == [(["a", "b"], "list")]
    master.client.publishes.clear()
    assert report(tgt="nobody*", batch=5)["hosts"] == {}
    assert master.client.publishes == []


@pytest.mark.parametrize("bad", [0, -3, "10", 2.5, True, "10%"])
def test_a_bad_batch_is_named_before_any_publish(master, bad):
    master.accept("a")
    with pytest.raises(ValueError, match=rf"batch: invalid {bad!r}: a whole number of minions > 0"):
        runner.report(batch=bad)
    assert master.client.publishes == []


def test_batches_are_sorted_slices():
    assert fleet.batches({"c", "a", "b"}, 2) == [["a", "b"], ["c"]]
    assert fleet.batches(set(), 2) == []


# --------------------------------------------------------------------------
# Hygiene
# --------------------------------------------------------------------------


def test_a_report_removes_the_memory_of_deleted_keys_and_nothing_else(master, tmp_path):
    master.accept("kept")
    for directory in (master.fleet, master.heal):
        remember(directory, "kept", {"last_known": known("ready")})
        remember(directory, "gone", {"last_known": known("ready")})
        (directory / "gone.json.lock").touch()
        (directory / "gone.json.tmp-4242").write_text("{")
        (directory / "notes.txt").write_text("not a file the runners write")
    stats = master.fleet.parent / "heal-stats.json"
    stats.write_text("{}")
    outside = tmp_path / "cachedir" / "gone.json"
    outside.write_text("{}")

    assert report(from_memory=True)["hosts"]["kept"]["status"] == "ready"

    for directory in (master.fleet, master.heal):
        assert sorted(path.name for path in directory.iterdir()) == ["kept.json", "notes.txt"]
    assert stats.exists() and outside.exists()


def test_a_live_report_removes_them_too(master):
    master.accept("a")
    master.client.audits["a"] = audit(True)
    remember(master.heal, "deleted", {"heals": [NOW]})
    report()
    assert not (master.heal / "deleted.json").exists()
    assert (master.fleet / "a.json").exists()


def test_memory_not_written_for_the_max_age_is_dropped(master):
    master.accept("old", "recent")
    remember(master.fleet, "old", {"last_known": known("ready")}, age=31 * 86400)
    remember(master.heal, "old", {"heals": []}, age=31 * 86400)
    remember(master.fleet, "recent", {"last_known": known("ready")}, age=29 * 86400)
    master.opts["k8snode_memory_max_age"] = 0  # the master says never ...

    assert report(from_memory=True)["hosts"]["old"]["status"] == "ready"
    hosts = report(from_memory=True, memory_max_age=30 * 86400)["hosts"]  # ... the argument wins
    assert (hosts["old"]["status"], hosts["recent"]["status"]) == ("unknown", "ready")
    assert not (master.fleet / "old.json").exists() and not (master.heal / "old.json").exists()

    del master.opts["k8snode_memory_max_age"]  # the default: thirty days
    remember(master.fleet, "old", {"last_known": known("ready")}, age=31 * 86400)
    assert report(from_memory=True)["hosts"]["old"]["status"] == "unknown"


@pytest.mark.parametrize("bad", [-1, "30d", True, float("nan")])
def test_a_bad_max_age_is_named(master, bad):
    with pytest.raises(ValueError, match=rf"memory_max_age: invalid {bad!r}: seconds > 0, or 0"):
        runner.report(from_memory=True, memory_max_age=bad)
    master.opts["k8snode_memory_max_age"] = bad
    with pytest.raises(ValueError, match=r"the master opt k8snode_memory_max_age: invalid"):
        runner.report(from_memory=True)


def test_without_a_readable_key_directory_nothing_goes_for_want_of_a_key(master):
    remember(master.fleet, "someone", {"last_known": known("ready")})
    master.keys.rmdir()
    assert runner._forget_memory(time.time(), None) == {}
    assert (master.fleet / "someone.json").exists()


def test_who_to_forget_is_decided_by_key_then_age():
    written = {"a": 100.0, "b": 100.0, "c": 950.0}
    assert fleet.memory_to_forget(written, {"a", "c"}, 1000.0, 500) == {"b": fleet.NO_KEY, "a": fleet.TOO_OLD}
    assert fleet.memory_to_forget(written, None, 1000.0, None) == {}
    assert fleet.memory_owner("node1.example.com.json.tmp-12") == "node1.example.com"
    assert fleet.memory_owner("a.json.json.lock") == "a.json"
    assert fleet.memory_owner("notes.txt") is None


def test_a_writer_waiting_on_a_lock_that_is_removed_takes_the_new_one(tmp_path):
    path = str(tmp_path / "node1.json")
    holding, waiting_got_it = threading.Event(), threading.Event()
    seen = {}

    def writer():
        holding.wait()
        with runner._flocked(path):
            seen["lock"] = os.stat(path + ".lock").st_ino
            waiting_got_it.set()

    thread = threading.Thread(target=writer)
    with runner._flocked(path):
        thread.start()
        holding.set()
        time.sleep(0.2)  # the writer opens the lock file and waits on it
        os.unlink(path + ".lock")  # as _forget does, while held
    assert waiting_got_it.wait(10)
    thread.join(10)
    # The writer holds the lock file that is at the path now, not the one removed.
    assert os.path.exists(path + ".lock")
    assert seen["lock"] == os.stat(path + ".lock").st_ino


def test_keys_kept_elsewhere_remove_nothing_for_want_of_a_key(master):
    remember(master.fleet, "someone", {"last_known": known("ready")})
    master.opts["keys.cache_driver"] = "mmap_key"
    assert runner._forget_memory(time.time(), None) == {}
    assert (master.fleet / "someone.json").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"ssh": "yes"}, "ssh: invalid 'yes': True or False"),
        ({"ssh": True, "from_memory": True}, "ssh=True audits the roster in one salt-ssh run: from_memory cannot"),
        ({"ssh": True, "batch": 10}, "ssh=True audits the roster in one salt-ssh run: batch cannot"),
    ],
)
def test_a_report_over_ssh_refuses_what_cannot_apply(master, arguments, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        runner.report(**arguments)
    assert master.client.publishes == []


def test_a_salt_ssh_return_reads_as_a_minion_return():
    """salt.client.ssh ``run_iter`` yields ``{host: {"return": ..., "retcode": ...}}``
    (salt/client/ssh/__init__.py); a minion's return is ``{"ret": ...}``. A host salt-ssh
    could not reach returns a string, which the report shows as an error."""
    answer = fleet.ssh_answer({"return": audit(False), "retcode": 0, "jid": "1"})
    assert fleet.host_entry(answer)["status"] == fleet.NOT_READY
    assert fleet.host_entry(answer)["failing"] == {CHECK: DETAIL}
    unreachable = fleet.ssh_answer({"return": "Permission denied (publickey).", "retcode": 255})
    assert fleet.host_entry(unreachable) == {
        "status": fleet.ERROR,
        "failing": {},
        "lost_at_reboot": [],
        "error": "Permission denied (publickey).",
    }
