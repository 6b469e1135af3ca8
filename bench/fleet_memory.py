#!/usr/bin/env python3
"""`make bench` (fleet memory part): ``salt-run k8snode.report from_memory=True`` for a huge fleet.

    .venv/bin/python bench/fleet_memory.py [--minions 10000] [--rounds 5]

A fake master in a temp dir: Salt's master config (``salt.config.master_config``) with its
``pki_dir`` holding ``--minions`` accepted keys and its cachedir the fleet memory of 95 %
of them (``k8snode/fleet/<id>.json`` as ``report``, ``heal`` and ``remember`` write it:
80 % ready, 10 % not ready, 5 % with only a beacon claim, each with ten drift events;
the other 5 % never seen), plus the memory of 1 % more ids whose keys were deleted.
The runner module is loaded as the unit tests load it (its ``__opts__`` and
``__context__`` set by hand, no daemon) and ``report(from_memory=True)`` is timed end to
end, median of ``--rounds`` (target <= 1 s for 10,000 minions), then its parts: the
target's expansion (for ``'*'``, one ``scandir`` of the accepted keys, and for comparison
Salt's ``CkMinions.check_minions``, which validates every id), the
memory hygiene (one ``scandir`` per directory, a ``stat`` per file), the reads (and,
for comparison, the reads as the runner made them before), the aggregation. The deleted ids' memory is written again before every round (not timed),
so every round removes it. Nothing is published; nothing outside the temp dir is read
or written. Prints figures, asserts nothing but the report's counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.support.fake_master import master_opts_under  # noqa: E402 (needs the repository on sys.path)

CHECK = "sysctl:net.ipv4.ip_forward"


def remembered(index, now):
    """One minion's memory, as the runners write it (``None``: never seen)."""
    events = [[now - 600 * k, CHECK, "fail" if k % 2 else "ok"] for k in range(10)]
    kind = index % 20
    if kind == 19:
        return None
    if kind == 18:
        claim = {"status": "ready", "failing": [], "time": now - 30, "source": "beacon claim"}
        return {"last_claim": claim, "drift_events": events}
    failing = [CHECK] if kind in (16, 17) else []
    known = {
        "status": "not ready" if failing else "ready",
        "failing": failing,
        "failing_detail": {name: "net.ipv4.ip_forward is 0 now, needs 1" for name in failing},
        "lost_at_reboot": [],
        "time": now - 3600 - index % 600,
        "source": "audit return" if index % 3 else "confirmed",
    }
    return {"last_known": known, "drift_events": events}


def write_json(path, data):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, sort_keys=True)


def fake_master(root, minions, now):
    opts = master_opts_under(root)
    keys = root / "pki_dir" / "minions"
    fleet = root / "cachedir" / "k8snode" / "fleet"
    fleet.mkdir(parents=True)
    for index in range(minions):
        minion = f"node{index:05d}.example.com"
        (keys / minion).write_text("a public key")
        memory = remembered(index, now)
        if memory is not None:
            write_json(fleet / f"{minion}.json", memory)
    return opts, fleet


def write_deleted(fleet, count, now):
    """The memory of minions whose keys were deleted: a file and its lock each."""
    for index in range(count):
        path = fleet / f"gone{index:05d}.example.com.json"
        write_json(path, remembered(index, now))
        path.with_name(path.name + ".lock").touch()


def read_as_before(paths):
    """The fleet memory read as the runner read it at 8460dcf, for the comparison."""
    found = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                found[path] = json.load(handle)
        except OSError:
            found[path] = {}
    return found


def timed(function, rounds, before=None):
    times, result = [], None
    for _ in range(rounds):
        if before:
            before()
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times), result


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minions", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    from _runners import k8snode as runner

    now = time.time()
    deleted = args.minions // 100
    with tempfile.TemporaryDirectory(prefix="k8snode-bench-memory-") as tmp:
        started = time.perf_counter()
        opts, fleet = fake_master(Path(tmp), args.minions, now)
        print(f"fake master: {args.minions} keys, memory files written in {time.perf_counter() - started:.1f} s")
        runner.__opts__, runner.__context__ = opts, {}

        def report():
            return runner.report(from_memory=True)

        median, low, high, result = timed(report, args.rounds, lambda: write_deleted(fleet, deleted, now))
        counts = result["data"]["counts"]
        unseen = args.minions // 20
        expected = {"ready": args.minions - 4 * unseen, "not ready": 2 * unseen, "unknown": 2 * unseen}
        assert counts == expected, (counts, expected)
        assert not list(fleet.glob("gone*")), "the deleted keys' memory is still there"
        print(
            f"report(from_memory=True), {args.minions} minions: {median:.3f} s median of {args.rounds} "
            f"({low:.3f}-{high:.3f}), {median / args.minions * 1e6:.0f} us per minion (target <= 1 s at 10,000)"
        )
        print(f"  counts {counts}; the memory of {deleted} deleted keys removed in every round")

        ids = runner._expected_minions("*", "glob")
        assert ids == runner._salts_expansion("*", "glob"), "the report's '*' is not Salt's"
        paths = [str(fleet / f"{minion}.json") for minion in ids]

        def paused(function):
            def run():
                with runner._cyclic_gc_paused():
                    return function()

            return run

        parts = {
            "targets as the report expands '*' (one scandir of the pki dir)": lambda: runner._expected_minions(
                "*", "glob"
            ),
            "targets as Salt expands '*' (CkMinions.check_minions)": lambda: runner._salts_expansion("*", "glob"),
            "hygiene (scandir of fleet/ and heal/, a stat per file)": lambda: runner._forget_memory(
                time.time(), runner._fleet.MEMORY_MAX_AGE
            ),
            "reads as the report does them (os.read, json.loads, no cycle GC)": paused(
                lambda: runner._read_memories(ids)
            ),
            "reads as before (a text file object and json.load, cycle GC on)": lambda: read_as_before(paths),
        }
        memory = runner._read_memories(ids)
        parts["aggregation (_k8snode_fleet.summarize_memory, no cycle GC)"] = paused(
            lambda: runner._fleet.summarize_memory(ids, memory, time.time())
        )
        for name, function in parts.items():
            median, low, high, _ = timed(function, args.rounds)
            print(f"  {name:66s} {median:.3f} s ({low:.3f}-{high:.3f})")
    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
