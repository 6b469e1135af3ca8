"""Session-wide: the image builds run in the background while the fast layers run.

pytest.ini orders the layers unit, functional, integration. When integration tests are
collected, ``images/prebuild.py`` must be building: ``make test`` started it already
(``scripts/bootstrap.sh --images-in-background``, PID in ``.cache/images-background.pid``)
and this session takes it over; otherwise it starts here (output in
``.cache/logs/images-background.log``). Either way a cold machine spends the venv, unit
and functional minutes building images too. The integration fixtures wait on the builds'
locks and use what it built; its result is never trusted on its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.harness import REPO_ROOT

BACKGROUND_BUILD = pytest.StashKey[int]()
LOG = REPO_ROOT / ".cache" / "logs" / "images-background.log"
PID_FILE = REPO_ROOT / ".cache" / "images-background.pid"


def _running_prebuild(pid_file: Path = PID_FILE) -> int | None:
    """The PID in ``pid_file`` if that process is images/prebuild.py and still running."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"prebuild.py" in cmdline else None


def pytest_collection_finish(session):
    if not any(item.nodeid.startswith("tests/integration/") for item in session.items):
        return
    pid = _running_prebuild()
    if pid is None:
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
    session.config.stash[BACKGROUND_BUILD] = pid


def pytest_unconfigure(config):
    # Salt's in-process log handlers (the functional layer loads Salt in this process too)
    # flush records at interpreter exit, after pytest has closed its capture streams: that
    # only prints "--- Logging error ---" tracebacks about closed files.  The run is over;
    # keep its output readable.
    logging.raiseExceptions = False
    pid = config.stash.get(BACKGROUND_BUILD, None)
    if pid is None:
        return
    # Reap it if it is our child and done (no zombie for the check below to see).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    if _running_prebuild() != pid:
        return
    # The session ended before it finished (interrupted, or a run that needed only some
    # images): stop it and its children; a build killed half-way leaves only an
    # unfinished docker build, never an image that is used.
    with contextlib.suppress(ProcessLookupError):  # it may end between the check and here
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _running_prebuild() == pid:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
