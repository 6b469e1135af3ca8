"""What every k8snode benchmark shares: the report table, statistics, docker and cgroup
helpers, the memory sampler and the machine description (see run.py)."""

import contextlib
import io
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
sys.path.insert(0, str(REPO_ROOT))

from tests.support import harness  # noqa: E402 (needs the repository on sys.path)

RELEASE = "bookworm"
CAP_ADD = ["NET_ADMIN", "SYS_ADMIN"]
LABEL = "k8snode.bench"
OWNER_LABEL = "k8snode.bench.owner"
BENCH_IMAGE_REPO = "k8snode-bench-minion"

# Inside the single-minion container.
SRV = "/srv/k8snode"  # the repository's _modules, _states, salt/
BENCH_SRV = "/srv/k8snode-bench"  # in_container.py and the comparison SLS files
MINION_CONFIG = {
    "id": "bench",
    "file_client": "local",
    "file_roots": {"base": [f"{SRV}/salt", f"{BENCH_SRV}/salt"]},
    "module_dirs": [f"{SRV}/_modules"],
    "states_dirs": [f"{SRV}/_states"],
    "log_level": "warning",
}

# The SLS files compared with `state.apply k8snode` (written into BENCH_SRV/salt).
CORE_SYSCTLS = ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")
CORE_MODULES = ("overlay", "br_netfilter")
_SYSCTL_SLS = "".join(f"{key}:\n  sysctl.present:\n    - value: 1\n" for key in CORE_SYSCTLS)
_KMOD_SLS = "".join(f"{mod}:\n  kmod.present:\n    - persist: True\n" for mod in CORE_MODULES)
SLS_FILES = {
    # What a user would write with Salt's own states for what k8snode does on kubeadm.
    "bench_core_full.sls": _KMOD_SLS + _SYSCTL_SLS,
    "bench_core_sysctl.sls": _SYSCTL_SLS,
    # k8snode restricted to the same three sysctls (no modules, no swap), with file
    # names of its own so that it and `state.apply k8snode` never rewrite each other.
    "bench_ours_sysctl.sls": (
        "k8snode sysctls only:\n"
        "  k8snode.prepared:\n"
        "    - modules: {overlay: false, br_netfilter: false}\n"
        "    - swap: ignore\n"
        "    - files:\n"
        "        modules_load: /etc/modules-load.d/bench-k8snode.conf\n"
        "        sysctl: /etc/sysctl.d/99-bench-k8snode.conf\n"
    ),
    # The floor of any state.apply: Salt's state system with one state that does nothing.
    "bench_floor.sls": "nothing:\n  test.succeed_without_changes\n",
}

TARGETS = {
    "audit_adds": 0.05,  # the audit adds at most 5% to test.ping
    "spawns": 0,
    "apply_ratio": 0.5,  # at most half the time above test.ping of the core-state SLS
    "fleet_ratio": 2.0,  # N minions at most 2x the wall time of one
    "scale_ms": 20.0,  # 1,000 sysctl.d files cost at most 20 ms of audit time
}


