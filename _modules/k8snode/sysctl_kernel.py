"""
What the kernel stores when a writer sends a value to /proc/sys: its proc_handler
families, read from kernel/sysctl.c (the same in Linux 6.1, Debian 12, and 6.12,
Debian 13, for everything modelled here), and a table of the handler of every key
k8snode requires or reads, each row with the kernel file and handler it comes from.

The parser works on the bytes written (systemd-sysctl and procps send the value and
a newline) and follows the kernel function by function:

- ``proc_skip_spaces()``: skips the kernel's ``isspace()`` bytes (lib/ctype.c: tab,
  newline, vertical tab, form feed, carriage return, space and 0xA0).
- ``proc_get_long()``: copies at most ``TMPBUFLEN - 1`` = 21 bytes; a ``-`` counts
  only when more bytes follow; the next byte must be a digit (``+1``, ``"2"``
  refused); ``strtoul_lenient()`` (base 0: ``0x`` + hex digit is 16, a leading ``0``
  is 8, else 10; an overflow of 64 bits refused, Linux >= 5.0); a number that fills
  the 21 bytes is refused; the byte after it must be space, tab or newline
  (``proc_wspace_sep``), else EINVAL (``1024#``, ``1024\\v``, ``1024`` + U+00A0).
- ``__do_proc_dointvec()`` / ``__do_proc_doulongvec_minmax()``: one number per
  element of the vector (``maxlen / sizeof``), spaces skipped before each; the rest
  after the last element is never read (``1024 # why`` stores 1024 in an int); no
  number at all is EINVAL (an empty value); each element is stored as it is parsed,
  so an error on a later element keeps the earlier ones (for handlers that write
  the table's data directly).
- conversions: ``do_proc_dointvec_conv`` (-2^31 .. 2^31-1), ``proc_douintvec*``
  (one element; ``-`` refused, even ``-0``; up to 2^32-1), ``proc_dou8vec_minmax``
  (0 .. 255 unless the row's min/max say less), ``proc_doulongvec_minmax`` (``-``
  refused; 0 .. 2^64-1); ``*_minmax`` refuse a value outside [min, max] and keep the
  old one.
- ``proc_dostring()``: the bytes up to the first newline or NUL, at most
  ``maxlen - 1`` of them.
- ``proc_do_large_bitmap()`` (a port list): newlines skipped, then ``a`` or ``a-b``
  items separated by commas, each number by proc_get_long() with its own trailers
  (``-``, ``,``, newline after ``a``; ``,``, newline after ``b``) and no space skipped
  (``80, 90`` is refused); a number past the bitmap, a sign or ``a > b`` is EINVAL;
  the write replaces the whole list; /proc/sys prints it back as sorted runs.
"""

import functools
import re

# lib/ctype.c: _S for 9..13, 32 and 160.
_KERNEL_SPACE = frozenset(b"\t\n\v\f\r \xa0")
# kernel/sysctl.c: proc_wspace_sep[] = { ' ', '\t', '\n' }.
_SEPARATORS = frozenset(b" \t\n")
# kernel/sysctl.c: #define TMPBUFLEN 22; proc_get_long() copies TMPBUFLEN - 1 bytes.
_TMPBUF = 21
_HEX = frozenset(b"0123456789abcdefABCDEF")
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_UINT_MAX = 2**32 - 1
_ULONG_MAX = 2**64 - 1
_LONG_MAX = 2**63 - 1

INT = "proc_dointvec"
INT_MINMAX = "proc_dointvec_minmax"
UINT = "proc_douintvec"
UINT_MINMAX = "proc_douintvec_minmax"
U8_MINMAX = "proc_dou8vec_minmax"
ULONG_MINMAX = "proc_doulongvec_minmax"
STRING = "proc_dostring"
BITMAP = "proc_do_large_bitmap"
INTEGER_HANDLERS = (INT, INT_MINMAX, UINT, UINT_MINMAX, U8_MINMAX, ULONG_MINMAX)


def _row(pattern, handler, source, **extra):
    return (pattern, {"handler": handler, "source": source, **extra})


