"""
The real sysctl appliers as oracles for the sysctl.d model: systemd-sysctl, and
procps' ``sysctl --system`` in the minion images (no systemd there).

One long-lived container per release of ``images/systemd-sysctl.Dockerfile``
(Debian 11's systemd 247, 12's 252, 13's 257 on the minion images) runs a small
driver that takes a batch of sysctl.d trees as one JSON line on stdin (one
``docker exec`` for the whole run), and for each tree: empties the sysctl.d
directories, writes the tree, then in a forked child in a fresh network namespace
reads the keys, runs ``systemd-sysctl`` and reads them again.

Safety: only ``/proc/sys/net`` is made writable (a bind mount of it alone), so
nothing the driver runs can write ``vm.*``, ``fs.*`` or ``kernel.*``, which are
not per namespace; the image's own non-``net`` sysctl.d files are deleted first.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from images import derived

SYSTEMD_SYSCTL = "/lib/systemd/systemd-sysctl"
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d")

# The driver: one process in the container for the whole run, reading batches of
# trees (one JSON line each) and answering each batch with one line. Each tree runs
# in a forked child that enters a fresh network namespace (unshare(CLONE_NEWNET)
# through libc: no process start per tree), writes the sentinels, creates the veth
# pairs, reads the keys, runs the applier and reads them again. A tree with
# "split_usr" first turns /lib into a real directory (links to each entry of
# /usr/lib, and a real sysctl.d), as on a host that is not merged-/usr; /lib is a
# link again for the next tree. The swap is two renames from this process, which has
# its libraries loaded already.
_DRIVER = r"""
import ctypes, json, os, shutil, subprocess, sys
SYSCTL, DIRS = json.loads(sys.argv[1]), json.loads(sys.argv[2])
CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
subprocess.run(["mount", "--bind", "/proc/sys/net", "/proc/sys/net"], check=True)
subprocess.run(["mount", "-o", "remount,bind,rw", "/proc/sys/net"], check=True)
MERGED_LIB = os.readlink("/lib") if os.path.islink("/lib") else None
def split_lib():
    os.makedirs("/lib.split", exist_ok=True)
    for name in os.listdir("/usr/lib"):
        if name != "sysctl.d" and not os.path.lexists("/lib.split/" + name):
            os.symlink("/usr/lib/" + name, "/lib.split/" + name)
    os.makedirs("/lib.split/sysctl.d", exist_ok=True)
    os.rename("/lib", "/lib.merged")
    os.rename("/lib.split", "/lib")
def merge_lib():
    os.rename("/lib", "/lib.split")
    os.rename("/lib.merged", "/lib")
    shutil.rmtree("/lib.split/sysctl.d", ignore_errors=True)
def clean(extra=()):
    for directory in list(DIRS) + list(extra):
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
    if os.path.lexists("/etc/sysctl.conf"):
        os.unlink("/etc/sysctl.conf")
def read(keys):
    out = {}
    for key in keys:
        try:
            with open("/proc/sys/" + key) as handle:
                out[key] = " ".join(handle.read().split())
        except OSError:
            out[key] = None
    return out
def write(pairs):
    for key, value in pairs:
        with open("/proc/sys/" + key, "w") as handle:
            handle.write(value)
def in_fresh_namespace(tree):
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    # Sentinels no generated value stores, so that "left alone" and "set" differ;
    # interfaces (veth pairs: no dummy module here) appear after them and copy
    # conf/default; per-interface sentinels last.
    write(tree.get("sentinels", []))
    for name, peer in tree.get("links", []):
        subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer], check=True)
    write(tree.get("after_links", []))
    before = read(tree["keys"])
    done = subprocess.run(SYSCTL, capture_output=True, text=True)
    return {"before": before, "after": read(tree["keys"]), "rc": done.returncode, "log": done.stderr}
def run_tree(tree):
    for path, item in tree["files"].items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if "link" in item:
            os.symlink(item["link"], path)
        elif "dir" in item:
            os.makedirs(path)
        else:
            with open(path, "w", encoding="utf-8", newline="") as handle:
                handle.write(item["text"])
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(reader)
        try:
            answer = in_fresh_namespace(tree)
        except BaseException as exc:
            answer = {"error": repr(exc)}
        os.write(writer, json.dumps(answer).encode())
        os._exit(0)
    os.close(writer)
    chunks = []
    while True:
        chunk = os.read(reader, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(reader)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b'{"error": "no answer"}')
clean()
version = subprocess.run([SYSCTL[0], "--version"], capture_output=True, text=True).stdout
print(json.dumps({"ready": os.path.realpath("/lib"), "version": version.splitlines()[0]}), flush=True)
for line in sys.stdin:
    results = []
    for tree in json.loads(line):
        split = bool(tree.get("split_usr")) and MERGED_LIB is not None
        if split:
            split_lib()
        clean(["/lib/sysctl.d"] if split else [])
        try:
            results.append(run_tree(tree))
        finally:
            if split:
                merge_lib()
    clean()
    print(json.dumps(results), flush=True)
"""


#: The systemd-sysctl oracle image of each release (images/derived.py) and its systemd.
ORACLE_IMAGES = {
    "bullseye": ("sysctl-oracle-bullseye", 247),
    "bookworm": ("sysctl-oracle", 252),
    "trixie": ("sysctl-oracle-trixie", 257),
}


def ensure_oracle_image(release: str = "bookworm") -> str:
    """Build the release's oracle image unless its tag (a hash of its inputs) exists (images/derived.py)."""
    return derived.ensure_derived(ORACLE_IMAGES[release][0])


