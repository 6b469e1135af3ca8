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


def test_a_child_started_with_die_with_parent_dies_with_its_parent():
    """What keeps QEMU and the runner's two sessions from outliving a killed parent."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = (
        "import signal, subprocess; from tests.support import harness; "
        "child = subprocess.Popen(['sleep', '60'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=harness.die_with_parent(signal.SIGTERM)); "
        "print(child.pid, flush=True)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=harness.REPO_ROOT
    )
    stat = Path(f"/proc/{int(out.stdout)}/stat")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            gone = stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except OSError:
            gone = True
        if gone:
            break
        time.sleep(0.05)
    assert gone, f"sleep {out.stdout.strip()} outlived its parent"
