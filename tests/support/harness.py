"""Helpers for the container-based k8snode tests: images, docker networks, salt calls.

Nothing here starts anything by itself; tests/integration/conftest.py wires it into
pytest fixtures.  Everything docker-related is imported lazily so that the unit layer
never needs docker.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import secrets
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Debian releases that get a minion container, oldest first.
RELEASES = ("bullseye", "bookworm", "trixie")

#: Extension directories synced to minions by saltutil.sync_all.
EXTENSION_DIRS = ("_modules", "_states", "_runners", "_output", "_beacons")

#: Label on every docker object the tests create (containers and networks).
TEST_LABEL = "k8snode.test"
#: Label telling which process created the object: "<pid>:<process start time>".
OWNER_LABEL = "k8snode.test.owner"

#: Capabilities given to minion containers (--privileged does not work on these machines).
CAP_ADD = ["NET_ADMIN", "SYS_ADMIN"]

#: Default timeout (seconds) of a salt CLI call made through the master.
SALT_TIMEOUT = 120


def minion_id(release: str) -> str:
    """The minion id used for ``release`` (``k8snode-<release>``)."""
    return f"k8snode-{release}"


# --------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------
def ensure_images(releases=None) -> dict[str, str]:
    """Build (if needed) and return ``{release: image tag}``; see images/build.py."""
    from images.build import ensure_images as build

    return build(releases)


# --------------------------------------------------------------------------------------
# One suite at a time
# --------------------------------------------------------------------------------------
SUITE_LOCK = Path(tempfile.gettempdir()) / "k8snode-suite.lock"
#: Set by scripts/run_tests.py to its own PID for the two pytest sessions it runs side by side.
TEST_RUNNER_ENV = "K8SNODE_TEST_RUNNER"


def started_by_test_runner() -> bool:
    """True in a pytest session that scripts/run_tests.py started: the runner, this
    process's parent, holds the suite lock and owns the background image build."""
    return os.environ.get(TEST_RUNNER_ENV) == str(os.getppid())


def die_with_parent(signum: int):
    """A ``preexec_fn`` (it runs in the child between fork and exec): the child gets
    ``signum`` when the process that started it dies (``PR_SET_PDEATHSIG``)."""
    import ctypes

    def _preexec() -> None:
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signum)

    return _preexec


