"""
The guest's own systemd-sysctl and kernel as the oracle for the keys a container
cannot write: ``vm.*``, ``fs.*`` and ``kernel.*`` are not per network namespace, so
they are written only inside a VM node, never on the machine that runs the tests.

A driver runs in the guest (through the node's minion) with a batch of sysctl.d trees:
it enters a mount namespace of its own, where each sysctl.d directory is an empty
tmpfs (the node's own files are hidden from it, never touched), and for each tree
writes the sentinels, writes the tree's files, runs systemd-sysctl and reads the keys.
The values the keys had before the batch are written back at its end.

The trees hold explicit keys only (no globs: ``vm.* = 1`` would write every ``vm``
key of the guest), and the numbers they write are ones the guest can live with for
the moment a tree lasts (never ``vm.overcommit_memory = 2``, whose strict accounting
could refuse the next fork); every class of the kernel's parsing is still there, in
decimal, octal, hexadecimal, with spaces, comments, signs and junk around them.
"""

from __future__ import annotations

import base64
import json
import tempfile
import zlib
from pathlib import Path

from hypothesis import strategies as st

from _modules.k8snode import sysctl_boot
from _modules.k8snode.sysctl_syntax import sysctl_path
from _modules.k8snode.tables import DISTRIBUTIONS, EXTRAS
from tests.support.sysctl_oracle import SYSCTL_DIRS, write_tree

SYSTEMD_SYSCTL = "/usr/lib/systemd/systemd-sysctl"

# The driver: argv[1] the applier, stdin one JSON list of trees (zlib: all of a run's
# trees go in one Salt call), stdout one JSON list of answers. unshare(CLONE_NEWNS) through libc, then private mounts: the tmpfs mounts go
# away with the process.
_DRIVER = r"""
import ctypes, json, os, subprocess, sys, zlib
SYSCTL, DIRS, KEYS = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x00020000) != 0:
    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
subprocess.run(["mount", "--make-rprivate", "/"], check=True)
for directory in DIRS:
    os.makedirs(directory, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", directory], check=True)
def read():
    out = {}
    for key in KEYS:
        with open("/proc/sys/" + key) as handle:
            out[key] = " ".join(handle.read().split())
    return out
def write(pairs):
    for key, value in pairs:
        with open("/proc/sys/" + key, "w") as handle:
            handle.write(value)
original = read()
answers = []
try:
    for tree in json.loads(zlib.decompress(sys.stdin.buffer.read())):
        for directory in DIRS:
            for name in os.listdir(directory):
                os.unlink(os.path.join(directory, name))
        for path, item in tree["files"].items():
            if "link" in item:
                os.symlink(item["link"], path)
            else:
                with open(path, "w", encoding="utf-8", newline="") as handle:
                    handle.write(item["text"])
        write(tree["sentinels"])
        before = read()
        done = subprocess.run([SYSCTL], capture_output=True, text=True)
        answers.append({"before": before, "after": read(), "rc": done.returncode, "log": done.stderr})
finally:
    write(sorted(original.items()))
print(json.dumps({"answers": answers, "restored": read() == original}))
"""


def _expand(pattern: str) -> list[str]:
    head, brace, rest = pattern.partition("{")
    if not brace:
        return [pattern]
    names, _, tail = rest.partition("}")
    return [head + name + tail for name in names.split(",")]


#: Every key outside ``net.*`` a profile or extra requires (tables.py), as /proc/sys paths.
REQUIRED = sorted(
    {
        sysctl_path(key)
        for table in [*DISTRIBUTIONS.values(), *EXTRAS.values()]
        for key in table.get("sysctls", {})
        if not key.startswith("net.")
    }
)

# Numbers each key may hold for a moment in the guest (accepted), and numbers its handler
# refuses (the key keeps its sentinel). kernel.panic < 0 reboots at once on a panic only.
SAFE_VALUES = {
    "vm/max_map_count": ((65530, 262144, 1048576), (-1,)),
    "vm/overcommit_memory": ((0, 1), (3, -1)),
    "vm/panic_on_oom": ((0, 1), (3, -1)),
    "vm/swappiness": ((0, 60, 200), (201, -1)),
    "fs/inotify/max_user_instances": ((128, 1024, 8192), ()),
    "fs/inotify/max_user_watches": ((8192, 524288, 1048576), ()),
    "fs/aio-max-nr": ((65536, 1048576), ()),
    "kernel/panic": ((0, 10, -1), ()),
    "kernel/panic_on_oops": ((0, 1), ()),
    "kernel/keys/maxkeys": ((200, 2000), (0, -1)),
    "kernel/keys/maxbytes": ((20000, 200000), (0,)),
    "kernel/keys/root_maxkeys": ((1000000, 200), (0, -1)),
    "kernel/keys/root_maxbytes": ((25000000, 25000), (0,)),
}
#: The keys compared: every required one, and the handlers' other non-net rows.
KEYS = sorted(SAFE_VALUES)
# Before each tree: a value no tree writes, so "left alone" and "set" differ.
SENTINELS = {
    "vm/max_map_count": "65531",
    "vm/overcommit_memory": "0",
    "vm/panic_on_oom": "0",
    "vm/swappiness": "59",
    "fs/inotify/max_user_instances": "129",
    "fs/inotify/max_user_watches": "8193",
    "fs/aio-max-nr": "65537",
    "kernel/panic": "7",
    "kernel/panic_on_oops": "0",
    "kernel/keys/maxkeys": "201",
    "kernel/keys/maxbytes": "20001",
    "kernel/keys/root_maxkeys": "1000001",
    "kernel/keys/root_maxbytes": "25000001",
}


