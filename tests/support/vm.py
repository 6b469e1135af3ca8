"""Real nodes: Debian VMs (QEMU, TCG) with a modular kernel and systemd, as salt-minions.

A :class:`VmNode` is one QEMU process booting ``images/vm_build.py``'s kernel and initrd
on a qcow2 overlay of the release's disk image, so every node starts from the image and
nothing a node writes reaches the image.  Its salt-minion talks to a master on this
machine through QEMU's user-mode network only:

* ``restrict=on``: the guest reaches nothing, neither the host nor anything beyond it;
* two ``guestfwd`` rules: a guest connection to ``10.0.2.100:<ret_port>`` or
  ``10.0.2.100:<publish_port>`` is relayed by QEMU (tests/support/vm_relay.py, run by
  QEMU per connection) to the master's own address and port.  The guest's minion
  config says ``master: 10.0.2.100`` (images/vm/minion.conf); the id and the ports come
  from the kernel command line.

Controls: :meth:`VmNode.boot`, :meth:`VmNode.reboot` (a clean ``systemctl poweroff`` in
the guest, through Salt, and QEMU started again on the same disk: see there),
:meth:`VmNode.poweroff` (``systemctl poweroff``), :meth:`VmNode.power_cut`
(QEMU killed and started again: no shutdown, no flush of the guest's caches),
:meth:`VmNode.kill` (SIGKILL by PID).  The serial console goes to ``console.log`` in
the node's directory.

Every node's directory lives in a session directory ``$TMPDIR/k8snode-vm-*`` that
names its owner process (:func:`harness.process_owner`); :func:`remove_stale_vms`
kills, by the PID in their pid file, the QEMU processes of owners that are gone.
QEMU also gets ``PR_SET_PDEATHSIG``: it dies with the process that started it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tests.support import harness

GUEST_MASTER = "10.0.2.100"
QEMU = "qemu-system-x86_64"
QEMU_IMG = "qemu-img"
MEMORY_MB = 1024
# vCPUs per guest (K8SNODE_VM_CPUS): 2 when the tier runs alone; scripts/run_tests.py gives 1
# when the tier runs beside the container tier, where two TCG vCPU threads per guest on an
# oversubscribed host spin on each other's locks.
CPUS = int(os.environ.get("K8SNODE_VM_CPUS", "2"))
BOOT_TIMEOUT = 180
SHUTDOWN_TIMEOUT = 120
# Reading the boot id during a restart: a minion that does not answer this fast is down.
BOOT_ID_TIMEOUT = 10
# A node whose QEMU started this long before anyone waited for it was started ahead.
STARTED_AHEAD = 30
VM_DIR_PREFIX = "k8snode-vm-"
# The serial of the extension's disk (images/vm/k8snode-vm-config looks for it).
EXTENSION_SERIAL = "k8snode-extension"
# What Salt's sync copies of a _<kind> directory (salt/utils/extmods.py).
EXTENSION_FILES = re.compile(r"\.(pyx?|so|zip)$")
RELAY = Path(__file__).with_name("vm_relay.py")
# Run a command in the guest one second after the Salt job that asks for it has returned.
# (A timer's default AccuracySec is one minute: without it, the reboot comes up to 60 s late.)
IN_ONE_SECOND = "systemd-run --quiet --on-active=1 --timer-property=AccuracySec=10ms"

#: Every timing measured in this process: ``(what, node id, seconds)``.
TIMINGS: list[tuple[str, str, float]] = []


#: The MAC addresses of the two ends of a private L2 link between two nodes (:class:`L2Link`);
#: the image's 10-k8snode-link.network leaves NICs with these addresses unmanaged.
LINK_MACS = ("52:54:00:4b:38:01", "52:54:00:4b:38:02")


@dataclass(frozen=True)
class L2Link:
    """One end of a private Ethernet link between two of the tests' own guests: QEMU's
    socket backend sends each frame as a UDP datagram from 127.0.0.1:``local_port`` to the
    other QEMU at 127.0.0.1:``remote_port`` (loopback only; nothing of the host's
    networks). ``mac``: this end's NIC (one of :data:`LINK_MACS`)."""

    local_port: int
    remote_port: int
    mac: str

    @classmethod
    def pair(cls, ports: list[int]) -> tuple[L2Link, L2Link]:
        first, second = ports
        return cls(first, second, LINK_MACS[0]), cls(second, first, LINK_MACS[1])


class VmError(RuntimeError):
    """A VM could not be started, did not boot, or did not stop."""


