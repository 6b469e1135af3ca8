"""scripts/run_tests.py's two sessions skip the machine-wide suite lock only under their own runner."""

import os

from tests.support import harness


def test_only_a_child_of_the_named_runner_skips_the_lock(monkeypatch):
    monkeypatch.setenv(harness.TEST_RUNNER_ENV, str(os.getppid()))
    assert harness.started_by_test_runner()
    # A stale or copied variable (another process's PID, or empty) takes the lock as usual.
    monkeypatch.setenv(harness.TEST_RUNNER_ENV, str(os.getpid()))
    assert not harness.started_by_test_runner()
    monkeypatch.setenv(harness.TEST_RUNNER_ENV, "")
    assert not harness.started_by_test_runner()
    monkeypatch.delenv(harness.TEST_RUNNER_ENV)
    assert not harness.started_by_test_runner()
