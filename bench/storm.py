#!/usr/bin/env python3
"""`make bench` (storm part): an event storm against one real salt-master with the k8snode drift
reactor (issue 25). Prints figures, asserts nothing.

    .venv/bin/python bench/storm.py [--minions 1000] [--checks 3] [--confirm-timeout 5] [--max-seconds 900]

A salt-master is started from a temp root with the reactor of ``salt/reactor/master.conf`` and a
pillar giving every minion ``k8snode: {drift: {heal: true}}``. ``--minions`` ids are accepted (one
key pair, its public key copied for each id) but none of them runs: every confirmation the heal
runner publishes goes to a silent minion, the worst case (what a forger naming many
accepted-but-down minions costs). ``--checks`` "fail" beacon events per minion are fired on the
master's bus, then the same again at once (within the 30 s cooldown); the runners' counts
(``<cachedir>/k8snode/heal-stats.json``) are polled until every event reached both runners, or
nothing changed for 30 s, or ``--max-seconds``. The master's process tree is sampled for CPU and
RSS meanwhile; "TaskPool queue is full" lines in its log are the events Salt's reactor dropped.

Targets (issue 25): 0 dropped, <= 1 heal per minion, pillar compiles <= heals, drain <= 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench import common  # noqa: E402 (needs the repository on sys.path)
from tests.support import harness  # noqa: E402
from tests.support.beacon_events import turned_fail  # noqa: E402

CHECKS = (
    "sysctl:net.ipv4.ip_forward",
    "sysctl:net.bridge.bridge-nf-call-iptables",
    "sysctl:net.bridge.bridge-nf-call-ip6tables",
    "module:overlay",
    "module:br_netfilter",
)
IDLE_STOP = 30  # seconds without a change in the counts: drained (or stuck)


def master_config(root: Path, confirm_timeout: float, sls_by_path: bool = False, engine: bool = False) -> dict:
    import yaml

    extension_root = root / "extensions"
    pillar_root = root / "pillar"
    for path in (extension_root, pillar_root, root / "conf"):
        path.mkdir(parents=True, exist_ok=True)
    (pillar_root / "top.sls").write_text("base:\n  '*':\n    - heal\n")
    (pillar_root / "heal.sls").write_text(yaml.safe_dump({"k8snode": {"drift": {"heal": True}}}))
    ports = harness.listen_ports("127.0.0.1", 2)
    config = harness.standalone_master_config("k8snode-storm", "127.0.0.1", root, *ports, extension_root=extension_root)
    config.update(yaml.safe_load((REPO_ROOT / "salt" / "reactor" / "master.conf").read_text()))
    if sls_by_path:
        # The reactor SLS by its file path: Salt's reactor (3008.4) fetches a salt:// reactor SLS
        # with cp.cache_file for every event, through a new file client (and its loaders) each time.
        for entry in config["reactor"]:
            for pattern, files in entry.items():
                entry[pattern] = [str(REPO_ROOT / "salt" / f.removeprefix("salt://")) for f in files]
    if engine:
        config = harness.with_drift_engine(config)
    config.update(pillar_roots={"base": [str(pillar_root)]}, timeout=confirm_timeout, auto_accept=False)
    config["log_level_logfile"] = "warning"
    (root / "conf" / "master").write_text(yaml.safe_dump(config))
    return config


def accept_minions(config: dict, count: int) -> list[str]:
    import salt.crypt

    _private, public = salt.crypt.gen_keys(2048)
    accepted = Path(config["pki_dir"]) / "minions"
    accepted.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(config["pki_dir"], 0o700)
    ids = [f"storm-{index:04d}" for index in range(count)]
    for minion_id in ids:
        (accepted / minion_id).write_text(public)
    return ids


def start_master(root: Path, config: dict):
    log = open(root / "master.stdout", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [str(REPO_ROOT / ".venv" / "bin" / "salt-master"), "-c", str(root / "conf"), "-l", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    process.log = log
    import salt.utils.event

    deadline = time.monotonic() + 120
    pub = Path(config["sock_dir"]) / "master_event_pub.ipc"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"salt-master exited with {process.returncode}: see {root / 'master.stdout'}")
        if pub.exists():
            try:
                with salt.utils.event.get_master_event(config, config["sock_dir"], listen=True) as bus:
                    with salt.utils.event.get_master_event(config, config["sock_dir"], listen=False) as sender:
                        sender.fire_event({"ping": 1}, "k8snode/storm/ping")
                    if bus.get_event(wait=5, tag="k8snode/storm/ping", full=True):
                        time.sleep(2)  # let the reactor process settle
                        return process
            except Exception:  # noqa: BLE001 (the bus is not up yet)
                pass
        time.sleep(0.5)
    raise RuntimeError("salt-master's event bus did not answer within 120 s")


def stop_master(process) -> None:
    if process is None:
        return
    harness.stop_process_group(process)
    process.log.close()


class TreeSampler(threading.Thread):
    """The master's process tree (the process and all its children): CPU seconds and RSS every 0.5 s."""

    def __init__(self, pid):
        import psutil

        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.cpu = {}  # pid -> last user+system seconds seen (a process gone keeps its last value)
        self.peak_rss = 0
        self.stop = threading.Event()
        self.base_cpu = self.sample()[0]

    def sample(self):
        import psutil

        rss = 0
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            processes = []
        for process in processes:
            try:
                times = process.cpu_times()
                self.cpu[process.pid] = times.user + times.system + times.children_user + times.children_system
                rss += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        self.peak_rss = max(self.peak_rss, rss)
        return sum(self.cpu.values()), rss

    def run(self):
        while not self.stop.wait(0.5):
            self.sample()


