"""Session-wide: start the image builds in the background while the fast layers run.

pytest.ini orders the layers unit, functional, integration. When integration tests are
collected, ``images/prebuild.py`` starts at once (output in
``.cache/logs/images-background.log``), so a cold machine spends the unit and
functional minutes building images too. The integration fixtures wait on the builds'
locks and use what it built; its result is never trusted on its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import pytest

from tests.support.harness import REPO_ROOT

BACKGROUND_BUILD = pytest.StashKey[subprocess.Popen]()
LOG = REPO_ROOT / ".cache" / "logs" / "images-background.log"


def pytest_collection_finish(session):
    if not any(item.nodeid.startswith("tests/integration/") for item in session.items):
        return
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with open(LOG, "w") as log:
        session.config.stash[BACKGROUND_BUILD] = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "images" / "prebuild.py")],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,  # its own process group: stopped with its docker/debootstrap children
        )


def pytest_unconfigure(config):
    proc = config.stash.get(BACKGROUND_BUILD, None)
    if proc is not None and proc.poll() is None:
        # The session ended before it finished (interrupted, or a run that needed only
        # some images): stop it and its children; a build killed half-way leaves only a
        # .partial directory or an unfinished docker build, never an image that is used.
        with contextlib.suppress(ProcessLookupError):  # it may end between poll() and here
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
