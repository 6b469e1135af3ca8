"""
procps' ``sysctl --system``, the sysctl applier of a host without systemd, as the
procps version found on the host runs it. Every rule here was measured against the
real binaries (Debian 11's procps 3.3.17, Debian 12's 4.0.2, Debian 13's 4.0.4) and
is checked by tests/integration/test_sysctl_procps_oracle.py.

Both generations list ``*.conf`` in /etc/sysctl.d, /run/sysctl.d,
/usr/local/lib/sysctl.d, /usr/lib/sysctl.d and /lib/sysctl.d (a name in an earlier
directory masks the same name in a later one; hidden files are read too), read them
by name, then ``/etc/sysctl.conf`` when it is a regular file, even when a sysctl.d
link has read it already. Lines end at ``\\n`` only (getline), and a NUL ends the
text C sees of that line.

- procps 3.3.x writes each line as it reads it. A glob line names a path that does
  not exist, which ``--system`` skips in silence: globs are never expanded. A line
  without ``=`` (a ``-key`` line) reuses strtok()'s state past the end of the line
  and writes ``=`` to the key, which the kernel refuses for an integer key.
- procps >= 4.0 reads every file first, then writes in that order. A glob (glob(3)
  without braces) writes every match that no line of any file names with the same
  path spelling (``a//b`` is not ``a/b`` there); a ``-key`` line only keeps globs
  off its key, it does not undo a value.
"""

import re

from . import host
from .sysctl_syntax import is_glob

# What the version is assumed to be when nothing on the host says it: the current
# generation (every distribution release since 2022 ships procps >= 4).
ASSUMED_VERSION = "4.0"
# Glob lines arrived in procps 4.0.0 (procps-ng commit 6389deca "sysctl: Support
# systemd glob patterns").
FIRST_WITH_GLOBS = (4, 0)

_BINARIES = ("usr/sbin/sysctl", "sbin/sysctl", "usr/bin/sysctl", "bin/sysctl")
# `sysctl --version` prints PACKAGE_NAME " " PACKAGE_VERSION, a literal in the binary.
_VERSION_IN_BINARY = re.compile(r"procps-ng (\d+\.\d+(?:\.\d+)?)")
# isspace() in the C locale: what procps 4's lstrip()/rstrip() remove.
_C_SPACE = " \t\n\v\f\r"
# What procps 3.3's StripLeadingAndTrailingSpaces() removes at the end of a line.
_TRAILING_3 = " \t\n\r"


def _version_tuple(version):
    return tuple(int(part) for part in version.split(".")[:2])


def _from_dpkg_status(root):
    """The upstream version of the installed ``procps`` package (``2:3.3.17-5`` is
    ``3.3.17``), from dpkg's status file, or None."""
    found = host.dpkg_installed_version(root, "procps")
    if not found:
        return None
    version, evidence = found
    upstream = version.split(":", 1)[-1].rsplit("-", 1)[0]
    return (upstream, evidence) if re.fullmatch(r"\d+\.\d+(\.\d+)?", upstream) else None


def procps_version(root):
    """
    The procps that runs ``sysctl --system`` here, read from files only:
    ``{"version", "evidence", "expands_globs", "assumed"}``. The version string
    compiled into the sysctl binary comes first (it is what runs, on any
    distribution), then dpkg's status file; when neither says, ``version`` is None,
    :data:`ASSUMED_VERSION` rules are used and ``assumed`` says so.
    """
    found = None
    for binary in _BINARIES:
        match = _VERSION_IN_BINARY.search(host.read_text(host.path(root, binary)) or "")
        if match:
            found = match.group(1), f"/{binary} says procps-ng {match.group(1)}"
            break
    found = found or _from_dpkg_status(root)
    if found is None:
        return {
            "version": None,
            "evidence": "no procps version found (sysctl binary, /var/lib/dpkg/status)",
            "expands_globs": _version_tuple(ASSUMED_VERSION) >= FIRST_WITH_GLOBS,
            "assumed": f"procps version unknown: assuming procps >= {ASSUMED_VERSION} rules (globs expand)",
        }
    version, evidence = found
    return {
        "version": version,
        "evidence": evidence,
        "expands_globs": _version_tuple(version) >= FIRST_WITH_GLOBS,
        "assumed": None,
    }


def _getlines(text):
    """``(line number, getline length, text before the first NUL)`` per line."""
    pieces = text.split("\n")
    for number, piece in enumerate(pieces, 1):
        full = piece + "\n" if number < len(pieces) else piece
        if full:
            yield number, len(full), full.split("\0", 1)[0]


