"""
The parsers, fuzzed with hypothesis. Each one reads files that users and
distros write by hand, so none may crash on any input, and on generated
well-formed input each must give what an independent model of the format
(sysctl.d(5), modules-load.d(5), proc(5), os-release(5), fstab(5)) says.
"""

import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _modules import k8snode as k8snode_api
from _modules.k8snode import host, kernel, swap, sysctl_boot

# database=None: nothing is written outside the test directories (no .hypothesis/ in the repo).
FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_FS = settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# No line separators other than \n and \r: str.splitlines also splits on
# \x0b, \x0c, \x1c-\x1e, \x85, \u2028; those get their own crash-only tests.
SAFE_CHARS = st.characters(
    blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85\r\n", max_codepoint=0x2FF
)
SPACES = st.sampled_from(["", " ", "  ", "\t", " \t "])
EOL = st.sampled_from(["\n", "\r\n"])
NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
SEGMENT = st.text(alphabet=NAME_CHARS, min_size=1, max_size=8)
NON_UTF8 = st.sampled_from([b"\xff", b"\xfe\xfe", b"\xc3(", b"\xe9", b"\x80abc"])


# ------------------------------------------------------------------ sysctl.d


# Few names, so that files often assign the same keys (duplicates, overrides).
FEW_SEGMENTS = st.sampled_from(["net", "ipv4", "ip_forward", "vm", "a1"])


@st.composite
def sysctl_keys(draw, allow_glob=False, segment=SEGMENT):
    """(text as written, /proc/sys path) for dotted or slashed keys."""
    segments = draw(st.lists(segment, min_size=2, max_size=4))
    if allow_glob and draw(st.booleans()):
        segments[draw(st.integers(0, len(segments) - 1))] = draw(st.sampled_from(["*", "e*", "eth?", "[ae]*"]))
    if draw(st.booleans()):
        # Slashed: dots inside a name are kept (eth0.1); the first separator must stay a slash.
        if len(segments) >= 3 and draw(st.booleans()):
            segments[-2] = segments[-2] + ".1"
        return "/".join(segments), "/".join(segments)
    return ".".join(segments), "/".join(segments)


@st.composite
def sysctl_values(draw):
    numbers = draw(st.lists(st.integers(-(2**31), 2**31), min_size=1, max_size=3))
    separators = [draw(st.sampled_from([" ", "\t", "  "])) for _ in numbers[1:]]
    text = str(numbers[0]) + "".join(sep + str(number) for sep, number in zip(separators, numbers[1:]))
    return text, " ".join(str(number) for number in numbers)


@st.composite
def sysctl_lines(draw, allow_glob=False, segment=SEGMENT):
    """(bytes of one line without EOL, expectation) where expectation is
    ("assign", path, value) / ("problem", reason) / None."""
    kinds = ["assign", "assign", "assign", "comment", "blank", "garbage", "empty_key", "bytes", "bytes_garbage"]
    kind = draw(st.sampled_from(kinds))
    if kind == "assign":
        written, path = draw(sysctl_keys(allow_glob=allow_glob, segment=segment))
        value_text, value = draw(sysctl_values())
        dash = draw(st.sampled_from(["", "-", "- "]))
        text = draw(SPACES) + dash + written + draw(SPACES) + "=" + draw(SPACES) + value_text + draw(SPACES)
        return text.encode(), ("assign", path, value)
    if kind == "comment":
        body = draw(st.text(SAFE_CHARS, max_size=30))
        return (draw(SPACES) + draw(st.sampled_from(["#", ";"])) + body).encode(), None
    if kind == "blank":
        return draw(SPACES).encode(), None
    if kind == "garbage":
        body = draw(st.text(SAFE_CHARS, min_size=1, max_size=30).filter(lambda t: "=" not in t))
        body = body.strip()
        if not body or body[0] in "#;-":
            # A line starting with '-' and no '=' is a "-key" line (systemd keeps globs off it).
            return b"", None
        return (draw(SPACES) + body).encode(), ("problem", "not an assignment")
    if kind == "empty_key":
        return (draw(SPACES) + draw(st.sampled_from(["", "-", "- "])) + "=" + draw(SPACES) + "1").encode(), (
            "problem",
            "empty key",
        )
    if kind == "bytes_garbage":
        return b"caf" + draw(NON_UTF8) + b" au lait", ("problem", "not an assignment")
    # A comment with bytes that are not UTF-8 (a latin-1 editor).
    return b"# r" + draw(NON_UTF8) + b"seau", None