def vm_minion_id(release: str, number: int | None = None) -> str:
    """``k8snode-vm-<release>``, or ``k8snode-vm-<release>-<number>`` when two nodes of a
    session may be up at once (each minion id has its own key on the master)."""
    return f"k8snode-vm-{release}" if number is None else f"k8snode-vm-{release}-{number}"


def ensure_vm_images(releases=None):
    """Build (if needed) and return ``{release: VmImage}``; see images/vm_build.py."""
    import importlib.util

    name = "k8snode_images_vm_build"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, harness.REPO_ROOT / "images" / "vm_build.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name].ensure_vm_images(releases)


def check_qemu() -> None:
    """Raise VmError naming what is missing (``make setup`` installs QEMU)."""
    missing = [tool for tool in (QEMU, QEMU_IMG) if shutil.which(tool) is None]
    if missing:
        raise VmError(f"{', '.join(missing)} not installed: run `make setup` (scripts/bootstrap.sh)")


# --------------------------------------------------------------------------------------
# Session directories and stale QEMU processes
# --------------------------------------------------------------------------------------
def make_session_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix=VM_DIR_PREFIX))
    (path / harness.OWNER_FILE).write_text(harness.process_owner())
    return path


def _qemu_of(pid_file: Path, directory: Path):
    """The live QEMU process named by ``pid_file`` if its command line is about ``directory``."""
    import psutil

    try:
        pid = int(pid_file.read_text().strip())
        proc = psutil.Process(pid)
        if any(str(directory) in arg for arg in proc.cmdline()):
            return proc
    except (OSError, ValueError, psutil.Error):
        pass
    return None