def parse_procps3(text):
    """procps 3.3's Preload(): ``(assignments, problems)`` with assignments
    ``(line number, key, value, ignore_failure)`` in file order."""
    assignments, problems = [], []
    for number, length, line in _getlines(text):
        if length < 2:
            continue
        # StripLeadingAndTrailingSpaces() never removes the first character.
        stripped = (line[:1] + line[1:].rstrip(_TRAILING_3)).lstrip(" \t")
        if len(stripped) < 2 or stripped[0] in "#;":
            continue
        # strtok(t, "=") skips leading '=' and ends the name at the next one.
        body = stripped.lstrip("=")
        name, equals, rest = body.partition("=")
        if not body:
            problems.append((number, "invalid syntax"))
            continue
        if equals:
            value = re.split(r"[\n\r]", rest.lstrip("\n\r"), maxsplit=1)[0]
            if not value:
                problems.append((number, "invalid syntax (no value)"))
                continue
            value = value.lstrip(" \t")
        else:
            # No '=': the second strtok() runs on past the name over the '=' procps
            # has just put there, so the key is sent "=" (and whatever follows).
            value = "="
            problems.append((number, "no '=': procps 3.3 writes '=' to the key (no -key lines before 4.0)"))
        name = name[:1] + name[1:].rstrip(_TRAILING_3)
        ignore_failure = name.startswith("-")
        assignments.append((number, name[1:] if ignore_failure else name, value, ignore_failure))
    return assignments, problems


def parse_procps4(text):
    """procps 4's parse_setting_line(): ``(assignments, problems)``; ``value`` None
    for a ``-key`` line (it keeps globs off the key)."""
    assignments, problems = [], []
    for number, length, line in _getlines(text):
        if length < 2:
            continue
        key = line.lstrip(_C_SPACE)
        if len(key) < 2 or key[0] in "#;":
            continue
        if "=" not in key:
            if key[0] == "-":
                assignments.append((number, _rstrip_c(key[1:]), None, False))
            else:
                problems.append((number, "invalid syntax"))
            continue
        key, _, value = key.partition("=")
        ignore_failure = key.startswith("-")
        key = key[1:] if ignore_failure else key
        assignments.append((number, _rstrip_c(key), _rstrip_c(value.lstrip(_C_SPACE)), ignore_failure))
    return assignments, problems


def _rstrip_c(text):
    # procps' rstrip() never removes the first character.
    return text[:1] + text[1:].rstrip(_C_SPACE)


def procps_path(key):
    """``(raw, path_key)``: the path under /proc/sys that procps opens, spelled as it
    builds it (slashdot(): when the first separator is a dot, dots and slashes
    swap; a second leading ``-`` is dropped), and the /proc/sys key it reaches, or
    None when no file can be there (a trailing separator)."""
    key = key[1:] if key.startswith("-") else key
    first = re.search(r"[./]", key)
    if first and first.group() == ".":
        key = key[: first.start()] + key[first.start() :].translate(str.maketrans("./", "/."))
    if key.endswith("/") or not key:
        return key, None
    return key, "/".join(part for part in key.split("/") if part not in ("", "."))


def glob_result(raw_pattern, path_key):
    """The path glob(3) returns for ``path_key`` under ``raw_pattern``: the pattern's
    own separators (``a//*`` gives ``a//b``), each component replaced by the match's."""
    names = iter(path_key.split("/"))
    return "/".join(part if part in ("", ".") else next(names, part) for part in raw_pattern.split("/"))


def procps_boot(texts, procps):
    """The writes ``sysctl --system`` makes at boot from ``texts`` (``[(shown, text)]``
    in reading order), for the procps found (:func:`procps_version`):
    ``{"order", "values", "explicit", "ignored", "problems", "exempt_paths"}``."""
    globs_expand = procps["expands_globs"]
    parse = parse_procps4 if globs_expand else parse_procps3
    shown_version = procps["version"] or f">= {ASSUMED_VERSION} (assumed)"
    order, values, explicit, ignored, problems, exempt = [], {}, [], [], [], set()
    for shown, text in texts:
        assignments, bad_lines = parse(text)
        problems.extend(f"{shown}:{number}: {reason}" for number, reason in bad_lines)
        for number, key, value, ignore_failure in assignments:
            raw, path_key = procps_path(key)
            exempt.add(raw)
            item = {"value": value, "file": shown, "line": number, "ignore_failure": ignore_failure}
            if path_key is None:
                problems.append(f"{shown}:{number}: {key!r} ends with a separator: procps finds no such key")
                continue
            if is_glob(raw) and not globs_expand:
                reason = f"procps {shown_version} does not expand globs (4.0 does): this line sets nothing"
                ignored.append({"pattern": path_key, **item, "reason": reason})
                problems.append(f"{shown}:{number}: {reason}")
                continue
            if value is None:
                if not is_glob(raw):
                    values.setdefault(path_key, {"assignments": []}).update(
                        value=None, file=shown, line=number, excluded_from_globs=True
                    )
                continue
            if is_glob(raw):
                order.append({**item, "pattern": path_key, "raw": raw})
                continue
            order.append({**item, "key": path_key})
            explicit.append(path_key)
            entry = values.setdefault(path_key, {"assignments": []})
            entry.pop("excluded_from_globs", None)
            entry.update(value=" ".join(value.split()), file=shown, line=number)
            entry["assignments"].append([shown, value])
    return {
        "order": order,
        "values": values,
        "explicit": list(dict.fromkeys(explicit)),
        "ignored": ignored,
        "problems": problems,
        "exempt_paths": sorted(exempt),
    }


def glob_reaches(op, path_key, exempt_paths):
    """Whether procps >= 4 writes the glob line ``op`` to ``path_key`` (assumed to
    exist): glob(3) without braces matches it and no line names its path as glob(3)
    spells it."""
    from .sysctl_syntax import glob_matches

    return glob_matches(op["pattern"], path_key, braces=False) and glob_result(op["raw"], path_key) not in exempt_paths