# The keys k8snode requires (tables.py, every profile and extra) or reads (ports.py,
# netfilter.py), and the ones the differential tests write, as /proc/sys globs. The
# same handler in Linux 6.1 and 6.12 unless a row says otherwise. ``count``: elements
# of the vector; ``clamp``: br_netfilter's any-non-zero-is-1; ``whole``: the handler
# parses into a copy and stores nothing unless every element is accepted;
# ``port_range``: ipv4_local_port_range()'s own checks; ``default``: the value the
# kernel starts with (what a partial vector write keeps).
KERNEL_HANDLERS = (
    _row(
        "net/ipv4/ip_forward", INT, "net/ipv4/devinet.c: ctl_forward_entry -> devinet_sysctl_forward -> proc_dointvec"
    ),
    _row(
        "net/ipv4/conf/*/forwarding",
        INT,
        "net/ipv4/devinet.c: DEVINET_SYSCTL_COMPLEX_ENTRY(FORWARDING) -> devinet_sysctl_forward -> proc_dointvec",
    ),
    _row("net/ipv6/conf/*/forwarding", INT, "net/ipv6/addrconf.c: addrconf_sysctl_forward -> proc_dointvec"),
    _row(
        "net/ipv4/conf/*/rp_filter",
        INT,
        "net/ipv4/devinet.c: DEVINET_SYSCTL_RW_ENTRY(RP_FILTER) -> devinet_conf_proc -> proc_dointvec",
    ),
    _row(
        "net/bridge/bridge-nf-call-*",
        INT,
        "net/bridge/br_netfilter_hooks.c: brnf_sysctl_call_tables -> "
        "proc_dointvec, then any non-zero value is stored as 1",
        clamp=True,
    ),
    _row(
        "net/core/somaxconn",
        INT_MINMAX,
        "net/core/sysctl_net_core.c: somaxconn -> proc_dointvec_minmax, extra1 SYSCTL_ZERO",
        min=0,
    ),
    _row(
        "net/ipv4/tcp_syncookies",
        U8_MINMAX,
        "net/ipv4/sysctl_net_ipv4.c: tcp_syncookies (u8, Linux >= 5.13) -> "
        "proc_dou8vec_minmax, no extra1/extra2: 0 .. 255",
    ),
    _row(
        "net/ipv4/ip_local_port_range",
        INT_MINMAX,
        "net/ipv4/sysctl_net_ipv4.c: ipv4_local_port_range -> "
        "proc_dointvec_minmax on a copy of 2 ints (ip_local_port_range_min 1, _max 65535), then refused when "
        "high < low or low < ip_unprivileged_port_start (1024 unless set)",
        count=2,
        min=1,
        max=65535,
        whole=True,
        port_range=True,
        default="32768 60999",
    ),
    _row(
        "net/ipv4/ip_local_reserved_ports",
        BITMAP,
        "net/ipv4/sysctl_net_ipv4.c: ip_local_reserved_ports -> proc_do_large_bitmap, maxlen 65536 bits",
        bits=65536,
    ),
    _row(
        "net/netfilter/nf_conntrack_max",
        INT_MINMAX,
        "net/netfilter/nf_conntrack_standalone.c: "
        "NF_SYSCTL_CT_MAX -> proc_dointvec_minmax, SYSCTL_ZERO .. SYSCTL_INT_MAX",
        min=0,
    ),
    _row(
        "net/ipv4/tcp_congestion_control",
        STRING,
        "net/ipv4/sysctl_net_ipv4.c: proc_tcp_congestion_control -> "
        "proc_dostring (TCP_CA_NAME_MAX 16), then tcp_set_default_congestion_control(): ENOENT unless the name "
        "is a registered congestion control (one a module would register on load is not modelled)",
        maxlen=16,
        choices_key="net/ipv4/tcp_available_congestion_control",
    ),
    _row(
        "vm/overcommit_memory",
        INT_MINMAX,
        "mm/util.c: overcommit_policy_handler -> proc_dointvec_minmax on a copy, SYSCTL_ZERO .. SYSCTL_TWO",
        min=0,
        max=2,
        whole=True,
    ),
    _row(
        "vm/panic_on_oom",
        INT_MINMAX,
        "kernel/sysctl.c (6.1), mm/oom_kill.c (6.12): panic_on_oom -> proc_dointvec_minmax, SYSCTL_ZERO .. SYSCTL_TWO",
        min=0,
        max=2,
    ),
    _row(
        "vm/max_map_count",
        INT_MINMAX,
        "kernel/sysctl.c (6.1), mm/mmap.c (6.12): max_map_count -> proc_dointvec_minmax, extra1 SYSCTL_ZERO",
        min=0,
    ),
    _row(
        "vm/swappiness",
        INT_MINMAX,
        "kernel/sysctl.c (6.1), mm/vmscan.c (6.12): swappiness -> "
        "proc_dointvec_minmax, SYSCTL_ZERO .. SYSCTL_TWO_HUNDRED",
        min=0,
        max=200,
    ),
    _row("kernel/panic", INT, "kernel/sysctl.c (6.1), kernel/panic.c (6.12): panic -> proc_dointvec"),
    _row("kernel/panic_on_oops", INT, "kernel/sysctl.c (6.1), kernel/panic.c (6.12): panic_on_oops -> proc_dointvec"),
    _row(
        "kernel/keys/{maxkeys,maxbytes,root_maxkeys,root_maxbytes}",
        INT_MINMAX,
        "security/keys/sysctl.c: key_sysctls -> proc_dointvec_minmax, SYSCTL_ONE .. SYSCTL_INT_MAX",
        min=1,
    ),
    _row(
        "fs/inotify/{max_user_instances,max_user_watches}",
        ULONG_MINMAX,
        "fs/notify/inotify/inotify_user.c: "
        "inotify_table (ucount_max is long since 5.14) -> proc_doulongvec_minmax, long_zero .. long_max",
        min=0,
        max=_LONG_MAX,
    ),
    _row("fs/aio-max-nr", ULONG_MINMAX, "fs/aio.c: aio_sysctls -> proc_doulongvec_minmax, no extra1/extra2"),
)

