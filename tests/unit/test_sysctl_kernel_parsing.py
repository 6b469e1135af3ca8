"""
What the kernel stores for a value written to /proc/sys, one named case per class of
issue 21, for each handler family. The expected values are worked out from the
kernel source (Linux 6.1 and 6.12, kernel/sysctl.c and the file of each key), not
from _modules/k8snode/sysctl_kernel.py's table; the comment on each case names the
function that decides it. systemd-sysctl and procps write the value plus "\\n".
"""

import pytest

from _modules.k8snode import sysctl_kernel, sysctl_systemd
from _modules.k8snode.sysctl_kernel import INT, UINT, handler_for, store

# kernel/sysctl.c: proc_get_long() and __do_proc_dointvec() refuse these with EINVAL
# whatever the integer handler: "+" and '"' are not digits (isdigit(*p)); an empty
# value leaves no number after proc_skip_spaces() ("if (write && first) return
# -EINVAL"); a byte after the number that is not ' ', '\t' or '\n'
# (proc_wspace_sep) is refused: U+00A0 is written as 0xC2 0xA0, \v and \f are
# isspace() but not separators.
REFUSED_EVERYWHERE = {
    "quoted": '"2"',
    "plus_sign": "+1",
    "empty": "",
    "nbsp_after": "1024\xa0",
    "vertical_tab_inside": "10\x0b24",
    "form_feed_after": "1024\x0c",
    "hash_glued": "1024#",
}


def spec_of(key):
    spec, assumed = handler_for(key)
    assert assumed is None, f"{key} must be in the table of handlers"
    return spec


# (key, handler the kernel source names for it in 6.1 and 6.12)
TABLE_HANDLERS = [
    ("kernel/panic", "proc_dointvec"),  # kernel/sysctl.c (6.1) / kernel/panic.c (6.12)
    ("vm/overcommit_memory", "proc_dointvec_minmax"),  # mm/util.c overcommit_policy_handler
    ("vm/max_map_count", "proc_dointvec_minmax"),
    ("kernel/keys/root_maxkeys", "proc_dointvec_minmax"),  # security/keys/sysctl.c
    ("net/core/somaxconn", "proc_dointvec_minmax"),  # net/core/sysctl_net_core.c
    ("net/ipv4/tcp_syncookies", "proc_dou8vec_minmax"),  # net/ipv4/sysctl_net_ipv4.c, u8 since 5.13
    ("fs/aio-max-nr", "proc_doulongvec_minmax"),  # fs/aio.c
    ("fs/inotify/max_user_watches", "proc_doulongvec_minmax"),  # inotify_user.c, long ucounts
    ("net/ipv4/ip_local_port_range", "proc_dointvec_minmax"),  # ipv4_local_port_range
    ("net/ipv4/tcp_congestion_control", "proc_dostring"),  # proc_tcp_congestion_control
    ("net/ipv4/ip_local_reserved_ports", "proc_do_large_bitmap"),  # net/ipv4/sysctl_net_ipv4.c
]


@pytest.mark.parametrize(("key", "handler"), TABLE_HANDLERS)
def test_every_key_k8snode_requires_has_its_handler(key, handler):
    assert spec_of(key)["handler"] == handler


def test_every_required_key_outside_net_is_in_the_table():
    from _modules.k8snode.sysctl_syntax import sysctl_path
    from _modules.k8snode.tables import DISTRIBUTIONS, EXTRAS

    keys = {key for table in [*DISTRIBUTIONS.values(), *EXTRAS.values()] for key in table.get("sysctls", {})}
    unknown = [key for key in sorted(keys) if handler_for(sysctl_path(key))[1] is not None]
    assert not unknown


