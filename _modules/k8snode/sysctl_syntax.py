"""
sysctl.d(5) as systemd-sysctl reads it (the same parse_file() in systemd 247, 252
and 257), globs, and the keys whose write changes other keys. Pure functions on
strings; every rule here names the systemd or kernel function it follows, and each
one is checked against the real binaries by tests/integration/test_sysctl_oracle.py.
What the kernel stores for a value is :mod:`.sysctl_kernel`'s.
"""

import functools
import re

# systemd's string_is_glob(): braces alone do not make a glob.
GLOB_CHARS = frozenset("*?[")
# systemd's strstrip() removes exactly these (WHITESPACE in string-util.h).
_STRIP = " \t\n\r"
_COMMENTS = "#;"


def split_lines(text):
    """Split like systemd's read_line(): a line ends at \\n, \\r or NUL; one run of
    end-of-line bytes holds each kind at most once (\\r\\n is one end), and a NUL
    ends the line at once. Returns ``[(line number, text)]``."""
    lines, current, seen, number = [], [], set(), 0
    for char in text:
        kind = char if char in "\n\r\0" else None
        if seen and ("\0" in seen or kind is None or kind in seen):
            number += 1
            lines.append((number, "".join(current)))
            current, seen = [], set()
        if kind is None:
            current.append(char)
        else:
            seen.add(kind)
    if current or seen:
        number += 1
        lines.append((number, "".join(current)))
    return lines


def sysctl_path(key):
    """The /proc/sys path of a key, as systemd's sysctl_normalize() makes it: when
    the first separator is a dot, dots and slashes swap (``net.ipv4.conf.eth0/1.x`` is
    ``net/ipv4/conf/eth0.1/x``); then empty and ``.`` components are dropped
    (``a..b`` and a trailing ``.`` simplify away), and the leading slash."""
    first = re.search(r"[./]", key)
    if first and first.group() == ".":
        head, tail = key[: first.start()], key[first.start() :]
        key = head + tail.translate(str.maketrans("./", "/."))
    parts = [part for part in key.split("/") if part not in ("", ".")]
    if not parts:
        return "" if not key.startswith("/") else "/"
    return "/".join(parts)


def is_glob(path_key):
    return not GLOB_CHARS.isdisjoint(path_key)


def parse_sysctl_conf(text):
    """
    Parse sysctl.d(5) text into ``(assignments, problems)`` the way systemd's
    parse_file() does: assignments are ``(line number, key, value, ignore_failure)``
    in file order, ``value`` None for a ``-key`` line (no ``=``: the key is kept out
    of globs and not written); problems are ``(line number, reason)`` for lines
    systemd-sysctl ignores.
    """
    assignments, problems = [], []
    for number, raw in split_lines(text):
        line = raw.strip(_STRIP)
        if not line or line[0] in _COMMENTS:
            continue
        key, equals, value = line.partition("=")
        ignore_failure = False
        if equals:
            # systemd looks for '-' before stripping the key: "- key = 1" still counts.
            if key.startswith("-"):
                ignore_failure, key = True, key[1:]
            value = value.strip(_STRIP)
        elif key.startswith("-"):
            key, value = key[1:], None
        else:
            problems.append((number, "not an assignment"))
            continue
        key = key.strip(_STRIP)
        if not key:
            # systemd would write to /proc/sys itself and fail.
            problems.append((number, "empty key"))
            continue
        assignments.append((number, key, value, ignore_failure))
    return assignments, problems


# ------------------------------------------------------------------ globs


def expand_braces(pattern):
    """glob(3)'s GLOB_BRACE expansion: ``a{b,c}d`` is ``abd`` and ``acd``, nested
    braces expand too; a brace without its match stays literal."""
    depth, start = 0, None
    for index, char in enumerate(pattern):
        if char == "\\":
            continue
        if char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                return _expand_group(pattern, start, index)
    return [pattern]


def _expand_group(pattern, start, end):
    head, body, tail = pattern[:start], pattern[start + 1 : end], pattern[end + 1 :]
    choices, depth, current = [], 0, []
    for char in body:
        if char == "," and depth == 0:
            choices.append("".join(current))
            current = []
            continue
        depth += char == "{"
        depth -= char == "}" and depth > 0
        current.append(char)
    choices.append("".join(current))
    expanded = []
    for choice in choices:
        expanded.extend(expand_braces(head + choice + tail))
    return expanded


@functools.lru_cache(maxsize=1024)
def _component_regex(component):
    """fnmatch(3) for one path component: ``*`` and ``?`` never match ``/``,
    ``[!x]`` and ``[^x]`` negate, ``\\`` escapes."""
    out, index = [], 0
    while index < len(component):
        char = component[index]
        index += 1
        if char == "\\" and index < len(component):
            out.append(re.escape(component[index]))
            index += 1
        elif char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = index
            if end < len(component) and component[end] in "!^":
                end += 1
            if end < len(component) and component[end] == "]":
                end += 1
            while end < len(component) and component[end] != "]":
                end += 1
            if end >= len(component):
                out.append(re.escape("["))
                continue
            body = component[index:end]
            index = end + 1
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            escaped = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
            out.append(f"[{'^' if negate else ''}{escaped}]")
        else:
            out.append(re.escape(char))
    return "".join(out)


def glob_matches(pattern, path_key, braces=True):
    """Whether glob(3) with GLOB_BRACE, as systemd-sysctl calls it on
    ``/proc/sys/PATTERN``, would list ``path_key`` (assumed to exist); ``braces=False``:
    glob(3) without it, as procps 4 calls it (a brace is a literal character)."""
    wanted = path_key.split("/")
    for alternative in expand_braces(pattern) if braces else [pattern]:
        components = [part for part in alternative.split("/") if part]
        if len(components) != len(wanted):
            continue
        if all(
            # glob(3) without GLOB_PERIOD: a wildcard never matches a leading dot.
            re.fullmatch(_component_regex(part), name, re.DOTALL) and not (name[:1] == "." and part[:1] != ".")
            for part, name in zip(components, wanted)
        ):
            return True
    return False


# ------------------------------------------------------------------ coupled keys

# Writes that change other keys: forwarding. ip_forward is conf/all/forwarding
# (one variable), and writing conf/all/forwarding also sets conf/default and every
# interface (devinet_sysctl_forward, addrconf_fixup_forwarding).
_IPV4_ALL = "net/ipv4/conf/all/forwarding"
_IPV4_ALIASES = ("net/ipv4/ip_forward", _IPV4_ALL)
_IPV6_ALL = "net/ipv6/conf/all/forwarding"


def keys_written_by(path_key):
    """The keys whose write changes ``path_key`` (itself included), for the coupled
    keys the audit checks."""
    if path_key in _IPV4_ALIASES:
        return _IPV4_ALIASES
    if glob_matches("net/ipv4/conf/*/forwarding", path_key):
        return (path_key, *_IPV4_ALIASES)
    if path_key != _IPV6_ALL and glob_matches("net/ipv6/conf/*/forwarding", path_key):
        return (path_key, _IPV6_ALL)
    return (path_key,)
