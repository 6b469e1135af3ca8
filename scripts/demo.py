#!/usr/bin/env python3
"""`make demo`: a real salt-master, three Debian minion containers and one real node (a
Debian 12 VM with a modular kernel and systemd), no pytest.

1. builds (or reuses) the minion images (images/build.py) and the VM image
   (images/vm_build.py);
2. creates a docker network, writes a master config in a temp dir (file_roots =
   <repo>/salt + the repo's _modules/_states/_runners/_output, pillar_roots =
   <repo>/pillar, auto_accept, interface = the network's gateway);
3. boots the VM node ``k8snode-vm-bookworm`` (QEMU, tests/support/vm.py) whose minion
   reaches the master through QEMU's user-mode network only, then starts ``salt-master``
   from this venv while the VM boots (its kernel and systemd need no master);
4. starts one minion container per release (``k8snode-<release>``) running
   ``salt-minion`` against that master, waits until they answer ``test.ping`` and
   syncs the execution module and the state to them, then the same for the VM;
5. runs the STEPS below, printing for each a heading, the exact command and its
   output; one step reboots the VM for real and checks that every sysctl's value after
   the boot is the one the audit predicted before it.

Everything (containers, network, VM, master, temp dirs) is removed at the end, also on
failure, Ctrl-C or SIGTERM.  It holds the machine-wide suite lock of the tests
(harness.machine_suite_lock): one container or VM suite at a time.  Exit status: 0 when
every step worked.
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.support import harness, vm, vm_checks  # noqa: E402 (needs the repository on sys.path)
from tests.support.harness import RELEASES  # noqa: E402

VM_RELEASE = "bookworm"
VM_ID = vm.vm_minion_id(VM_RELEASE)
NODE_COUNT = len(RELEASES) + 1
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
    # A step that is not a command: Demo.<action>() prints its own output, returns a problem or None.
    action: str | None = None
    # The exit codes that mean the step worked (salt-run k8snode.report exits 1 while a host is not ready).
    exit_codes: tuple[int, ...] = (0,)


def _each_node(word: str):
    def check(output: str) -> str | None:
        lines = [line for line in output.splitlines() if line.startswith("k8snode-")]
        wrong = [line for line in lines if not line.split(": ", 1)[1].startswith(word + " ")]
        if len(lines) != NODE_COUNT or wrong:
            return f"expected {NODE_COUNT} nodes {word}, got: {lines}"
        return None

    return check


def _vm_and_containers(vm_word: str, container_word: str):
    """The real node's line starts with ``vm_word``, every container's with ``container_word``."""

    def check(output: str) -> str | None:
        lines = dict(line.split(": ", 1) for line in output.splitlines() if line.startswith("k8snode-"))
        wanted = {VM_ID: vm_word, **{harness.minion_id(release): container_word for release in RELEASES}}
        wrong = {
            mid: lines.get(mid) for mid, word in wanted.items() if not (lines.get(mid) or "").startswith(word + " ")
        }
        return f"expected {wanted}, got: {wrong}" if wrong or len(lines) != NODE_COUNT else None

    return check


CONTAINER_IDS = ",".join(harness.minion_id(release) for release in RELEASES)


def _all(*checks):
    def check(output: str) -> str | None:
        return next((problem for problem in (c(output) for c in checks) if problem), None)

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
        # The VM's modular kernel has the modules, not loaded (the containers' are built in);
        # overlay loads on the first overlay mount, br_netfilter only by modprobe.
        expect=_all(
            _each_node("NOT READY"),
            _contains("br_netfilter is available but not loaded"),
            _contains("overlay is not loaded; the kernel loads it on the first overlay mount"),
        ),
    ),
    Step(
        title=f"Step 2: on the real node {VM_ID}, a pod reaches a pod on its own bridge through a ClusterIP "
        "(kube-proxy's DNAT): it fails, as the audit's FAIL of br_netfilter says",
        argv=[],
        action="cluster_ip_fails",
    ),
    Step(
        title="Step 3: prepare every node for its distribution (pillar k8snode, kubeadm by default)",
        argv=["salt", "*", "state.apply", "k8snode", "--state-output=changes"],
        expect=_contains("Succeeded: 1 (changed=1)", times=NODE_COUNT),
    ),
    Step(
        title=f"Step 4: the same ClusterIP on {VM_ID} answers now (br_netfilter loaded, bridge-nf-call-iptables = 1)",
        argv=[],
        action="cluster_ip_answers",
    ),
    Step(
        title="Step 5: audit again: the real node (cgroup v2) is ready; the containers are not, since their host "
        "runs cgroup v1, which every supported kubelet (1.35 and later: failCgroupV1 defaults to true) refuses",
        argv=["salt", "*", "k8snode.audit", "--out=k8snode"],
        expect=_all(_vm_and_containers("READY", "NOT READY"), _contains("failCgroupV1 is true", times=len(RELEASES))),
    ),
    Step(
        title="Step 6: the fleet report names the common failure (and exits non-zero: not every host is ready)",
        argv=["salt-run", "k8snode.report"],
        exit_codes=(1,),
        expect=_all(_contains(f"{len(RELEASES)} x cgroup"), _contains("fleet: 1 ready")),
    ),
    Step(
        title="Step 7: what an operator does about it: the hosts that stay on cgroup v1 get the grain with which "
        "pillar/top.sls gives them kubelet: {fail_cgroup_v1: false} (and their kubelet the same setting), "
        "and a fresh pillar",
        argv=[],
        action="mark_cgroup_v1_hosts",
    ),
    Step(
        title="Step 8: audit again: every node is ready (cgroup v1 is a warning now; each container also warns that "
        "its net.* values are its own network namespace's), and stays so after a reboot",
        argv=["salt", "*", "k8snode.audit", "--out=k8snode"],
        expect=_all(
            _each_node("READY"),
            _contains("failCgroupV1 is false (pillar k8snode:kubelet:fail_cgroup_v1)", times=len(RELEASES)),
        ),
    ),
    Step(
        title=f"Step 9: reboot the real node {VM_ID} (systemctl poweroff, power on), then audit it: no state run in between",
        argv=[],
        action="reboot_vm",
    ),
    Step(
        title="Step 10: the fleet report (salt-run exits non-zero unless every host is ready)",
        argv=["salt-run", "k8snode.report"],
        expect=_contains(f"fleet: {NODE_COUNT} ready"),
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
        self.vm_dir: Path | None = None
        self.client = None  # salt.client.LocalClient, made on first use
        self.listening = False  # its event listener connected for good (_events)
        self.node: vm.VmNode | None = None
        bindir = Path(sys.executable).parent
        self.salt_bin = {name: str(bindir / name) for name in ("salt", "salt-master", "salt-run", "salt-key")}

    # --- setup -------------------------------------------------------------------
    def setup(self) -> None:
        missing = [path for path in self.salt_bin.values() if not Path(path).exists()]
        if missing:
            raise DemoError(f"{missing[0]} is missing: run `make setup`")
        heading("Setting up: images, network, master, three minion containers, one VM node")
        tags = harness.ensure_images(RELEASES)
        for release, tag in tags.items():
            say(f"  image {release}: {tag}")
        vm.check_qemu()
        vm_image = vm.ensure_vm_images([VM_RELEASE])[VM_RELEASE]
        say(f"  VM image {VM_RELEASE}: {vm_image.directory} (kernel {vm_image.kernel_release})")
        remove_stale_demo_objects()
        remove_stale_demo_dirs()
        vm.remove_stale_vms()
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

        ret_port, publish_port = harness.listen_ports(self.gateway, 2)
        self._write_master_config(ret_port, publish_port)

        # The VM boots first (TCG: its kernel and systemd take some 20 s before its minion
        # looks for the master, which it retries every second until it answers), then the
        # master and the containers start beside that boot.
        self.vm_dir = vm.make_session_dir()
        link = vm.MasterLink(
            host=self.gateway,
            ret_port=ret_port,
            publish_port=publish_port,
            salt=self._salt_one,
            wait_started=self._wait_started,
        )
        self.node = vm.new_node(self.vm_dir, vm_image, link, VM_ID)
        self.node.start()
        say(f"  VM {VM_ID} booting (QEMU pid {self.node.process.pid}, serial console {self.node.console_log})")

        log = open(self.tmp / "salt-master.out", "wb")  # noqa: SIM115 - closed with the process
        self.master = subprocess.Popen(
            [self.salt_bin["salt-master"], "-c", str(self.conf_dir), "-l", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        for release in RELEASES:
            self._start_minion(release, tags[release], ret_port, owner)
        wait_for_port(self.gateway, ret_port, 60, self.master)
        self._events()  # listening before any minion can start: the VM's boots wait for its start event
        say(f"  salt-master running (pid {self.master.pid}, config {self.conf_dir / 'master'})")

        # Only what the demo runs on the minions (sync_all walks Salt's 18 module kinds, ~0.7 s
        # each on the VM under TCG): the execution module, then the state with the one refresh.
        # The containers sync while the VM still boots.
        container_ids = [harness.minion_id(release) for release in RELEASES]
        self._wait_for_minions(container_ids, self.containers)
        self._sync(container_ids)
        seconds = self.node.wait_booted()
        say(f"  VM {VM_ID} up {seconds:.0f}s after QEMU started (its minion's start event, then test.ping)")
        self._sync([VM_ID])

    def _sync(self, ids: list[str]) -> None:
        started = time.monotonic()
        for fun, kwarg in (("saltutil.sync_modules", {"refresh": False}), ("saltutil.sync_states", {})):
            returns = self._local().cmd(ids, fun, kwarg=kwarg, tgt_type="list", timeout=120)
            missing = sorted(set(ids) - set(returns))
            if missing:
                raise DemoError(f"{fun} did not return from {missing}")
        say(f"  saltutil.sync_modules and sync_states done on {', '.join(ids)} ({time.monotonic() - started:.1f} s)")

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

    def _wait_for_minions(self, ids: list[str], containers: list[str]) -> None:
        """Until every one of ``ids`` answers ``test.ping`` (failing early when one of
        ``containers`` stops): in-process, since a ``salt`` process per try (a Python
        start and Salt's imports) takes the CPU the booting VM needs."""
        deadline = time.monotonic() + READY_TIMEOUT
        answered: set[str] = set()
        accepted = Path(self._local().opts["pki_dir"]) / "minions"
        while time.monotonic() < deadline:
            # Not before every key is accepted (auto_accept): Salt prints "No minions
            # matched the target" for a list that names an unknown minion.
            if all((accepted / mid).exists() for mid in ids):
                returns = self._local().cmd(ids, "test.ping", tgt_type="list", timeout=3)
                answered = {mid for mid, ret in returns.items() if ret is True}
            if answered >= set(ids):
                say(f"  minions answer test.ping: {', '.join(sorted(answered))}")
                return
            for name in containers:
                state = run(["docker", "inspect", "--format", "{{.State.Status}}", name], check=False)
                if state.stdout.strip() != "running":
                    logs = run(["docker", "logs", "--tail", "30", name], check=False)
                    raise DemoError(f"container {name} is {state.stdout.strip()}:\n{logs.stdout}{logs.stderr}")
            time.sleep(1)
        missing = sorted(set(ids) - answered)
        raise DemoError(f"minions {missing} did not answer test.ping within {READY_TIMEOUT}s")

    # --- running salt ------------------------------------------------------------
    def command(self, argv: list[str]) -> list[str]:
        """The full command line for a step: `-c CONF` after the program; salt targets all."""
        program, *rest = argv
        return [self.salt_bin.get(program, program), "-c", str(self.conf_dir), *rest]

    def _local(self):
        """The demo's in-process ``salt.client.LocalClient`` (made on first use)."""
        if self.client is None:
            import salt.client

            self.client = salt.client.LocalClient(c_path=str(self.conf_dir / "master"))
        return self.client

    def _events(self):
        """The master's event bus, through the LocalClient's own listener: connected once
        and for good (``LocalClient.cmd`` then leaves it open instead of closing it after
        each call), and the VM's start events kept aside while a call reads the bus for
        its job's returns (or that call would drop them)."""
        event = self._local().event
        if not self.listening:
            if not event.connect_pub(timeout=30):
                raise DemoError("could not listen on the master's event bus")
            event.subscribe(f"salt/minion/{VM_ID}/start")
            self.listening = True
        return event

    def _wait_started(self, minion_id: str, since: float, timeout: float) -> bool:
        """Whether ``minion_id`` fired ``salt/minion/<id>/start`` after ``since`` (epoch
        seconds) within ``timeout``: a minion whose start event came answers at once, where
        pinging one still booting costs each try its timeout and Salt's find_job wait."""
        tag = f"salt/minion/{minion_id}/start"
        deadline = time.time() + timeout
        while (left := deadline - time.time()) > 0:
            event = self._events().get_event(wait=left, tag=tag, full=True)
            stamp = (event or {}).get("data", {}).get("_stamp")
            if stamp and datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc).timestamp() >= since:
                return True
        return False

    def _salt_one(self, minion_id, fun, *args, timeout=120, **kwargs):
        """The VM's plumbing and the data the demo checks: ``fun`` on one minion through the
        master with an in-process LocalClient; (0, its return) or (1, None) without one."""
        returns = self._local().cmd(minion_id, fun, arg=list(args), kwarg=kwargs, timeout=timeout)
        return (0, returns[minion_id]) if minion_id in returns else (1, None)

    def _cluster_ip(self, timeout: float) -> str:
        say(
            "$ salt " + VM_ID + " cmd.run '<two pods on a bridge by the CNI bridge plugin, a DNAT from 10.96.0.10:80 "
            "to the second, busybox nc in the first>'   # tests/support/vm_checks.py CLUSTER_IP_SCRIPT"
        )
        outcome = vm_checks.cluster_ip_on_one_bridge(self.node, timeout)
        say(f"  client -> http://10.96.0.10/ (ClusterIP) -> 10.244.0.3:8080 on the same bridge: {outcome}")
        return outcome

    def mark_cgroup_v1_hosts(self) -> str | None:
        """Two calls on the container minions, in-process (what the two commands shown do)."""
        ids = [harness.minion_id(release) for release in RELEASES]
        for argv, fun, arg, kwarg in (
            (["grains.setval", "k8snode_cgroup_v1", "allowed"], "grains.setval", ["k8snode_cgroup_v1", "allowed"], {}),
            (["saltutil.refresh_pillar", "wait=True"], "saltutil.refresh_pillar", [], {"wait": True}),
        ):
            say("$ salt -L " + CONTAINER_IDS + " " + shlex.join(argv))
            returns = self._local().cmd(ids, fun, arg=arg, kwarg=kwarg, tgt_type="list", timeout=60)
            for mid in ids:
                say(f"  {mid}: {returns.get(mid, 'no answer')}")
            failed = [mid for mid in ids if mid not in returns or returns[mid] is False]
            if failed:
                return f"{fun} failed on {failed}: {returns}"
        return None

    def cluster_ip_fails(self) -> str | None:
        outcome = self._cluster_ip(timeout=2)
        return None if outcome.startswith("failed") else f"expected the ClusterIP to fail, got {outcome!r}"

    def cluster_ip_answers(self) -> str | None:
        outcome = self._cluster_ip(timeout=10)
        return None if outcome == "answered 200" else f"expected the ClusterIP to answer, got {outcome!r}"

    def reboot_vm(self) -> str | None:
        """Audit (the prediction), reboot for real, audit again: the boot values must hold."""
        code, before = self._salt_one(VM_ID, "k8snode.audit")
        if code != 0 or not isinstance(before, dict):
            return f"k8snode.audit on {VM_ID} failed: {before}"
        predicted = {name: check["boot"] for name, check in before["checks"].items() if name.startswith("sysctl:")}
        say(
            f"$ salt {VM_ID} cmd.run 'systemd-run --on-active=1 systemctl poweroff'   # then QEMU starts it again: a real reboot"
        )
        seconds = self.node.reboot()
        say(f"  {VM_ID} rebooted: its minion answered again {seconds:.0f}s later (boot id changed)")
        argv = self.command(["salt", VM_ID, "k8snode.audit", "--out=k8snode"])
        say("$ " + shlex.join(argv))
        say(run(argv, check=False).stdout.rstrip())
        code, after = self._salt_one(VM_ID, "k8snode.audit")
        if code != 0 or not isinstance(after, dict):
            return f"k8snode.audit on {VM_ID} failed after the reboot: {after}"
        say()
        say("  sysctl: boot value predicted before the reboot -> live value after it")
        wrong = []
        for name, boot in predicted.items():
            live = after["checks"][name]["live"]
            say(f"    {name[len('sysctl:') :]}: {boot} -> {live}")
            if live != boot:
                wrong.append(name)
        modules = {name: check["live"] for name, check in after["checks"].items() if name.startswith("module:")}
        say(f"  modules after the boot (systemd-modules-load): {modules}")
        if wrong:
            return f"live values differ from the audit's prediction: {wrong}"
        if not after["ready"] or set(modules.values()) != {"loaded"}:
            return f"{VM_ID} is not ready after the reboot: {after['failing']}"
        return None

    def run_steps(self) -> int:
        for step in STEPS:
            started = time.monotonic()
            try:
                code = self._run_step(step)
            finally:
                say(f"  ({time.monotonic() - started:.1f} s)")
            if code is not None:
                return code
        heading("All steps done")
        return 0

    def _run_step(self, step: Step) -> int | None:
        """One step: None when it did what it says, else the demo's exit status."""
        heading(step.title)
        if step.action:
            problem = getattr(self, step.action)()
        else:
            argv = self.command(step.argv)
            say("$ " + shlex.join(argv))
            say()
            proc = run(argv, check=False, env=dict(os.environ, **step.extra_env))
            output = proc.stdout + proc.stderr
            say(output.rstrip())
            if any(marker in output for marker in step.missing_markers):
                say()
                say("!! " + (step.missing_message or f"{shlex.join(step.argv)}: function not available"))
                return 3
            if proc.returncode not in step.exit_codes or "Minion did not return" in output:
                say()
                say(f"!! step failed (exit code {proc.returncode})")
                return 1
            problem = step.expect(output)
        if problem:
            say()
            say(f"!! step did not do what it says: {problem}")
            return 1
        return None

    # --- teardown ----------------------------------------------------------------
    def cleanup(self) -> None:
        if self.client is not None:
            self.client.destroy()
            self.client = None
        if self.node is not None:
            self.node.kill()
            self.node = None
        if self.vm_dir is not None:
            shutil.rmtree(self.vm_dir, ignore_errors=True)
            self.vm_dir = None
        for name in self.containers:
            run(["docker", "rm", "--force", name], check=False)
        self.containers.clear()
        if self.network:
            run(["docker", "network", "rm", self.network], check=False)
            self.network = None
        harness.stop_process_group(self.master)
        self.master = None
        shutil.rmtree(self.tmp, ignore_errors=True)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    demo = Demo()
    # The lock is held until the cleanup is done: the next suite finds the machine clean.
    with harness.machine_suite_lock():
        try:
            demo.setup()
            return demo.run_steps()
        except (DemoError, vm.VmError) as exc:
            say(f"\n!! demo failed: {exc}")
            return 2
        except KeyboardInterrupt:
            say("\n!! interrupted")
            return 130
        finally:
            # Cleanup must not be interrupted half-way by a second signal.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            say("\nCleaning up (VM, containers, network, master, temp dirs) ...")
            demo.cleanup()
            say("done.")


if __name__ == "__main__":
    sys.exit(main())
