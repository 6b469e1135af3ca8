#!/usr/bin/env python3
"""`make bench` (swarm part): ``salt-run k8snode.report`` against ``salt '*' test.ping`` on N real
minions, side by side (issue 25). Prints figures, asserts nothing.

    .venv/bin/python bench/swarm.py [--sizes 50,100] [--rounds 3]

As Salt's own ``tests/minionswarm.py`` does: N real ``salt-minion`` processes (the project's venv,
Salt 3008) share this machine, each with its own id, config, cache, sockets and log, against one
real ``salt-master`` started from a temp root. The minions share one key pair (pre-accepted on the
master, so no key is generated N times) and load k8snode from the repository's ``_modules``
(``module_dirs``: no sync). ``k8snode.audit`` reads this machine's own files and ``/proc``: read-only.

For each N (ascending; the minions of the previous N stay up and more are started), ``--rounds``
pairs of ``salt '*' test.ping`` and ``salt-run k8snode.report`` (the CLIs, as a user runs them),
alternating, each waiting for all N answers. Measured per call: wall time, and CPU seconds of the
master's process tree plus the CLI process itself ("master side": what the publish, the returns and
the report's aggregation cost on the master host), and of the minions. The next N is not started
when the minions' memory so far, scaled, would pass 60 % of this machine's RAM.

Targets (issue 25): report <= 1.0x test.ping at N = 500; the master side's CPU per answer flat from
100 to 1,000 minions (what the report adds to Salt's publish is O(1) per answer).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench import common  # noqa: E402 (needs the repository on sys.path)
from bench.storm import TreeSampler, start_master, stop_master  # noqa: E402
from tests.support import harness  # noqa: E402

VENV_BIN = REPO_ROOT / ".venv" / "bin"
START_BATCH = 10  # minions started at once: more only queue on the 2 cores and time out their auth
CALL_TIMEOUT = 120


def master_config(root: Path) -> dict:
    import yaml

    (root / "conf").mkdir(parents=True)
    ports = harness.listen_ports("127.0.0.1", 2)
    extension_root = harness.make_extension_root(root / "extensions")
    config = harness.standalone_master_config("k8snode-swarm", "127.0.0.1", root, *ports, extension_root=extension_root)
    config.update(auto_accept=False, timeout=CALL_TIMEOUT, log_level_logfile="warning")
    (root / "conf" / "master").write_text(yaml.safe_dump(config))
    return config


class Swarm:
    """N salt-minion processes, one directory each under ``root/minions``, sharing one key pair."""

    def __init__(self, root: Path, master: dict):
        import salt.crypt

        self.root, self.master = root / "minions", master
        self.keys = root / "keys"
        self.keys.mkdir(parents=True)
        private, public = salt.crypt.gen_keys(2048)  # Salt 3008's signature (bench/storm.py too)
        (self.keys / "minion.pem").write_text(private)
        (self.keys / "minion.pub").write_text(public)
        os.chmod(self.keys / "minion.pem", 0o600)
        self.processes: dict[str, subprocess.Popen] = {}

    def _config(self, minion_id: str) -> Path:
        import yaml

        home = self.root / minion_id
        pki = home / "pki"
        pki.mkdir(parents=True, mode=0o700)
        for name in ("minion.pem", "minion.pub"):
            shutil.copy2(self.keys / name, pki / name)
        accepted = Path(self.master["pki_dir"]) / "minions"
        accepted.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy2(self.keys / "minion.pub", accepted / minion_id)
        config = {
            "id": minion_id,
            "master": "127.0.0.1",
            "master_port": self.master["ret_port"],
            "publish_port": self.master["publish_port"],
            "root_dir": str(home),
            "pki_dir": str(pki),
            "cachedir": str(home / "cache"),
            "sock_dir": str(home / "sock"),
            "pidfile": str(home / "minion.pid"),
            "log_file": str(home / "minion.log"),
            "log_level_logfile": "warning",
            "user": self.master["user"],
            "module_dirs": [str(REPO_ROOT / "_modules")],
            "multiprocessing": False,  # jobs in threads: one process per minion
            "acceptance_wait_time": 1,
            "random_reauth_delay": 0,
            "mine_enabled": False,
            "grains_cache": True,
        }
        (home / "minion").write_text(yaml.safe_dump(config))
        return home

    def grow(self, count: int) -> list[str]:
        """Start minions until ``count`` run; return the new ids."""
        new = [f"swarm-{index:04d}" for index in range(len(self.processes), count)]
        for start in range(0, len(new), START_BATCH):
            for minion_id in new[start : start + START_BATCH]:
                home = self._config(minion_id)
                self.processes[minion_id] = subprocess.Popen(
                    [str(VENV_BIN / "salt-minion"), "-c", str(home), "-l", "quiet"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            time.sleep(2)
        return new

    def rss_and_cpu(self) -> tuple[int, float]:
        import psutil

        rss, cpu = 0, 0.0
        for process in self.processes.values():
            try:
                tree = psutil.Process(process.pid)
                for member in [tree, *tree.children(recursive=True)]:
                    rss += member.memory_info().rss
                    times = member.cpu_times()
                    cpu += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return rss, cpu

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def answering(config: dict, count: int, timeout: float) -> int:
    """Wait until ``count`` minions answer test.ping (or ``timeout``); return how many did."""
    deadline, answered = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        answered = len(_cli_json(config, "salt", ["*", "test.ping", "-t", "20"]))
        if answered >= count:
            break
        time.sleep(3)
    return answered


def _cli_json(config: dict, cli: str, argv: list[str]) -> dict:
    import json

    proc = subprocess.run(
        [
            str(VENV_BIN / cli),
            "-c",
            str(Path(config["root_dir"]) / "conf"),
            *argv,
            "--out=json",
            *(["--static"] if cli == "salt" else []),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return json.loads(proc.stdout or "{}")
    except ValueError:
        common.say(
            f"{cli} {' '.join(argv)}: exit {proc.returncode}, not JSON: {proc.stdout[:300]!r} {proc.stderr[-500:]!r}"
        )
        return {}


def timed_call(config: dict, sampler: TreeSampler, swarm: Swarm, what: str, count: int) -> dict:
    """One CLI call: wall seconds, master side CPU (its tree + the CLI), minion CPU, answers."""
    argv = (
        ["*", "test.ping", "-t", str(CALL_TIMEOUT)]
        if what == "test.ping"
        else ["k8snode.report", f"timeout={CALL_TIMEOUT}"]
    )
    cli = "salt" if what == "test.ping" else "salt-run"
    master_before = sampler.sample()[0]
    minions_before = swarm.rss_and_cpu()[1]
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = _cli_json(config, cli, argv)
    wall = time.monotonic() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli_cpu = (children.ru_utime - children_before.ru_utime) + (children.ru_stime - children_before.ru_stime)
    if what == "test.ping":
        answers = sum(1 for value in out.values() if value is True)
    else:
        hosts = out.get("hosts") or {}
        answers = sum(1 for host in hosts.values() if host.get("status") in ("ready", "not ready"))
    return {
        "what": what,
        "wall": wall,
        "master_cpu": sampler.sample()[0] - master_before + cli_cpu,
        "minion_cpu": swarm.rss_and_cpu()[1] - minions_before,
        "answers": answers,
        "expected": count,
    }


def run(args) -> list[dict]:
    root = Path(tempfile.mkdtemp(prefix="k8snode-swarm-"))
    process = swarm = None
    results = []
    try:
        config = master_config(root)
        process = start_master(root, config)
        sampler = TreeSampler(process.pid)
        swarm = Swarm(root, config)
        total_ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        for size in args.sizes:
            if swarm.processes:
                rss, _ = swarm.rss_and_cpu()
                projected = rss / len(swarm.processes) * size
                if projected > total_ram * 0.6:
                    common.say(f"N = {size}: not started ({projected / 2**30:.1f} GiB projected > 60 % of RAM)")
                    break
            started = time.monotonic()
            swarm.grow(size)
            answered = answering(config, size, timeout=60 + size * 2)
            common.say(f"N = {size}: {answered} answering after {time.monotonic() - started:.0f} s")
            time.sleep(5)  # let the start-up settle
            calls = []
            for _round in range(args.rounds):
                for what in ("test.ping", "k8snode.report"):
                    calls.append(timed_call(config, sampler, swarm, what, size))
            rss, _ = swarm.rss_and_cpu()
            results.append({"n": size, "calls": calls, "minion_rss": rss, "master_rss": sampler.sample()[1]})
        return results
    finally:
        if swarm is not None:
            swarm.stop()
        stop_master(process)
        shutil.rmtree(root, ignore_errors=True)


def report(results: list[dict]) -> None:
    mib = 2**20
    print(
        "| N | test.ping wall (median) | report wall (median) | ratio | master side CPU per answer: ping / report | minions' CPU: ping / report | answers (min of rounds) | minions' RSS | master RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results:
        n = result["n"]
        by = {what: [c for c in result["calls"] if c["what"] == what] for what in ("test.ping", "k8snode.report")}
        ping, rep = by["test.ping"], by["k8snode.report"]
        ping_wall = statistics.median(c["wall"] for c in ping)
        rep_wall = statistics.median(c["wall"] for c in rep)
        ping_cpu = statistics.median(c["master_cpu"] for c in ping) / n * 1000
        rep_cpu = statistics.median(c["master_cpu"] for c in rep) / n * 1000
        ping_min = statistics.median(c["minion_cpu"] for c in ping)
        rep_min = statistics.median(c["minion_cpu"] for c in rep)
        print(
            f"| {n} | {ping_wall:.2f} s ({common.spread([c['wall'] for c in ping])}) "
            f"| {rep_wall:.2f} s ({common.spread([c['wall'] for c in rep])}) | {rep_wall / ping_wall:.2f}x "
            f"| {ping_cpu:.1f} / {rep_cpu:.1f} ms | {ping_min:.1f} / {rep_min:.1f} s "
            f"| {min(c['answers'] for c in ping)} / {min(c['answers'] for c in rep)} of {n} "
            f"| {result['minion_rss'] / mib:,.0f} MiB | {result['master_rss'] / mib:,.0f} MiB |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,100", help="comma-separated N, ascending (default 50,100)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    args.sizes = sorted(int(size) for size in args.sizes.split(","))
    print(f"machine: {common.machine()}")
    report(run(args))


if __name__ == "__main__":
    main()