@st.composite
def sysctl_files(draw, allow_glob=False, segment=SEGMENT):
    lines = draw(st.lists(sysctl_lines(allow_glob=allow_glob, segment=segment), max_size=12))
    eols = [draw(EOL) for _ in lines]
    final_eol = draw(st.booleans())
    data = b""
    for index, ((line, _), eol) in enumerate(zip(lines, eols)):
        last = index == len(lines) - 1
        data += line + (eol.encode() if (not last or final_eol) else b"")
    expectations = [(number, expectation) for number, (_, expectation) in enumerate(lines, start=1) if expectation]
    return data, expectations


@FUZZ
@given(st.text())
def test_parse_sysctl_conf_never_crashes(text):
    assignments, problems = sysctl_boot.parse_sysctl_conf(text)
    numbers = {number for number, *_ in assignments} | {number for number, _ in problems}
    assert len(numbers) == len(assignments) + len(problems), "a line is an assignment or a problem, not both"
    for number, key, value, ignore_failure in assignments:
        # systemd strips one '-' (ignore failure, or a "-key" line without value) and
        # only space, tab, CR and LF.
        assert key and key == key.strip(" \t\r\n")
        assert value is None or value == value.strip(" \t\r\n")
        assert isinstance(ignore_failure, bool)
        assert number >= 1


@FUZZ
@given(sysctl_files(allow_glob=True))
def test_parse_sysctl_conf_matches_the_format(file):
    data, expectations = file
    text = data.decode("utf-8", "replace")
    assignments, problems = sysctl_boot.parse_sysctl_conf(text)
    expected_assignments = [(n, e[1], e[2]) for n, e in expectations if e[0] == "assign"]
    # Values keep inner whitespace as written (the kernel parses them); compare fields.
    got = [(number, sysctl_boot.sysctl_path(key), " ".join(value.split())) for number, key, value, _ in assignments]
    assert got == expected_assignments
    assert problems == [(n, e[1]) for n, e in expectations if e[0] == "problem"]


def test_parse_sysctl_conf_dash_and_odd_separators():
    # systemd's read_line() ends lines at \n, \r and NUL only: a form feed is part of the value.
    text = "-net.ipv4.ip_forward = 1\x0cnet.core.somaxconn = 4096\r\n;x\nkey with space = 2\rlast=3\0x"
    assignments, problems = sysctl_boot.parse_sysctl_conf(text)
    assert [(key, value, ignore) for _, key, value, ignore in assignments] == [
        ("net.ipv4.ip_forward", "1\x0cnet.core.somaxconn = 4096", True),
        ("key with space", "2", False),
        ("last", "3", False),
    ]
    assert problems == [(5, "not an assignment")]


# ------------------------------------------ effective_boot_sysctls, model

DIRS = ("etc/sysctl.d", "run/sysctl.d", "usr/local/lib/sysctl.d", "usr/lib/sysctl.d", "lib/sysctl.d")
FILE_NAMES = ("10-a.conf", "50-default.conf", "99-k8snode.conf", "99-sysctl.conf", "zz.conf", "README", "x.conf.bak")


@st.composite
def sysctl_trees(draw):
    entries = draw(
        st.lists(
            st.tuples(
                st.sampled_from(range(len(DIRS))),
                st.sampled_from(FILE_NAMES),
                # None: a /dev/null mask
                st.one_of(sysctl_files(allow_glob=True, segment=FEW_SEGMENTS), st.just(None)),
            ),
            max_size=8,
            unique_by=lambda entry: (entry[0], entry[1]),
        )
    )
    return entries


def model_boot(entries):
    """sysctl.d(5) by the book: first directory wins a name, /dev/null masks, sort by name,
    last wins, except that systemd keeps a repeated same value at its first line and place."""
    chosen = {}
    for dir_index in range(len(DIRS)):
        for entry_dir, name, content in entries:
            if entry_dir == dir_index and name.endswith(".conf") and name not in chosen:
                chosen[name] = (DIRS[dir_index], content)
    options, problems, files = {}, [], []
    for name in sorted(chosen):
        directory, content = chosen[name]
        if content is None:
            continue
        shown = f"/{directory}/{name}"
        files.append(shown)
        for number, expectation in content[1]:
            if expectation[0] == "problem":
                problems.append(f"{shown}:{number}: {expectation[1]}")
                continue
            key, value = expectation[1], expectation[2]
            if key not in options or options[key][0] != value:
                options.pop(key, None)
                options[key] = (value, shown, number)
    is_glob = set("*?[").intersection  # systemd's string_is_glob()
    values = {key: found for key, found in options.items() if not is_glob(key)}
    globs = [(key, *found) for key, found in options.items() if is_glob(key)]
    return files, values, globs, problems


