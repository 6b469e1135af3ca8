"""
The sysctl values a host will have after its next boot, and the live values in
/proc/sys.

Two appliers exist. On a systemd host ``systemd-sysctl`` reads the sysctl.d
directories only (``/etc/sysctl.conf`` only through the ``99-sysctl.conf`` link)
and applies the options in the order of its ordered hashmap: an assignment that
changes a key's value moves the key to the end, globs write every existing match
that has no explicit line (``-key`` lines included). Without systemd, procps'
``sysctl --system`` applies the lines in file order, reads ``/etc/sysctl.conf``
last, and expands globs only from procps 4.0 on (:mod:`.sysctl_procps`, which
follows the version found on the host). The kernel then parses each value
(:mod:`.sysctl_kernel`, by the key's proc_handler) and couples some keys
(forwarding).

Keys are handled as /proc/sys paths (``net/ipv4/ip_forward``), the form the
kernel and systemd compare; :func:`sysctl_path` converts a dotted key.
"""

import os

from . import host, sysctl_kernel
from .sysctl_syntax import (  # noqa: F401  (sysctl_path and parse_sysctl_conf are this module's API too)
    GLOB_CHARS,
    glob_matches,
    is_glob,
    keys_written_by,
    parse_sysctl_conf,
    sysctl_path,
)

# The sysctl.d directories, in reading order; a file name in an earlier directory
# masks the same name in a later one. procps reads all five; systemd-sysctl reads
# /lib/sysctl.d only when it is a split-usr build (:mod:`.sysctl_systemd`); on
# merged-/usr /lib/sysctl.d is /usr/lib's, read once.
SYSCTL_DIRS = ("etc/sysctl.d", "run/sysctl.d", "usr/local/lib/sysctl.d", "usr/lib/sysctl.d", "lib/sysctl.d")

SYSTEMD = "systemd-sysctl"
PROCPS = "sysctl --system"


def _listed_files(root, replace, applier=SYSTEMD, directories=SYSCTL_DIRS):
    """[(shown, full path or None)] of the sysctl.d files in ``directories``, by name,
    first directory winning a name; ``replace`` adds files by shown path (what a
    state will write)."""
    chosen, seen_dirs = {}, []
    for directory in directories:
        full_dir = host.path(root, directory)
        try:
            real = os.path.realpath(full_dir)
            names = os.listdir(full_dir)
        except OSError:
            continue
        if real in seen_dirs:
            # /lib -> usr/lib on merged-/usr: the same directory, read once.
            continue
        seen_dirs.append(real)
        for name in names:
            # systemd's FOREACH_DIRENT skips hidden entries; procps reads them.
            hidden = name.startswith(".") and applier == SYSTEMD
            if name.endswith(".conf") and not hidden and name not in chosen:
                chosen[name] = os.path.join(full_dir, name)
    for shown in replace:
        name = os.path.basename(shown)
        if os.path.dirname(shown) == "/etc/sysctl.d":
            chosen[name] = host.path(root, shown)
    return [(name, chosen[name]) for name in sorted(chosen)]


def _file_texts(root, applier, reads_etc_sysctl_conf, replace, directories=SYSCTL_DIRS):
    """[(shown, text)] in the order the applier reads them; unreadable files,
    masks (/dev/null, empty) and files ``replace`` removes read as nothing."""
    ordered = []
    for _, full in _listed_files(root, replace, applier, directories):
        shown = host.display(root, full)
        if host.is_masked(full) and shown not in replace:
            continue
        text = replace[shown] if shown in replace else host.read_text(full)
        if text is not None:
            ordered.append((shown, text))
    etc_conf = host.path(root, "etc/sysctl.conf")
    # procps reads it last when stat() says a regular file, even when a sysctl.d
    # link (Debian's 99-sysctl.conf) has read it already.
    if applier == PROCPS and reads_etc_sysctl_conf is not False and os.path.isfile(etc_conf):
        text = host.read_text(etc_conf)
        if text is not None:
            ordered.append(("/etc/sysctl.conf", text))
    return ordered