class Oracle:
    """The driver process inside the oracle container."""

    def __init__(self, container: str, command=(SYSTEMD_SYSCTL,)):
        self.container = container
        self.process = subprocess.Popen(
            ["docker", "exec", "-i", container, "python3", "-c", _DRIVER, json.dumps(list(command)),
             json.dumps(SYSCTL_DIRS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        hello = json.loads(self.process.stdout.readline() or "{}")
        if "ready" not in hello:
            raise RuntimeError(f"the sysctl oracle driver did not start in {container}")
        #: Where /lib points in the container (merged /usr: /usr/lib).
        self.lib = hello["ready"]
        #: The first line of the applier's ``--version``.
        self.version = hello["version"]

    def run(self, trees: list[dict]) -> list[dict]:
        """``trees``: ``[{"files": {abs path: {"text"} | {"link"} | {"dir"}}, "keys": [...],
        "sentinels": [[key, value]], "links": [[name, peer]], "after_links": [[key, value]],
        "split_usr": bool}]``: sentinels are written first, then the veth pairs created,
        then ``after_links`` written (per-interface sentinels); ``split_usr``: /lib is a
        real directory for that tree."""
        self.process.stdin.write(json.dumps(trees) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the sysctl oracle driver died")
        return json.loads(line)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)


@contextlib.contextmanager
def running_oracle(labels: dict[str, str], image: str | None = None, command=(SYSTEMD_SYSCTL,)):
    """A started oracle container (removed afterwards) and its driver: by default
    the systemd-sysctl image; ``image`` and ``command`` choose another applier."""
    tag = image or ensure_oracle_image()
    label_args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
    container = subprocess.run(
        ["docker", "run", "-d", "--network", "none", "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
         *label_args, tag,
         "sleep", "infinity"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        oracle = Oracle(container, command)
        try:
            yield oracle
        finally:
            oracle.close()
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def write_tree(
    root: Path,
    files: dict,
    lib_target: str | None = "usr/lib",
    procps_version: str | None = None,
    systemd_version: int | None = None,
    live: dict | None = None,
) -> None:
    """The same tree on the host, for the model: /lib links to ``lib_target`` as on
    merged-/usr Debian (None: /lib is a directory of its own, split-usr), and
    /run/systemd/system says systemd is the init; ``systemd_version``: the
    libsystemd-shared-NNN.so and dpkg file list Debian's package installs (before 255
    its binaries are in /lib/systemd, rootprefix=/); ``live``: ``{key path: value}``
    under /proc/sys (the oracle's values before it ran, from which the model learns
    the form of a key it has no handler for); with ``procps_version``
    (``sysctl --version``'s line) a host without systemd whose /usr/sbin/sysctl says
    it, as the real binary does, and whose /etc/init.d/procps runs it at boot."""
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    if lib_target is None:
        (root / "lib").mkdir()
    else:
        (root / "lib").symlink_to(lib_target)
    if procps_version is None:
        (root / "run/systemd/system").mkdir(parents=True)
    else:
        (root / "usr/sbin").mkdir(parents=True)
        (root / "usr/sbin/sysctl").write_bytes(b"\x7fELF\0" + procps_version.split(" from ")[-1].encode() + b"\0")
        (root / "etc/init.d").mkdir(parents=True)
        (root / "etc/init.d/procps").write_text("#!/bin/sh\n/sbin/sysctl -q --system\n")
    if systemd_version is not None:
        shared = root / f"usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-{systemd_version}.so"
        shared.parent.mkdir(parents=True)
        shared.write_bytes(b"\x7fELF")
        (root / "var/lib/dpkg/info").mkdir(parents=True)
        prefix = "/lib" if systemd_version < 255 else "/usr/lib"
        (root / "var/lib/dpkg/info/systemd.list").write_text(f"/.\n{prefix}/systemd/systemd-sysctl\n")
    for key, value in (live or {}).items():
        if value is not None:
            target = root / "proc/sys" / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(value + "\n")
    for path, item in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if "link" in item:
            target.symlink_to(item["link"])
        elif "dir" in item:
            target.mkdir()
        else:
            with open(target, "w", encoding="utf-8", newline="") as handle:
                handle.write(item["text"])


# --------------------------------------------------------------------------------------
# Differential runs: the same drawing, batching and shrinking for every oracle
# --------------------------------------------------------------------------------------
_DETERMINISTIC = {"derandomize": True, "database": None, "deadline": None,
                  "suppress_health_check": list(HealthCheck)}  # fmt: skip


def drawn(strategy, count: int) -> list:
    """``count`` examples of ``strategy``, derandomized: the same trees on every run."""
    collected = []

    @settings(max_examples=count, **_DETERMINISTIC)
    @given(strategy)
    def collect(example):
        collected.append(example)

    collect()
    return collected


def first_disagreement(oracle, examples, job, disagrees, batch: int = 100):
    """The first example on which the model and ``oracle`` disagree, or None.

    ``job(example)`` is what the oracle runs for it; ``disagrees(example, observed)``
    compares the oracle's answer with the model. Examples go in batches of ``batch``.
    """
    for start in range(0, len(examples), batch):
        chunk = examples[start : start + batch]
        for example, observed in zip(chunk, oracle.run([job(example) for example in chunk])):
            if disagrees(example, observed):
                return example
    return None


def shrink_against(strategy, check, examples: int = 200) -> None:
    """Let hypothesis find and shrink a failing example of ``check`` against the real
    oracle: it raises with the smallest one (a readable tree)."""

    @settings(max_examples=examples, **_DETERMINISTIC)
    @given(strategy)
    def shrink(example):
        check(example)

    shrink()
