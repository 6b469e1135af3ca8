"""The image builds that run in the background while the fast layers run.

``make test`` starts ``images/prebuild.py`` as soon as the Docker engine is up
(``scripts/bootstrap.sh --images-in-background``, PID in ``.cache/images-background.pid``).
Whoever runs the integration tests takes it over (:func:`take_over_or_start`), so that it
is stopped with them if they end first (:func:`stop`): ``scripts/run_tests.py`` when
``make test`` runs its two streams, otherwise the pytest session (tests/conftest.py).
The integration fixtures wait on the builds' locks and use what it built; its result
is never trusted on its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
LOG = REPO_ROOT / ".cache" / "logs" / "images-background.log"
PID_FILE = REPO_ROOT / ".cache" / "images-background.pid"


def running_prebuild(pid_file: Path = PID_FILE) -> int | None:
    """The PID in ``pid_file`` if that process is images/prebuild.py and still running."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"prebuild.py" in cmdline else None


def take_over_or_start() -> int:
    """The PID of the running background build; started here (output in ``LOG``) if none runs."""
    pid = running_prebuild()
    if pid is not None:
        return pid
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with open(LOG, "w") as log:
        pid = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "images" / "prebuild.py")],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,  # its own process group: stopped with its docker/mmdebstrap children
        ).pid
    PID_FILE.write_text(f"{pid}\n")
    return pid


def stop(pid: int) -> None:
    """Stop the build ``pid`` and its children if it still runs (a run that ended before it
    finished: interrupted, or one that needed only some images).  A build killed half-way
    leaves only an unfinished docker build, never an image that is used."""
    # Reap it if it is our child and done (no zombie for the check below to see).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    if running_prebuild() != pid:
        return
    with contextlib.suppress(ProcessLookupError):  # it may end between the check and here
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and running_prebuild() == pid:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
