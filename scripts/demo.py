#!/usr/bin/env python3
"""`make demo`: a real salt-master and three Debian minion containers, no pytest.

1. builds (or reuses) the minion images (images/build.py);
2. creates a docker network, writes a master config in a temp dir (file_roots =
   <repo>/salt + the repo's _modules/_states/_runners/_output, pillar_roots =
   <repo>/pillar, auto_accept, interface = the network's gateway) and starts
   ``salt-master`` from this venv;
3. starts one minion container per release (``k8snode-<release>``) running
   ``salt-minion`` against that master, waits until all answer ``test.ping`` and
   runs ``saltutil.sync_all``;
4. runs the STEPS below, printing for each a heading, the exact command and its
   output.

Everything (containers, network, master, temp dir) is removed at the end, also on
failure, Ctrl-C or SIGTERM.  Exit status: 0 when every step worked.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.support import harness  # noqa: E402 (needs the repository on sys.path)
from tests.support.harness import RELEASES  # noqa: E402

DEMO_LABEL = "k8snode.demo"
OWNER_LABEL = "k8snode.demo.owner"
OWNER_FILE = ".k8snode-demo-owner"
MINION_CMD = "mount -o remount,rw /proc/sys; exec salt-minion"
READY_TIMEOUT = 180


class DemoError(RuntimeError):
    """The demo could not be set up or a step failed."""


# ------------------------------------------------------------------------------------
# The steps.  Add more here: each runs on the master with `-c CONF` added after the
# program name; `salt` steps target every demo minion.
# ------------------------------------------------------------------------------------
@dataclass
class Step:
    title: str
    argv: list[str]  # e.g. ["salt", "*", "k8snode.audit"] or ["salt-run", "k8snode.report"]
    # Text that, when found in the output, means the k8snode code is not there yet.
    missing_markers: tuple[str, ...] = ("is not available",)
    missing_message: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    # Checks the step did what its title says: returns what is wrong, or None.
    expect: Callable[[str], str | None] = lambda output: None


def _each_node(word: str):
    def check(output: str) -> str | None:
        lines = [line for line in output.splitlines() if line.startswith("k8snode-")]
        wrong = [line for line in lines if not line.split(": ", 1)[1].startswith(word + " ")]
        if len(lines) != len(RELEASES) or wrong:
            return f"expected {len(RELEASES)} nodes {word}, got: {lines}"
        return None

    return check


def _contains(text: str, times: int = 1):
    def check(output: str) -> str | None:
        found = output.count(text)
        return None if found == times else f"expected {text!r} {times} time(s) in the output, found {found}"

    return check


STEPS: list[Step] = [
    Step(
        title="Step 1: audit every node (nothing changed yet: none is ready)",
        argv=["salt", "*", "k8snode.audit", "--out=k8snode"],
        missing_message=(
            "k8snode.audit is not available on the minions: the execution module "
            "_modules/k8snode.py does not exist yet (or does not load)."
        ),
        expect=_each_node("NOT READY"),
    ),
    Step(
        title="Step 2: prepare every node for its distribution (pillar k8snode, kubeadm by default)",
        argv=["salt", "*", "state.apply", "k8snode", "--state-output=changes"],
        expect=_contains("Succeeded: 1 (changed=1)", times=len(RELEASES)),
    ),
    Step(
        title="Step 3: audit again: every node is ready, and stays so after a reboot",
        argv=["salt", "*", "k8snode.audit", "--out=k8snode"],
        expect=_each_node("READY"),
    ),
    Step(
        title="Step 4: the fleet report (salt-run exits non-zero unless every host is ready)",
        argv=["salt-run", "k8snode.report"],
        expect=_contains(f"fleet: {len(RELEASES)} ready"),
    ),
]


def say(msg: str = "") -> None:
    print(msg, flush=True)


def heading(text: str) -> None:
    say()
    say("=" * 78)
    say(text)
    say("=" * 78)


# ------------------------------------------------------------------------------------
# Plumbing
# ------------------------------------------------------------------------------------
def run(argv: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise DemoError(f"`{shlex.join(argv)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def remove_stale_demo_objects() -> None:
    """Remove containers/networks of earlier demo runs whose process is gone."""
    for kind in ("container", "network"):
        list_argv = ["docker", kind, "ls", "--filter", f"label={DEMO_LABEL}", "--format", "{{.ID}}"]
        if kind == "container":
            list_argv.insert(3, "--all")
        for obj_id in run(list_argv).stdout.split():
            fmt = '{{index .Config.Labels "%s"}}' if kind == "container" else '{{index .Labels "%s"}}'
            owner = run(["docker", kind, "inspect", "--format", fmt % OWNER_LABEL, obj_id], check=False)
            if not harness.owner_alive(owner.stdout.strip()):
                say(f"  removing stale demo {kind} {obj_id[:12]}")
                rm = ["docker", "rm", "--force", obj_id] if kind == "container" else ["docker", "network", "rm", obj_id]
                run(rm, check=False)


def remove_stale_demo_dirs() -> None:
    """Stop the salt-master of earlier demo runs that died (SIGKILL) and drop their temp dirs."""
    import psutil

    for path in Path(tempfile.gettempdir()).glob("k8snode-demo-*"):
        owner_file = path / OWNER_FILE
        if not owner_file.exists() or harness.owner_alive(owner_file.read_text().strip()):
            continue
        marker = str(path) + os.sep
        procs = [
            proc
            for proc in psutil.process_iter(["cmdline"])
            if any(marker in arg for arg in proc.info.get("cmdline") or [])
        ]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        for proc in psutil.wait_procs(procs, timeout=10)[1]:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        say(f"  removing stale demo dir {path}")
        shutil.rmtree(path, ignore_errors=True)


def wait_for_port(host: str, port: int, timeout: float, master: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if master.poll() is not None:
            raise DemoError(f"salt-master exited with {master.returncode}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise DemoError(f"salt-master did not listen on {host}:{port} within {timeout:.0f}s")


class Demo:
    def __init__(self) -> None:
        self.suffix = secrets.token_hex(3)
        self.tmp = Path(tempfile.mkdtemp(prefix="k8snode-demo-"))
        self.conf_dir = self.tmp / "master"
        self.network: str | None = None
        self.gateway: str | None = None
        self.containers: list[str] = []
        self.master: subprocess.Popen | None = None
        self.ids = [f"k8snode-{release}" for release in RELEASES]
        bindir = Path(sys.executable).parent
        self.salt_bin = {name: str(bindir / name) for name in ("salt", "salt-master", "salt-run", "salt-key")}

    # --- setup -------------------------------------------------------------------
    def setup(self) -> None:
        missing = [path for path in self.salt_bin.values() if not Path(path).exists()]
        if missing:
            raise DemoError(f"{missing[0]} is missing: run `make setup`")
        heading("Setting up: images, network, master, three minions")
        tags = harness.ensure_images(RELEASES)
        for release, tag in tags.items():
            say(f"  image {release}: {tag}")
        remove_stale_demo_objects()
        remove_stale_demo_dirs()
        owner = harness.process_owner()
        (self.tmp / OWNER_FILE).write_text(owner)

        self.network = f"k8snode-demo-{self.suffix}"
        run(
            [
                "docker",
                "network",
                "create",
                "--label",
                f"{DEMO_LABEL}=1",
                "--label",
                f"{OWNER_LABEL}={owner}",
                self.network,
            ]
        )
        self.gateway = run(
            ["docker", "network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", self.network]
        ).stdout.strip()
        if not self.gateway:
            raise DemoError(f"docker network {self.network} has no gateway")
        say(f"  network {self.network}, master on its gateway {self.gateway}")

        ret_port, publish_port = harness.free_port(self.gateway), harness.free_port(self.gateway)
        self._write_master_config(ret_port, publish_port)
        log = open(self.tmp / "salt-master.out", "wb")  # noqa: SIM115 - closed with the process
        self.master = subprocess.Popen(
            [self.salt_bin["salt-master"], "-c", str(self.conf_dir), "-l", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.gateway, ret_port, 60, self.master)
        say(f"  salt-master running (pid {self.master.pid}, config {self.conf_dir / 'master'})")

        for release in RELEASES:
            self._start_minion(release, tags[release], ret_port, owner)
        self._wait_for_minions()
        self.salt(["saltutil.sync_all"], quiet=True)
        say("  saltutil.sync_all done")

    def _write_master_config(self, ret_port: int, publish_port: int) -> None:
        config = harness.standalone_master_config(
            "k8snode-demo-master",
            self.gateway,
            self.tmp / "root",
            ret_port,
            publish_port,
            harness.make_extension_root(self.tmp / "extensions"),
        )
        self.conf_dir.mkdir(parents=True)
        (self.conf_dir / "master").write_text(yaml.safe_dump(config, default_flow_style=False))

    def _start_minion(self, release: str, image: str, ret_port: int, owner: str) -> None:
        mid = f"k8snode-{release}"
        conf = self.tmp / f"minion-{release}"
        conf.mkdir()
        (conf / "minion").write_text(yaml.safe_dump(harness.standalone_minion_config(mid, self.gateway, ret_port)))
        name = f"k8snode-demo-{release}-{self.suffix}"
        argv = [
            "docker", "run", "--detach", "--name", name, "--hostname", mid,
            "--network", self.network, "--cap-add", "NET_ADMIN", "--cap-add", "SYS_ADMIN",
            "--label", f"{DEMO_LABEL}=1", "--label", f"{OWNER_LABEL}={owner}",
            "--volume", f"{conf / 'minion'}:/etc/salt/minion:ro",
            image, "sh", "-c", MINION_CMD,
        ]  # fmt: skip
        run(argv)
        self.containers.append(name)
        say(f"  container {name} ({image}) started")

    def _wait_for_minions(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        answered: set[str] = set()
        while time.monotonic() < deadline:
            proc = self.salt(["test.ping"], timeout=5, check=False, quiet=True, out="json")
            answered = {mid for mid, ret in _json_lines(proc.stdout).items() if ret is True}
            if answered >= set(self.ids):
                say(f"  all minions answer test.ping: {', '.join(sorted(answered))}")
                return
            for name in self.containers:
                state = run(["docker", "inspect", "--format", "{{.State.Status}}", name], check=False)
                if state.stdout.strip() != "running":
                    logs = run(["docker", "logs", "--tail", "30", name], check=False)
                    raise DemoError(f"container {name} is {state.stdout.strip()}:\n{logs.stdout}{logs.stderr}")
            time.sleep(2)
        missing = sorted(set(self.ids) - answered)
        raise DemoError(f"minions {missing} did not answer test.ping within {READY_TIMEOUT}s")

    # --- running salt ------------------------------------------------------------
    def command(self, argv: list[str]) -> list[str]:
        """The full command line for a step: `-c CONF` after the program; salt targets all."""
        program, *rest = argv
        return [self.salt_bin.get(program, program), "-c", str(self.conf_dir), *rest]

    def salt(self, args, timeout=120, check=True, quiet=False, out=None) -> subprocess.CompletedProcess:
        argv = [self.salt_bin["salt"], "-c", str(self.conf_dir), "--timeout", str(timeout)]
        if out:
            argv += ["--out", out, "--static"]
        argv += ["-L", ",".join(self.ids), *args]
        proc = run(argv, check=False)
        if check and proc.returncode != 0:
            raise DemoError(f"`{shlex.join(argv)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        if not quiet:
            say(proc.stdout + proc.stderr)
        return proc

    def run_steps(self) -> int:
        for step in STEPS:
            argv = self.command(step.argv)
            heading(step.title)
            say("$ " + shlex.join(argv))
            say()
            proc = run(argv, check=False, env=dict(os.environ, **step.extra_env))
            output = proc.stdout + proc.stderr
            say(output.rstrip())
            if any(marker in output for marker in step.missing_markers):
                say()
                say("!! " + (step.missing_message or f"{shlex.join(step.argv)}: function not available"))
                return 3
            if proc.returncode != 0 or "Minion did not return" in output:
                say()
                say(f"!! step failed (exit code {proc.returncode})")
                return 1
            problem = step.expect(output)
            if problem:
                say()
                say(f"!! step did not do what it says: {problem}")
                return 1
        heading("All steps done")
        return 0

    # --- teardown ----------------------------------------------------------------
    def cleanup(self) -> None:
        for name in self.containers:
            run(["docker", "rm", "--force", name], check=False)
        self.containers.clear()
        if self.network:
            run(["docker", "network", "rm", self.network], check=False)
            self.network = None
        harness.stop_process_group(self.master)
        self.master = None
        shutil.rmtree(self.tmp, ignore_errors=True)


def _json_lines(text: str) -> dict:
    import json

    merged = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                merged.update(json.loads(line))
    if not merged:
        try:
            data = json.loads(text)
            if isinstance(data, dict):
                merged = data
        except ValueError:
            pass
    return merged


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    demo = Demo()
    try:
        # One container or VM suite at a time on this machine (the tests take it too).
        with harness.machine_suite_lock():
            demo.setup()
            return demo.run_steps()
    except DemoError as exc:
        say(f"\n!! demo failed: {exc}")
        return 2
    except KeyboardInterrupt:
        say("\n!! interrupted")
        return 130
    finally:
        # Cleanup must not be interrupted half-way by a second signal.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("\nCleaning up (containers, network, master, temp dir) ...")
        demo.cleanup()
        say("done.")


if __name__ == "__main__":
    sys.exit(main())
