"""Continuous readiness on real daemons: the k8snode beacon in minion containers, the drift
reactor and heal runner on a real master, node_exporter serving the metrics, the fleet memory."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request

import pytest
import salt.utils.event
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import MASTER_START_TIMEOUT, _container_minion
from tests.support import harness, nodes, prometheus_server
from tests.support.harness import REPO_ROOT, salt_run

INTERVAL = 1
FORWARD = "sysctl:net.ipv4.ip_forward"
WATCH_ID = "drift-watch-bookworm"
HEAL_ID = "drift-heal-trixie"
HEAL_LIMIT = 2
SETTLE = 3

PILLAR_TOP = {"base": {"drift-watch-*": ["watch"], "drift-heal-*": ["heal"]}}
# The containers share this machine's cgroup v1 (TESTBED.md): their kubelet runs with failCgroupV1: false.
CGROUP_V1_KUBELET = {"fail_cgroup_v1": False}
WATCH_PILLAR = {
    "k8snode": {
        "kubelet": CGROUP_V1_KUBELET,
        "drift": {"beacon": True, "interval": INTERVAL, "summary_interval": 3600, "metrics": True},
    }
}
HEAL_PILLAR = {
    "k8snode": {
        "kubelet": CGROUP_V1_KUBELET,
        "drift": {
            "beacon": True,
            "interval": INTERVAL,
            "summary_interval": 3600,
            "heal": True,
            "heal_limit": HEAL_LIMIT,
            "heal_window": 3600,
            "heal_cooldown": 1,
        },
    }
}


# --------------------------------------------------------------------------------------
# Fixtures: one master with the drift reactor for the module, an image with node_exporter
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def drift_master(salt_factories, test_network, extension_root, tmp_path_factory):
    pillar_root = tmp_path_factory.mktemp("drift-pillar")
    (pillar_root / "top.sls").write_text(yaml.safe_dump(PILLAR_TOP))
    (pillar_root / "watch.sls").write_text(yaml.safe_dump(WATCH_PILLAR))
    (pillar_root / "heal.sls").write_text(yaml.safe_dump(HEAL_PILLAR))
    # The reactor snippet users copy, as it is.
    overrides = yaml.safe_load((REPO_ROOT / "salt" / "reactor" / "master.conf").read_text())
    overrides["pillar_roots"] = {"base": [str(pillar_root)]}
    factory = salt_factories.salt_master_daemon(
        "k8snode-drift-master",
        overrides=harness.master_config(test_network.gateway, extension_root, overrides),
        start_timeout=MASTER_START_TIMEOUT,
    )
    with factory.started(start_timeout=MASTER_START_TIMEOUT):
        yield factory


@pytest.fixture(scope="module")
def node_exporter_image():
    """The bookworm minion image plus Debian's prometheus-node-exporter (images/derived.py)."""
    from images import derived

    return derived.ensure_derived("node-exporter")


@pytest.fixture(scope="module")
def bus(drift_master):
    """The drift master's event bus, listened to from the test."""
    with salt.utils.event.get_master_event(
        drift_master.config, drift_master.config["sock_dir"], listen=True
    ) as listener:
        yield listener


# Salt counts a beacon's ``interval`` in ``loop_interval`` units but polls beacons once a
# second; salt-factories sets ``loop_interval: 0.05`` for its minions, which turns
# ``interval: 1`` into 20 s. These minions run with Salt's default, as a real minion does.
MINION_DEFAULTS = {"loop_interval": 1}


def _start(master, network, image, mid):
    minion = _container_minion(master, network, image, mid, overrides=MINION_DEFAULTS)
    minion.start()
    salt_run(master, "saltutil.sync_all", tgt=mid)
    return minion


@pytest.fixture(scope="module")
def watched(drift_master, test_network, node_exporter_image, docker_client):
    minion = _start(drift_master, test_network, node_exporter_image, WATCH_ID)
    container = docker_client.containers.get(minion.name)
    container.exec_run(
        [
            "prometheus-node-exporter",
            "--collector.disable-defaults",
            "--collector.textfile",
            "--collector.textfile.directory=/var/lib/prometheus/node-exporter",
            "--web.listen-address=:9100",
        ],
        detach=True,
    )
    container.reload()
    address = container.attrs["NetworkSettings"]["Networks"][test_network.name]["IPAddress"]
    yield minion, f"http://{address}:9100/metrics"
    minion.terminate()


