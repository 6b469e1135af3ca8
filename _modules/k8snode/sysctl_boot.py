"""
The sysctl values a host will have after its next boot, computed the way
systemd-sysctl applies sysctl.d(5) files, and the live values in /proc/sys.

Keys are handled as /proc/sys paths (``net/ipv4/ip_forward``), the form the
kernel and systemd compare; :func:`sysctl_path` converts a dotted key.
"""

import fnmatch
import os

from . import host
from .validate import GLOB_CHARS

# systemd-sysctl reads these, in this order; a file name in an earlier
# directory masks the same name in a later one.
SYSCTL_DIRS = ("etc/sysctl.d", "run/sysctl.d", "usr/local/lib/sysctl.d", "usr/lib/sysctl.d", "lib/sysctl.d")

_SWAP_DOTS_AND_SLASHES = str.maketrans("./", "/.")


def sysctl_path(key):
    """The /proc/sys path of a key, as systemd-sysctl reads it: when the first
    separator is ``/`` the dots are part of names (``net/ipv4/conf/eth0.1/forwarding``)."""
    key = key.strip()
    first_slash, first_dot = key.find("/"), key.find(".")
    if first_slash != -1 and (first_dot == -1 or first_slash < first_dot):
        return key.strip("/")
    return key.translate(_SWAP_DOTS_AND_SLASHES)


def parse_sysctl_conf(text):
    """
    Parse sysctl.d(5) text into ``(assignments, problems)``: assignments are
    ``(line number, key, value, ignore_failure)`` in file order; problems are
    ``(line number, reason)`` for lines systemd-sysctl would ignore.
    """
    assignments, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if "=" not in line:
            problems.append((number, "not an assignment"))
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        ignore_failure = key.startswith("-")
        # systemd strips one '-': the rest belongs to the key.
        key = key[1:].strip() if ignore_failure else key
        if not key:
            problems.append((number, "empty key"))
            continue
        assignments.append((number, key, " ".join(value.split()), ignore_failure))
    return assignments, problems


def _sysctl_files(root, reads_etc_sysctl_conf, replace=None):
    """Return the sysctl files read at boot, in order, as display paths mapped to text."""
    replace = replace or {}
    files = [full for _, full in host.conf_files(root, SYSCTL_DIRS)]
    etc_conf = host.path(root, "etc/sysctl.conf")
    etc_conf_last = reads_etc_sysctl_conf and os.path.isfile(etc_conf) and not host.same_file_in(files, etc_conf)
    if etc_conf_last:
        # procps' `sysctl --system` and older inits read it last.
        files.append(etc_conf)
    ordered = []
    for full in files:
        shown = host.display(root, full)
        ordered.append((shown, replace[shown] if shown in replace else host.read_text(full) or ""))
    for shown, text in replace.items():
        # A file of ours that does not exist yet takes its place by name.
        if text is not None and shown not in dict(ordered):
            ordered.append((shown, text))
    listed = [item for item in ordered if item[1] is not None]
    return sorted(listed, key=lambda item: _boot_sort_key(item[0], etc_conf_last))


def _boot_sort_key(shown, etc_conf_last):
    # Files from the sysctl.d directories sort by name; /etc/sysctl.conf
    # (read directly) comes after all of them.
    if shown == "/etc/sysctl.conf" and etc_conf_last:
        return (1, "")
    return (0, os.path.basename(shown))


def effective_boot_sysctls(root, reads_etc_sysctl_conf, replace=None):
    """
    The values that hold after the next boot (see the API's
    ``effective_boot_sysctls``). ``replace``: ``{path: text}`` of files to consider
    with other contents (what a state is about to write); ``None`` as text removes
    the file.
    """
    values, globs, problems, files = {}, [], [], []
    for shown, text in _sysctl_files(root, reads_etc_sysctl_conf, replace):
        files.append(shown)
        assignments, bad_lines = parse_sysctl_conf(text)
        problems.extend(f"{shown}:{number}: {reason}" for number, reason in bad_lines)
        for number, key, value, _ in assignments:
            path_key = sysctl_path(key)
            if not GLOB_CHARS.isdisjoint(path_key):
                globs.append({"pattern": path_key, "value": value, "file": shown, "line": number})
                continue
            entry = values.get(path_key)
            if entry is None:
                entry = values[path_key] = {"assignments": []}
            entry.update(value=value, file=shown, line=number)
            entry["assignments"].append([shown, value])
    return {"files": files, "values": values, "globs": globs, "problems": problems}


def boot_assignment(path_key, boot):
    """The assignment that wins at boot for one key: explicit first, then the last glob."""
    if path_key in boot["values"]:
        return boot["values"][path_key]
    for glob in reversed(boot["globs"]):
        if fnmatch.fnmatchcase(path_key, glob["pattern"]):
            return glob
    return None


def read_live(root, key):
    """The key's value in /proc/sys now (fields joined by one space), or None."""
    text = host.read_text(host.path(root, "proc/sys/" + sysctl_path(key)))
    return None if text is None else " ".join(text.split())


def value_satisfies(actual, expected, compare="exact"):
    """Whether a value meets a requirement: ``exact`` compares every field, ``min``
    (a floor) accepts anything at least as high."""
    if actual is None:
        return False
    got, want = str(actual).split(), str(expected).split()
    if compare == "min":
        try:
            return len(got) == len(want) and all(int(g) >= int(w) for g, w in zip(got, want))
        except ValueError:
            return False
    return got == want