@contextlib.contextmanager
def machine_suite_lock():
    """Hold the machine-wide lock of the container and VM suites for the ``with`` block.

    Two suites at once on a 2-core machine make both time out; a second suite (another
    checkout, the demo, the bench) waits here instead, and says so.  The two streams of
    one ``make test`` (scripts/run_tests.py: the real-node tier beside the rest) run
    under the lock their runner holds.
    """
    import fcntl

    if started_by_test_runner():
        yield
        return
    with open(SUITE_LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            print(f"[k8snode] waiting for another suite to release {SUITE_LOCK}", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------
# Docker objects owned by a test session
# --------------------------------------------------------------------------------------
def _process_start_time(pid: int) -> str | None:
    import psutil

    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def process_owner() -> str:
    """``"<pid>:<process start time>"`` of this process: names the owner of what it creates."""
    pid = os.getpid()
    return f"{pid}:{_process_start_time(pid)}"


def owner_alive(owner: str) -> bool:
    """True while the process named by a :func:`process_owner` value still runs."""
    pid_text, _, started = (owner or "").partition(":")
    return pid_text.isdigit() and _process_start_time(int(pid_text)) == started


#: Where listening ports are drawn from when the kernel does not say its ephemeral range.
_EPHEMERAL_FALLBACK = (32768, 60999)
#: Lowest port handed to a test master: above the well-known and most registered services.
_LISTEN_PORT_FLOOR = 20000


def ephemeral_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (``low``, ``high``)."""
    try:
        low, high = (int(field) for field in Path(path).read_text().split())
    except (OSError, ValueError):
        return _EPHEMERAL_FALLBACK
    return low, high


def listen_ports(host: str, count: int = 1, rng=None, udp: bool = False) -> list[int]:
    """``count`` distinct TCP ports (UDP ports with ``udp``) free on ``host`` now, all
    below the ephemeral range.

    A port from the ephemeral range (what binding port 0 returns, and what
    pytest-salt-factories hands a master) can be taken between the pick and the
    master's bind by the local end of any outgoing connection from ``host``: the
    tests' own connections to their containers leave from the docker gateway, which is
    where the masters listen. CI once lost a run to exactly that (the drift master:
    "Unable to bind socket 172.18.0.1:41317 ... Address already in use", three
    attempts on the same port). Below the range only another listener can take it.
    """
    import random
    import socket

    rng = rng or random.SystemRandom()
    low, _high = ephemeral_range()
    top = max(low - 1, _LISTEN_PORT_FLOOR + count)
    chosen: list[int] = []
    for _attempt in range(200):
        port = rng.randint(_LISTEN_PORT_FLOOR, top)
        if port in chosen:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise RuntimeError(f"no {count} free {'UDP' if udp else 'TCP'} ports on {host} in {_LISTEN_PORT_FLOOR}-{top}")


def tar_of(files: dict[str, bytes | str], mode: int = 0o644) -> bytes:
    """A tar archive of ``{name: text or bytes}`` (for ``put_archive``)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def owner_labels() -> dict[str, str]:
    """Labels marking a docker object as created by this very process."""
    return {TEST_LABEL: "1", OWNER_LABEL: process_owner()}


def is_stale(labels: dict[str, str] | None) -> bool:
    """True when the process that created an object with these labels is gone."""
    return not owner_alive((labels or {}).get(OWNER_LABEL, ""))


def remove_stale(client, label: str = TEST_LABEL) -> list[str]:
    """Remove containers and networks carrying ``label`` whose creator is dead.

    Objects of a concurrently running session (creator alive) are left alone.
    Returns the names removed.
    """
    from docker.errors import APIError, NotFound

    removed = []
    for container in client.containers.list(all=True, filters={"label": label}):
        if is_stale(container.labels):
            try:
                container.remove(force=True)
                removed.append(container.name)
            except NotFound:
                pass
    for network in client.networks.list(filters={"label": label}):
        network.reload()
        if is_stale(network.attrs.get("Labels")):
            try:
                remove_network(client, network.name)
                removed.append(network.name)
            except (APIError, NotFound):
                pass
    return removed


SALT_DIR_PREFIX = "k8snode-salt-"
OWNER_FILE = ".k8snode-owner"


def make_salt_root_dir() -> Path:
    """A fresh temp dir for the salt daemons of this session, marked with its owner."""
    path = Path(tempfile.mkdtemp(prefix=SALT_DIR_PREFIX))
    (path / OWNER_FILE).write_text(owner_labels()[OWNER_LABEL])
    return path


def remove_stale_salt_dirs(grace: float = 5.0) -> list[str]:
    """Clean up after sessions that died without teardown (SIGKILL, OOM, ...).

    For every ``$TMPDIR/k8snode-salt-*`` dir whose owner process is gone: stop the
    processes that session started (salt-master & co., found by that dir in their
    command line), then remove the dir.  Containers and networks are handled by
    remove_stale().  Returns the dirs removed.
    """
    import psutil

    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{SALT_DIR_PREFIX}*"):
        owner_file = path / OWNER_FILE
        if not path.is_dir() or not owner_file.exists():
            continue
        if not is_stale({OWNER_LABEL: owner_file.read_text().strip()}):
            continue
        marker = str(path) + os.sep
        leftovers = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if proc.pid != os.getpid() and any(marker in arg for arg in cmdline):
                leftovers.append(proc)
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(leftovers, timeout=grace)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    return removed


@dataclass(frozen=True)
class TestNetwork:
    """A user-defined bridge network created by the tests."""

    __test__ = False  # not a test class, despite the name

    name: str
    gateway: str
    subnet: str


def create_network(client, prefix: str = "k8snode-test", labels: dict[str, str] | None = None):
    """Create a bridge network named ``<prefix>-<random>``; docker picks the subnet."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    network = client.networks.create(name, driver="bridge", labels=labels or owner_labels(), check_duplicate=True)
    network.reload()
    configs = network.attrs.get("IPAM", {}).get("Config") or []
    if not configs or not configs[0].get("Gateway"):
        remove_network(client, name)
        raise RuntimeError(f"docker network {name} has no gateway: {network.attrs.get('IPAM')}")
    return TestNetwork(name=name, gateway=configs[0]["Gateway"], subnet=configs[0]["Subnet"])


def remove_network(client, name: str) -> None:
    """Remove a network, force-removing any container still attached to it."""
    from docker.errors import APIError, NotFound

    try:
        network = client.networks.get(name)
    except NotFound:
        return
    network.reload()
    for container_id in network.attrs.get("Containers") or {}:
        with contextlib.suppress(APIError, NotFound):
            client.containers.get(container_id).remove(force=True)
    with contextlib.suppress(NotFound):
        network.remove()


# --------------------------------------------------------------------------------------
# Salt configuration
# --------------------------------------------------------------------------------------
def make_extension_root(dest: Path) -> Path:
    """Fill ``dest`` with symlinks ``_modules`` ... ``_output`` -> the repository's dirs.

    ``dest`` goes into the master's file_roots beside <repo>/salt, so saltutil.sync_*
    ships the repository's extension modules to the minions.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in EXTENSION_DIRS:
        source = REPO_ROOT / name
        link = dest / name
        if source.is_dir() and not link.exists():
            link.symlink_to(source, target_is_directory=True)
    return dest


def merge_config(base: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base`` (dicts merge, anything else replaces)."""
    result = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_config(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def master_config(gateway: str, extension_root: Path, overrides: dict | None = None) -> dict:
    """Master configuration for the repository's state, pillar and extension trees."""
    base = {
        "interface": gateway,
        "auto_accept": True,
        "file_roots": {"base": [str(REPO_ROOT / "salt"), str(extension_root)]},
        # The master runs the report runner and renders with the k8snode outputter.
        "runner_dirs": [str(REPO_ROOT / "_runners")],
        # The drift engine, for the masters that configure it (``engines:``).
        "engines_dirs": [str(REPO_ROOT / "_engines")],
        "outputter_dirs": [str(REPO_ROOT / "_output")],
        "pillar_roots": {"base": [str(REPO_ROOT / "pillar")]},
        "timeout": 30,
    }
    # Ports outside the ephemeral range (see listen_ports); a caller's own ports win.
    base["ret_port"], base["publish_port"] = listen_ports(gateway, 2)
    return merge_config(base, overrides)


#: The reactor line of salt/reactor/master.conf that the drift engine replaces.
DRIFT_REACTOR_TAG = "salt/beacon/*/k8snode/*"


def with_drift_engine(config: dict, **settings) -> dict:
    """A master ``config`` (with salt/reactor/master.conf's reactors) where the
    ``k8snode_drift`` engine, with ``settings``, takes the drift reactor's place; the
    other reactions stay. As the README's "For large fleets: the drift engine" says."""
    changed = copy.deepcopy(config)
    changed["reactor"] = [entry for entry in changed.get("reactor", []) if DRIFT_REACTOR_TAG not in entry]
    changed["engines"] = [{"k8snode_drift": settings}]
    return changed


def standalone_master_config(
    master_id: str, gateway: str, root: Path, ret_port: int, publish_port: int, extension_root: Path, extra_roots=()
) -> dict:
    """master_config for a salt-master started by hand (demo, bench): every path under ``root``."""
    import getpass

    config = master_config(gateway, extension_root)
    config["file_roots"]["base"].extend(str(path) for path in extra_roots)
    config.update(
        id=master_id,
        user=getpass.getuser(),
        ret_port=ret_port,
        publish_port=publish_port,
        root_dir=str(root),
        pki_dir=str(root / "pki"),
        cachedir=str(root / "cache"),
        sock_dir=str(root / "sock"),
        pidfile=str(root / "salt-master.pid"),
        log_file=str(root / "master.log"),
        key_logfile=str(root / "key.log"),
    )
    return config


def standalone_minion_config(minion_id: str, gateway: str, ret_port: int) -> dict:
    """Minion config for a container's own salt-minion talking to a hand-started master."""
    return {
        "id": minion_id,
        "master": gateway,
        "master_port": ret_port,
        "acceptance_wait_time": 2,
        "random_reauth_delay": 0,
        "log_level": "warning",
    }


def stop_process_group(process) -> None:
    """Stop a daemon started with ``start_new_session=True``: SIGTERM, then SIGKILL after 20 s."""
    import signal
    import subprocess

    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def minion_overrides(gateway: str, overrides: dict | None = None) -> dict:
    """Minion config making a container minion talk to the master on ``gateway``.

    The containers share this machine's cgroup v1 hierarchy (TESTBED.md): they carry the
    grain with which pillar/top.sls gives such hosts ``kubelet: {fail_cgroup_v1: false}``,
    as an operator marks hosts that stay on cgroup v1."""
    base = {
        "master": gateway,
        "grains": {"k8snode_cgroup_v1": "allowed"},
        "pytest-minion": {"log": {"host": gateway}, "returner_address": {"host": gateway}},
    }
    return merge_config(base, overrides)


# --------------------------------------------------------------------------------------
# Running things
# --------------------------------------------------------------------------------------
def salt_cmd(master, fun: str, *args, tgt, tgt_type: str = "glob", timeout: int = SALT_TIMEOUT, **kwargs):
    """Run ``salt TGT FUN ARGS KWARGS`` through ``master``; return the ProcessResult.

    ``tgt`` is a minion id or glob (``tgt_type="glob"``), a list of ids
    (``tgt_type="list"``) or a compound expression (``tgt_type="compound"``).
    Keyword arguments become ``key=value`` on the command line (non-strings as JSON).
    With a single minion id as target, ``result.data`` is that minion's return;
    otherwise it is ``{minion_id: return}``.  No assertion is made: see salt_run.
    """
    cli = master.salt_cli(timeout=timeout)
    if tgt_type == "glob":
        return cli.run(fun, *args, minion_tgt=tgt, **kwargs)
    flags = {"list": "-L", "compound": "-C", "grain": "-G", "pcre": "-E"}
    if tgt_type not in flags:
        raise ValueError(f"unsupported tgt_type {tgt_type!r}")
    target = ",".join(tgt) if isinstance(tgt, (list, tuple)) else tgt
    # The CLI factory puts minion_tgt right before the function: "-L a,b fun ...".
    return cli.run(target, fun, *args, minion_tgt=flags[tgt_type], **kwargs)


def _expected_ids(tgt, tgt_type: str) -> list[str] | None:
    if tgt_type == "list":
        return list(tgt) if isinstance(tgt, (list, tuple)) else tgt.split(",")
    if tgt_type == "glob" and not any(ch in tgt for ch in "*?[]"):
        return [tgt]
    return None


def _failed_states(ret: Any) -> list[str]:
    if not isinstance(ret, dict):
        return [f"not a state return: {ret!r}"]
    return [
        f"{key}: {value.get('comment')!r}"
        for key, value in ret.items()
        if isinstance(value, dict) and "result" in value and value["result"] is not True
    ]


def salt_run(master, fun: str, *args, tgt, tgt_type: str = "glob", timeout: int = SALT_TIMEOUT, **kwargs):
    """Like salt_cmd, but assert that the call worked and return the parsed data.

    Asserts: exit code 0, JSON output, every explicitly targeted minion returned, no
    "is not available" answer, and for ``state.*`` functions every state succeeded.
    """
    result = salt_cmd(master, fun, *args, tgt=tgt, tgt_type=tgt_type, timeout=timeout, **kwargs)
    where = f"salt {tgt} {fun} {' '.join(map(str, args))}".strip()
    assert result.returncode == 0, f"{where} failed:\n{result}"
    assert result.data is not None, f"{where} printed no JSON:\n{result}"
    expected = _expected_ids(tgt, tgt_type)
    if expected == [tgt] and tgt_type == "glob":
        returns = {tgt: result.data}
    else:
        assert isinstance(result.data, dict), f"{where}: unexpected output {result.data!r}"
        returns = result.data
        for mid in expected or ():
            assert mid in returns, f"{where}: minion {mid} did not return: {result}"
    for mid, ret in returns.items():
        if isinstance(ret, str):
            assert "is not available" not in ret, f"{where} on {mid}: {ret}"
            assert "Minion did not return" not in ret, f"{where} on {mid}: {ret}"
        if fun.startswith("state.") and fun not in ("state.show_sls", "state.show_top"):
            failed = _failed_states(ret)
            assert not failed, f"{where} on {mid}: failed states:\n" + "\n".join(failed)
    return result.data


def container_exec(minion, *argv: str) -> tuple[int, str]:
    """Run ``argv`` inside the minion's container (docker exec); return (exit code, stdout).

    ``minion.run(*argv)`` gives the full ProcessResult (stderr too).
    """
    if not argv:
        raise ValueError("container_exec needs a command")
    result = minion.run(*argv) if len(argv) > 1 else minion.run([argv[0]])
    return result.returncode, result.stdout or ""
