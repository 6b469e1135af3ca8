"""The fleet memory shared by hot masters (issue 24): what each master may count, and
what the shared store refuses. The real thing (two masters, one Redis) is
tests/integration/test_multimaster.py.

Expected values from Salt's sources: a minion with several hot masters runs one
``Minion`` per master (``salt/minion.py``, ``MinionManager``), each with its own beacons,
and each sends its beacon events to its own master only (``_fire_master``): every master
hears every change once.
"""

import pytest

from _runners import _k8snode_shared as shared
from _runners import k8snode as runner
from tests.unit.test_heal_and_memory import TAG, _event


def test_the_same_change_heard_by_two_masters_is_one_drift(master_cache):
    for _master in ("a", "b"):  # each master's reactor hands its copy to remember
        runner.remember(TAG, _event())
    assert [event[1:] for event in runner._read_memory("node1")["drift_events"]] == [
        ["sysctl:net.ipv4.ip_forward", "fail"]
    ]
    for _master in ("a", "b"):
        runner.remember(TAG, _event(old_status="fail", new_status="ok", ready=True))
    runner.remember(TAG, _event())  # it drifts again: a new drift
    assert [event[2] for event in runner._read_memory("node1")["drift_events"]] == ["fail", "ok", "fail"]


def test_another_check_in_between_does_not_hide_a_repeat(master_cache):
    runner.remember(TAG, _event())
    other = "salt/beacon/node1/k8snode/module:br_netfilter"
    runner.remember(other, _event(check="module:br_netfilter"))
    runner.remember(TAG, _event())  # the second master's copy of the first change
    assert [event[1] for event in runner._read_memory("node1")["drift_events"]] == [
        "sysctl:net.ipv4.ip_forward",
        "module:br_netfilter",
    ]


def test_redis_cluster_mode_is_refused():
    with pytest.raises(shared.SharedStoreError, match="cluster mode is not supported"):
        shared.SharedStore({"cache.redis.cluster_mode": True})


def test_a_bad_store_setting_is_named(master_cache, monkeypatch):
    monkeypatch.setitem(runner.__opts__, "k8snode_store", "cache")
    with pytest.raises(ValueError, match="k8snode_store is 'cache': one of files, redis"):
        runner.remember(TAG, _event())


def test_an_unreachable_store_is_an_error_that_names_it_and_no_write(master_cache, monkeypatch):
    """A stopped Redis (connection refused on a port nothing listens on, loopback only)."""
    monkeypatch.setitem(runner.__opts__, "k8snode_store", "redis")
    monkeypatch.setitem(runner.__opts__, "cache.redis.host", "127.0.0.1")
    monkeypatch.setitem(runner.__opts__, "cache.redis.port", 1)
    with pytest.raises(
        runner._shared.SharedStoreError, match=r"the shared fleet memory \(Redis at 127.0.0.1:1\) cannot"
    ):
        runner.remember(TAG, _event())
    assert not (master_cache / "k8snode" / "fleet").exists()


def test_a_report_on_an_unreachable_store_says_so_before_expanding_the_target(master_cache, monkeypatch):
    monkeypatch.setitem(runner.__opts__, "k8snode_store", "redis")
    monkeypatch.setitem(runner.__opts__, "cache.redis.host", "127.0.0.1")
    monkeypatch.setitem(runner.__opts__, "cache.redis.port", 1)
    monkeypatch.setattr(runner, "__context__", {}, raising=False)
    monkeypatch.setattr(runner, "_expected_minions", lambda *args: pytest.fail("expanded the target first"))
    with pytest.raises(runner._shared.SharedStoreError, match=r"\(Redis at 127.0.0.1:1\) cannot be reached"):
        runner.report(from_memory=True)
