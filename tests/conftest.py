"""Session-wide: the image builds run in the background while the fast layers run.

pytest.ini orders the layers unit, functional, integration. When integration tests are
collected, ``images/prebuild.py`` must be building (tests/support/background_images.py):
``make test`` started it already and this session takes it over, unless
``scripts/run_tests.py`` runs this session (it owns the build for both of its streams);
otherwise it starts here. Either way a cold machine spends the venv, unit and functional
minutes building images too.
"""

from __future__ import annotations

import logging

import pytest

from tests.support import background_images
from tests.support.harness import started_by_test_runner

BACKGROUND_BUILD = pytest.StashKey[int]()


def pytest_collection_finish(session):
    if not any(item.nodeid.startswith("tests/integration/") for item in session.items):
        return
    if started_by_test_runner():  # it started or took over the build for both streams
        return
    session.config.stash[BACKGROUND_BUILD] = background_images.take_over_or_start()


def pytest_unconfigure(config):
    # Salt's in-process log handlers (the functional layer loads Salt in this process too)
    # flush records at interpreter exit, after pytest has closed its capture streams: that
    # only prints "--- Logging error ---" tracebacks about closed files.  The run is over;
    # keep its output readable.
    logging.raiseExceptions = False
    pid = config.stash.get(BACKGROUND_BUILD, None)
    if pid is not None:
        background_images.stop(pid)
