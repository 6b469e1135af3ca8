"""The k8snode beacon through Salt's real beacon loader, in-process, on this machine's
/proc and /etc (read-only: the beacon reads, and writes only its memory in the cachedir)."""

import json
import subprocess
from pathlib import Path

import pytest
import salt.loader

from tests.functional.conftest import REPO

CONFIG = [{"summary_interval": 3600}]


@pytest.fixture
def beacon_opts(minion_opts):
    minion_opts["beacons_dirs"] = [str(REPO / "_beacons")]
    return minion_opts


def _load(opts, loaders):
    """A fresh beacon loader with an empty __context__: what a beacon refresh gives."""
    return salt.loader.beacons(opts, loaders.modules, context={})


@pytest.fixture
def no_processes(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"the beacon started a process: {args!r}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


def test_validate_accepts_the_salt_way_and_names_bad_settings(beacon_opts, loaders):
    beacons = _load(beacon_opts, loaders)
    assert beacons["k8snode.validate"]([{"interval": 10}, {"disable_during_state_run": True}]) == (True, "valid")
    ok, message = beacons["k8snode.validate"]([{"sumary_interval": 5}])
    assert not ok and "sumary_interval" in message
    ok, message = beacons["k8snode.validate"]([{"summary_interval": -1}])
    assert not ok and "-1" in message
    ok, message = beacons["k8snode.validate"]({"interval": 10})
    assert not ok and "list" in message


def test_first_poll_is_a_summary_then_silence_and_a_refresh_does_not_refire(beacon_opts, loaders, no_processes):
    beacons = _load(beacon_opts, loaders)
    (summary,) = beacons["k8snode.beacon"](CONFIG)
    assert summary["tag"] == "summary"
    assert isinstance(summary["ready"], bool) and isinstance(summary["failing"], list)
    assert beacons["k8snode.beacon"](CONFIG) == []
    memory = json.loads((Path(beacon_opts["cachedir"]) / "k8snode" / "drift-beacon.json").read_text())
    assert "sysctl:net.ipv4.ip_forward" in memory["statuses"]

    refreshed = _load(beacon_opts, loaders)
    events = refreshed["k8snode.beacon"](CONFIG)
    assert [event["tag"] for event in events] == ["summary"]


def test_a_status_that_differs_from_memory_fires_one_event_naming_the_check(beacon_opts, loaders, no_processes):
    beacons = _load(beacon_opts, loaders)
    beacons["k8snode.beacon"](CONFIG)
    memory_file = Path(beacon_opts["cachedir"]) / "k8snode" / "drift-beacon.json"
    memory = json.loads(memory_file.read_text())
    check = "sysctl:net.ipv4.ip_forward"
    now = memory["statuses"][check]
    memory["statuses"][check] = "warn" if now != "warn" else "ok"
    memory_file.write_text(json.dumps(memory))

    events = _load(beacon_opts, loaders)["k8snode.beacon"](CONFIG)
    changed = [event for event in events if event["tag"] != "summary"]
    assert [event["check"] for event in changed] == [check]
    assert changed[0]["new_status"] == now
    assert {"live", "boot", "boot_file", "detail", "old_status", "fixable"} <= set(changed[0])
