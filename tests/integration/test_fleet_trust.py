"""Issue 25 on real daemons: a forged beacon event, and an event storm, against a real master
with the drift reactor wired as ``salt/reactor/master.conf`` says, then with the
``k8snode_drift`` engine in its place (one confirmation publish per batch of events).

A minion's beacon events reach the master as an events list (``salt.minion``'s beacon loop:
``_fire_master(events=...)``); the master fires each with the tag and data the minion chose.
``salt-call event.fire_master ... preload='{"events": [...]}'`` sends that very load
(``{"cmd": "_minion_event", "id": <own id>, "events": [...]}``, with the minion's own keys)
and reaches the same branch of ``_minion_event``: the forgery the issue showed.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import salt.utils.event
import yaml

from tests.integration.conftest import MASTER_START_TIMEOUT, _container_minion, start_side_by_side
from tests.support import harness, nodes
from tests.support.beacon_events import turned_fail
from tests.support.harness import REPO_ROOT, salt_run

FORWARD = "sysctl:net.ipv4.ip_forward"

SENDER_ID = "trust-sender-bookworm"
VICTIM_ID = "trust-victim-trixie"
SILENT_ID = "trust-silent-0"
PILLAR_TOP = {"base": {"trust-victim-*": ["heal"]}}
HEAL_PILLAR = {
    "k8snode": {
        "kubelet": {"fail_cgroup_v1": False},  # the containers share this machine's cgroup v1
        "drift": {"heal": True, "heal_limit": 3, "heal_window": 3600, "heal_cooldown": 120},
    }
}
STORM_CHECKS = (FORWARD, "sysctl:net.bridge.bridge-nf-call-iptables", "module:br_netfilter")


@pytest.fixture(scope="module", params=["reactor", "engine"])
def trust_master(request, salt_factories, test_network, extension_root, tmp_path_factory):
    """The drift reactor wired as salt/reactor/master.conf says, or the k8snode_drift engine
    in place of its beacon line (_engines/k8snode_drift.py)."""
    pillar_root = tmp_path_factory.mktemp("trust-pillar")
    (pillar_root / "top.sls").write_text(yaml.safe_dump(PILLAR_TOP))
    (pillar_root / "heal.sls").write_text(yaml.safe_dump(HEAL_PILLAR))
    overrides = yaml.safe_load((REPO_ROOT / "salt" / "reactor" / "master.conf").read_text())
    if request.param == "engine":
        overrides = harness.with_drift_engine(overrides, batch_seconds=0.5)
    # The confirmation publish waits the master's timeout for a minion that does not answer
    # (then 2 s for Salt's "is the job still running?", k8snode._CONFIRM_FIND_JOB_TIMEOUT).
    overrides.update(pillar_roots={"base": [str(pillar_root)]}, timeout=3)
    factory = salt_factories.salt_master_daemon(
        f"k8snode-trust-master-{request.param}",
        overrides=harness.master_config(test_network.gateway, extension_root, overrides),
        start_timeout=MASTER_START_TIMEOUT,
    )
    with factory.started(start_timeout=MASTER_START_TIMEOUT):
        yield factory


@pytest.fixture(scope="module")
def two_minions(trust_master, test_network, minion_images):
    started = [
        _container_minion(trust_master, test_network, minion_images[release], mid)
        for mid, release in ((SENDER_ID, "bookworm"), (VICTIM_ID, "trixie"))
    ]
    try:
        start_side_by_side(started)
        salt_run(trust_master, "saltutil.sync_all", tgt=[VICTIM_ID], tgt_type="list")
        yield tuple(started)
    finally:
        for minion in started:
            minion.terminate()


@pytest.fixture(scope="module")
def bus(trust_master):
    with salt.utils.event.get_master_event(
        trust_master.config, trust_master.config["sock_dir"], listen=True
    ) as listener:
        yield listener


def stats(master) -> dict:
    found = Path(master.config["cachedir"]) / "k8snode" / "heal-stats.json"
    return json.loads(found.read_text())["counts"] if found.exists() else {}


def delta(after: dict, before: dict) -> dict:
    return {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}


def wait_for_calls(master, before, remember, heal, seconds):
    """Until the runners have seen ``remember`` + ``heal`` calls since ``before``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = delta(stats(master), before)
        if now.get("remember_calls", 0) >= remember and now.get("heal_calls", 0) >= heal:
            return now
        time.sleep(0.2)
    return delta(stats(master), before)


def collect(bus, seconds, prefix, until):
    events, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        event = bus.get_event(wait=0.2, full=True)
        if event and event["tag"].startswith(prefix):
            events.append((event["tag"], event["data"]))
            if until(events):
                break
    return events


def _cached_json(master, kind, minion_id) -> dict:
    found = Path(master.config["cachedir"]) / "k8snode" / kind / f"{minion_id}.json"
    return json.loads(found.read_text()) if found.exists() else {}