def _forms(number: int) -> list[str]:
    """The ways a sysctl.d line writes ``number``, each a class of the kernel's parsing."""
    sign, magnitude = ("-", -number) if number < 0 else ("", number)
    return [
        f"{number}",
        f"{sign}0x{magnitude:x}",  # base 16
        f"{sign}0{magnitude:o}" if magnitude else "0",  # base 8
        f"{number} # why",  # the kernel stops at the space
        f"{number}\t7",  # the second field of a one-element handler is never read
        f"\x0b{number}",  # \v before the number is skipped
        f'"{number}"',  # refused: a quote where a digit must be
        f"+{magnitude}",  # refused
        f"{number}\xa0",  # refused: U+00A0 after the number
        f"{number}\x0c",  # refused: \f after the number
        f"{number}x",  # refused: junk glued to it
        "",  # refused: no number
        "99999999999999999999",  # refused: more than 64 bits
        "000000000000000000001",  # refused: 21 bytes
    ]


@st.composite
def _line(draw):
    path = draw(st.sampled_from(KEYS))
    key = path.replace("/", ".")
    kind = draw(st.sampled_from(["assign", "assign", "assign", "assign", "negative", "comment"]))
    if kind == "negative":
        return f"-{key}\n"
    if kind == "comment":
        return f"# {key} = 1\n"
    accepted, refused = SAFE_VALUES[path]
    value = draw(st.sampled_from(_forms(draw(st.sampled_from(accepted + refused)))))
    lead = draw(st.sampled_from(["", " ", "-"]))
    spaces = draw(st.sampled_from(["=", " = ", "\t=\t", "= "]))
    return lead + key + spaces + value + draw(st.sampled_from(["\n", "\r\n"]))


NAMES = ("10-a.conf", "50-default.conf", "99-k8snode.conf", "zz.conf")


@st.composite
def trees(draw):
    """sysctl.d trees of non-``net`` keys: 1 to 4 files, masks and empty files among them."""
    files = {}
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = f"{draw(st.sampled_from(SYSCTL_DIRS))}/{draw(st.sampled_from(NAMES))}"
        kind = draw(st.sampled_from(["text", "text", "text", "mask", "empty"]))
        if kind == "mask":
            files.setdefault(path, {"link": "/dev/null"})
        elif kind == "empty":
            files.setdefault(path, {"text": ""})
        else:
            files.setdefault(path, {"text": "".join(draw(st.lists(_line(), min_size=1, max_size=5)))})
    return {"files": files}


def run_in_guest(node, trees: list[dict], timeout: int = 300) -> list[dict]:
    """The guest's answers for ``trees`` (one Salt call, one driver run: under TCG each
    costs seconds); asserts it put every key back."""
    payload = zlib.compress(json.dumps([dict(tree, sentinels=sorted(SENTINELS.items())) for tree in trees]).encode())
    driver = base64.b64encode(_DRIVER.encode()).decode()
    script = (
        f"echo {driver} | base64 -d > /run/k8snode-sysctl-driver.py\n"
        f"echo {base64.b64encode(payload).decode()} | base64 -d | "
        f"python3 /run/k8snode-sysctl-driver.py {SYSTEMD_SYSCTL} '{json.dumps(SYSCTL_DIRS)}' '{json.dumps(KEYS)}'\n"
    )
    result = json.loads(node.sh(script, timeout=timeout))
    assert result["restored"], "the driver did not put the guest's values back"
    return result["answers"]


def disagreements(api, tree: dict, observed: dict, systemd_version: int) -> list[str]:
    """What the model predicts for each key (its boot value, or the value before where
    nothing reaches the key or the kernel refuses every write) against the guest's."""
    for word in ("Operation not permitted", "Read-only file system", "Permission denied"):
        assert word not in observed["log"], "the oracle could not write: " + observed["log"]
    with tempfile.TemporaryDirectory(prefix="k8snode-vm-sysctl-model-") as tmp:
        write_tree(Path(tmp), tree["files"], systemd_version=systemd_version, live=observed["before"])
        boot = api.effective_boot_sysctls(root=tmp)
        winners = {key: sysctl_boot.boot_assignment(key, boot) for key in KEYS}
    found = []
    for key, winner in winners.items():
        predicted = winner["value"] if winner and winner["value"] is not None else observed["before"][key]
        if predicted != observed["after"][key]:
            found.append(f"{key}: model {predicted!r} ({winner}), systemd-sysctl {observed['after'][key]!r}")
    return found
