#!/usr/bin/env python3
"""A cold build of every image (minion images, then VM images), serial against parallel.

Run from the repository root with the project's venv::

    .venv/bin/python bench/cold_images.py [--modes 2,1] [--logs DIR]

For each mode (``K8SNODE_IMAGE_JOBS``: 2 = two releases at a time, 1 = one after
another), ``images/build.py`` then ``images/vm_build.py`` run from nothing: under a
throw-away tag prefix (``K8SNODE_IMAGE_PREFIX=k8snode-cold<jobs>-<pid>``) and a
throw-away cache directory (``K8SNODE_IMAGE_CACHE``), so mmdebstrap, every docker
layer, pip and apt start cold, and the images other checkouts use now are not touched.
Both modes run in the same process, one after the other, under the machine-wide suite
lock (its wait is printed).  The throw-away images and directories are removed at the
end, also on failure.  Printed, never asserted: the exit status is 0 when every build
ran.  Each build's output goes to ``DIR/cold-images-<jobs>.log`` (default: $TMPDIR).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.support.harness import machine_suite_lock  # noqa: E402

STEPS = (("minion images (build.py)", "images/build.py"), ("VM images (vm_build.py)", "images/vm_build.py"))


def _remove_images(prefix: str) -> list[str]:
    proc = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True, check=True
    )
    tags = [tag for tag in proc.stdout.split() if tag.startswith(f"{prefix}-")]
    if tags:  # their untagged layers go with them; nobody else's images are touched
        subprocess.run(["docker", "image", "rm", "--force", *tags], capture_output=True, check=False)
    return tags


def cold_build(jobs: int, log_dir: Path) -> dict[str, float]:
    prefix = f"k8snode-cold{jobs}-{os.getpid()}"
    cache = Path(tempfile.mkdtemp(prefix=f"{prefix}-cache-"))
    env = dict(os.environ, K8SNODE_IMAGE_JOBS=str(jobs), K8SNODE_IMAGE_PREFIX=prefix, K8SNODE_IMAGE_CACHE=str(cache))
    log_path = log_dir / f"cold-images-{jobs}.log"
    seconds = {}
    try:
        with open(log_path, "w") as log:
            for what, script in STEPS:
                started = time.monotonic()
                proc = subprocess.run(
                    [sys.executable, script], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
                )
                seconds[what] = round(time.monotonic() - started, 1)
                if proc.returncode != 0:
                    raise RuntimeError(f"jobs={jobs}: {script} failed ({proc.returncode}); see {log_path}")
        return seconds
    finally:
        removed = _remove_images(prefix)
        shutil.rmtree(cache, ignore_errors=True)
        print(f"jobs={jobs}: removed {len(removed)} throw-away image(s) and {cache}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="2,1", help="K8SNODE_IMAGE_JOBS values, in the order run (default 2,1)")
    parser.add_argument("--logs", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args(argv)
    modes = [int(mode) for mode in args.modes.split(",")]
    asked = time.monotonic()
    with machine_suite_lock():
        waited = time.monotonic() - asked
        print(f"suite lock: waited {waited:.0f}s", flush=True)
        results = {}
        for jobs in modes:
            results[jobs] = cold_build(jobs, args.logs)
            total = sum(results[jobs].values())
            parts = ", ".join(f"{what} {value:.0f}s" for what, value in results[jobs].items())
            print(f"K8SNODE_IMAGE_JOBS={jobs}: {total:.0f}s cold ({parts})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
