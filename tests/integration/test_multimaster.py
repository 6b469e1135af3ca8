"""Two hot masters, one minion, one shared fleet memory (issue 24).

Two real masters share a key pair (as Salt's multi-master tutorial says), both run the
drift reactor as ``salt/reactor/master.conf`` wires it, both keep k8snode's memory in one
Redis (Debian's redis-server, images/redis.Dockerfile) with ``k8snode_store: redis``.
One minion (Salt 3008, bookworm) is connected to both, with the k8snode beacon on and
heals allowed by its pillar. Each master connection of a minion runs its own beacons
(``salt/minion.py``: one ``Minion`` per master), so each master hears of each drift and
runs ``k8snode.heal`` for it: the shared store's lock and claim leave one heal.

Shown: one drift of ``ip_forward`` -> exactly one heal across both masters, counted once
against the heal limit; both masters' reports from memory show the same last-known state
and the same drift count; with Redis stopped, the runners fail with an error that names
it, and nothing is healed.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import salt.cache
import salt.utils.event
import yaml

from images import derived
from tests.integration.conftest import MASTER_START_TIMEOUT, _container_minion
from tests.integration.test_drift import MINION_DEFAULTS, collect, drain
from tests.integration.test_fleet_trust import delta, stats
from tests.support import harness, nodes, salt_ssh
from tests.support.harness import REPO_ROOT, salt_run

FORWARD = "sysctl:net.ipv4.ip_forward"
MINION_ID = "mm-node-bookworm"
HEAL_PILLAR = {
    "k8snode": {
        "kubelet": {"fail_cgroup_v1": False},  # the container shares this machine's cgroup v1
        "drift": {
            "beacon": True,
            "interval": 1,
            "summary_interval": 3600,
            "heal": True,
            "heal_limit": 3,
            "heal_window": 3600,
            "heal_cooldown": 1,
        },
    }
}


@pytest.fixture(scope="module")
def redis(docker_client, test_network):
    container = salt_ssh.start(docker_client, derived.ensure_derived("redis"), test_network.name, "redis")
    yield container, salt_ssh.address(container, test_network.name)
    container.remove(force=True)


@pytest.fixture(scope="module")
def masters(salt_factories, test_network, extension_root, tmp_path_factory, redis):
    _container, redis_address = redis
    pillar_root = tmp_path_factory.mktemp("mm-pillar")
    (pillar_root / "top.sls").write_text(yaml.safe_dump({"base": {"mm-*": ["heal"]}}))
    (pillar_root / "heal.sls").write_text(yaml.safe_dump(HEAL_PILLAR))
    overrides = yaml.safe_load((REPO_ROOT / "salt" / "reactor" / "master.conf").read_text())
    overrides.update(
        {
            "pillar_roots": {"base": [str(pillar_root)]},
            "timeout": 5,
            "cache.redis.host": redis_address,
            "cache.redis.port": 6379,
            "k8snode_store": "redis",
        }
    )
    factories = [
        salt_factories.salt_master_daemon(
            f"k8snode-mm-{name}",
            overrides=harness.master_config(test_network.gateway, extension_root, overrides),
            start_timeout=MASTER_START_TIMEOUT,
        )
        for name in ("a", "b")
    ]
    first, second = factories
    first.start(start_timeout=MASTER_START_TIMEOUT)
    # One key pair for both (Salt's multi-master tutorial): without it the minion cannot
    # decrypt the second master's messages.
    pki = Path(second.config["pki_dir"])
    pki.mkdir(parents=True, exist_ok=True)
    for name in ("master.pem", "master.pub"):
        shutil.copy(Path(first.config["pki_dir"]) / name, pki / name)
    second.start(start_timeout=MASTER_START_TIMEOUT)
    try:
        yield factories
    finally:
        for factory in reversed(factories):
            factory.terminate()


@pytest.fixture(scope="module")
def node(masters, test_network, minion_images):
    first, second = masters
    gateway = test_network.gateway
    overrides = dict(
        MINION_DEFAULTS,
        master=[f"{gateway}:{first.config['ret_port']}", f"{gateway}:{second.config['ret_port']}"],
    )
    minion = _container_minion(first, test_network, minion_images["bookworm"], MINION_ID, overrides)
    minion.start()
    try:
        for master in masters:
            wait_for_ping(master, MINION_ID)
        salt_run(first, "saltutil.sync_all", tgt=MINION_ID)
        yield minion
    finally:
        minion.terminate()


def wait_for_ping(master, minion_id, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = master.salt_cli(timeout=15).run("test.ping", minion_tgt=minion_id)
        if result.returncode == 0 and result.data is True:
            return
        time.sleep(1)
    raise AssertionError(f"{minion_id} does not answer master {master.id}")


def counted_since(masters, before, **at_least) -> list[dict]:
    """Each master's heal_stats counts since ``before`` (read from its cachedir, as
    ``salt-run k8snode.heal_stats`` does), once every master has at least ``at_least``
    (the counts are written when a runner call ends), or after 60 s."""
    deadline = time.monotonic() + 60
    while True:
        now = [delta(stats(master), before[index]) for index, master in enumerate(masters)]
        done = all(counts.get(key, 0) >= least for counts in now for key, least in at_least.items())
        if done or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


def without_ages(host: dict) -> dict:
    """A report's host entry without what depends on when the report ran."""
    if not isinstance(host, dict):
        return host
    return {key: without_ages(value) for key, value in host.items() if key not in ("age_seconds", "detail")}


