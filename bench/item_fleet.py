"""Item 3: one salt-master preparing 1 minion container against N, wall time and memory."""

from __future__ import annotations

import os
import time

from bench.common import (
    RELEASE,
    TARGETS,
    BenchError,
    MemorySampler,
    cgroup_cpu_seconds,
    cgroup_memory_dir,
    children_cpu_seconds,
    median,
    ms,
    process_tree_cpu_seconds,
    say,
    spread,
)
from tests.support import harness


def run(bench) -> None:
    import psutil
    import yaml

    size = bench.args.fleet
    avail = psutil.virtual_memory().available
    fits = max(2, int(avail // (400 * 1024 * 1024)))  # a minion container needs < 400 MiB
    if size > fits:
        bench.report.notes.append(f"fleet reduced from {size} to {fits} minions: {avail >> 20} MiB available")
        size = fits
    say(f"\n[3] fleet: state.apply k8snode through a master, 1 minion vs {size}")
    conf_dir, ret_port = bench.start_master()
    ids = [f"bench-{index}" for index in range(size)]
    containers = {}
    for mid in ids:
        config = harness.standalone_minion_config(mid, bench.gateway, ret_port)
        containers[mid] = bench.start_container(
            f"k8snode-bench-{mid}-{bench.suffix}",
            mid,
            command=["sh", "-c", "mount -o remount,rw /proc/sys; exec salt-minion"],
            files={"etc/salt/minion": yaml.safe_dump(config).encode()},
        )
    say(f"  {size} minion containers started")
    deadline = time.monotonic() + 180
    while True:
        _, data, _ = bench.salt(conf_dir, ids, "test.ping", timeout=5)
        answered = {mid for mid, ret in data.items() if ret is True}
        if answered >= set(ids):
            break
        if time.monotonic() > deadline:
            raise BenchError(f"minions {sorted(set(ids) - answered)} did not answer test.ping in 180 s")
        time.sleep(1)
    say("  all minions answer test.ping")
    _, data, out = bench.salt(conf_dir, ids, "saltutil.sync_all")
    if set(data) != set(ids):
        raise BenchError(f"saltutil.sync_all did not return from every minion:\n{out[-3000:]}")
    # Prepare every minion, then make sure the next run changes nothing.
    for expect_no_change in (False, True):
        _, data, out = bench.salt(conf_dir, ids, "state.apply", "k8snode")
        problems = fleet_problems(data, ids, expect_no_change)
        if problems:
            raise BenchError("state.apply k8snode on the fleet: " + "; ".join(problems))
    say("  fleet prepared (state.apply k8snode, then a no-change run)")

    one = ids[:1]
    watched = containers[ids[0]]
    watched.reload()
    cgroup = cgroup_memory_dir(watched.id)
    # What is timed, alternately: the k8snode apply, and two baselines that are all
    # Salt's (the transport: test.ping; the state system: one state doing nothing).
    runs = {
        "apply_1": (one, ("state.apply", "k8snode")),
        "apply_n": (ids, ("state.apply", "k8snode")),
        "floor_1": (one, ("state.apply", "bench_floor")),
        "floor_n": (ids, ("state.apply", "bench_floor")),
        "ping_1": (one, ("test.ping",)),
        "ping_n": (ids, ("test.ping",)),
    }
    for target, args in runs.values():  # warm-up (caches the SLS files on the minions)
        _, data, out = bench.salt(conf_dir, target, *args)
        problems = fleet_problems(data, target, True)
        if problems:
            raise BenchError(f"salt {' '.join(args)}: " + "; ".join(problems))
    sampler = MemorySampler(bench.master.pid, cgroup)
    sampler.start()
    samples = {name: [] for name in runs}
    state_ms = {name: [] for name in runs}
    cpu = {name: {"cli": [], "master": [], "minions": []} for name in runs}
    names = list(runs)
    container_ids = [c.id for c in containers.values()]

    def cpu_now() -> dict:
        minions = [cgroup_cpu_seconds(cid) for cid in container_ids]
        return {
            "cli": children_cpu_seconds(),
            "master": process_tree_cpu_seconds(bench.master.pid),
            "minions": None if None in minions else sum(minions),
        }

    try:
        for index in range(bench.args.fleet_rounds):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                target, args = runs[name]
                before = cpu_now()
                elapsed, data, out = bench.salt(conf_dir, target, *args)
                after = cpu_now()
                problems = fleet_problems(data, target, True)
                if problems:
                    raise BenchError(f"fleet run {name}: " + "; ".join(problems))
                samples[name].append(elapsed)
                for part in ("cli", "master", "minions"):
                    if after[part] is not None and before[part] is not None:
                        cpu[name][part].append(after[part] - before[part])
                state_ms[name].extend(
                    sum(float(state.get("duration") or 0) for state in ret.values())
                    for ret in data.values()
                    if isinstance(ret, dict)
                )
    finally:
        sampler.stop()
    mem = sampler.summary()
    bench.report.raw["3_fleet"] = {
        "samples": samples,
        "state_ms": state_ms,
        "cpu_seconds": cpu,
        "memory": mem,
        "size": size,
    }
    med = {name: median(values) for name, values in samples.items()}
    cpu_med = {
        name: {part: median(values) if values else float("nan") for part, values in parts.items()}
        for name, parts in cpu.items()
    }
    for name in names:
        extra = f", states' own duration {median(state_ms[name]):.1f} ms" if name.startswith(("apply", "floor")) else ""
        used = cpu_med[name]
        say(
            f"    {name:8s} {ms(med[name])} ({spread(samples[name])}){extra}; CPU: salt CLI "
            f"{used['cli']:.2f} s, master {used['master']:.2f} s, minions {used['minions']:.2f} s"
        )
    rounds = bench.args.fleet_rounds
    r = med["apply_n"] / med["apply_1"]
    bench.report.add(
        "3",
        f"salt -L <{size} ids> state.apply k8snode (A) vs 1 id (B), no-change, {rounds} runs each",
        ms(med["apply_n"]),
        ms(med["apply_1"]),
        f"ratio {r:.2f}",
        f"<= {TARGETS['fleet_ratio']:.0f}",
        r <= TARGETS["fleet_ratio"],
    )
    for name, what in (
        ("floor", "state.apply of one test.succeed_without_changes (Salt's state system alone)"),
        ("ping", "test.ping (Salt's CLI and transport alone)"),
    ):
        bench.report.add(
            "3",
            f"the same {size} vs 1 with {what}",
            ms(med[f"{name}_n"]),
            ms(med[f"{name}_1"]),
            f"ratio {med[f'{name}_n'] / med[f'{name}_1']:.2f}",
            "(info)",
            None,
        )
    bench.report.add(
        "3",
        f"the states' own duration on a minion, {size} minions (A) vs 1 (B): k8snode; the empty state",
        f"{median(state_ms['apply_n']):.1f} ms; {median(state_ms['floor_n']):.1f} ms",
        f"{median(state_ms['apply_1']):.1f} ms; {median(state_ms['floor_1']):.1f} ms",
        "",
        "(info)",
        None,
    )
    if r > TARGETS["fleet_ratio"]:
        bench.report.notes.append(
            f"Item 3: the same {size}-vs-1 ratio is {med['floor_n'] / med['floor_1']:.2f} for a state.apply "
            f"that does nothing and {med['ping_n'] / med['ping_1']:.2f} for test.ping: Salt's per-job cost "
            f"(job process, pillar, file client, returns) on {os.cpu_count()} CPUs shared by the master, "
            f"{size} minions and the CLI. The k8snode run minus the empty-state run on {size} minions: "
            f"{(med['apply_n'] - med['floor_n']) * 1000:+.0f} ms wall, "
            f"{(cpu_med['apply_n']['minions'] - cpu_med['floor_n']['minions']) * 1000:+.0f} ms of minion CPU."
        )
    for name, count in (("apply_n", size), ("apply_1", 1)):
        used = cpu_med[name]
        total = used["cli"] + used["master"] + used["minions"]
        bench.report.add(
            "3",
            f"CPU time of one state.apply k8snode on {count} minion(s): salt CLI + master + minion containers",
            f"{used['cli']:.2f} + {used['master']:.2f} + {used['minions']:.2f} s",
            "",
            f"{total:.2f} CPU-s = {total / (os.cpu_count() or 1) / med[name] * 100:.0f}% of "
            f"{os.cpu_count()} CPUs over its wall time",
            "(info)",
            None,
        )
    bench.report.add(
        "3",
        "peak memory (PSS) during the runs: the master's process tree (A); one minion container (B)",
        f"{mem['master_peak_mib']:.0f} MiB",
        f"{mem['minion_peak_mib']:.0f} MiB",
        f"minion cgroup peak {mem['minion_cgroup_peak_mib']:.0f} MiB (page cache incl., since start)"
        if mem["minion_cgroup_peak_mib"] is not None
        else "-",
        "(info)",
        None,
    )
    bench.report.notes.append(
        f"Fleet: {size} minion containers ({RELEASE}) of one salt-master on this machine; every command is "
        "timed from the host (`salt` CLI start-up included). Memory: proportional set size (shared pages "
        f"divided among the processes sharing them), summed over the master's {sampler.master_processes} "
        f"processes, and over the processes in container {ids[0]}'s cgroup (salt-minion and the job "
        f"processes it forks), sampled every {MemorySampler.INTERVAL * 1000:.0f} ms; the `salt` CLI is not "
        "counted in the master's memory."
    )


def fleet_problems(data: dict, ids: list[str], expect_no_change: bool) -> list[str]:
    problems = []
    for mid in ids:
        ret = data.get(mid)
        if ret is True:  # test.ping
            continue
        if not isinstance(ret, dict):
            problems.append(f"{mid}: {str(ret)[:300]}")
            continue
        for key, state in ret.items():
            if not isinstance(state, dict) or state.get("result") is not True:
                problems.append(f"{mid} {key}: {str(state)[:300]}")
            elif expect_no_change and state.get("changes"):
                problems.append(f"{mid} {key}: changed {state['changes']}")
    return problems
