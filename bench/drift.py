#!/usr/bin/env python3
"""`make bench` (drift part): what continuous readiness costs. Prints figures, asserts nothing.

    .venv/bin/python bench/drift.py [--seconds 300] [--interval 10] [--only poll,cpu,report]

1. poll: one ``k8snode`` beacon poll with nothing changed, in-process through Salt's real
   beacon loader on this machine (read-only; its memory goes to a temp cachedir), median
   of many; processes spawned meanwhile (target <= 0.2 ms, 0 processes). Also what a
   change costs (the audit re-run): ``checks.audit`` called directly, as the beacon does,
   against ``__salt__["k8snode.audit"]`` (resolution on every call).
2. cpu: two bookworm minion containers side by side, both running a real ``salt-minion``
   (``master_type: disable``: beacons run, no master needed), one with the beacon at
   ``--interval`` seconds, one without; CPU of each container's cgroup over ``--seconds``
   (target: <= +0.1 % of one core).
3. report: the fleet report's aggregation (``_k8snode_fleet.summarize``) over 1,000 / 10,000 synthetic
   answers with fleet memory (target <= 0.5 s for 10,000, linear).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.support import harness  # noqa: E402 (needs the repository on sys.path)

LABEL = "k8snode.bench"


def _median_us(function, rounds):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def bench_poll():
    import salt.config
    import salt.loader

    spawned = []
    real_popen_init, real_fork = subprocess.Popen.__init__, os.fork

    def counting_popen(self, *args, **kwargs):
        spawned.append(args)
        return real_popen_init(self, *args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        opts = salt.config.minion_config(None)
        opts.update(
            id="bench",
            file_client="local",
            cachedir=f"{tmp}/cache",
            extension_modules=f"{tmp}/extmods",
            module_dirs=[str(REPO_ROOT / "_modules")],
            beacons_dirs=[str(REPO_ROOT / "_beacons")],
            pillar={},
        )
        opts["grains"] = salt.loader.grains(opts)
        functions = salt.loader.minion_mods(opts)
        beacons = salt.loader.beacons(opts, functions, context={})
        config = [{"summary_interval": 10**9}]
        beacons["k8snode.beacon"](config)  # the first poll: audit + summary
        subprocess.Popen.__init__ = counting_popen
        os.fork = lambda: spawned.append("fork") or real_fork()
        try:
            poll = _median_us(lambda: beacons["k8snode.beacon"](config), 20000)
        finally:
            subprocess.Popen.__init__, os.fork = real_popen_init, real_fork
        checks = sys.modules["_k8snode_beacon_library.checks"]
        resolved = functions["k8snode.requirements"]()
        direct = _median_us(lambda: checks.audit(resolved, "/"), 200)
        through_salt = _median_us(lambda: functions["k8snode.audit"](), 200)  # noqa: PLW0108 - a loader lookup per call, as a caller pays
    print(f"poll, nothing changed:           {poll:8.1f} us median of 20000 (target <= 200 us)")
    print(f"processes spawned while polling: {len(spawned)} (target 0)")
    print(f"on a change, checks.audit:       {direct:8.1f} us (what the beacon calls)")
    print(f"on a change, __salt__ audit:     {through_salt:8.1f} us (resolution on every call)")


def bench_cpu(seconds, interval):
    import docker

    client = docker.from_env()
    image = harness.ensure_images(["bookworm"])["bookworm"]
    labels = {LABEL: "1", **harness.owner_labels()}
    base = {"master_type": "disable", "file_client": "local", "log_level": "warning"}
    base.update(module_dirs=["/repo/_modules"], beacons_dirs=["/repo/_beacons"])
    configs = {
        "without": base,
        "with": dict(base, beacons={"k8snode": [{"interval": interval}, {"summary_interval": 3600}]}),
    }
    containers = {}
    try:
        for name, config in configs.items():
            import yaml

            script = (
                "mkdir -p /etc/salt && cat > /etc/salt/minion <<'EOF'\n"
                + yaml.safe_dump(config)
                + "EOF\nmount -o remount,rw /proc/sys; exec salt-minion"
            )
            containers[name] = client.containers.run(
                image,
                ["sh", "-c", script],
                detach=True,
                network_mode="none",
                cap_add=["NET_ADMIN", "SYS_ADMIN"],
                volumes={str(REPO_ROOT): {"bind": "/repo", "mode": "ro"}},
                labels=labels,
            )
        time.sleep(20)  # start-up (imports, grains) is not what is measured
        before = {name: _cpu_seconds(container.id) for name, container in containers.items()}
        started = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - started
        after = {name: _cpu_seconds(container.id) for name, container in containers.items()}
        memory = containers["with"].exec_run(["sh", "-c", "ls /var/cache/salt/minion/k8snode/"]).output.decode()
    finally:
        for container in containers.values():
            container.remove(force=True)
    share = {name: 100 * (after[name] - before[name]) / elapsed for name in containers}
    print(f"minion CPU over {elapsed:.0f} s, beacon every {interval} s (share of one core):")
    print(f"  without the beacon: {share['without']:.3f} %")
    print(f"  with the beacon:    {share['with']:.3f} %   (beacon memory file: {memory.strip() or 'MISSING'})")
    print(f"  difference:         {share['with'] - share['without']:+.3f} % (target <= +0.1 %)")


def _cpu_seconds(container_id):
    for path in (
        Path("/sys/fs/cgroup/system.slice") / f"docker-{container_id}.scope" / "cpu.stat",
        Path("/sys/fs/cgroup/docker") / container_id / "cpu.stat",
    ):
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) / 1e6
    v1 = Path("/sys/fs/cgroup/cpuacct/docker") / container_id / "cpuacct.usage"
    return int(v1.read_text()) / 1e9


def bench_report():
    from _runners import k8snode as runner

    audit = {
        "ready": False,
        "distribution": "kubeadm",
        "os": "debian-12",
        "failing": ["sysctl:net.ipv4.ip_forward"],
        "lost_at_reboot": [],
        "summary": {"ok": 7, "fail": 1, "warn": 0},
        "checks": {"sysctl:net.ipv4.ip_forward": {"detail": "net.ipv4.ip_forward is 0 now, needs 1"}},
    }
    now = time.time()
    for size in (1000, 10000, 20000):
        ids = [f"node{i:05d}" for i in range(size)]
        answers = {mid: {"ret": audit} for mid in ids[: size * 9 // 10]}
        memory = {
            mid: {
                "last_known": {"status": "ready", "failing": [], "time": now - 60, "source": "beacon"},
                "drift_events": [[now - 30 * k, "sysctl:net.ipv4.ip_forward", "fail"] for k in range(10)],
            }
            for mid in ids
        }
        expected = set(ids)
        seconds = (
            _median_us(lambda a=answers, e=expected, m=memory: runner._fleet.summarize(a, e, m, now, 86400), 5) / 1e6
        )
        print(
            f"report aggregation, {size:6d} answers: {seconds:.3f} s, {seconds / size * 1e6:.1f} us per answer"
            " (median of 5; target <= 0.5 s at 10000, linear)"
        )


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--only", default="poll,cpu,report")
    args = parser.parse_args(argv)
    wanted = set(args.only.split(","))
    if "poll" in wanted:
        bench_poll()
    if "report" in wanted:
        bench_report()
    if "cpu" in wanted:
        with harness.machine_suite_lock():
            bench_cpu(args.seconds, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