def _add_option(options, path_key, item):
    """systemd's parse_file(): the same value keeps the earlier line and its place
    in the order; another value replaces it at the end."""
    existing = options.get(path_key)
    if existing is not None and existing["value"] == item["value"]:
        existing["ignore_failure"] = existing["ignore_failure"] or item["ignore_failure"]
        return existing
    options.pop(path_key, None)
    options[path_key] = item
    return item


def effective_boot_sysctls(root, reads_etc_sysctl_conf=None, replace=None, applier=None, procps=None):
    """
    The values that hold after the next boot (see the API's
    ``effective_boot_sysctls``). ``replace``: ``{path: text}`` of files to consider
    with other contents (what a state is about to write); ``None`` as text removes
    the file. ``applier``: :data:`SYSTEMD` or :data:`PROCPS` (default: detected,
    see :func:`.host.sysctl_applier`). ``procps``: the procps found
    (:func:`.sysctl_procps.procps_version`, default: read from ``root``).
    """
    replace = replace or {}
    detected = host.sysctl_applier(root)
    if applier is not None:
        detected = {"applier": applier, "evidence": "chosen by the caller", "ambiguous": None}
    applier = detected["applier"]
    ambiguous = detected["ambiguous"]
    directories, systemd = SYSCTL_DIRS, None
    if applier == SYSTEMD:
        from . import sysctl_systemd

        systemd = sysctl_systemd.systemd_model(root)
        if not systemd["reads_lib_sysctl_d"]:
            directories = tuple(directory for directory in SYSCTL_DIRS if directory != "lib/sysctl.d")
        if systemd["assumed"]:
            ambiguous = f"{ambiguous}; {systemd['assumed']}" if ambiguous else systemd["assumed"]
    texts = _file_texts(root, applier, reads_etc_sysctl_conf, replace, directories)
    if applier == PROCPS:
        from . import sysctl_procps

        procps = procps or sysctl_procps.procps_version(root)
        found = sysctl_procps.procps_boot(texts, procps)
        if procps["assumed"]:
            ambiguous = f"{ambiguous}; {procps['assumed']}" if ambiguous else procps["assumed"]
    else:
        procps = None
        found = _systemd_boot(texts)
    order = found["order"]
    globs = [
        {"pattern": op["pattern"], "value": op["value"], "file": op["file"], "line": op["line"]}
        for op in order
        if "pattern" in op
    ]
    refused = _refused_writes(order, root)
    problems = found["problems"] + [f"{item['file']}:{item['line']}: {item['reason']}" for item in refused]
    return {
        "root": root,
        "applier": applier,
        "applier_evidence": detected["evidence"]
        + (f"; {procps['evidence']}" if procps else "")
        + (f"; {systemd['evidence']}" if systemd else ""),
        "ambiguous": ambiguous,
        "procps": procps,
        "systemd": systemd,
        "files": [shown for shown, _ in texts],
        "values": found["values"],
        "globs": globs,
        "ignored": found.get("ignored", []),
        "order": order,
        "explicit": found["explicit"],
        "exempt_paths": found.get("exempt_paths", []),
        "refused": refused,
        "problems": problems,
    }


def _systemd_boot(texts):
    """systemd-sysctl's writes from ``texts`` (``[(shown, text)]`` in reading order)."""
    values, problems, options = {}, [], {}
    for shown, text in texts:
        assignments, bad_lines = parse_sysctl_conf(text)
        problems.extend(f"{shown}:{number}: {reason}" for number, reason in bad_lines)
        for number, key, value, ignore_failure in assignments:
            path_key = sysctl_path(key)
            item = {"value": value, "file": shown, "line": number, "ignore_failure": ignore_failure}
            kept = _add_option(options, path_key, item)
            if is_glob(path_key):
                continue
            _record(values, path_key, kept)
            values[path_key]["assignments"].append([shown, value])
    # The options are applied in the order of systemd's ordered hashmap.
    order = [
        {**item, ("pattern" if is_glob(path_key) else "key"): path_key}
        for path_key, item in options.items()
        if item["value"] is not None
    ]
    explicit = [path_key for path_key in options if not is_glob(path_key)]
    return {"order": order, "values": values, "explicit": explicit, "problems": problems}