# ------------------------------------------------------------------ proc_dointvec (kernel.panic)


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        # _parse_integer_fixup_radix(): "0x" and a hex digit is base 16.
        ("0x400", "1024"),
        # __do_proc_dointvec(): one element (maxlen = sizeof(int)); what follows the
        # separator after it is never read. systemd keeps "# why" in the value.
        ("1024 # why", "1024"),
        # proc_skip_spaces() skips isspace(): \v before the number is skipped.
        ("\x0b1024", "1024"),
        # proc_get_long(): "-" with bytes after it; do_proc_dointvec_conv() negates.
        ("-5", "-5"),
        ("-2147483648", "-2147483648"),
        # A leading 0 is octal.
        ("010", "8"),
        # 20 bytes fit in TMPBUFLEN - 1 = 21.
        ("00000000000000000001", "1"),
    ],
)
def test_proc_dointvec_stores(written, stored):
    assert store(spec_of("kernel/panic"), written) == (stored, None)


@pytest.mark.parametrize(
    "written",
    [
        *REFUSED_EVERYWHERE.values(),
        # do_proc_dointvec_conv(): above INT_MAX.
        "2147483648",
        # strtoul_lenient(): 64-bit overflow (20 bytes, under the 21-byte limit).
        "99999999999999999999",
        # proc_get_long(): a number that fills the 21 copied bytes.
        "000000000000000000001",
        # "08": base 8 stops at '8', which is not a separator; "0x" with no hex digit.
        "08",
        "0xg",
    ],
)
def test_proc_dointvec_refuses(written):
    stored, reason = store(spec_of("kernel/panic"), written)
    assert stored is None and reason


# ------------------------------------------------------------------ proc_dointvec_minmax


def test_minmax_refuses_out_of_range_and_keeps_the_old_value():
    # overcommit_policy_handler(): SYSCTL_ZERO .. SYSCTL_TWO on a copy; 3 is EINVAL.
    assert store(spec_of("vm/overcommit_memory"), "3", before="1")[0] is None
    assert store(spec_of("vm/overcommit_memory"), "-1")[0] is None
    assert store(spec_of("vm/overcommit_memory"), "0x2") == ("2", None)
    # security/keys/sysctl.c: SYSCTL_ONE .. SYSCTL_INT_MAX.
    assert store(spec_of("kernel/keys/root_maxkeys"), "0")[0] is None
    assert store(spec_of("kernel/keys/root_maxkeys"), "1000000 # kubelet") == ("1000000", None)
    # net/core/sysctl_net_core.c: extra1 SYSCTL_ZERO, no maximum.
    assert store(spec_of("net/core/somaxconn"), "-1")[0] is None
    assert store(spec_of("net/core/somaxconn"), "0x400") == ("1024", None)


@pytest.mark.parametrize("name", sorted(REFUSED_EVERYWHERE))
def test_minmax_refuses_every_class(name):
    assert store(spec_of("vm/max_map_count"), REFUSED_EVERYWHERE[name])[0] is None


# ------------------------------------------------------------------ proc_douintvec, u8


def test_proc_douintvec_refuses_a_sign():
    spec = {"handler": UINT}
    # do_proc_douintvec_w(): "if (err || neg)" -- even "-0".
    assert store(spec, "-0")[0] is None
    assert store(spec, "4294967295") == ("4294967295", None)
    # do_proc_douintvec_conv(): above UINT_MAX.
    assert store(spec, "4294967296")[0] is None
    # One element: the rest after the separator is not read.
    assert store(spec, "7 # why") == ("7", None)


@pytest.mark.parametrize(
    ("written", "stored"),
    [("2", "2"), ("0x2", "2"), ("1 # why", "1"), ("255", "255"), ("256", None), ("-1", None),
     *((value, None) for value in REFUSED_EVERYWHERE.values())],
)  # fmt: skip
def test_proc_dou8vec_minmax(written, stored):
    # proc_dou8vec_minmax(): do_proc_douintvec() with min 0, max 255 (no extra1/extra2).
    assert store(spec_of("net/ipv4/tcp_syncookies"), written)[0] == stored


# ------------------------------------------------------------------ proc_doulongvec_minmax


