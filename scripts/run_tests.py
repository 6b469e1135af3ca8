#!/usr/bin/env python3
"""``make test``'s pytest run: the real-node tier side by side with everything else.

Two pytest sessions run at once, under the machine-wide suite lock this runner holds
(tests/support/harness.py ``machine_suite_lock``):

* the real-node tier (``-m real_node``: QEMU guests, tests/integration/vm), its output in
  ``.cache/logs/test-real-node.log``, printed whole when it ends;
* everything else (``-m "not real_node"``: unit, functional, the container tier), on the
  terminal as usual.

Why: each alone leaves part of two cores idle (measured with /proc/stat: the container
tier 49 % busy), and the two share nothing but the machine: each session has its own
master, docker network and ports.  Measured warm on 2 cores, the same tests: one after
the other 1,312 s and 1,398 s of pytest; side by side 1,287 s with 2 vCPUs per guest and
1,221 s with 1 (the machine then 94 to 98 % busy).  The guests get one vCPU here
(``K8SNODE_VM_CPUS``, tests/support/vm.py): two TCG vCPU threads per guest on an
oversubscribed host spin on each other's locks.

The runner also owns the background image build (tests/support/background_images.py):
it takes it over (or starts it) before the sessions start, and stops it if they end
before it does, so one session's early end never stops a build the other waits on.

Usage (from the repository root, with the project's venv)::

    .venv/bin/python scripts/run_tests.py [--junit-dir DIR] [PYTEST_ARG ...]

Extra arguments go to both sessions (``-x``, ``-k EXPR``; with them, a session left with
nothing to run counts as passed).  Exit status: 0 when both sessions passed, otherwise
the first non-zero of (everything else, the real-node tier).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.support import background_images, harness  # noqa: E402 (needs the repository on sys.path)

#: pytest's exit status when a session selected no test.
PYTEST_NO_TESTS = 5
REAL_NODE_LOG = REPO_ROOT / ".cache" / "logs" / "test-real-node.log"
STREAMS = (
    # name, marker expression, --durations
    ("real-node tier", "real_node", 10),
    ("everything else", "not real_node", 25),
)


def _pytest(marker: str, durations: int, extra: list[str], junit_dir: Path | None, name: str) -> list[str]:
    argv = [sys.executable, "-m", "pytest", "-m", marker, f"--durations={durations}", *extra]
    if junit_dir is not None:
        argv.append(f"--junitxml={junit_dir / (name.replace(' ', '-') + '.xml')}")
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--junit-dir", type=Path, help="write one JUnit XML file per session here")
    args, extra = parser.parse_known_args(argv)
    if args.junit_dir is not None:
        args.junit_dir.mkdir(parents=True, exist_ok=True)

    with harness.machine_suite_lock():
        build = background_images.take_over_or_start()
        env = dict(os.environ, **{harness.TEST_RUNNER_ENV: str(os.getpid())})
        REAL_NODE_LOG.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        children: list[subprocess.Popen] = []

        def _forward(signum, _frame):
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signum)

        previous = signal.signal(signal.SIGTERM, _forward)
        try:
            (vm_name, vm_marker, vm_durations), (rest_name, rest_marker, rest_durations) = STREAMS
            with open(REAL_NODE_LOG, "w") as log:
                vm_env = dict(env, K8SNODE_VM_CPUS=os.environ.get("K8SNODE_VM_CPUS", "1"))
                children.append(
                    subprocess.Popen(
                        _pytest(vm_marker, vm_durations, extra, args.junit_dir, vm_name),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=vm_env,
                        cwd=REPO_ROOT,
                        preexec_fn=harness.die_with_parent(signal.SIGTERM),  # noqa: PLW1509 - PR_SET_PDEATHSIG only
                    )
                )
            print(f"[run_tests] the {vm_name} runs beside this session; its output: {REAL_NODE_LOG}", flush=True)
            children.append(
                subprocess.Popen(
                    _pytest(rest_marker, rest_durations, extra, args.junit_dir, rest_name),
                    env=env,
                    cwd=REPO_ROOT,
                    preexec_fn=harness.die_with_parent(signal.SIGTERM),  # noqa: PLW1509 - PR_SET_PDEATHSIG only
                )
            )
            rest_code = children[1].wait()
            rest_seconds = time.monotonic() - started
            if children[0].poll() is None:
                print(f"\n[run_tests] waiting for the {vm_name} ({REAL_NODE_LOG})", flush=True)
            vm_code = children[0].wait()
            vm_seconds = time.monotonic() - started
            if extra:  # "-k EXPR" may leave a session nothing to run (pytest's exit 5): not a failure
                rest_code, vm_code = (0 if code == PYTEST_NO_TESTS else code for code in (rest_code, vm_code))
        except KeyboardInterrupt:
            _forward(signal.SIGINT, None)
            for child in children:
                child.wait()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            background_images.stop(build)

    print(f"\n{'=' * 30} {vm_name} ({REAL_NODE_LOG}) {'=' * 30}")
    print(REAL_NODE_LOG.read_text(errors="replace"), end="", flush=True)
    print(
        f"\n[run_tests] {rest_name}: exit {rest_code} after {rest_seconds:.0f}s; "
        f"{vm_name}: exit {vm_code} after {vm_seconds:.0f}s; side by side: {max(rest_seconds, vm_seconds):.0f}s",
        flush=True,
    )
    return rest_code or vm_code


if __name__ == "__main__":
    sys.exit(main())