@FUZZ_FS
@given(sysctl_trees())
def test_effective_boot_sysctls_follows_systemd(pure_base, entries):
    root = tempfile.mkdtemp(dir=pure_base)
    # A systemd host: procps' rules are tests/unit/test_sysctl_procps.py's. Debian 11's
    # split-usr systemd 247, which reads /lib/sysctl.d too (sysctl_systemd).
    os.makedirs(os.path.join(root, "run/systemd/system"))
    os.makedirs(os.path.join(root, "usr/lib/systemd"))
    with open(os.path.join(root, "usr/lib/systemd/libsystemd-shared-247.so"), "wb") as handle:
        handle.write(b"\x7fELF")
    for dir_index, name, content in entries:
        directory = os.path.join(root, DIRS[dir_index])
        os.makedirs(directory, exist_ok=True)
        if content is None:
            os.symlink("/dev/null", os.path.join(directory, name))
        else:
            with open(os.path.join(directory, name), "wb") as handle:
                handle.write(content[0])
    boot = k8snode_api.effective_boot_sysctls(root=root, reads_etc_sysctl_conf=False)
    files, values, globs, problems = model_boot(entries)
    assert boot["files"] == files
    assert {key: (v["value"], v["file"], v["line"]) for key, v in boot["values"].items()} == values
    assert [(g["pattern"], " ".join(g["value"].split()), g["file"], g["line"]) for g in boot["globs"]] == globs
    assert boot["problems"] == problems


@FUZZ_FS
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=4), st.booleans())
def test_effective_boot_sysctls_never_crashes_on_bytes(pure_base, blobs, reads_conf):
    root = tempfile.mkdtemp(dir=pure_base)
    os.makedirs(os.path.join(root, "etc/sysctl.d"))
    for index, blob in enumerate(blobs):
        with open(os.path.join(root, f"etc/sysctl.d/{index}-x.conf"), "wb") as handle:
            handle.write(blob)
    with open(os.path.join(root, "etc/sysctl.conf"), "wb") as handle:
        handle.write(blobs[0])
    boot = k8snode_api.effective_boot_sysctls(root=root, reads_etc_sysctl_conf=reads_conf)
    assert len(boot["files"]) == len(blobs) + (1 if reads_conf else 0)
    for entry in boot["values"].values():
        assert entry["file"] in boot["files"]
    for problem in boot["problems"]:
        assert problem.split(":", 1)[0] in boot["files"]


# ---------------------------------------------------------------- modules

MODULE_NAME = st.text(alphabet=NAME_CHARS + "-", min_size=1, max_size=20).filter(lambda n: n[0] != "-")


@FUZZ
@given(st.lists(MODULE_NAME, max_size=15), st.text())
def test_parse_proc_modules(names, junk):
    text = "".join(f"{name} {16384 + i} {i % 3} - Live 0xffffffffc0{i:06x}\n" for i, name in enumerate(names))
    assert kernel.parse_proc_modules(text) == {name.replace("-", "_") for name in names}
    assert isinstance(kernel.parse_proc_modules(junk), set)


@FUZZ
@given(
    st.lists(
        st.tuples(MODULE_NAME, st.sampled_from([".ko", ".ko.xz", ".ko.zst", ".ko.gz", ".txt", ""]), st.booleans()),
        max_size=15,
    ),
    st.text(),
)
def test_parse_module_list(entries, junk):
    lines = []
    for name, suffix, with_deps in entries:
        path = f"kernel/net/{name}{suffix}"
        lines.append(path + (": kernel/net/bridge/bridge.ko kernel/net/llc/stp.ko" if with_deps else ""))
    expected = {name.replace("-", "_") for name, suffix, _ in entries if suffix.startswith(".ko")}
    assert kernel.parse_module_list("\n".join(lines)) == expected
    assert isinstance(kernel.parse_module_list(junk), set)


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("name"), MODULE_NAME, st.sampled_from(["", " debug=1", "\tfoo=bar baz"])),
            st.tuples(st.just("comment"), st.sampled_from(["#", ";", "  #"]), st.text(SAFE_CHARS, max_size=20)),
            st.tuples(st.just("blank"), SPACES, st.just("")),
        ),
        max_size=15,
    ),
    EOL,
    st.text(),
)
def test_parse_modules_load(entries, eol, junk):
    text = eol.join(first + second if kind != "name" else "  " + first + second for kind, first, second in entries)
    expected = [first.replace("-", "_") for kind, first, _ in entries if kind == "name"]
    assert kernel.parse_modules_load(text) == expected
    for name in kernel.parse_modules_load(junk):
        assert name and not name[0].isspace()