def memory(master, minion_id) -> dict:
    return _cached_json(master, "fleet", minion_id)


def heal_log(master, minion_id) -> dict:
    return _cached_json(master, "heal", minion_id)


def test_a_forged_beacon_event_moves_neither_memory_nor_heals(trust_master, two_minions, bus):
    """The sender, with its own keys and the beacon loop's load, names the victim, whose
    pillar allows heals and whose ip_forward is right: the victim's own fresh audit says
    so, nothing is healed and its memory holds the event only as a claim."""
    sender, victim = two_minions
    nodes.sh(victim, "echo 'net.ipv4.ip_forward = 1' > /etc/sysctl.d/50-test.conf; sysctl -q -w net.ipv4.ip_forward=1")
    before = stats(trust_master)
    forged = {
        "events": [{"tag": f"salt/beacon/{VICTIM_ID}/k8snode/{FORWARD}", "data": turned_fail(VICTIM_ID, FORWARD)}]
    }
    started = time.monotonic()
    result = sender.run(
        "salt-call", "-c", str(sender.config_dir), "--out=json", "event.fire_master", "{}", "ignored",
        f"preload={json.dumps(forged)}",
    )  # fmt: skip
    assert result.returncode == 0 and json.loads(result.stdout)["local"] is True, result
    heal_prefix = f"k8snode/heal/{VICTIM_ID}/"
    events = collect(bus, 30, heal_prefix, until=lambda found: found)
    assert [tag for tag, _ in events] == [heal_prefix + "not_confirmed"], events
    assert events[0][1]["reason"] == f"not confirmed: {VICTIM_ID} says {FORWARD} is ok"
    counted = wait_for_calls(trust_master, before, 1, 1, 10)
    assert counted.get("heals", 0) == 0 and counted.get("pillar_compiles", 0) == 0, counted
    assert counted["confirmations"] == 1 and counted["not_confirmed"] == 1, counted
    remembered = memory(trust_master, VICTIM_ID)
    assert "last_known" not in remembered, remembered  # 0 confirmed memory writes
    assert remembered["last_claim"]["source"] == "beacon claim"
    assert not memory(trust_master, SENDER_ID)
    print(f"forged event to not_confirmed: {time.monotonic() - started:.1f} s; counts {counted}")

    report = trust_master.salt_run_cli(timeout=60).run("k8snode.report", f"tgt={VICTIM_ID}", "timeout=10")
    assert report.data["hosts"][VICTIM_ID]["status"] in ("ready", "not ready"), report
    assert memory(trust_master, VICTIM_ID)["last_known"]["source"] == "audit return"


def test_a_small_storm_heals_each_minion_at_most_once(trust_master, two_minions, bus):
    """3 checks x 20 minions, twice within the cooldown, fired on the master's bus: the
    victim (its ip_forward really off) is healed once; an accepted minion that does not
    answer, and 18 ids without a key, never; no pillar compile without a heal; no event
    lost between the bus and the runners."""
    _sender, victim = two_minions
    nodes.sh(victim, "rm -f /etc/sysctl.d/50-test.conf; sysctl -q -w net.ipv4.ip_forward=0")
    pki = Path(trust_master.config["pki_dir"]) / "minions"
    shutil.copy(pki / VICTIM_ID, pki / SILENT_ID)  # accepted, never answers
    minions = [VICTIM_ID, SILENT_ID] + [f"trust-ghost-{index}" for index in range(18)]
    before = stats(trust_master)
    started = time.monotonic()
    with salt.utils.event.get_master_event(
        trust_master.config, trust_master.config["sock_dir"], listen=False
    ) as master_bus:
        for _round in range(2):
            for minion_id in minions:
                for check in STORM_CHECKS:
                    tag = f"salt/beacon/{minion_id}/k8snode/{check}"
                    master_bus.fire_event(turned_fail(minion_id, check), tag)
    fired = 2 * len(minions) * len(STORM_CHECKS)
    counted = wait_for_calls(trust_master, before, fired, fired, 40)
    drained = time.monotonic() - started
    print(f"storm: {fired} events drained in {drained:.1f} s; counts {counted}")
    assert counted["remember_calls"] == fired and counted["heal_calls"] == fired, counted  # 0 dropped
    assert counted["heals"] == 1, counted
    assert counted.get("pillar_compiles", 0) <= counted["heals"], counted
    assert counted["skipped:no_key"] == 2 * 18 * len(STORM_CHECKS) * 2, counted  # by remember and by heal
    # One publish each to the two accepted minions: the silent one is not asked again.
    assert counted["confirmations"] == 2 and counted["not_confirmed"] == 1, counted
    applied = collect(bus, 5, f"k8snode/heal/{VICTIM_ID}/applied", until=lambda found: found)
    assert len(applied) == 1, applied
    assert nodes.live(victim, "net/ipv4/ip_forward") == "1"
    assert all(not heal_log(trust_master, minion_id).get("heals") for minion_id in minions[1:])
