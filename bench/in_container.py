"""Timing helpers that run INSIDE a minion container (copied there by bench/run.py).

Runs with the container's ``python`` (Salt's venv); Python 3.9+, standard library only
(plus Salt for ``audit``).  Prints one JSON document on stdout.

    python in_container.py time SPEC.json
        SPEC: {"rounds": N, "commands": {name: argv}, "checks": {name: "ping"|"audit"|"state"}}
        Runs every command once to warm up (not recorded), then N rounds; each round runs
        every command once, the order rotating by one from round to round (A B C, B C A,
        C A B, ...), so that each command is measured alternately with the others in the
        same minutes.  Every run's output is checked (``--out=json`` is expected): "ping"
        must return True, "audit" a report with checks, "state" only states with
        result True and no changes (a no-change run).  Output: {"samples": {name:
        [wall seconds]}, "cpu": {name: [CPU seconds, user+system, of the command and
        the processes it waited for]}, "state_ms": {name: [sum of the states' own
        durations, ms]}}.

    python in_container.py audit MODULE_PATH ROUNDS
        Imports the execution module by path (as the loader would, with its dunders set
        from this container's real grains), then times ``audit()`` ROUNDS times with
        time.perf_counter and counts the processes started meanwhile, with an audit
        hook on the interpreter's own events (subprocess.Popen, os.fork, os.posix_spawn,
        os.system, os.exec, os.spawn, os.forkpty).
"""

import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SPAWN_EVENTS = {
    "subprocess.Popen",
    "os.fork",
    "os.forkpty",
    "os.posix_spawn",
    "os.system",
    "os.exec",
    "os.spawn",
}


class BenchError(RuntimeError):
    pass


def _check(name, kind, proc):
    where = f"{name}: {' '.join(proc.args)}"
    if proc.returncode != 0:
        raise BenchError(f"{where} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    try:
        data = json.loads(proc.stdout)["local"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"{where}: no JSON return ({exc})\n{proc.stdout[-3000:]}") from exc
    if kind == "ping":
        if data is not True:
            raise BenchError(f"{where}: returned {data!r}")
        return None
    if kind == "audit":
        if not isinstance(data, dict) or "checks" not in data:
            raise BenchError(f"{where}: not an audit report: {str(data)[:500]}")
        return None
    if not isinstance(data, dict) or not data:
        raise BenchError(f"{where}: not a state return: {str(data)[:1000]}")
    bad = {
        key: {"result": ret.get("result"), "changes": ret.get("changes"), "comment": ret.get("comment")}
        for key, ret in data.items()
        if ret.get("result") is not True or ret.get("changes")
    }
    if bad:
        raise BenchError(f"{where}: not a successful no-change run: {json.dumps(bad, indent=1)[:3000]}")
    return sum(float(ret.get("duration") or 0) for ret in data.values())


def time_commands(spec_path):
    with open(spec_path) as handle:
        spec = json.load(handle)
    commands, checks, rounds = spec["commands"], spec["checks"], int(spec["rounds"])
    names = list(commands)
    samples = {name: [] for name in names}
    cpu = {name: [] for name in names}
    state_ms = {name: [] for name in names if checks[name] == "state"}

    def children_cpu():
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def run_one(name, record):
        cpu_before = children_cpu()
        started = time.perf_counter()
        proc = subprocess.run(commands[name], capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        used = children_cpu() - cpu_before
        duration = _check(name, checks[name], proc)
        if record:
            samples[name].append(elapsed)
            cpu[name].append(used)
            if duration is not None:
                state_ms[name].append(duration)

    for name in names:
        run_one(name, record=False)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            run_one(name, record=True)
    return {"samples": samples, "cpu": cpu, "state_ms": state_ms}


def time_audit(module_path, rounds):
    import salt.config
    import salt.loader

    opts = salt.config.minion_config("/etc/salt/minion")
    grains = salt.loader.grains(opts)

    started = time.perf_counter()
    # The execution module is a package: import it from the directory that holds it.
    sys.path.insert(0, os.path.dirname(os.path.abspath(module_path)))
    module = importlib.import_module(os.path.basename(module_path.rstrip("/")))
    import_ms = (time.perf_counter() - started) * 1000
    module.__grains__ = grains
    module.__pillar__ = {}
    module.__salt__ = {}  # the audit must not need any other Salt function
    module.__opts__ = opts

    counting = [False]
    spawned = []

    def hook(event, args):
        if counting[0] and event in SPAWN_EVENTS:
            spawned.append(event)

    sys.addaudithook(hook)
    report = module.audit()
    if not isinstance(report, dict) or "checks" not in report:
        raise BenchError(f"audit() returned {str(report)[:500]}")
    times = []
    counting[0] = True
    for _ in range(rounds):
        started = time.perf_counter()
        module.audit()
        times.append(time.perf_counter() - started)
    counting[0] = False
    return {
        "import_ms": import_ms,
        "audit_ms": [t * 1000 for t in times],
        "median_ms": statistics.median(times) * 1000,
        "spawned": len(spawned),
        "spawn_events": sorted(set(spawned)),
        "ready": report.get("ready"),
        "checks": len(report["checks"]),
    }


def main(argv):
    try:
        if argv[:1] == ["time"] and len(argv) == 2:
            result = time_commands(argv[1])
        elif argv[:1] == ["audit"] and len(argv) == 3:
            result = time_audit(argv[1], int(argv[2]))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except BenchError as exc:
        print(f"in_container.py: {exc}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
