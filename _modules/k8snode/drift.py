"""
Drift between audits: what the ``k8snode`` beacon watches on every poll, and
which checks changed since it last looked.

A poll must be cheap, so it never parses anything: it reads the live values the
audit depends on (a few ``/proc/sys`` files, ``/proc/modules``, ``/proc/swaps``)
and takes a fingerprint of the boot configuration (inode, size and mtime of the
sysctl.d and modules-load.d directories and of every file in them,
``/etc/sysctl.conf``, ``/etc/modules``, fstab, swap units). Only when one of the
two differs from the previous poll does the beacon run the audit again.
Nothing here starts a process; everything reads under a ``root``.
"""

import json
import os

from . import host, kernel, sysctl_boot, writer

# Files read at boot whose content decides a check, besides the directories' files.
BOOT_FILES = (
    "etc/sysctl.conf",
    "etc/modules",
    "etc/fstab",
    "etc/systemd/zram-generator.conf",
    "etc/systemd/system/swap.target",
)
# Directories whose entries are read at boot (sysctl.d, modules-load.d, enabled swap units).
BOOT_DIRS = (
    sysctl_boot.SYSCTL_DIRS
    + kernel.MODULES_LOAD_DIRS
    + ("etc/systemd/system/swap.target.wants", "etc/systemd/system/local-fs.target.wants")
)
# What the live side of the audit reads that can change while the host runs.
LIVE_FILES = ("proc/modules", "proc/swaps")

#: The beacon's memory, under the minion's cachedir.
STATE_FILE = os.path.join("k8snode", "drift-beacon.json")


def _stat(full_path):
    """``(inode, size, mtime in ns)`` of a path (following links), or None."""
    try:
        found = os.stat(full_path)
    except OSError:
        return None
    return (found.st_ino, found.st_size, found.st_mtime_ns)


class Watch:
    """The state of the things the audit reads, cheap to take again.

    A directory's listing is kept until the directory itself changes (an entry
    added, removed or renamed changes its mtime); the files in it are stat'ed
    on every poll (an edit in place changes only the file).
    """

    def __init__(self, root, sysctl_keys):
        self.root = root
        self.live_paths = [host.path(root, "proc/sys/" + sysctl_boot.sysctl_path(key)) for key in sysctl_keys]
        self.live_paths += [host.path(root, relative) for relative in LIVE_FILES]
        self.dirs = [host.path(root, relative) for relative in BOOT_DIRS]
        self.files = [host.path(root, relative) for relative in BOOT_FILES]
        self._listings = {}

    def live(self):
        """The content of every live file the audit reads (None where missing)."""
        return tuple(host.read_text(full) for full in self.live_paths)

    def boot(self):
        """The fingerprint of the boot configuration: stats only, no parsing."""
        parts = []
        for directory in self.dirs:
            stat = _stat(directory)
            listed = self._listings.get(directory)
            if listed is None or listed[0] != stat:
                listed = (stat, self._entries(directory) if stat else ())
                self._listings[directory] = listed
            parts.append(stat)
            parts.extend(_stat(entry) for entry in listed[1])
        parts.extend(_stat(full) for full in self.files)
        return tuple(parts)

    @staticmethod
    def _entries(directory):
        try:
            return tuple(os.path.join(directory, name) for name in sorted(os.listdir(directory)))
        except OSError:
            return ()


def ok_now_and_at_boot(name, check, resolved):
    """``(ok now, ok after the next boot)`` of one audit check.

    The audit's ``ok`` means both; ``lost_at_reboot`` means right now but not at
    boot; otherwise the boot side is judged from what the check reports.
    """
    if check["status"] == "ok":
        return True, True
    if check.get("lost_at_reboot"):
        return True, False
    kind, _, key = name.partition(":")
    if kind == "sysctl" and key in resolved["sysctls"]:
        wanted = resolved["sysctls"][key]
        return False, sysctl_boot.value_satisfies(check["boot"], wanted["value"], wanted["compare"])
    if kind == "module":
        # Listed in modules-load.d (boot holds the files) or built in.
        return False, check["boot"] != "not persisted"
    if name == "swap":
        return not check["live"], not check["boot"]
    return False, False


def fixable(name, check, resolved):
    """Whether ``state.apply k8snode`` can repair this failing check on its own.

    A sysctl is fixable when the key exists and the value that wins at boot is
    right, or comes from k8snode's own file (or none): a user's or vendor's file
    that wins with another value is reported, not fought (the state refuses to
    write under it anyway). A module is fixable when the kernel has it (loaded or
    available) and only loading or listing it is missing. Swap, the kernel config
    and cgroups are the administrator's call.
    """
    if check["status"] == "ok":
        return False
    kind = name.split(":", 1)[0]
    if kind == "sysctl":
        boot_ok = ok_now_and_at_boot(name, check, resolved)[1]
        ours = check.get("boot_file") in (None, managed_file(resolved))
        return check["live"] is not None and (boot_ok or ours)
    if kind == "module":
        return check["live"] in ("loaded", "available")
    return False


def managed_file(resolved):
    """The sysctl.d file k8snode writes (a boot winner it may overwrite)."""
    return resolved["files"]["sysctl"]["path"]


def statuses(audit):
    """``{check: status}`` of an audit: what the beacon remembers between polls."""
    return {name: check["status"] for name, check in audit["checks"].items()}


def changed_checks(previous, audit, resolved):
    """One event per check whose status differs from ``previous`` (``{check: status}``).

    A check that was not there before (first poll, or the requirements changed)
    is not an event: nothing is known to have changed. Events are sorted by check.
    """
    events = []
    for name, check in sorted(audit["checks"].items()):
        old = previous.get(name)
        if old is None or old == check["status"]:
            continue
        events.append(
            {
                "tag": name,
                "check": name,
                "old_status": old,
                "new_status": check["status"],
                "required": check["required"],
                "live": check["live"],
                "boot": check["boot"],
                "boot_file": check.get("boot_file"),
                "managed_file": managed_file(resolved),
                "detail": check["detail"],
                "fixable": fixable(name, check, resolved),
                "ready": audit["ready"],
            }
        )
    return events


def summary_event(audit, timestamp):
    """The low-rate event that lets the master catch up after an outage."""
    return {
        "tag": "summary",
        "ready": audit["ready"],
        "failing": audit["failing"],
        "lost_at_reboot": audit["lost_at_reboot"],
        "distribution": audit["distribution"],
        "os": audit["os"],
        "summary": audit["summary"],
        "timestamp": timestamp,
    }


def load_memory(cachedir):
    """The last statuses the beacon saw (``{}`` when it never ran or the file is damaged)."""
    text = host.read_text(os.path.join(cachedir, STATE_FILE))
    try:
        memory = json.loads(text) if text else {}
    except ValueError:
        return {}
    return memory if isinstance(memory, dict) and isinstance(memory.get("statuses"), dict) else {}


def save_memory(cachedir, statuses_now, timestamp):
    """Keep the statuses on disk: a beacon refresh or a minion restart does not fire again."""
    text = json.dumps({"statuses": statuses_now, "timestamp": timestamp}, sort_keys=True)
    writer.atomic_write(os.path.join(cachedir, STATE_FILE), text + "\n", mode=0o600)