def read_counts(config) -> dict:
    path = Path(config["cachedir"]) / "k8snode" / "heal-stats.json"
    try:
        return json.loads(path.read_text()).get("counts", {})
    except (OSError, ValueError):
        return {}


def log_lines(root: Path) -> tuple[int, int, list[str]]:
    text = ""
    for name in ("master.log", "master.stdout"):
        path = root / name
        if path.exists():
            text += path.read_text(errors="replace")
    lines = text.splitlines()
    full = [line for line in lines if "TaskPool queue is full" in line]
    errors = [line for line in lines if "[ERROR" in line]
    return len(full), len(errors), errors[:3]


def storm(args) -> dict:
    import salt.utils.event
    from salt.config import DEFAULT_MASTER_OPTS

    root = Path(tempfile.mkdtemp(prefix="k8snode-storm-"))
    process = sampler = None
    try:
        config = master_config(root, args.confirm_timeout, args.sls_by_path, args.engine)
        ids = accept_minions(config, args.minions)
        process = start_master(root, config)
        sampler = TreeSampler(process.pid)
        rss_before = sampler.sample()[1]
        sampler.start()
        checks = CHECKS[: args.checks]
        fired = 0
        started = time.monotonic()
        with salt.utils.event.get_master_event(config, config["sock_dir"], listen=False) as bus:
            for _round in range(2):
                for minion_id in ids:
                    for check in checks:
                        bus.fire_event(turned_fail(minion_id, check), f"salt/beacon/{minion_id}/k8snode/{check}")
                        fired += 1
        fire_seconds = time.monotonic() - started
        counts, last, changed, why = {}, None, time.monotonic(), "max-seconds"
        while time.monotonic() - started < args.max_seconds:
            counts = read_counts(config)
            if counts.get("remember_calls", 0) >= fired and counts.get("heal_calls", 0) >= fired:
                why = "drained"
                break
            if counts != last:
                last, changed = counts, time.monotonic()
            elif time.monotonic() - changed > IDLE_STOP:
                why = f"no change for {IDLE_STOP} s"
                break
            time.sleep(0.5)
        drain = time.monotonic() - started
        counts = read_counts(config)
        sampler.stop.set()
        sampler.join()
        cpu, rss_after = sampler.sample()
        full, errors, first_errors = log_lines(root)
        return {
            "minions": args.minions,
            "checks": len(checks),
            "confirm_timeout": args.confirm_timeout,
            "threads": config.get("reactor_worker_threads", DEFAULT_MASTER_OPTS["reactor_worker_threads"]),
            "hwm": config.get("reactor_worker_hwm", DEFAULT_MASTER_OPTS["reactor_worker_hwm"]),
            "sls": "the k8snode_drift engine" if args.engine else config["reactor"][-1][harness.DRIFT_REACTOR_TAG][0],
            "engine": args.engine,
            "fired": fired,
            "fire_seconds": fire_seconds,
            "counts": counts,
            "why": why,
            "drain": drain,
            "cpu": cpu - sampler.base_cpu,
            "rss_before": rss_before,
            "rss_after": rss_after,
            "peak_rss": sampler.peak_rss,
            "queue_full": full,
            "errors": errors,
            "first_errors": first_errors,
        }
    finally:
        if sampler is not None:
            sampler.stop.set()
        stop_master(process)
        shutil.rmtree(root, ignore_errors=True)