def _record(values, path_key, item):
    entry = values.setdefault(path_key, {"assignments": []})
    # Shown with fields joined by one space, as /proc/sys prints them.
    shown = None if item["value"] is None else " ".join(item["value"].split())
    entry.update(value=shown, file=item["file"], line=item["line"])
    if item["value"] is None:
        entry["excluded_from_globs"] = True
    else:
        entry.pop("excluded_from_globs", None)
    return entry


def kernel_handler(path_key, root):
    """``(spec, assumption)`` of the key's proc_handler (:func:`.sysctl_kernel.handler_for`),
    learnt from its live value under ``root`` when the table does not know it."""
    return sysctl_kernel.handler_for(path_key, read_live(root, path_key))


def kernel_store(path_key, value, root, before=None):
    """``(stored, reason)`` of :func:`.sysctl_kernel.store` for ``path_key`` on the host
    under ``root`` (its handler, and the names a text key accepts, read there)."""
    spec, _ = kernel_handler(path_key, root)
    choices = None
    if spec.get("choices_key"):
        listed = read_live(root, spec["choices_key"])
        choices = listed.split() if listed else None
    return sysctl_kernel.store(spec, value, before, choices)


def _refused_writes(order, root):
    """The explicit lines whose value the kernel refuses, with the file and line."""
    refused = []
    for op in order:
        if "key" not in op:
            continue
        stored, reason = kernel_store(op["key"], op["value"], root)
        if reason and stored is None:
            refused.append(
                {
                    "key": op["key"],
                    "value": op["value"],
                    "file": op["file"],
                    "line": op["line"],
                    "reason": f"the kernel refuses {op['value']!r} for {op['key']}: {reason}",
                }
            )
    return refused


def boot_writes(path_key, boot):
    """Every write that reaches ``path_key`` at boot, in the order the applier makes
    them: ``[{"value", "file", "line", "via", "pattern"?, "stored" | "refused"}]``.
    ``via`` is the key written (an alias such as ``net/ipv4/conf/all/forwarding``
    changes ``net/ipv4/ip_forward``); the key and its aliases are assumed to exist."""
    sources = keys_written_by(path_key)
    explicit = set(boot["explicit"])
    exempt_paths = set(boot.get("exempt_paths", ()))
    root = boot.get("root", "/")
    # What a vector written in part keeps: the value before this write.
    before = sysctl_kernel.handler_for(path_key, None)[0].get("default")
    writes = []
    for op in boot["order"]:
        if "key" in op:
            hit = op["key"] if op["key"] in sources else None
        elif boot["applier"] == SYSTEMD:
            # A glob skips the keys that have a line of their own.
            hit = next((key for key in sources if key not in explicit and glob_matches(op["pattern"], key)), None)
        else:
            from .sysctl_procps import glob_reaches

            hit = next((key for key in sources if glob_reaches(op, key, exempt_paths)), None)
        if hit is None:
            continue
        stored, reason = kernel_store(path_key, op["value"], root, before)
        write = {"value": op["value"], "file": op["file"], "line": op["line"], "via": hit}
        if "pattern" in op:
            write["pattern"] = op["pattern"]
        if stored is None:
            write["refused"] = reason
        else:
            write["stored"], before = stored, stored
            if reason:
                # EINVAL after the first elements of a vector: those stay written.
                write["error"] = reason
        writes.append(write)
    return writes


