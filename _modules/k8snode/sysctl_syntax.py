"""
sysctl.d(5) as systemd-sysctl (systemd 252, Debian 12) reads it, and integer
values as the kernel parses them. Pure functions on strings; every rule here
names the systemd or kernel function it follows, and each one is checked
against the real binary by tests/integration/test_sysctl_oracle.py.
"""

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


# ------------------------------------------------------------------ kernel values

_INT_MAX = 2**31 - 1
# proc_get_long() copies at most TMPBUFLEN - 1 = 21 bytes and refuses a number that fills them.
_TMPBUF_DIGITS = 21
_NUMBER = re.compile(r"(-?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def kernel_int(written):
    """
    What proc_dointvec() stores for ``written`` (the bytes a writer sends), as
    ``(value, None)``, or ``(None, reason)`` when the kernel refuses the write
    (EINVAL). Leading whitespace is skipped; the number is C's strtoul with base
    0 (``010`` is 8, ``0x10`` is 16, ``08`` is refused); ``-`` is accepted, ``+`` is
    not; the number must end at a space, tab or newline, after which the rest is
    ignored (``1 # routing`` stores 1); it must fit an int.
    """
    text = written.lstrip(" \t\n\r\v\f")
    if not text:
        return None, "no number"
    match = _NUMBER.match(text)
    if not match:
        return None, "not a number"
    number = match.group(2)
    if len(match.group(0)) >= _TMPBUF_DIGITS:
        return None, "number too long"
    rest = text[match.end() :]
    if rest and rest[0] not in " \t\n":
        return None, f"{rest[0]!r} after the number"
    if number[:2].lower() == "0x":
        magnitude = int(number, 16)
    elif number.startswith("0"):
        magnitude = int(number, 8)
    else:
        magnitude = int(number)
    negative = bool(match.group(1))
    if magnitude > _INT_MAX + (1 if negative else 0):
        return None, "out of range for an int"
    return (-magnitude if negative else magnitude), None


def _clamp_to_bool(value):
    # br_netfilter's brnf_sysctl_call_tables(): any non-zero value is stored as 1.
    return 1 if value else 0


# Keys whose kernel handler is known, as (glob over /proc/sys paths, post-processing).
_INT_KEYS = (
    ("net/ipv4/ip_forward", None),
    ("net/ipv4/conf/*/forwarding", None),
    ("net/ipv6/conf/*/forwarding", None),
    ("net/ipv4/conf/*/rp_filter", None),
    ("net/bridge/bridge-nf-call-*", _clamp_to_bool),
)


def kernel_parser(path_key):
    """The kernel handler for a key, or None when this model does not know it
    (its value is then compared as text, fields joined by one space)."""
    for pattern, post in _INT_KEYS:
        if glob_matches(pattern, path_key):
            return post or int
    return None


def kernel_store(path_key, value):
    """``(stored, None)`` or ``(None, reason)``: what the kernel keeps when a writer
    sends ``value`` plus the newline systemd-sysctl appends."""
    parser = kernel_parser(path_key)
    if parser is None:
        return " ".join(value.split()), None
    number, reason = kernel_int(value + "\n")
    if reason:
        return None, reason
    return str(parser(number)), None


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