def report(result) -> None:
    counts = result["counts"]
    fired, minions = result["fired"], result["minions"]
    mib = 2**20
    skipped = {key.split(":", 1)[1]: value for key, value in sorted(counts.items()) if key.startswith("skipped:")}
    wait = result["confirm_timeout"] + 2
    print(
        f"{minions} accepted minions, none running (every confirmation goes to a silent minion: the worst case, "
        f"what a forger naming many accepted-but-down minions costs)"
    )
    print(
        f"reactor_worker_threads {result['threads']}, reactor_worker_hwm {result['hwm']} (Salt's defaults); "
        f"master timeout {result['confirm_timeout']} s; events handled by {result['sls']}"
    )
    print(
        f"events fired:        {fired} ({minions} x {result['checks']} checks x 2 rounds, in {result['fire_seconds']:.1f} s)"
    )
    print(f"remember calls:      {counts.get('remember_calls', 0)}")
    print(f"heal calls:          {counts.get('heal_calls', 0)}")
    print(f"heals started:       {counts.get('heals', 0)} (target <= 1 per minion: <= {minions})")
    print(f"confirmations:       {counts.get('confirmations', 0)}; not_confirmed {counts.get('not_confirmed', 0)}")
    print(
        f"pillar compiles:     {counts.get('pillar_compiles', 0)} (target <= heals); "
        f"pillar cache reads {counts.get('pillar_cache_reads', 0)}"
    )
    print(f"skipped:             {skipped or 'none'}")
    print(
        f"dropped (log lines): {result['queue_full']} 'TaskPool queue is full' (target 0); ERROR lines {result['errors']}"
    )
    for line in result["first_errors"]:
        print(f"  {line[:200]}")
    print(f"drain:               {result['drain']:.1f} s from the first event ({result['why']}; target <= 60 s)")
    heal_calls = counts.get("heal_calls", 0)
    if heal_calls < fired and result["drain"] > 0:
        print(
            f"  rate: {heal_calls / result['drain']:.1f} heal calls/s, {counts.get('confirmations', 0) / result['drain']:.2f} confirmations/s"
        )
    if result["engine"]:
        print("  (the engine: one confirmation publish, and one wait, per batch of events)")
    else:
        print(
            f"  arithmetic: {minions} confirmations x ({result['confirm_timeout']} + 2) s / {result['threads']} threads "
            f"= {minions * wait / result['threads']:.0f} s"
        )
    print(f"master CPU:          {result['cpu']:.1f} s, {result['cpu'] / fired * 1000:.2f} ms per event")
    print(
        f"master RSS:          {result['rss_before'] / mib:.0f} MiB before, {result['rss_after'] / mib:.0f} MiB after, "
        f"peak {result['peak_rss'] / mib:.0f} MiB (growth {(result['peak_rss'] - result['rss_before']) / mib:+.0f} MiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minions", type=int, default=1000)
    parser.add_argument("--checks", type=int, default=3, choices=range(1, len(CHECKS) + 1))
    parser.add_argument("--confirm-timeout", type=int, default=5, help="the master's timeout (default 5, Salt's)")
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument(
        "--sls-by-path",
        action="store_true",
        help="name the reactor SLS by its file path instead of salt:// (what Salt's per-event fetch costs)",
    )
    parser.add_argument(
        "--engine",
        action="store_true",
        help="the k8snode_drift engine instead of the drift reactor (one confirmation publish per batch)",
    )
    args = parser.parse_args()
    machine = common.machine()
    print(f"machine: {machine}")
    report(storm(args))


if __name__ == "__main__":
    main()
