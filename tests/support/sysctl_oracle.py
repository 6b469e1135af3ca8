"""
The real sysctl appliers as oracles for the sysctl.d model: systemd-sysctl, and
procps' ``sysctl --system`` in the minion images (no systemd there).

One long-lived container of ``images/systemd-sysctl.Dockerfile`` (Debian 12's
systemd 252 on the bookworm minion image) runs a small driver that takes a batch
of sysctl.d trees as one JSON line on stdin, and for each tree: empties the
sysctl.d directories, writes the tree, then in a fresh network namespace
(``unshare -n``) reads the keys, runs ``systemd-sysctl`` and reads them again.

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

# Runs inside a fresh network namespace: keys before, systemd-sysctl, keys after.
_INNER = r"""
import json, subprocess, sys
keys = json.loads(sys.argv[1])
def read():
    out = {}
    for key in keys:
        try:
            with open("/proc/sys/" + key) as handle:
                out[key] = " ".join(handle.read().split())
        except OSError:
            out[key] = None
    return out
# Sentinels no generated value stores, so that "left alone" and "set" differ.
for key, value in json.loads(sys.argv[3]):
    with open("/proc/sys/" + key, "w") as handle:
        handle.write(value)
# Interfaces as veth pairs (this kernel has no dummy module), created after the
# sentinels: each copies conf/default as it appears.
for name, peer in json.loads(sys.argv[4]):
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer], check=True)
for key, value in json.loads(sys.argv[5]):
    with open("/proc/sys/" + key, "w") as handle:
        handle.write(value)
before = read()
done = subprocess.run(json.loads(sys.argv[2]), capture_output=True, text=True)
print(json.dumps({"before": before, "after": read(), "rc": done.returncode, "log": done.stderr}))
"""

_DRIVER = r"""
import json, os, shutil, subprocess, sys
INNER, SYSCTL, DIRS = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
subprocess.run(["mount", "--bind", "/proc/sys/net", "/proc/sys/net"], check=True)
subprocess.run(["mount", "-o", "remount,bind,rw", "/proc/sys/net"], check=True)
def clean():
    for directory in DIRS:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
    if os.path.lexists("/etc/sysctl.conf"):
        os.unlink("/etc/sysctl.conf")
clean()
version = subprocess.run([json.loads(SYSCTL)[0], "--version"], capture_output=True, text=True).stdout
print(json.dumps({"ready": os.path.realpath("/lib"), "version": version.splitlines()[0]}), flush=True)
for line in sys.stdin:
    results = []
    for tree in json.loads(line):
        clean()
        for path, item in tree["files"].items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if "link" in item:
                os.symlink(item["link"], path)
            elif "dir" in item:
                os.makedirs(path)
            else:
                with open(path, "w", encoding="utf-8", newline="") as handle:
                    handle.write(item["text"])
        done = subprocess.run(["unshare", "-n", "python3", "-c", INNER, json.dumps(tree["keys"]), SYSCTL,
                               json.dumps(tree.get("sentinels", [])), json.dumps(tree.get("links", [])),
                               json.dumps(tree.get("after_links", []))],
                              capture_output=True, text=True)
        results.append(json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr})
    clean()
    print(json.dumps(results), flush=True)
"""


def ensure_oracle_image() -> str:
    """Build the oracle image unless its tag (a hash of its inputs) exists (images/derived.py)."""
    return derived.ensure_derived("sysctl-oracle")


class Oracle:
    """The driver process inside the oracle container."""

    def __init__(self, container: str, command=(SYSTEMD_SYSCTL,)):
        self.container = container
        self.process = subprocess.Popen(
            ["docker", "exec", "-i", container, "python3", "-c", _DRIVER, _INNER, json.dumps(list(command)),
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
        "sentinels": [[key, value]], "links": [[name, peer]], "after_links": [[key, value]]}]``:
        sentinels are written first, then the veth pairs created, then ``after_links``
        written (per-interface sentinels)."""
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


def write_tree(root: Path, files: dict, lib_target: str = "usr/lib", procps_version: str | None = None) -> None:
    """The same tree on the host, for the model: /lib links to usr/lib as on merged-/usr
    Debian, and /run/systemd/system says systemd is the init; with ``procps_version``
    (``sysctl --version``'s line) a host without systemd whose /usr/sbin/sysctl says it,
    as the real binary does, and whose /etc/init.d/procps runs it at boot."""
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    (root / "lib").symlink_to(lib_target)
    if procps_version is None:
        (root / "run/systemd/system").mkdir(parents=True)
    else:
        (root / "usr/sbin").mkdir(parents=True)
        (root / "usr/sbin/sysctl").write_bytes(b"\x7fELF\0" + procps_version.split(" from ")[-1].encode() + b"\0")
        (root / "etc/init.d").mkdir(parents=True)
        (root / "etc/init.d/procps").write_text("#!/bin/sh\n/sbin/sysctl -q --system\n")
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
