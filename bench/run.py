#!/usr/bin/env python3
"""`make bench`: k8snode's benchmarks, printed as one table of ratios.

Run from the repository root with the project's venv::

    .venv/bin/python bench/run.py [--rounds N] [--fleet N] [--only 1,2,3,4] [--json FILE]

1. Audit cost: ``salt-call --local k8snode.audit`` against ``salt-call --local
   test.ping`` in one minion container (what the audit adds to Salt's own start-up);
   the audit function alone in-process, and the processes it starts (target 0).
2. No-change ``state.apply k8snode`` on a prepared minion against a hand-written SLS of
   Salt's own ``kmod.present`` + ``sysctl.present`` for the same items; each as time
   above ``test.ping`` in the same container.  Where ``kmod.present`` cannot run on this
   kernel (no loadable modules) this is said, and the sysctl part is compared alone:
   ``sysctl.present`` x3 against ``k8snode.prepared`` restricted to the same sysctls.
3. Fleet: ``salt -L ... state.apply k8snode`` through a real salt-master on 1 minion
   container against N (default 8), wall time; the master's and a minion's peak memory.
4. Input scale: ``audit()`` in-process on fake host trees with 10, 100 and 1,000
   sysctl.d files.

Every A/B pair is measured alternately in the same run (rotating order, warm-up run
first, not recorded) and reported as medians.  Timings are printed, never asserted:
the exit status is 0 when every measurement ran (targets met or not), 1 otherwise.

Docker objects carry the label ``k8snode.bench=1`` (and the owner's pid) and are
removed at the end, also on Ctrl-C / SIGTERM; leftovers of a dead run are removed at
the next start.  Nothing here writes a host sysctl: the containers only set net.*
values, which belong to their own network namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

# Run as a script (`make bench`): the repository root makes `bench` and `tests` importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import item_apply, item_audit, item_fleet  # noqa: E402
from bench.common import (  # noqa: E402
    BENCH_DIR,
    BENCH_IMAGE_REPO,
    BENCH_SRV,
    CAP_ADD,
    LABEL,
    MINION_CONFIG,
    OWNER_LABEL,
    RELEASE,
    REPO_ROOT,
    SLS_FILES,
    SRV,
    BenchError,
    Report,
    exec_checked,
    machine,
    owner_tag,
    remove_stale,
    say,
    tar_bytes,
)
from tests.support import harness  # noqa: E402


class Bench:
    def __init__(self, args) -> None:
        import docker

        self.args = args
        self.client = docker.from_env()
        self.client.ping()
        self.suffix = secrets.token_hex(3)
        self.owner = harness.process_owner()
        self.labels = {LABEL: "1", OWNER_LABEL: self.owner}
        self.containers: list = []
        self.network = None
        self.gateway = None
        self.master: subprocess.Popen | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="k8snode-bench-"))
        self.image = None
        self.image_source = None
        self.report = Report()

    # --- setup / teardown ------------------------------------------------------------
    def setup(self) -> None:
        remove_stale(self.client)
        built = harness.ensure_images([RELEASE])[RELEASE]
        # A tag of our own on the same image for the length of the run: a concurrent
        # images/build.py that retags the release (its inputs changed) can't remove it.
        self.image = f"{BENCH_IMAGE_REPO}:{owner_tag(self.owner)}"
        self.client.images.get(built).tag(self.image)
        self.image_source = built
        say(f"  image {built} (as {self.image})")
        net = harness.create_network(self.client, prefix="k8snode-bench", labels=self.labels)
        self.network, self.gateway = net.name, net.gateway
        say(f"  network {self.network} (gateway {self.gateway})")

    def cleanup(self) -> None:
        from docker.errors import APIError, NotFound

        for container in self.containers:
            with contextlib.suppress(APIError, NotFound):
                container.remove(force=True)
        self.containers.clear()
        if self.network:
            with contextlib.suppress(APIError, NotFound):
                harness.remove_network(self.client, self.network)
            self.network = None
        self.stop_master()
        if self.image:
            with contextlib.suppress(APIError, NotFound):
                self.client.images.remove(self.image, noprune=True)
            self.image = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start_container(self, name: str, hostname: str, command=None, files=None):
        container = self.client.containers.create(
            self.image,
            command=command,
            name=name,
            hostname=hostname,
            network=self.network,
            cap_add=list(CAP_ADD),
            labels=self.labels,
            detach=True,
        )
        self.containers.append(container)
        if files:
            container.put_archive("/", tar_bytes(files))
        container.start()
        return container

    # --- the single masterless minion (items 1 and 2) --------------------------------
    def solo_container(self):
        import yaml

        files = {f"{SRV.lstrip('/')}/{name}": REPO_ROOT / name for name in ("_modules", "_states", "salt")}
        files[f"{BENCH_SRV.lstrip('/')}/in_container.py"] = BENCH_DIR / "in_container.py"
        for name, text in SLS_FILES.items():
            files[f"{BENCH_SRV.lstrip('/')}/salt/{name}"] = text.encode()
        files["etc/salt/minion"] = yaml.safe_dump(MINION_CONFIG).encode()
        container = self.start_container(f"k8snode-bench-solo-{self.suffix}", "bench-solo", files=files)
        # The image's command remounts /proc/sys rw; make sure it has before going on.
        exec_checked(container, ["sh", "-c", "mount -o remount,rw /proc/sys"], "remount /proc/sys")
        return container

    def time_in_container(self, container, commands: dict, checks: dict, rounds: int) -> dict:
        spec = {"rounds": rounds, "commands": commands, "checks": checks}
        container.put_archive("/", tar_bytes({"tmp/bench-spec.json": json.dumps(spec).encode()}))
        out = exec_checked(
            container, ["python", f"{BENCH_SRV}/in_container.py", "time", "/tmp/bench-spec.json"], "timing"
        )
        return json.loads(out)

    def salt_call(self, container, *args, check=True) -> dict:
        out = container.exec_run(["salt-call", "--local", "--out=json", *args], demux=True)
        stdout = (out.output[0] or b"").decode(errors="replace")
        if check and out.exit_code != 0:
            raise BenchError(f"salt-call --local {' '.join(args)} exited {out.exit_code}:\n{stdout[-3000:]}")
        try:
            return json.loads(stdout)["local"]
        except (ValueError, KeyError) as exc:
            raise BenchError(f"salt-call --local {' '.join(args)}: no JSON return:\n{stdout[-3000:]}") from exc

    # --- item 1 ----------------------------------------------------------------------

    def start_master(self) -> tuple[Path, int]:
        import yaml

        bindir = Path(sys.executable).parent
        master_bin = bindir / "salt-master"
        if not master_bin.exists():
            raise BenchError(f"{master_bin} is missing: run `make setup`")
        root = self.tmp / "master-root"
        ext = harness.make_extension_root(self.tmp / "extensions")
        bench_salt = self.tmp / "bench-salt"
        bench_salt.mkdir()
        for name, text in SLS_FILES.items():
            (bench_salt / name).write_text(text)
        ret_port, publish_port = harness.listen_ports(self.gateway, 2)
        conf_dir = self.tmp / "master"
        conf_dir.mkdir()
        config = harness.standalone_master_config(
            f"k8snode-bench-master-{self.suffix}", self.gateway, root, ret_port, publish_port, ext, [bench_salt]
        )
        (conf_dir / "master").write_text(yaml.safe_dump(config))
        log = open(self.tmp / "salt-master.out", "wb")  # noqa: SIM115 - lives as long as the master
        self.master = subprocess.Popen(
            [str(master_bin), "-c", str(conf_dir), "-l", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.master.poll() is not None:
                raise BenchError(f"salt-master exited with {self.master.returncode}: see {self.tmp}/salt-master.out")
            with contextlib.suppress(OSError), socket.create_connection((self.gateway, ret_port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise BenchError("salt-master did not listen within 60 s")
            time.sleep(0.3)
        say(f"  salt-master pid {self.master.pid} on {self.gateway}:{ret_port}")
        return conf_dir, ret_port

    def stop_master(self) -> None:
        harness.stop_process_group(self.master)
        self.master = None

    def salt(self, conf_dir: Path, ids: list[str], *args, timeout: int = 120) -> tuple[float, dict, str]:
        salt_bin = str(Path(sys.executable).parent / "salt")
        argv = [salt_bin, "-c", str(conf_dir), "--out=json", "--static", "--timeout", str(timeout)]
        argv += ["-L", ",".join(ids), *args]
        started = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        try:
            data = json.loads(proc.stdout) if proc.stdout.strip() else {}
        except ValueError:
            data = {}
        return elapsed, data, proc.stdout + proc.stderr


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=13, help="runs of each A and B (item 2; item 1: +6)")
    parser.add_argument("--fleet", type=int, default=8, help="minion containers in the fleet (default 8)")
    parser.add_argument("--fleet-rounds", type=int, default=7, help="runs of each fleet target (default 7)")
    parser.add_argument("--only", default="1,2,3,4", help="items to run, e.g. 1,4 (default all)")
    parser.add_argument("--json", help="also write the raw samples to this file")
    args = parser.parse_args(argv)
    items = {part.strip() for part in args.only.split(",") if part.strip()}

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    info = machine()
    say(f"k8snode bench, {info['date']}: {info['cpus']} CPUs, {info['memory_gib']} GiB, kernel {info['kernel']}")
    bench = Bench(args)
    report = bench.report
    # One container or VM suite at a time on this machine (the tests and the demo take it too).
    held = contextlib.ExitStack()
    try:
        held.enter_context(harness.machine_suite_lock())
        bench.setup()
        info["minion_image"] = bench.image_source
        info["salt_minion"] = bench.client.images.get(bench.image).labels.get("k8snode.salt-version", "?")

        def attempt(item: str, method, *method_args) -> None:
            try:
                method(*method_args)
            except BenchError as exc:
                report.errors.append(f"item {item}: {exc}")
                say(f"!! item {item} failed: {exc}")
            except Exception as exc:  # noqa: BLE001 - one item's failure must not hide the others
                traceback.print_exc()
                report.errors.append(f"item {item}: {type(exc).__name__}: {exc}")

        if items & {"1", "2"}:
            container = bench.solo_container()
            for item, method in (("1", item_audit.run_audit), ("2", item_apply.run)):
                if item in items:
                    attempt(item, method, bench, container)
            bench.containers.remove(container)
            container.remove(force=True)
        if "3" in items:
            attempt("3", item_fleet.run, bench)
        if "4" in items:
            attempt("4", item_audit.run_scale, bench)
    except KeyboardInterrupt:
        say("\n!! interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - report, clean up, exit non-zero
        traceback.print_exc()
        report.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("\ncleaning up (containers, network, master, temp dir)")
        bench.cleanup()
        held.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    print()
    print(
        f"k8snode bench, {info['date']}: {info['cpus']} CPUs, {info['memory_gib']} GiB, "
        f"kernel {info['kernel']}, docker {info['docker']}, salt {info['salt_host']} (host master/CLI), "
        f"salt {info.get('salt_minion', '?')} in {info.get('minion_image', '?')}, load {info['load']}"
    )
    print()
    print(report.table())
    for note in report.notes:
        print(f"\n* {note}")
    for error in report.errors:
        print(f"\n!! {error}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "raw": report.raw, "errors": report.errors}, indent=1))
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