def boot_assignment(path_key, boot):
    """The write that decides the key at boot, or None: ``{"value" (as the kernel
    stores it), "written" (as in the file), "file", "line", "via", "pattern"?,
    "refused": [later writes the kernel refused]}``."""
    winner, refused = None, []
    for write in boot_writes(path_key, boot):
        if "refused" in write:
            refused.append(write)
            continue
        winner, refused = write, []
    if winner is None:
        if refused:
            return {"value": None, "written": None, "file": None, "line": None, "via": None, "refused": refused}
        return None
    result = {**winner, "value": winner["stored"], "written": winner["value"], "refused": refused}
    del result["stored"]
    return result


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


# ------------------------------------------------------------------ pattern keys

# What stands for a wildcard in a key that does not exist yet: a name no sysctl.d
# line is likely to spell out, so only globs reach it.
_NEW_NAME = "k8snode-new"


def new_match(pattern):
    """A key the glob ``pattern`` matches and no explicit line names: what a new
    interface (``lxc*``: ``lxck8snode-new``) gets at boot or when it appears (udev's
    99-systemd.rules runs systemd-sysctl with ``--prefix`` for each new device)."""
    return pattern.replace("*", _NEW_NAME).replace("?", "x")


def dotted_key(path_key):
    """A /proc/sys path as sysctl.d spells it: ``net/ipv4/conf/eth0.1/x`` is
    ``net.ipv4.conf.eth0/1.x`` (the inverse of :func:`sysctl_path`)."""
    return path_key.translate(str.maketrans("./", "/."))


def wildcard_parts(pattern, path_key):
    """The components of ``path_key`` that the pattern's wildcards matched (for
    ``net/ipv4/conf/*/rp_filter``: the interface name), joined by ``/``."""
    return "/".join(
        name for part, name in zip(pattern.split("/"), path_key.split("/")) if not GLOB_CHARS.isdisjoint(part)
    )


def inherited_from(path_key):
    """The key a new interface copies ``path_key``'s value from when it appears
    (``net/ipv4/conf/DEV/x`` from ``net/ipv4/conf/default/x``, as the kernel's
    devinet and addrconf do), or None."""
    parts = path_key.split("/")
    per_interface = len(parts) == 5 and parts[:3] in (["net", "ipv4", "conf"], ["net", "ipv6", "conf"])
    if per_interface and parts[3] not in ("all", "default"):
        return "/".join([*parts[:3], "default", parts[4]])
    return None


def interface_boot_assignment(path_key, boot):
    """:func:`boot_assignment`, and for a per-interface key that no line reaches, the
    boot assignment of the ``default`` key it copies when the interface appears
    (then ``inherited`` names that key)."""
    winner = boot_assignment(path_key, boot)
    parent = inherited_from(path_key)
    if (winner is None or winner["file"] is None) and parent:
        inherited = boot_assignment(parent, boot)
        if inherited and inherited["file"]:
            return {**inherited, "inherited": parent}
    return winner


def runtime_writers_of(path_key, writers):
    """The runtime writers (:func:`.host.runtime_sysctl_writers`) that write
    ``path_key``, a coupled key of it, or (for a pattern) one of its matches."""
    if is_glob(path_key):
        return [writer for writer in writers if any(glob_matches(path_key, key) for key in writer["keys"])]
    sources = set(keys_written_by(path_key))
    return [writer for writer in writers if sources & set(writer["keys"])]


def owners_text(path_key, writes, writers):
    """The short human part: how many other lines reach the key, and who writes it
    after boot (``; 2 other lines at boot; written after boot by docker (enabled)``)."""
    text = ""
    if len(writes) > 1:
        text += f"; {len(writes) - 1} other line{'s' if len(writes) > 2 else ''} at boot"
    if writers:
        named = ", ".join(
            writer["name"] + ("" if "enabled" not in writer else " (enabled)" if writer["enabled"] else " (installed)")
            for writer in writers
        )
        text += f"; written after boot by {named}"
    return text