def from_memory(master):
    return master.salt_run_cli(timeout=40).run("k8snode.report", f"tgt={MINION_ID}", "from_memory=True")


def test_one_drift_one_heal_one_memory_and_no_heal_without_the_store(masters, node, redis):
    first, second = masters
    buses = [
        salt.utils.event.get_master_event(master.config, master.config["sock_dir"], listen=True) for master in masters
    ]
    try:
        code, ret = nodes.apply(first, node)
        assert code == 0, ret
        # Both beacons settle (their first poll after the state run is a summary).
        for bus in buses:
            collect(bus, 30, f"salt/beacon/{MINION_ID}/k8snode/summary", until=lambda found: found)
        time.sleep(3)
        for bus in buses:
            drain(bus)
        before = [stats(master) for master in masters]

        started = time.monotonic()
        nodes.sh(node, "sysctl -q -w net.ipv4.ip_forward=0")
        # Each master hears the drift from its own beacon and runs the heal runner; then
        # each hears the heal's "ok again" (two remember calls each).
        counted = counted_since(masters, before, heal_calls=1, remember_calls=2)
        print(f"drift to both masters' runners done: {time.monotonic() - started:.1f} s; counts {counted}")
        assert [counts.get("heals", 0) for counts in counted] in ([1, 0], [0, 1]), counted
        assert sum(counts.get("skipped:under_way", 0) + counts.get("not_confirmed", 0) for counts in counted) >= 1
        applied = [collect(bus, 2, f"k8snode/heal/{MINION_ID}/applied", until=lambda found: found) for bus in buses]
        assert sorted(len(events) for events in applied) == [0, 1], applied
        assert nodes.live(node, "net/ipv4/ip_forward") == "1"

        # One memory: both masters report the same last-known state and drift count.
        reports = [from_memory(master) for master in masters]
        hosts = [report.data["hosts"][MINION_ID] for report in reports]
        assert without_ages(hosts[0]) == without_ages(hosts[1]), hosts
        assert hosts[0]["last_known"]["source"] == "confirmed", hosts[0]
        # fail, then ok again after the heal: two changes, each counted once.
        assert hosts[0]["drift_events"] == 2, hosts[0]
        # The heal limit counts that heal once, in the one heal log (read as the runner does).
        history = salt.cache.Cache(first.config, driver="redis").fetch("k8snode/heal", MINION_ID)
        assert len(history["heals"]) == 1, history
    finally:
        for bus in buses:
            bus.destroy()

    # The shared store stopped: a clear error, no heal.
    redis[0].stop(timeout=1)
    try:
        nodes.sh(node, "sysctl -q -w net.ipv4.ip_forward=0")
        started = time.monotonic()
        report = from_memory(first)
        print(f"report from memory with Redis stopped: {time.monotonic() - started:.1f} s")
        assert report.returncode != 0, report
        assert "the shared fleet memory (Redis at" in report.stdout + report.stderr, report
        time.sleep(5)  # beacon polls, reactor runs: nothing may heal
        assert nodes.live(node, "net/ipv4/ip_forward") == "0"
        # Each master's runner got the drift and failed on the store, naming it.
        for master in masters:
            log = Path(master.config["root_dir"], master.config["log_file"])
            logged = log.read_text(errors="replace") if log.exists() else ""
            interesting = [line for line in logged.splitlines() if "ERROR" in line or "k8snode" in line.lower()]
            assert "the shared fleet memory (Redis at" in logged, "\n".join([str(log), *interesting[-25:]])
    finally:
        redis[0].start()