@pytest.mark.parametrize(
    ("key", "written", "stored"),
    [
        ("fs/aio-max-nr", "1048576 # microk8s", "1048576"),
        ("fs/aio-max-nr", "0x100000", "1048576"),
        # __do_proc_doulongvec_minmax(): "if (err || neg)".
        ("fs/aio-max-nr", "-1", None),
        # No extra2 for aio-max-nr: up to ULONG_MAX (20 bytes), one more overflows.
        ("fs/aio-max-nr", "18446744073709551615", "18446744073709551615"),
        ("fs/aio-max-nr", "18446744073709551616", None),
        # inotify: extra2 long_max.
        ("fs/inotify/max_user_watches", "9223372036854775808", None),
        ("fs/inotify/max_user_watches", "524288", "524288"),
        *(("fs/inotify/max_user_watches", value, None) for value in REFUSED_EVERYWHERE.values()),
    ],
)
def test_proc_doulongvec_minmax(key, written, stored):
    assert store(spec_of(key), written)[0] == stored


# ------------------------------------------------------------------ vectors


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("1024 65000", "1024 65000"),
        ("1024\t65000", "1024 65000"),
        ("0x400 0xFDE8", "1024 65000"),
        # Two elements read; the rest is not.
        ("1024 65000 # why", "1024 65000"),
        # One element: range[1] keeps the value before (inet_get_local_port_range()).
        ("40000", "40000 60999"),
        # The second element is '#': EINVAL, and the handler stores nothing (a copy).
        ("1024 # why", None),
        # ipv4_local_port_range(): low below ip_prot_sock (1024), high below low.
        ("1000 2000", None),
        ("60000 50000", None),
        # proc_dointvec_minmax on the copy: 1 .. 65535 for each element.
        ("1024 65536", None),
        ("1024\x0b65000", None),
    ],
)
def test_port_range_vector(written, stored):
    assert store(spec_of("net/ipv4/ip_local_port_range"), written, before="32768 60999")[0] == stored


def test_a_plain_vector_keeps_the_elements_parsed_before_an_error():
    # __do_proc_dointvec() writes each element as it converts it; EINVAL on the
    # second leaves the first written and the third as it was.
    assert store({"handler": INT, "count": 3}, "4096 x", before="1 2 3") == (
        "4096 2 3",
        "'x' where a digit must be (the first 3 stored)",
    )


# ------------------------------------------------------------------ proc_do_large_bitmap


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("30000-32767", "30000-32767"),
        # Printed back as sorted runs; proc_get_long() takes base 16 here too.
        ("22,21,0x7530-0x7FFF", "21-22,30000-32767"),
        # A trailing comma: the item is skipped past it, then proc_skip_char('\n').
        ("1,", "1"),
        # An empty value clears the list (bitmap_copy of an empty bitmap).
        ("", ""),
        # No proc_skip_spaces() in proc_do_large_bitmap(): a space is not a digit, nor a trailer.
        ("80, 90", None),
        ("30000-32767 # why", None),
        # "-" then the newline: no digit for the range's end; a > b; past the 65536 bits; a sign.
        ("1-", None),
        ("32767-30000", None),
        ("65536", None),
        ("-5", None),
    ],
)
def test_port_list_is_proc_do_large_bitmap(written, stored):
    assert store(spec_of("net/ipv4/ip_local_reserved_ports"), written)[0] == stored


# ------------------------------------------------------------------ text, and keys not in the table


def test_text_keys_keep_the_text_and_congestion_control_wants_a_known_name():
    spec = spec_of("net/ipv4/tcp_congestion_control")
    assert store(spec, "reno", choices=["reno", "cubic"]) == ("reno", None)
    # The name is "reno # why": tcp_set_default_congestion_control() finds no such one.
    assert store(spec, "reno # why", choices=["reno", "cubic"])[0] is None
    assert store(spec, "", choices=["reno", "cubic"])[0] is None
    # _proc_do_string() keeps every byte up to the newline: "bbr\v" is no name (ENOENT),
    # though /proc/sys would show it as "bbr" (found by the differential test).
    assert store(spec, "bbr\x0b", choices=["reno", "bbr"])[0] is None
    # proc_dostring: up to the first newline or NUL.
    assert store({"handler": sysctl_kernel.STRING}, "|/usr/lib/core %p\0junk") == ("|/usr/lib/core %p", None)