# What a key the table does not know is assumed to be, from its live value's form.
_INT_FORM = re.compile(r"-?\d+(?:\s+-?\d+)*")


@functools.lru_cache(maxsize=4096)
def _table_handler(path_key):
    from .sysctl_syntax import glob_matches

    return next((spec for pattern, spec in KERNEL_HANDLERS if glob_matches(pattern, path_key)), None)


def handler_for(path_key, live=None):
    """``(spec, assumption)``: the handler of ``path_key`` from :data:`KERNEL_HANDLERS`
    (assumption None), else one learnt from the live value: integers (one or a
    vector, as /proc/sys prints them) are assumed to parse as ``proc_dointvec`` (an
    integer above 2^31-1 as ``proc_doulongvec_minmax``), anything else as text; the
    assumption says so."""
    spec = _table_handler(path_key)
    if spec is not None:
        return spec, None
    fields = (live or "").split()
    if live is not None and _INT_FORM.fullmatch(" ".join(fields)):
        numbers = [int(field) for field in fields]
        if any(number > _INT_MAX for number in numbers):
            spec = {"handler": ULONG_MINMAX, "count": len(numbers)}
        else:
            spec = {"handler": INT, "count": len(numbers)}
        vector = f" vector of {len(numbers)}" if len(numbers) > 1 else ""
        why = (
            f"kernel parsing of {path_key} assumed from its live value {' '.join(fields)!r}: {spec['handler']}{vector}"
        )
        return {**spec, "source": why}, why
    shown = "no live value" if live is None else f"its live value {' '.join(fields)!r} is not a number"
    why = f"kernel parsing of {path_key} assumed to be text ({shown})"
    return {"handler": STRING, "source": why}, why


# ------------------------------------------------------------------ kernel/sysctl.c


def _skip_spaces(data, at):
    # proc_skip_spaces(): isspace() bytes, bounded by the buffer's size.
    while at < len(data) and data[at] in _KERNEL_SPACE:
        at += 1
    return at


def _get_long(data, at, trailers=_SEPARATORS):
    """proc_get_long() at ``data[at:]`` with ``perm_tr`` = ``trailers``:
    ``(magnitude, negative, next index)`` or ``(None, reason, at)``."""
    size = len(data) - at
    if size <= 0:
        return None, "no number", at
    tmp = data[at : at + _TMPBUF]
    p = 0
    negative = tmp[:1] == b"-" and size > 1
    p += negative
    if p >= len(tmp) or not 0x30 <= tmp[p] <= 0x39:
        shown = "the end" if p >= len(tmp) else repr(chr(tmp[p]))
        return None, f"{shown} where a digit must be", at
    # _parse_integer_fixup_radix(): base 16 only with a hex digit after 0x.
    if tmp[p : p + 1] == b"0" and tmp[p + 1 : p + 2] in (b"x", b"X") and tmp[p + 2 : p + 3] in _HEX_BYTES:
        base, p = 16, p + 2
    else:
        base = 8 if tmp[p : p + 1] == b"0" else 10
    digits = bytearray()
    while p < len(tmp) and _digit_value(tmp[p]) < base:
        digits.append(tmp[p])
        p += 1
    magnitude = int(digits.decode(), base)
    if magnitude > _ULONG_MAX:
        return None, "more than 64 bits", at
    if p == _TMPBUF:
        return None, "a number of 21 bytes or more", at
    if p < size and tmp[p] not in trailers:
        return None, f"{chr(tmp[p])!r} after the number", at
    return magnitude, negative, at + p


_HEX_BYTES = tuple(bytes([byte]) for byte in _HEX)


def _digit_value(byte):
    # _parse_integer_limit(): 0-9, then a-f / A-F as 10..15, anything else ends it.
    char = chr(byte).lower()
    if "0" <= char <= "9":
        return ord(char) - ord("0")
    if "a" <= char <= "f":
        return ord(char) - ord("a") + 10
    return 99


