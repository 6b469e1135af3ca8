"""What tests read from a real node (tests/support/vm.py), in one guest call each."""

from __future__ import annotations

import json
import shlex

from tests.support import nodes

SYSCTL_FILE = "/etc/sysctl.d/99-k8snode.conf"
MODULES_FILE = "/etc/modules-load.d/k8snode.conf"


def proc_modules(node) -> set[str]:
    """Module names listed in the guest's /proc/modules."""
    return {line.split()[0] for line in node.sh("cat /proc/modules").splitlines() if line.strip()}


def live_sysctls(node, keys) -> dict[str, str | None]:
    """``{key: value read from /proc/sys, or None when the key does not exist}``."""
    keys = list(keys)
    script = "; ".join(
        f"f=/proc/sys/{shlex.quote(key.replace('.', '/'))}; "
        'if [ -e "$f" ]; then echo "$(cat "$f" | tr -s "\\t " " ")"; else echo "<none>"; fi'
        for key in keys
    )
    values = node.sh(script).splitlines()
    assert len(values) == len(keys), values
    return {key: (None if value == "<none>" else value) for key, value in zip(keys, values)}


def read_files(node, *paths) -> dict[str, str | None]:
    """``{path: contents, or None when missing}``, read in the guest."""
    script = (
        "import json, sys\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        out[p] = open(p).read()\n"
        "    except FileNotFoundError:\n"
        "        out[p] = None\n"
        "print(json.dumps(out))\n"
    )
    argv = " ".join(shlex.quote(path) for path in paths)
    return json.loads(node.sh(f"python3 -c {shlex.quote(script)} {argv}"))


def modules_load_journal(node) -> str:
    """What systemd-modules-load said during this boot.

    Matched by the identifier the program sends with each message, not with ``-u``:
    systemd-modules-load often runs before journald has started; its messages wait in
    the journal socket, and when the program has exited by the time journald reads
    them, journald cannot look up its cgroup, so they carry no ``_SYSTEMD_UNIT`` and
    ``-u systemd-modules-load.service`` finds nothing (seen on Debian 13 after a power
    cut, under load).
    """
    return node.sh("journalctl -b -o cat SYSLOG_IDENTIFIER=systemd-modules-load --no-pager")


def swaps(node) -> list[str]:
    """Devices in the guest's /proc/swaps."""
    return [line.split()[0] for line in node.sh("cat /proc/swaps").splitlines()[1:] if line.strip()]


def audit(master, node, **kwargs) -> dict:
    return nodes.audit(master, node, **kwargs)


def apply(master, node, *sls, **kwargs):
    """state.apply through the master: (exit code, the single state's return)."""
    code, ret = nodes.apply(master, node, *sls, **kwargs)
    return code, nodes.only_state(ret)


def sysctl_checks(report: dict) -> dict[str, dict]:
    return {name.split(":", 1)[1]: check for name, check in report["checks"].items() if name.startswith("sysctl:")}


def pillar(settings: dict) -> dict:
    """The ``pillar=`` of a state.apply: ``{"k8snode": settings}``."""
    return json.loads(json.dumps({"k8snode": settings}))