@pytest.fixture(scope="module")
def prometheus(watched, test_network, docker_client):
    """A real Prometheus scraping the watched minion's node_exporter every second, with
    k8snode's alerting rules (their ``for:`` shortened: tests/support/prometheus_server.py)."""
    from images import derived

    _minion, url = watched
    target = urllib.parse.urlsplit(url).netloc
    server = prometheus_server.Prometheus(
        docker_client, derived.ensure_derived("prometheus"), test_network.name, [target]
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def healed(drift_master, test_network, minion_images):
    minion = _start(drift_master, test_network, minion_images["trixie"], HEAL_ID)
    yield minion
    minion.terminate()


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def drain(bus):
    while bus.get_event(wait=0.01, full=True):
        pass


def collect(bus, seconds, prefix="", until=None):
    """Events whose tag starts with ``prefix`` (a string or a tuple of them) for ``seconds`` (or until
    ``until(events)``)."""
    events, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        event = bus.get_event(wait=0.2, full=True)
        if event and event["tag"].startswith(prefix):
            events.append((event["tag"], event["data"]))
            if until and until(events):
                break
    return events


def healed_and_ok_again(heal_prefix):
    """``until`` for a heal: a heal event has come and the beacon has said ``ok``, in either order."""

    def done(found):
        heal_seen = any(tag.startswith(heal_prefix) for tag, _ in found)
        beacon = [data.get("new_status") for tag, data in found if not tag.startswith(heal_prefix)]
        return heal_seen and "ok" in beacon

    return done


def check_events(events, minion_id):
    prefix = f"salt/beacon/{minion_id}/k8snode/"
    return [
        (tag[len(prefix) :], data) for tag, data in events if tag.startswith(prefix) and not tag.endswith("summary")
    ]


def prepare_with_beacon(master, bus, minion):
    drain(bus)
    code, ret = nodes.apply(master, minion)
    assert code == 0, ret
    assert any("drift beacon" in key for key in ret), ret
    # The beacon's first poll after the state run: a summary, ready.
    summaries = collect(bus, 30, f"salt/beacon/{minion.id}/k8snode/summary", until=lambda found: found)
    assert summaries and summaries[0][1]["ready"] is True, summaries
    # After a state run the minion refreshes its pillar and modules (the summary above
    # comes from the reloaded beacon); a few seconds let that finish, so the
    # "interval + 5 s" promise below is about a settled minion. (The 7-12 s measured
    # before were the 20 s polls of salt-factories' loop_interval, see MINION_DEFAULTS.)
    time.sleep(SETTLE)
    drain(bus)


def scrape(url):
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the test's own container
                text = response.read().decode()
            return {family.name: family for family in text_string_to_metric_families(text)}
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def sample(families, name, check=None):
    for item in families[name].samples:
        if check is None or item.labels.get("check") == check:
            return item.value
    raise AssertionError(f"{name}{{check={check}}} not served")


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------
def test_drift_is_one_event_per_change_and_metrics_follow(drift_master, bus, watched):
    minion, url = watched
    prepare_with_beacon(drift_master, bus, minion)
    families = scrape(url)
    assert sample(families, "k8snode_ready") == 1
    assert sample(families, "k8snode_check_live_ok", FORWARD) == 1
    assert families["k8snode_info"].samples[0].labels["os"] == "debian-12"

    nodes.sh(minion, "sysctl -q -w net.ipv4.ip_forward=0")
    (event,) = check_events(collect(bus, INTERVAL + 5), minion.id)
    assert event[0] == FORWARD
    assert (event[1]["old_status"], event[1]["new_status"], event[1]["live"]) == ("ok", "fail", "0")
    assert event[1]["boot_file"] == "/etc/sysctl.d/99-k8snode.conf" and event[1]["fixable"] is True
    families = scrape(url)
    assert sample(families, "k8snode_ready") == 0
    assert sample(families, "k8snode_check_live_ok", FORWARD) == 0
    assert sample(families, "k8snode_check_boot_ok", FORWARD) == 1

    nodes.sh(minion, "sysctl -q -w net.ipv4.ip_forward=1")
    (event,) = check_events(collect(bus, INTERVAL + 5), minion.id)
    assert (event[0], event[1]["new_status"]) == (FORWARD, "ok")
    assert sample(scrape(url), "k8snode_ready") == 1

    nodes.sh(minion, "echo 'net.ipv4.ip_forward = 0' > /etc/sysctl.d/zz-local.conf")
    (event,) = check_events(collect(bus, INTERVAL + 5), minion.id)
    assert event[0] == FORWARD
    assert event[1]["boot_file"] == "/etc/sysctl.d/zz-local.conf"
    assert (event[1]["live"], event[1]["boot"], event[1]["new_status"]) == ("1", "0", "fail")
    families = scrape(url)
    assert sample(families, "k8snode_check_live_ok", FORWARD) == 1
    assert sample(families, "k8snode_check_boot_ok", FORWARD) == 0  # lost at reboot

    nodes.sh(minion, "rm /etc/sysctl.d/zz-local.conf")
    (event,) = check_events(collect(bus, INTERVAL + 5), minion.id)
    assert event[1]["new_status"] == "ok" and event[1]["ready"] is True


def test_a_real_prometheus_fires_and_resolves_the_alerts(drift_master, bus, watched, prometheus):
    """Issue 23: the shipped alerting rules on a real Prometheus scraping the real
    node_exporter of a minion whose beacon writes the metrics: the node drifts, the alert
    goes pending then firing; it is put back, the alert resolves. The same for a value
    that will be lost at the next boot."""
    minion, _url = watched
    up = prometheus.wait_for(lambda: prometheus.query('k8snode_ready{job="node"} == 1'), timeout=30)
    assert up, "Prometheus scrapes k8snode_ready = 1 from the node"
    assert prometheus.alerts() == []

    def states(name):
        return lambda: {alert["state"] for alert in prometheus.alerts(name)}

    nodes.sh(minion, "sysctl -q -w net.ipv4.ip_forward=0")
    assert prometheus.wait_for(states("K8snodeNotReady")) == {"pending"}
    (firing,) = prometheus.wait_for(lambda: [a for a in prometheus.alerts("K8snodeNotReady") if a["state"] == "firing"])
    assert firing["labels"]["instance"] == urllib.parse.urlsplit(_url).netloc and firing["labels"]["job"] == "node"
    assert firing["annotations"]["summary"] == f"{firing['labels']['instance']} is not ready to be a Kubernetes node"
    nodes.sh(minion, "sysctl -q -w net.ipv4.ip_forward=1")
    prometheus.wait_for(lambda: not prometheus.alerts("K8snodeNotReady"))  # resolved

    nodes.sh(minion, "echo 'net.ipv4.ip_forward = 0' > /etc/sysctl.d/zz-local.conf")
    (lost,) = prometheus.wait_for(
        lambda: [a for a in prometheus.alerts("K8snodeReadinessLostAtNextBoot") if a["state"] == "firing"]
    )
    assert lost["labels"]["check"] == FORWARD, lost
    nodes.sh(minion, "rm /etc/sysctl.d/zz-local.conf")
    prometheus.wait_for(lambda: not prometheus.alerts())  # every alert resolved
    drain(bus)


def test_a_silent_host_shows_its_last_known_state(drift_master, watched):
    """What the host itself returned is its last known state; the beacon's events are
    claims (any minion could have sent them), counted as drift and kept apart."""
    minion, _ = watched
    report = drift_master.salt_run_cli(timeout=120)
    answered = report.run("k8snode.report", f"tgt={minion.id}", "timeout=30")
    assert answered.data["hosts"][minion.id]["status"] == "ready", answered
    minion.terminate()
    result = report.run("k8snode.report", f"tgt={minion.id}", "timeout=5")
    host = result.data["hosts"][minion.id]
    assert host["status"] == "no answer", host
    assert (host["last_known"]["status"], host["last_known"]["source"]) == ("ready", "audit return")
    assert 0 <= host["last_known"]["age_seconds"] < 120
    assert "last_claim" not in host  # the beacon's last claim (ready) is older than the answer
    age = host["last_known"]["age_seconds"]
    assert host["detail"] == f"no answer, last known: ready, {age} s ago (audit return)"
    # Four status changes in each of the two tests before this one.
    assert host["drift_events"] == 8


def test_drift_is_healed_a_foreign_boot_file_is_not_and_healing_gives_up(drift_master, bus, healed):
    minion = healed
    prepare_with_beacon(drift_master, bus, minion)
    heal_prefix = f"k8snode/heal/{minion.id}/"
    forward_tag = f"salt/beacon/{minion.id}/k8snode/{FORWARD}"

    nodes.sh(minion, "echo 'net.ipv4.ip_forward = 0' > /etc/sysctl.d/zz-local.conf")
    events = collect(bus, 30, heal_prefix, until=lambda found: found)
    assert [tag for tag, _ in events] == [heal_prefix + "not_healed"], events
    assert "/etc/sysctl.d/zz-local.conf wins at boot" in events[0][1]["reason"]
    assert nodes.read_file(minion, "/etc/sysctl.d/zz-local.conf").strip() == "net.ipv4.ip_forward = 0"
    nodes.sh(minion, "rm /etc/sysctl.d/zz-local.conf")
    collect(bus, INTERVAL + 5, f"salt/beacon/{minion.id}/k8snode/{FORWARD}", until=lambda found: found)

    for attempt in range(HEAL_LIMIT):
        drain(bus)
        nodes.sh(minion, "sysctl -q -w net.ipv4.ip_forward=0")
        # The heal's own change is an "ok again" event, which heals nothing. The beacon may send it
        # before the runner has fired "applied" (the runner waits for the state's return), so both
        # are collected in one pass.
        events = collect(bus, 120, (heal_prefix, forward_tag), until=healed_and_ok_again(heal_prefix))
        heals = [(tag, data) for tag, data in events if tag.startswith(heal_prefix)]
        assert [tag for tag, _ in heals] == [heal_prefix + "applied"], (attempt, events)
        assert heals[0][1]["result"] is True, events
        statuses = [data["new_status"] for tag, data in events if tag == forward_tag]
        assert statuses[-1:] == ["ok"], (attempt, events)
        assert nodes.live(minion, "net/ipv4/ip_forward") == "1"
        assert nodes.audit(drift_master, minion)["ready"] is True

    nodes.sh(minion, "sysctl -q -w net.ipv4.ip_forward=0")
    events = collect(bus, 30, heal_prefix, until=lambda found: found)
    assert [tag for tag, _ in events] == [heal_prefix + "gave_up"], events
    time.sleep(INTERVAL + 3)
    assert nodes.live(minion, "net/ipv4/ip_forward") == "0"  # not fought past the limit