def _convert(spec, magnitude, negative):
    """The element's value, or ``(None, reason)``, by the handler's conv function."""
    handler = spec["handler"]
    if handler in (INT, INT_MINMAX):
        # do_proc_dointvec_conv()
        if magnitude > _INT_MAX + (1 if negative else 0):
            return None, "out of range for an int"
        value = -magnitude if negative else magnitude
    else:
        # do_proc_douintvec_w(), __do_proc_doulongvec_minmax(): "if (err || neg)".
        if negative:
            return None, "a sign where an unsigned number must be"
        value = magnitude
        if handler in (UINT, UINT_MINMAX, U8_MINMAX) and value > _UINT_MAX:
            return None, "out of range for an unsigned int"
    low = spec.get("min", 0 if handler == U8_MINMAX else None)
    high = spec.get("max", 255 if handler == U8_MINMAX else None)
    if handler not in (INT, UINT) and (low is not None and value < low or high is not None and value > high):
        return None, f"{value} outside {low if low is not None else '-inf'} .. {high if high is not None else 'inf'}"
    return value, None


def parse_integers(spec, data):
    """``(values, reason)``: the elements the kernel parsed from ``data`` (bytes) in
    order, and why it stopped with EINVAL (None when it accepted the write)."""
    count = spec.get("count", 1)
    if spec["handler"] in (UINT, UINT_MINMAX, U8_MINMAX):
        count = 1  # __do_proc_douintvec(): "Arrays are not supported".
    values, at = [], 0
    for _ in range(count):
        at = _skip_spaces(data, at)
        if at >= len(data):
            break
        magnitude, negative, at = _get_long(data, at)
        if magnitude is None:
            return values, negative
        value, reason = _convert(spec, magnitude, negative)
        if reason:
            return values, reason
        values.append(value)
    if not values:
        return values, "no number"
    return values, None


def _large_bitmap(data, bits):
    """proc_do_large_bitmap()'s write: ``(sorted runs, None)`` or ``(None, reason)``."""
    from .validate import port_runs

    at, ports = 0, set()
    while at < len(data) and data[at] == 0x0A:
        at += 1
    while at < len(data):
        first, negative, end = _get_long(data, at, b"-,\n")
        if first is None:
            return None, negative
        if negative or first >= bits:
            return None, f"{'-' if negative else ''}{first} is no bit of {bits}"
        trailer = data[end : end + 1]
        at, last = end + (end < len(data)), first
        if trailer == b"-":
            last, negative, end = _get_long(data, at, b",\n\0")
            if last is None:
                return None, negative
            if negative or last >= bits or first > last:
                return None, f"{first}-{'-' if negative else ''}{last} is no range of {bits} bits"
            at = end + (end < len(data))
        ports.update(range(first, last + 1))
        while at < len(data) and data[at] == 0x0A:
            at += 1
    return port_runs(ports), None


def store(spec, written, before=None, choices=None):
    """
    ``(stored, reason)``: what the key holds after a writer sends ``written`` plus a
    newline, as /proc/sys prints it (elements joined by one space), and why the
    kernel returned an error (None when it accepted). ``before``: the key's value
    before the write (for a vector written in part); ``choices``: the names a text
    key with ``choices_key`` accepts (None: not known, any name is assumed to be);
    stored None: unchanged.
    """
    data = (written + "\n").encode("utf-8", errors="replace")
    if spec["handler"] == STRING:
        # _proc_do_string(): up to the first NUL or newline, maxlen - 1 bytes.
        text = data.split(b"\n", 1)[0].split(b"\0", 1)[0]
        maxlen = spec.get("maxlen")
        if maxlen:
            text = text[: maxlen - 1]
        kept = text.decode("utf-8", errors="replace")
        # The name is the bytes kept: "bbr\v" is no congestion control (ENOENT).
        if choices is not None and spec.get("choices_key") and kept not in choices:
            return None, f"{kept!r} is not one of {' '.join(choices)}"
        # Shown as /proc/sys is read here (read_live): fields joined by one space.
        return " ".join(kept.split()), None
    if spec["handler"] == BITMAP:
        from .validate import port_runs_text

        runs, reason = _large_bitmap(data, spec["bits"])
        return (None, reason) if reason else (port_runs_text(runs), None)
    values, reason = parse_integers(spec, data)
    if reason and (spec.get("whole") or not values):
        return None, reason
    if spec.get("clamp"):
        values = [1 if value else 0 for value in values]
    old = (before or spec.get("default") or "").split()
    count = spec.get("count", 1)
    if len(values) < count and len(old) == count:
        values = values + [int(field) for field in old[len(values) :]]
    if spec.get("port_range") and len(values) == 2:
        # ipv4_local_port_range(): inet_init_net's ip_prot_sock is PROT_SOCK (1024).
        if values[1] < values[0]:
            return None, f"high port {values[1]} below low port {values[0]}"
        if values[0] < 1024:
            return None, f"low port {values[0]} below ip_unprivileged_port_start (1024)"
    stored = " ".join(str(value) for value in values)
    return stored, (f"{reason} (the first {len(values)} stored)" if reason else None)