def remove_stale_vms() -> list[str]:
    """Kill the QEMU processes of sessions whose owner died (by the PID in their pid
    file, checked against its command line) and remove their directories."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{VM_DIR_PREFIX}*"):
        owner_file = path / harness.OWNER_FILE
        if not path.is_dir() or not owner_file.exists():
            continue
        if harness.owner_alive(owner_file.read_text().strip()):
            continue
        for pid_file in path.glob("*/qemu.pid"):
            proc = _qemu_of(pid_file, path)
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.kill()
                    proc.wait(10)
                removed.append(f"qemu pid {proc.pid}")
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    return removed


# --------------------------------------------------------------------------------------
# A node
# --------------------------------------------------------------------------------------
@dataclass
class MasterLink:
    """How a node reaches its master and how the test side talks to the minion.

    ``salt(minion_id, fun, *args, **kwargs)`` runs ``salt <id> fun ...`` through the
    master and returns ``(exit code, data)``; given a list of ids, one publish to all of them
    (``salt -L``) and ``(exit code, {id: data})``, 0 when every one answered; ``wait_started(minion_id, since, timeout)`` returns
    True once the minion announced itself (``salt/minion/<id>/start``) after ``since``
    (a UNIX time); None means "poll test.ping".
    """

    host: str
    ret_port: int
    publish_port: int
    salt: Callable[..., tuple[int, object]]
    wait_started: Callable[[str, float, float], bool] | None = None


@dataclass
class VmNode:
    """One VM node; see the module docstring."""

    image: object  # images/vm_build.VmImage
    directory: Path
    minion_id: str
    link: MasterLink
    l2: L2Link | None = None
    #: A disk to start from instead of the image's (a baked node's, :func:`from_baked_disk`).
    backing: Path | None = None
    #: The extension as a read-only second disk (:func:`extension_disk`), or None.
    extension: Path | None = None
    process: subprocess.Popen | None = None
    boots: int = 0
    started_at: float = 0.0
    timings: list = field(default_factory=list)

    @property
    def id(self) -> str:
        """The minion id (the name tests/support/nodes.py's helpers use)."""
        return self.minion_id

    # --- paths ---------------------------------------------------------------------
    @property
    def disk(self) -> Path:
        return self.directory / "disk.qcow2"

    @property
    def console_log(self) -> Path:
        return self.directory / "console.log"

    @property
    def pid_file(self) -> Path:
        return self.directory / "qemu.pid"

    def console_text(self, last_lines: int | None = None) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return ""
        if last_lines:
            text = "\n".join(text.splitlines()[-last_lines:])
        return text

    def record_time(self, what: str, seconds: float) -> None:
        """Keep a step's duration for the tier's "real nodes: measured times" summary."""
        entry = (what, self.minion_id, round(seconds, 1))
        self.timings.append(entry)
        TIMINGS.append(entry)
        print(f"[vm] {self.minion_id}: {what} {seconds:.1f}s", file=sys.stderr, flush=True)

    # --- QEMU ----------------------------------------------------------------------
    def _create_disk(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.disk.exists():
            return
        backing, backing_format = (self.backing, "qcow2") if self.backing else (self.image.disk, "raw")
        subprocess.run(
            [QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", str(backing), "-F", backing_format, str(self.disk)],
            check=True,
            capture_output=True,
        )

    def _relay(self, port: int) -> str:
        # No commas (QEMU's option separator) in here.
        return f"cmd:{sys.executable} -I -S {RELAY} {self.link.host} {port}"

    def qemu_argv(self) -> list[str]:
        link = self.link
        append = (
            f"console=ttyS0 loglevel=4 root=/dev/vda rw panic=-1 k8snode.id={self.minion_id} "
            f"k8snode.master_port={link.ret_port} k8snode.publish_port={link.publish_port}"
        )
        netdev = ",".join(
            [
                "user,id=n0,restrict=on",
                f"guestfwd=tcp:{GUEST_MASTER}:{link.ret_port}-{self._relay(link.ret_port)}",
                f"guestfwd=tcp:{GUEST_MASTER}:{link.publish_port}-{self._relay(link.publish_port)}",
            ]
        )
        # Optional devices: the private link's NIC, the extension's read-only disk.
        optional = []
        if self.l2 is not None:
            udp = f"udp=127.0.0.1:{self.l2.remote_port},localaddr=127.0.0.1:{self.l2.local_port}"
            optional += ["-netdev", f"socket,id=l2,{udp}"]
            optional += ["-device", f"virtio-net-pci,netdev=l2,mac={self.l2.mac},romfile="]
        if self.extension is not None:
            optional += ["-drive", f"file={self.extension},if=none,id=extension,format=raw,readonly=on"]
            optional += ["-device", f"virtio-blk-pci,drive=extension,serial={EXTENSION_SERIAL}"]
        return [
            QEMU,
            "-name", self.minion_id,
            "-accel", "tcg,thread=multi",
            "-smp", str(CPUS),
            "-m", str(MEMORY_MB),
            "-no-user-config", "-nodefaults", "-display", "none", "-vga", "none",
            "-kernel", str(self.image.kernel),
            "-initrd", str(self.image.initrd),
            "-append", append,
            # Devices, not if=virtio drives: QEMU creates if=virtio drives after every
            # -device, so the extension's disk would take the first slot and /dev/vda.
            "-drive", f"file={self.disk},if=none,id=root,format=qcow2",
            "-device", "virtio-blk-pci,drive=root",
            "-netdev", netdev,
            "-device", "virtio-net-pci,netdev=n0,romfile=",
            *optional,
            "-chardev", f"file,id=console,path={self.console_log},append=on",
            "-serial", "chardev:console",
            "-pidfile", str(self.pid_file),
            "-rtc", "base=utc",
        ]  # fmt: skip

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start QEMU; the boot goes on in the background (:meth:`wait_booted` waits for it)."""
        check_qemu()
        self.started_at = time.time()
        if self.running():
            raise VmError(f"{self.minion_id} is already running")
        self._create_disk()
        self.boots += 1
        with open(self.console_log, "a") as log:
            log.write(f"\n===== k8snode: QEMU start #{self.boots} at {time.strftime('%H:%M:%S')} =====\n")
        stderr = open(self.directory / "qemu.stderr", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.process = subprocess.Popen(
                self.qemu_argv(),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                preexec_fn=harness.die_with_parent(signal.SIGKILL),  # noqa: PLW1509 - PR_SET_PDEATHSIG only
            )
        finally:
            stderr.close()

    def _wait_minion(self, since: float, what: str, timeout: float = BOOT_TIMEOUT, start_event: bool = True) -> None:
        deadline = time.time() + timeout
        if start_event and self.link.wait_started is not None:
            while time.time() < deadline:
                self._check_alive(what)
                if self.link.wait_started(self.minion_id, since, min(5.0, deadline - time.time())):
                    break
            else:
                raise VmError(f"{self.minion_id}: no salt/minion/.../start event {timeout:.0f}s after {what}")
        while time.time() < deadline:
            self._check_alive(what)
            # Short: a job published before the minion's subscription is up is lost.
            code, data = self.link.salt(self.minion_id, "test.ping", timeout=3)
            if code == 0 and data is True:
                return
            time.sleep(0.5)
        raise VmError(f"{self.minion_id}: the minion did not answer test.ping {timeout:.0f}s after {what}")

    def _check_alive(self, what: str) -> None:
        if not self.running():
            code = self.process.returncode if self.process else None
            stderr = (self.directory / "qemu.stderr").read_text(errors="replace")[-2000:]
            raise VmError(f"{self.minion_id}: QEMU exited ({code}) during {what}: {stderr}")

    def wait_booted(self) -> float:
        """Wait until the minion started by :meth:`start` answers through the master;
        return the seconds from QEMU's start."""
        waiting_since = time.time()
        # A node started ahead (tests/integration/vm/conftest.py) may have announced itself
        # longer ago than the event store keeps events (120 s): ask it instead.
        started_ahead = waiting_since - self.started_at > STARTED_AHEAD
        self._wait_minion(self.started_at - 1, "boot", start_event=not started_ahead)
        seconds = time.time() - self.started_at
        if started_ahead:
            self.record_time(
                f"boot, started {waiting_since - self.started_at:.0f}s ahead: waited", time.time() - waiting_since
            )
        else:
            self.record_time("boot (QEMU start to minion answering)", seconds)
        return seconds

    def boot(self) -> float:
        """Start QEMU and wait until the minion answers through the master; return seconds."""
        self.start()
        return self.wait_booted()

    def boot_id(self, timeout: int = 120) -> str:
        return self.sh("cat /proc/sys/kernel/random/boot_id", timeout=timeout).strip()

    def _restart(self, what: str, trigger: Callable[[], str]) -> float:
        """``trigger()`` ends the current boot and returns its boot id; wait for a minion
        answering from another boot."""
        since = time.time()
        return self.await_new_boot(what, since, trigger())

    def await_new_boot(self, what: str, since: float, before: str) -> float:
        """Wait for a minion answering from another boot than ``before`` (without a start
        event to wait for, the old boot's minion may still answer for a moment)."""
        deadline = since + BOOT_TIMEOUT
        while True:
            self._wait_minion(since - 1, what, timeout=max(1.0, deadline - time.time()))
            try:
                # Short: the old boot's minion may answer a ping and then go down under
                # this call, and Salt would wait out the whole timeout for its return
                # (seen in the demo, which has no start event to wait for: 134 s).
                after = self.boot_id(timeout=BOOT_ID_TIMEOUT)
            except (VmError, AssertionError):
                after = before  # the minion went down under the call
            if after != before:
                break
            if time.time() > deadline:
                raise VmError(f"{self.minion_id}: still the same boot ({before}) {BOOT_TIMEOUT}s after {what}")
            time.sleep(1)
        seconds = time.time() - since
        self.record_time(f"{what} (to minion answering)", seconds)
        return seconds

    def reboot_trigger(self) -> str:
        """This boot's id, and a clean poweroff one second after the call returned."""
        return self.sh(f"cat /proc/sys/kernel/random/boot_id; {IN_ONE_SECOND} /bin/systemctl poweroff").strip()

    def _wait_off(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Wait for QEMU to exit after the guest's ``systemctl poweroff``."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise VmError(f"{self.minion_id}: still running {timeout:.0f}s after systemctl poweroff") from exc

    def power_on_when_off(self) -> None:
        """Wait for QEMU to exit after the guest powered off, then start it again."""
        self._wait_off()
        self.start()

    def reboot(self) -> float:
        """A clean reboot, as a power cycle: ``systemctl poweroff`` in the guest (through
        Salt), then QEMU started again on the same disk; waits for the new boot's minion.

        Not the guest's own ``systemctl reboot``: under TCG the reset that follows it hung
        once for good right after ``reboot: Restarting system`` (QEMU 7.2, a full make test
        on 2026-12-03; kubevirt/kubevirt#6885 reports reboots of emulated guests hanging).
        The shutdown is the same clean one, and what the tests look at (what the disk
        holds, what systemd does at the next boot) does not depend on how the machine
        was restarted."""

        def trigger():
            before = self.reboot_trigger()
            self.power_on_when_off()
            return before

        return self._restart("reboot", trigger)

    def power_cut(self, last_script: str | None = None) -> float:
        """A power cut: QEMU killed (SIGKILL) and started again on the same disk, with no
        shutdown. What the guest had not flushed to its virtual disk is lost; what it
        flushed (``fsync``: QEMU writes it to the disk file and flushes that) stays, as on
        a machine that loses power. ``last_script`` runs in the guest (in the same call that
        reads the boot id) right before the cut. Waits for the minion of the next boot.

        Not QMP ``system_reset``: under TCG the boot after a guest's reset hung for good
        twice in four full make test runs on 2026-12-03 (QEMU 7.2; once no output at all,
        once in early systemd), where every boot of a fresh QEMU process came up."""

        def trigger():
            before = self.sh("cat /proc/sys/kernel/random/boot_id" + (f"; {last_script}" if last_script else ""))
            self.kill()
            self.start()
            return before.splitlines()[0].strip()

        return self._restart("power cut (QEMU killed)", trigger)

    def poweroff(self, timeout: float = SHUTDOWN_TIMEOUT) -> float:
        """A clean shutdown (``systemctl poweroff`` in the guest); waits for QEMU to exit."""
        since = time.time()
        self.sh(f"{IN_ONE_SECOND} /bin/systemctl poweroff")
        self._wait_off(timeout)
        seconds = time.time() - since
        self.record_time("poweroff", seconds)
        return seconds

    def kill(self) -> None:
        """SIGKILL the QEMU process (by PID) and reap it."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    # --- the guest, through Salt ---------------------------------------------------
    def run(self, script: str, timeout: int = 120) -> dict:
        """Run a shell script in the guest (``cmd.run_all`` through the master, ``sh -e``);
        return ``{"retcode", "stdout", "stderr"}``.  The script travels base64-encoded,
        so that Salt's argument parsing never reads it as YAML."""
        encoded = base64.b64encode(script.encode()).decode()
        code, data = self.link.salt(
            self.minion_id, "cmd.run_all", cmd=f"echo {encoded} | base64 -d | sh -e", python_shell=True, timeout=timeout
        )
        if code != 0 or not isinstance(data, dict) or "retcode" not in data:
            raise VmError(f"{self.minion_id}: cmd.run_all failed ({code}): {data!r}")
        return data

    def sh(self, script: str, timeout: int = 120) -> str:
        """Like :meth:`run`; asserts the script succeeded and returns its stdout."""
        data = self.run(script, timeout)
        assert data["retcode"] == 0, f"in {self.minion_id}: {script!r} exited {data['retcode']}: {data}"
        return data["stdout"]


def reboot_together(nodes: list[VmNode]) -> list[float]:
    """Clean reboots of several nodes at once (as after a site-wide update); waits for
    each node's minion from its new boot. Returns each node's seconds."""
    since = time.time()
    before = [node.reboot_trigger() for node in nodes]
    for node in nodes:
        node.power_on_when_off()
    return [node.await_new_boot("reboot together", since, boot) for node, boot in zip(nodes, before)]


def new_node(
    session_dir: Path,
    image,
    link: MasterLink,
    minion_id: str,
    name: str | None = None,
    l2: L2Link | None = None,
    backing: Path | None = None,
    extension: Path | None = None,
) -> VmNode:
    directory = session_dir / (name or f"{minion_id}-{secrets.token_hex(3)}")
    directory.mkdir(parents=True)
    return VmNode(
        image=image, directory=directory, minion_id=minion_id, link=link, l2=l2, backing=backing, extension=extension
    )


def from_baked_disk(baked: VmNode, minion_id: str) -> VmNode:
    """A new node whose disk is a copy-on-write layer over ``baked``'s (powered off): what
    booting a VM made from an image baked on ``baked`` looks like. Its own minion id (the
    kernel command line sets it at every boot); nothing is synced to it."""
    if baked.running():
        raise VmError(f"{baked.minion_id} is still running: power it off before booting its disk again")
    return new_node(
        baked.directory.parent, baked.image, baked.link, minion_id, backing=baked.disk, extension=baked.extension
    )


def extension_disk(dest: Path) -> Path:
    """A tar of the k8snode extension (``_modules`` and ``_states``), laid out as
    ``saltutil.sync_modules`` and ``sync_states`` lay it out in a minion's ``extmods``
    cache, for :class:`VmNode`'s read-only second disk; the image's k8snode-vm-config
    unpacks it at every boot, before the minion starts. Returns ``dest``.

    Why not a sync through the master: under TCG the two syncs took 13 to 32 s of each
    test's node, on the tier's critical path and one core of two; a node image baked with
    the extension (issue 24) gets it the same way, from its disk. The container tier
    and ``make demo`` show the sync from the file server.

    The files are the ones Salt's sync takes: ``salt/utils/extmods.py`` caches a
    ``_<kind>`` directory with ``include_pat=r"E@\\.(pyx?|so|zip)$"``. The tar is a
    whole number of 512-byte blocks (tarfile pads to 10,240), as a raw disk must be."""
    with tarfile.open(dest, "w", format=tarfile.GNU_FORMAT) as tar:
        for source, kind in (("_modules", "modules"), ("_states", "states")):
            root = harness.REPO_ROOT / source
            for path in sorted(root.rglob("*")):
                if path.is_file() and EXTENSION_FILES.search(path.name) and "__pycache__" not in path.parts:
                    info = tar.gettarinfo(str(path), arcname=f"{kind}/{path.relative_to(root).as_posix()}")
                    info.uid = info.gid = 0
                    info.uname = info.gname = "root"
                    with open(path, "rb") as handle:
                        tar.addfile(info, handle)
    return dest
