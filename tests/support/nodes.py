"""Helpers for tests that prepare minion containers as Kubernetes nodes.

A container's ``net.*`` sysctls are its own (per network namespace), but ``vm.*``,
``fs.*`` and ``kernel.*`` are the host's: :class:`HostKernelGuard` saves those before a
test and restores them after, so no test leaves the machine's kernel changed.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from tests.support.harness import SALT_TIMEOUT, container_exec, salt_cmd

OUR_FILES = (
    "/etc/sysctl.d/99-k8snode.conf",
    "/etc/sysctl.d/zz-k8snode.conf",
    "/etc/modules-load.d/k8snode.conf",
    "/etc/fstab.k8snode.bak",
    "/run/k8snode.lock",
)
NET_KEYS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/ipv6/conf/all/forwarding",
)
WATCHED_DIRS = ("/etc/sysctl.d", "/etc/modules-load.d")


def host_global_keys() -> set[str]:
    """Every non-namespaced sysctl a profile, an extra, or a Debian default file may write."""
    from _modules.k8snode import sysctl_boot, tables

    keys = set()
    for table in list(tables.DISTRIBUTIONS.values()) + list(tables.EXTRAS.values()):
        keys.update(sysctl_boot.sysctl_path(key) for key in table.get("sysctls", {}))
    # Debian's protect-links.conf, replayed by `sysctl --system` in the reboot test.
    keys.update(f"fs/protected_{name}" for name in ("hardlinks", "symlinks", "fifos", "regular"))
    return {key for key in keys if not key.startswith("net/")}


class HostKernelGuard:
    """Save the host's non-namespaced sysctls; restore the ones a test changed."""

    def __init__(self, keys):
        self.saved = {}
        for key in sorted(keys):
            path = Path("/proc/sys") / key
            if path.exists():
                self.saved[key] = path.read_text().strip()

    def restore(self) -> dict[str, tuple[str, str]]:
        changed = {}
        for key, value in self.saved.items():
            path = Path("/proc/sys") / key
            now = path.read_text().strip()
            if now != value:
                changed[key] = (value, now)
                path.write_text(value)
        return changed


def sh(minion, script: str) -> str:
    """Run a fixed test script in the container; fail loudly when it fails."""
    code, out = container_exec(minion, "sh", "-ec", script)
    assert code == 0, f"in {minion.id}: {script!r} exited {code}: {out}"
    return out


def read_file(minion, path: str) -> str | None:
    code, out = container_exec(minion, "cat", path)
    return out if code == 0 else None


def live(minion, key: str) -> str:
    return sh(minion, f"cat /proc/sys/{shlex.quote(key)}").strip()


def snapshot(minion) -> dict:
    """Names and contents of the files k8snode may touch, and the live net.* values."""
    script = (
        "for d in " + " ".join(WATCHED_DIRS) + "; do for f in $d/* $d/.[!.]*; do "
        '[ -e "$f" ] && { echo "== $f"; cat "$f"; }; done; done; '
        'echo "== /etc/fstab"; cat /etc/fstab; '
        "ls /etc/fstab* ; "
        "for k in " + " ".join(NET_KEYS) + '; do [ -e /proc/sys/$k ] && echo "$k=$(cat /proc/sys/$k)"; done; true'
    )
    return {"files_and_values": sh(minion, script)}


def reset_nodes(local_client, minions: dict, pristine: dict) -> None:
    """Return containers to what they were when they started: no k8snode files, pristine
    values, no k8snode grain, fresh pillar.  ``minions`` and ``pristine`` are keyed alike;
    the Salt part is one in-process call per function for all of them (six ``salt`` CLI
    starts took 4.5 s of every test's setup)."""
    for name, minion in minions.items():
        restore_values = " ".join(f"{key}={value}" for key, value in pristine[name].items())
        sh(
            minion,
            "rm -f " + " ".join(OUR_FILES) + "; "
            "rm -f /etc/sysctl.d/.*k8snode-tmp* /etc/modules-load.d/.*k8snode-tmp* /etc/sysctl.d/98-site.conf; "
            "rm -rf /var/lib/kubelet; "
            "[ -f /etc/fstab.pristine ] || cp /etc/fstab /etc/fstab.pristine; cp /etc/fstab.pristine /etc/fstab; "
            f"for kv in {restore_values}; do echo ${{kv#*=}} > /proc/sys/${{kv%%=*}}; done",
        )
    ids = sorted(minion.id for minion in minions.values())
    for fun, kwarg in (("grains.delkey", {"key": "k8snode_distribution"}), ("saltutil.refresh_pillar", {"wait": True})):
        returns = local_client.cmd(ids, fun, kwarg=kwarg, tgt_type="list", timeout=SALT_TIMEOUT)
        failed = {mid: returns.get(mid, "no answer") for mid in ids if not _salt_call_worked(returns.get(mid))}
        assert not failed, f"{fun} while resetting the nodes: {failed}"


def _salt_call_worked(ret) -> bool:
    if ret is None:
        return False
    return not (isinstance(ret, str) and ("ERROR" in ret or "Traceback" in ret or "is not available" in ret))


def pristine_values(minion) -> dict[str, str]:
    out = sh(
        minion,
        "for k in " + " ".join(NET_KEYS) + '; do [ -e /proc/sys/$k ] && echo "$k=$(cat /proc/sys/$k)"; done; true',
    )
    return dict(line.split("=", 1) for line in out.split())


def audit(master, minion, **kwargs) -> dict:
    result = salt_cmd(master, "k8snode.audit", tgt=minion.id, **kwargs)
    assert result.returncode == 0, result
    assert isinstance(result.data, dict) and "checks" in result.data, result
    return result.data


def apply(master, minion, *sls, **kwargs):
    """state.apply through the master; return (exit code, {state id: state return})."""
    result = salt_cmd(master, "state.apply", *(sls or ("k8snode",)), tgt=minion.id, **kwargs)
    assert isinstance(result.data, (dict, list)), result
    return result.returncode, result.data


def only_state(ret: dict) -> dict:
    """The single state of a one-state run."""
    assert isinstance(ret, dict) and len(ret) == 1, ret
    return next(iter(ret.values()))


def pillar_arg(settings: dict) -> str:
    return json.dumps({"k8snode": settings})