def say(msg: str = "") -> None:
    print(msg, file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A measurement could not be made."""


# ------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------
@dataclass
class Row:
    item: str
    what: str
    a: str
    b: str
    result: str
    target: str
    met: bool | None  # None: informational, no target


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, *args, **kwargs) -> None:
        self.rows.append(Row(*args, **kwargs))

    def table(self) -> str:
        head = ("#", "measure", "A (median)", "B (median)", "result", "target", "met")
        lines = [head] + [
            (
                r.item,
                r.what,
                r.a,
                r.b,
                r.result,
                r.target,
                "-" if r.met is None else ("met" if r.met else "MISSED"),
            )
            for r in self.rows
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        out = []
        for index, line in enumerate(lines):
            out.append("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) + " |")
            if index == 0:
                out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(out)


def median(values) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def spread(values) -> str:
    """Quartiles of the samples in ms, to show the noise."""
    digits = 1 if max(values) < 0.1 else 0
    if len(values) < 4:
        return f"{min(values) * 1000:.{digits}f}-{max(values) * 1000:.{digits}f} ms"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"IQR {q1 * 1000:.{digits}f}-{q3 * 1000:.{digits}f} ms"


# ------------------------------------------------------------------------------------
# Docker plumbing
# ------------------------------------------------------------------------------------
def remove_stale(client) -> None:
    from docker.errors import APIError, NotFound

    for container in client.containers.list(all=True, filters={"label": LABEL}):
        if not harness.owner_alive(container.labels.get(OWNER_LABEL, "")):
            say(f"  removing stale bench container {container.name}")
            with contextlib.suppress(APIError, NotFound):
                container.remove(force=True)
    for network in client.networks.list(filters={"label": LABEL}):
        network.reload()
        if not harness.owner_alive((network.attrs.get("Labels") or {}).get(OWNER_LABEL, "")):
            say(f"  removing stale bench network {network.name}")
            with contextlib.suppress(APIError, NotFound):
                network.remove()
    for image in client.images.list(name=BENCH_IMAGE_REPO):
        for tag in image.tags:
            if tag.startswith(f"{BENCH_IMAGE_REPO}:") and not harness.owner_alive(owner_from_tag(tag.split(":", 1)[1])):
                say(f"  removing stale bench image tag {tag}")
                with contextlib.suppress(APIError, NotFound):
                    client.images.remove(tag, noprune=True)


def owner_tag(owner: str) -> str:
    """'1234:1700000000.12' -> '1234-170000000012' (a docker tag can't hold ':' nor '.')."""
    pid, _, started = owner.partition(":")
    return f"{pid}-{started.replace('.', '')}"


def owner_from_tag(tag: str) -> str:
    pid, _, started = tag.partition("-")
    return f"{pid}:{started[:-2]}.{started[-2:]}" if len(started) > 2 else ""


def tar_bytes(files: dict[str, bytes | Path]) -> bytes:
    """A tar archive of {path in archive: content or host file/dir}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            if isinstance(content, Path):
                tar.add(
                    str(content),
                    arcname=name,
                    filter=lambda info: None if "__pycache__" in info.name else info,
                )
                continue
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def exec_checked(container, argv, what: str) -> str:
    result = container.exec_run(argv, demux=True)
    stdout = (result.output[0] or b"").decode(errors="replace")
    stderr = (result.output[1] or b"").decode(errors="replace")
    if result.exit_code != 0:
        raise BenchError(f"{what} failed ({result.exit_code}): {' '.join(argv)}\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return stdout


def cgroup_memory_dir(container_id: str) -> Path | None:
    for candidate in (
        Path("/sys/fs/cgroup/memory/docker") / container_id,  # cgroup v1, cgroupfs driver
        Path("/sys/fs/cgroup/memory/system.slice") / f"docker-{container_id}.scope",
        Path("/sys/fs/cgroup/system.slice") / f"docker-{container_id}.scope",  # v2, systemd
        Path("/sys/fs/cgroup/docker") / container_id,  # v2, cgroupfs
    ):
        if candidate.is_dir():
            return candidate
    return None


def cgroup_pids(cgroup: Path | None) -> list[int]:
    if cgroup is None:
        return []
    try:
        return [int(line) for line in (cgroup / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def cgroup_cpu_seconds(container_id: str) -> float | None:
    """CPU time used by the container's processes so far."""
    v1 = Path("/sys/fs/cgroup/cpuacct/docker") / container_id / "cpuacct.usage"
    with contextlib.suppress(OSError, ValueError):
        return int(v1.read_text()) / 1e9
    for v2 in (
        Path("/sys/fs/cgroup/system.slice") / f"docker-{container_id}.scope" / "cpu.stat",
        Path("/sys/fs/cgroup/docker") / container_id / "cpu.stat",
    ):
        with contextlib.suppress(OSError, ValueError):
            for line in v2.read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
    return None


def process_tree_cpu_seconds(pid: int) -> float:
    import psutil

    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        times = root.cpu_times()
        total += times.children_user + times.children_system  # reaped children
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def children_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cgroup_peak(cgroup: Path | None) -> int | None:
    """Peak memory of the container's cgroup since it started (page cache included)."""
    if cgroup is None:
        return None
    for name in ("memory.max_usage_in_bytes", "memory.peak"):
        with contextlib.suppress(OSError, ValueError):
            return int((cgroup / name).read_text())
    return None


class MemorySampler(threading.Thread):
    """Samples the PSS of the master's process tree and of one minion container's processes."""

    INTERVAL = 0.1

    def __init__(self, master_pid: int, minion_cgroup: Path | None) -> None:
        super().__init__(daemon=True)
        self.master_pid = master_pid
        self.cgroup = minion_cgroup
        self.master_peak = 0
        self.minion_peak = 0
        self.master_processes = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            master = psutil.Process(self.master_pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop_event.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):
                procs = [master, *master.children(recursive=True)]
                self.master_processes = max(self.master_processes, len(procs))
                for proc in procs:
                    with contextlib.suppress(psutil.Error):
                        total += proc.memory_full_info().pss
            self.master_peak = max(self.master_peak, total)
            minion = 0
            for pid in cgroup_pids(self.cgroup):
                with contextlib.suppress(psutil.Error):
                    minion += psutil.Process(pid).memory_full_info().pss
            self.minion_peak = max(self.minion_peak, minion)
            self._stop_event.wait(self.INTERVAL)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)

    def summary(self) -> dict:
        peak = cgroup_peak(self.cgroup)
        return {
            "master_peak_mib": self.master_peak / 2**20,
            "minion_peak_mib": self.minion_peak / 2**20,
            "minion_cgroup_peak_mib": None if peak is None else peak / 2**20,
        }


# ------------------------------------------------------------------------------------
# Machine description
# ------------------------------------------------------------------------------------
def machine() -> dict:
    import psutil

    def cmd(argv) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return "?"

    import salt.version

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker": cmd(["docker", "version", "--format", "{{.Server.Version}}"]),
        "salt_host": salt.version.__version__,
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