@FUZZ
@given(
    st.dictionaries(
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=20),
        st.one_of(
            st.sampled_from(["y", "m", "n"]),
            st.integers(0, 2**20).map(str),
            st.text(alphabet=NAME_CHARS + " -/.", max_size=20).map(lambda s: f'"{s}"'),
        ),
        max_size=20,
    ),
    st.text(),
)
def test_parse_kernel_config(options, junk):
    text = "#\n# Automatically generated file; DO NOT EDIT.\n#\n"
    for option, value in options.items():
        text += f"# CONFIG_{option} is not set\n" if value == "n" else f"CONFIG_{option}={value}\n"
    expected = {option: value.strip('"') for option, value in options.items() if value != "n"}
    assert kernel.parse_kernel_config(text) == expected
    assert isinstance(kernel.parse_kernel_config(junk), dict)


@FUZZ
@given(
    st.dictionaries(
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=15),
        st.text(alphabet=NAME_CHARS + " .()/-", max_size=30),
        max_size=10,
    ),
    st.lists(st.sampled_from(['"', "'", ""]), min_size=10, max_size=10),
    st.text(),
)
def test_parse_os_release(fields, quotes, junk):
    lines = ["# os-release(5)"]
    for (key, value), quote in zip(fields.items(), quotes):
        if not quote and (value != value.strip() or not value or " " in value):
            quote = '"'
        lines.append(f"{key}={quote}{value}{quote}")
    assert host.parse_os_release("\n".join(lines) + "\n") == fields
    assert isinstance(host.parse_os_release(junk), dict)


# ------------------------------------------------------------------- fstab

FSTAB_FIELD = st.text(alphabet=NAME_CHARS + "/=-.,", min_size=1, max_size=20).filter(lambda t: not t.startswith("#"))


@st.composite
def fstab_texts(draw):
    """(text, devices of active swap entries)."""
    lines, devices = [], []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["mount", "swap", "swap", "commented_swap", "comment", "blank"]))
        lead = draw(st.sampled_from(["", "  ", "\t"]))
        sep = draw(st.sampled_from([" ", "\t", "   "]))
        device = draw(FSTAB_FIELD)
        if kind in ("mount", "swap", "commented_swap"):
            fstype = "swap" if kind != "mount" else draw(st.sampled_from(["ext4", "xfs", "tmpfs", "swapfs"]))
            mountpoint = "none" if fstype == "swap" else "/" + draw(SEGMENT)
            options = draw(st.sampled_from(["defaults", "sw", "sw,pri=5", "discard"]))
            line = sep.join([device, mountpoint, fstype, options, "0", "0"])
            if kind == "commented_swap":
                line = "#" + line
            elif kind == "swap":
                devices.append(device)
            lines.append(lead + line)
        elif kind == "comment":
            lines.append(lead + "# " + draw(st.text(SAFE_CHARS, max_size=30)))
        else:
            lines.append(lead)
    eol = draw(EOL)
    return eol.join(lines) + (eol if draw(st.booleans()) else ""), devices


@FUZZ
@given(fstab_texts())
def test_fstab_swap_lines(fstab):
    text, devices = fstab
    indexes, found = swap.fstab_swap_lines(text)
    assert found == devices
    lines = text.splitlines()
    assert [lines[index].split()[0] for index in indexes] == devices


@FUZZ
@given(st.text())
def test_fstab_swap_lines_never_crash(text):
    indexes, devices = swap.fstab_swap_lines(text)
    assert len(indexes) == len(devices)


NOTHING_BUT_SWAP = {
    "modules": {"overlay": False, "br_netfilter": False, "nf_conntrack": False},
    "sysctls": {
        "net.ipv4.ip_forward": False,
        "net.bridge.bridge-nf-call-iptables": False,
        "net.bridge.bridge-nf-call-ip6tables": False,
    },
}


@FUZZ_FS
@given(fstab_texts())
def test_swap_off_then_revert_restores_fstab_exactly(pure_base, fstab):
    text, devices = fstab
    root = tempfile.mkdtemp(dir=pure_base)
    os.makedirs(os.path.join(root, "etc"))
    path = os.path.join(root, "etc/fstab")
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)

    assert [entry.split(": ", 1)[1] for entry in k8snode_api.swap_status(root=root)["at_boot"]] == sorted(set(devices))
    ret = k8snode_api._prepare(root=root, pillar=NOTHING_BUT_SWAP)
    assert ret["result"] is True, ret["comment"]
    assert k8snode_api.swap_status(root=root)["at_boot"] == []
    assert ("file:/etc/fstab" in ret["changes"]) is bool(devices)
    if devices:
        with open(path + ".k8snode.bak", encoding="utf-8", newline="") as handle:
            assert handle.read() == text

    k8snode_api._revert(root=root, pillar=NOTHING_BUT_SWAP)
    with open(path, encoding="utf-8", newline="") as handle:
        assert handle.read() == text