@pytest.mark.parametrize(
    ("live", "handler", "count"),
    [("4096", "proc_dointvec", 1), ("4096 131072 6291456", "proc_dointvec", 3),
     ("9223372036854775807", "proc_doulongvec_minmax", 1), ("cubic", "proc_dostring", None),
     (None, "proc_dostring", None)],
)  # fmt: skip
def test_a_key_not_in_the_table_is_learnt_from_its_live_value(live, handler, count):
    spec, assumed = handler_for("net/ipv4/tcp_rmem_like", live)
    assert (spec["handler"], spec.get("count")) == (handler, count)
    assert assumed.startswith("kernel parsing of net/ipv4/tcp_rmem_like assumed")


def test_the_audit_says_when_the_parsing_is_assumed(k8snode, tree):
    tree.debian(12).kernel_defaults({"net.ipv4.tcp_fin_timeout": 60})
    tree.sysctl_d("99-k8s.conf", "net.ipv4.tcp_fin_timeout = 0x1e # why\n")
    status = k8snode.sysctl_status("net.ipv4.tcp_fin_timeout", root=tree.path)
    assert status["boot"] == "30"
    check = k8snode.audit(root=tree.path, pillar={"sysctls": {"net.ipv4.tcp_fin_timeout": 30}})["checks"][
        "sysctl:net.ipv4.tcp_fin_timeout"
    ]
    assert "kernel parsing of net/ipv4/tcp_fin_timeout assumed from its live value '60'" in check["detail"]
    assert check["boot_kernel_handler"] == "proc_dointvec (assumed)"


def test_systemd_keeps_an_inline_comment_the_kernel_stops_at_the_space(k8snode, tree):
    # systemd's parse_file() strips only the ends (strstrip): the value is "1024 # why".
    tree.debian(12)
    tree.sysctl_d("99-k8s.conf", "net.core.somaxconn = 1024 # why\nnet.ipv4.tcp_syncookies = +1\n")
    status = k8snode.sysctl_status("net.core.somaxconn", root=tree.path)
    assert (status["boot"], status["boot_written"]) == ("1024", "1024 # why")
    refused = k8snode.sysctl_status("net.ipv4.tcp_syncookies", root=tree.path)
    assert (refused["boot"], [w["line"] for w in refused["boot_refused"]]) == (None, [2])


# ------------------------------------------------------------------ systemd by version


@pytest.mark.parametrize(("version", "read"), [(247, True), (252, True), (255, False), (257, False)])
def test_lib_sysctl_d_is_read_by_split_usr_builds_until_255(k8snode, tree, version, read):
    # NEWS, "CHANGES WITH 255": split-usr support removed; Debian's 247 and 252 are
    # split-usr builds (rootprefix=/: dpkg lists /lib/systemd/systemd-sysctl).
    tree.debian(12)
    tree.remove("usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so")
    tree.systemd(version)
    tree.write("var/lib/dpkg/info/systemd.list", "/.\n/lib/systemd/systemd-sysctl\n")
    tree.sysctl_d("60-x.conf", "net.ipv4.ip_forward = 1\n", directory="lib/sysctl.d")
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert boot["systemd"]["version"] == version
    assert ("/lib/sysctl.d/60-x.conf" in boot["files"]) is read
    assert "not the running host" in boot["ambiguous"] and "split-usr build" not in boot["ambiguous"]


def test_an_unknown_version_is_said_and_the_newest_rules_apply(k8snode, tree):
    tree.debian(12)
    tree.remove("usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so")
    tree.sysctl_d("60-x.conf", "net.ipv4.ip_forward = 1\n", directory="lib/sysctl.d")
    boot = k8snode.effective_boot_sysctls(root=tree.path)
    assert boot["systemd"]["version"] is None
    assert f"systemd version unknown: assuming systemd {sysctl_systemd.ASSUMED_VERSION} rules" in boot["ambiguous"]
    assert "/lib/sysctl.d/60-x.conf" not in boot["files"]


def test_the_version_comes_from_dpkg_when_no_library_says_it(k8snode, tree):
    tree.debian(12)
    tree.remove("usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so")
    tree.write(
        "var/lib/dpkg/status",
        "Package: systemd\nStatus: install ok installed\nVersion: 247.3-7+deb11u5\n\n",
    )
    assert k8snode.effective_boot_sysctls(root=tree.path)["systemd"]["version"] == 247
