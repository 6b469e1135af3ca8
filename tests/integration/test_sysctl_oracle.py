"""
The sysctl.d model against the real systemd-sysctl (Debian 12, systemd 252).

Every tree is written twice: in the oracle container, where systemd-sysctl applies
it in a fresh network namespace (tests/support/sysctl_oracle.py), and in a
directory on the host, where the repository's ``effective_boot_sysctls`` /
``sysctl_status`` compute the boot values. Each compared key must agree: the
model's boot value (what the kernel stores), or, where the model says nothing
reaches the key or the kernel refuses every write, the value it had before.
"""

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import strategies as st

from _modules.k8snode import sysctl_boot
from tests.support import harness
from tests.support.sysctl_oracle import drawn, first_disagreement, running_oracle, shrink_against, write_tree

# The keys compared, with a sentinel written first in the fresh namespace: writes
# in this order give each key its own value (conf/all/forwarding sets default too).
SENTINELS = (
    ("net/ipv4/ip_forward", "7"),
    ("net/ipv4/conf/default/forwarding", "6"),
    ("net/ipv4/conf/all/rp_filter", "5"),
    ("net/ipv4/conf/default/rp_filter", "4"),
    ("net/ipv6/conf/all/forwarding", "7"),
    ("net/ipv6/conf/default/forwarding", "6"),
    ("net/bridge/bridge-nf-call-iptables", "0"),
    ("net/bridge/bridge-nf-call-ip6tables", "0"),
    ("net/bridge/bridge-nf-call-arptables", "0"),
)
COMPARED = [key for key, _ in SENTINELS] + ["net/ipv4/conf/all/forwarding"]


@pytest.fixture(scope="module")
def oracle(docker_client):
    with running_oracle(harness.owner_labels()) as driver:
        assert driver.lib == "/usr/lib", "the oracle image must be merged-/usr like Debian 12"
        yield driver


def model_values(api, files):
    with tempfile.TemporaryDirectory(prefix="k8snode-sysctl-model-") as tmp:
        root = Path(tmp)
        write_tree(root, files)
        boot = api.effective_boot_sysctls(root=str(root))
        assert boot["applier"] == sysctl_boot.SYSTEMD
        return {key: sysctl_boot.boot_assignment(key, boot) for key in COMPARED}


def disagreements(api, files, observed):
    assert "error" not in observed, observed
    for word in ("Operation not permitted", "Read-only file system"):
        assert word not in observed["log"], "the oracle could not write: " + observed["log"]
    found = []
    for key, winner in model_values(api, files).items():
        predicted = winner["value"] if winner and winner["value"] is not None else observed["before"][key]
        if predicted != observed["after"][key]:
            found.append(f"{key}: model {predicted!r} ({winner}), systemd-sysctl {observed['after'][key]!r}")
    return found


def show(files):
    return json.dumps(files, indent=1, ensure_ascii=True)


def check_trees(oracle, api, trees):
    observed = oracle.run([{"files": files, "keys": COMPARED, "sentinels": SENTINELS} for files in trees])
    for files, result in zip(trees, observed):
        found = disagreements(api, files, result)
        assert not found, "tree:\n" + show(files) + "\n" + "\n".join(found) + "\nlog:\n" + result["log"]


# ------------------------------------------------------------------ generated trees

DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
NAMES = ("10-a.conf", "50-default.conf", "60-x.conf", "99-k8snode.conf", "99-sysctl.conf", "zz.conf", ".hidden.conf")
KEYS = (
    "net.ipv4.ip_forward",
    "net/ipv4/ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.default.forwarding",
    "net.ipv4.conf.lo.forwarding",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.default.rp_filter",
    "net.ipv6.conf.all.forwarding",
    "net.ipv6.conf.default.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.bridge.bridge-nf-call-arptables",
    "net.ipv4..ip_forward",
    "net.ipv4.ip_forward.",
    "/net/ipv4/conf/all/forwarding",
    "net.ipv4.conf.{all,default}.rp_filter",
)
GLOBS = (
    "net.ipv4.conf.*.forwarding",
    "net.ipv4.conf.*.rp_filter",
    "net/ipv4/conf/[ad]*/rp_filter",
    "net.ipv4.conf.[!l]*.forwarding",
    "net.ipv4.conf.[^l]*.forwarding",
    "net.ipv4.conf.*{all,lo}*.forwarding",
    "net.ipv[46].conf.all.forwarding",
    "net.*.conf.all.forwarding",
    "net.*.ip_forward",
    "net.ipv4.ip_forwar?",
    "net.bridge.bridge-nf-call-*",
    "net.bridge.bridge-nf-call-ip[^6]tables",
    "net.*",
)
VALUES = ("1", "0", "01", "010", "0x1", "2", "-1", "1 # routing", "+1", '"1"', "", "1x", "08", "1\t2", "4294967297")
EOLS = ("\n", "\r\n", "\r", "\0")


@st.composite
def lines(draw):
    kind = draw(st.sampled_from(["assign", "assign", "assign", "negative", "comment", "junk", "blank"]))
    key = draw(st.sampled_from(KEYS + GLOBS))
    lead = draw(st.sampled_from(["", " ", "\t", "-", "- "]))
    if kind == "assign":
        spaces = draw(st.sampled_from(["=", " = ", "\t=\t", "= "]))
        text = lead + key + spaces + draw(st.sampled_from(VALUES)) + draw(st.sampled_from(["", " ", "\t"]))
    elif kind == "negative":
        text = "-" + key
    elif kind == "comment":
        text = draw(st.sampled_from(["#", ";", " #"])) + key + " = 0"
    elif kind == "junk":
        text = key + " 1"
    else:
        text = draw(st.sampled_from(["", "  "]))
    return text + draw(st.sampled_from(EOLS))


@st.composite
def entries(draw):
    kind = draw(st.sampled_from(["text", "text", "text", "mask", "empty", "link", "dangling"]))
    if kind == "text":
        return {"text": "".join(draw(st.lists(lines(), min_size=1, max_size=5)))}
    if kind == "mask":
        return {"link": "/dev/null"}
    if kind == "empty":
        return {"text": ""}
    if kind == "link":
        return {"link": "../sysctl.conf"}
    return {"link": "missing.conf"}


def _real_path(path):
    # /lib is /usr/lib on merged-/usr: one file, one entry.
    return "/usr" + path if path.startswith("/lib/") else path


@st.composite
def trees(draw):
    files = {}
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        path = draw(st.sampled_from(DIRS)) + "/" + draw(st.sampled_from(NAMES))
        entry = draw(entries())
        if entry.get("link") == "../sysctl.conf" and not path.startswith("/etc/"):
            # Relative to /etc/sysctl.d only: an absolute link would read the host's file.
            entry = {"link": "/dev/null"}
        if not any(_real_path(known) == _real_path(path) for known in files):
            files[path] = entry
    if draw(st.booleans()):
        files["/etc/sysctl.conf"] = {"text": "".join(draw(st.lists(lines(), min_size=1, max_size=3)))}
    return files


BATCH = 100
EXAMPLES = 500


def test_model_agrees_with_systemd_sysctl_on_generated_trees(oracle, api):
    """500 trees drawn (derandomized) by hypothesis, sent to the oracle in batches; the
    first disagreeing tree is shrunk by hypothesis against the oracle and printed."""
    collected = drawn(trees(), EXAMPLES)
    assert len(collected) >= EXAMPLES
    failing = first_disagreement(
        oracle,
        collected,
        lambda files: {"files": files, "keys": COMPARED, "sentinels": SENTINELS},
        lambda files, observed: disagreements(api, files, observed),
        BATCH,
    )
    if failing is None:
        return
    shrink_against(trees(), lambda files: check_trees(oracle, api, [files]))
    check_trees(oracle, api, [failing])


# ------------------------------------------------------------------ named rules

ETC = "/etc/sysctl.d/"


@pytest.mark.parametrize(
    ("name", "files", "key", "expected"),
    [
        (
            "forwarding_alias_later_hardening_file_turns_it_off",
            {ETC + "10-k8s.conf": {"text": "net.ipv4.ip_forward = 1\n"},
             ETC + "90-hardening.conf": {"text": "net.ipv4.conf.all.forwarding = 0\n"}},
            "net/ipv4/ip_forward", "0",
        ),
        (
            "same_value_keeps_its_earlier_place",
            {ETC + "10-a.conf": {"text": "net.ipv4.ip_forward = 1\n"},
             ETC + "20-b.conf": {"text": "net.ipv4.conf.all.forwarding = 0\n"},
             ETC + "99-k8snode.conf": {"text": "net.ipv4.ip_forward = 1\n"}},
            "net/ipv4/ip_forward", "0",
        ),
        ("trailing_comment_is_ignored_by_the_kernel",
         {ETC + "99-k8s.conf": {"text": "net.ipv4.ip_forward = 1 # routing\n"}}, "net/ipv4/ip_forward", "1"),
        ("leading_zero_is_octal", {ETC + "99-k8s.conf": {"text": "net.ipv4.ip_forward = 010\n"}},
         "net/ipv4/ip_forward", "8"),
        ("bridge_clamps_to_one", {ETC + "99-k8s.conf": {"text": "net.bridge.bridge-nf-call-iptables = 2\n"}},
         "net/bridge/bridge-nf-call-iptables", "1"),
        ("plus_sign_refused", {ETC + "99-k8s.conf": {"text": "net.ipv4.ip_forward = +1\n"}},
         "net/ipv4/ip_forward", None),
        ("quoted_value_refused", {ETC + "99-k8s.conf": {"text": 'net.ipv4.ip_forward = "1"\n'}},
         "net/ipv4/ip_forward", None),
        ("empty_value_refused", {ETC + "99-k8s.conf": {"text": "net.ipv4.ip_forward =\n"}},
         "net/ipv4/ip_forward", None),
        ("etc_sysctl_conf_without_link_is_not_read", {"/etc/sysctl.conf": {"text": "net.ipv4.ip_forward = 0\n"}},
         "net/ipv4/ip_forward", None),
        ("etc_sysctl_conf_through_masked_link_is_not_read",
         {"/etc/sysctl.conf": {"text": "net.ipv4.ip_forward = 0\n"}, ETC + "99-sysctl.conf": {"link": "/dev/null"}},
         "net/ipv4/ip_forward", None),
        ("etc_sysctl_conf_through_link_is_read",
         {"/etc/sysctl.conf": {"text": "net.ipv4.ip_forward = 0\n"},
          ETC + "99-sysctl.conf": {"link": "../sysctl.conf"}},
         "net/ipv4/ip_forward", "0"),
        ("negative_key_keeps_glob_off",
         {"/usr/lib/sysctl.d/50-default.conf": {"text": "net.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\n"}},
         "net/ipv4/conf/all/rp_filter", None),
        ("negative_key_after_explicit_drops_it",
         {ETC + "10-cni.conf": {"text": "net.ipv4.conf.all.rp_filter = 0\n"},
          "/usr/lib/sysctl.d/50-default.conf": {"text": "-net.ipv4.conf.all.rp_filter\n"}},
         "net/ipv4/conf/all/rp_filter", None),
        ("star_does_not_cross_a_level", {ETC + "10-g.conf": {"text": "net.*.ip_forward = 0\n"}},
         "net/ipv4/ip_forward", "0"),
        ("star_does_not_cross_two_levels", {ETC + "10-g.conf": {"text": "net.*.all.forwarding = 0\n"}},
         "net/ipv4/ip_forward", None),
        ("caret_negates_in_brackets", {ETC + "10-g.conf": {"text": "net.ipv4.conf.[^d]*.rp_filter = 2\n"}},
         "net/ipv4/conf/all/rp_filter", "2"),
        ("braces_expand_in_globs", {ETC + "10-g.conf": {"text": "net.ipv4.conf.*{all,lo}.forwarding = 0\n"}},
         "net/ipv4/ip_forward", "0"),
        ("braces_alone_are_not_a_glob", {ETC + "10-g.conf": {"text": "net.ipv4.conf.{all,lo}.forwarding = 0\n"}},
         "net/ipv4/ip_forward", None),
        ("later_changed_glob_applies_last",
         {ETC + "10-a.conf": {"text": "net.ipv4.conf.*.rp_filter = 1\n"},
          ETC + "20-b.conf": {"text": "net.ipv4.conf.a*.rp_filter = 2\n"},
          ETC + "30-c.conf": {"text": "net.ipv4.conf.*.rp_filter = 0\n"}},
         "net/ipv4/conf/all/rp_filter", "0"),
        ("unchanged_glob_keeps_its_place",
         {ETC + "10-a.conf": {"text": "net.ipv4.conf.*.rp_filter = 1\n"},
          ETC + "20-b.conf": {"text": "net.ipv4.conf.a*.rp_filter = 2\n"},
          ETC + "30-c.conf": {"text": "net.ipv4.conf.*.rp_filter = 1\n"}},
         "net/ipv4/conf/all/rp_filter", "2"),
        ("hidden_files_are_skipped", {ETC + ".99-k8s.conf": {"text": "net.ipv4.ip_forward = 0\n"}},
         "net/ipv4/ip_forward", None),
        ("double_dots_and_trailing_dot_simplify",
         {ETC + "99-k8s.conf": {"text": "net.ipv4..conf.all.rp_filter. = 2\n"}}, "net/ipv4/conf/all/rp_filter", "2"),
        ("carriage_return_ends_a_line",
         {ETC + "99-k8s.conf": {"text": "net.ipv4.conf.all.rp_filter = 0\rnet.ipv4.conf.all.rp_filter = 2\r"}},
         "net/ipv4/conf/all/rp_filter", "2"),
        ("nul_ends_a_line", {ETC + "99-k8s.conf": {"text": "net.ipv4.conf.all.rp_filter = 2\0junk\n"}},
         "net/ipv4/conf/all/rp_filter", "2"),
        ("only_space_tab_cr_lf_are_stripped",
         {ETC + "99-k8s.conf": {"text": "net.ipv4.conf.all.rp_filter = 2\x0b\n"}}, "net/ipv4/conf/all/rp_filter", None),
        ("lib_is_usr_lib_on_merged_usr",
         {"/lib/sysctl.d/60-x.conf": {"text": "net.ipv4.conf.all.rp_filter = 2\n"}},
         "net/ipv4/conf/all/rp_filter", "2"),
        ("run_masks_usr_lib",
         {"/usr/lib/sysctl.d/60-x.conf": {"text": "net.ipv4.conf.all.rp_filter = 2\n"},
          "/run/sysctl.d/60-x.conf": {"link": "/dev/null"}},
         "net/ipv4/conf/all/rp_filter", None),
    ],
    ids=lambda value: value if isinstance(value, str) and value.isidentifier() else "",
)  # fmt: skip
def test_rule(oracle, api, name, files, key, expected):
    """Each rule of sysctl.d(5) and of the kernel, one tree each: the model predicts
    ``expected`` (None: nothing reaches the key, or the kernel refuses every write)
    and the real systemd-sysctl does the same."""
    winner = model_values(api, files)[key]
    assert (winner["value"] if winner else None) == expected, winner
    check_trees(oracle, api, [files])


# ------------------------------------------------------------------ pattern keys and interfaces

# The upstream 50-default.conf of systemd >= 247 (Debian removes it; Fedora, Arch,
# Ubuntu and Flatcar ship it), and our file as prepare writes it for Cilium.
FIFTY_DEFAULT = "net.ipv4.conf.default.rp_filter = 2\nnet.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\n"
OURS = (
    "# Managed by Salt (k8snode)\nnet.ipv4.conf.cilium_*.rp_filter = 0\nnet.ipv4.conf.lxc*.rp_filter = 0\n"
    "net.ipv4.conf.all.rp_filter = 0\n"
)
LINKS = (("lxc1", "lxc2"), ("cilium_host", "cilium_net"), ("eth0", "eth1"))
INTERFACE_KEYS = [f"net/ipv4/conf/{name}/rp_filter" for pair in LINKS for name in pair]
# Per-interface sentinels no tree writes, written after the interfaces appear.
INTERFACE_SENTINELS = [[key, "3"] for key in INTERFACE_KEYS]
PATTERN_CASES = {
    # Ours is a later glob than 50-default's: lxc* and cilium_* get 0, eth* keep 2.
    "ours_after_fifty_default": (
        {"/usr/lib/sysctl.d/50-default.conf": {"text": FIFTY_DEFAULT}, ETC + "99-k8snode.conf": {"text": OURS}},
        {"lxc1": "0", "lxc2": "0", "cilium_host": "0", "cilium_net": "0", "eth0": "2", "eth1": "2"},
    ),
    # An explicit line beats every glob, though its file is read before ours.
    "explicit_key_beats_our_pattern": (
        {"/usr/lib/sysctl.d/50-default.conf": {"text": FIFTY_DEFAULT}, ETC + "99-k8snode.conf": {"text": OURS},
         ETC + "60-lxc1.conf": {"text": "net.ipv4.conf.lxc1.rp_filter = 2\n"}},
        {"lxc1": "2", "lxc2": "0"},
    ),
    # A -key line keeps every glob off the interface: it keeps its value.
    "exclusion_keeps_globs_off": (
        {"/usr/lib/sysctl.d/50-default.conf": {"text": FIFTY_DEFAULT}, ETC + "99-k8snode.conf": {"text": OURS},
         ETC + "10-keep.conf": {"text": "-net.ipv4.conf.lxc2.rp_filter\n"}},
        {"lxc1": "0", "lxc2": "3"},
    ),
    # Our file read first: 50-default's glob comes later in systemd's order and wins.
    "ours_before_fifty_default_loses": (
        {"/usr/lib/sysctl.d/50-default.conf": {"text": FIFTY_DEFAULT}, ETC + "00-k8snode.conf": {"text": OURS}},
        {"lxc1": "2", "cilium_host": "2", "eth0": "2"},
    ),
}  # fmt: skip


def test_pattern_keys_on_real_interfaces(oracle, api):
    """Our Cilium patterns against 50-default.conf's glob, explicit keys and -key
    exclusions, on veth interfaces in the oracle's fresh network namespace: the
    model and the real systemd-sysctl agree on every interface."""
    trees = [files for files, _ in PATTERN_CASES.values()]
    observed = oracle.run(
        [
            {
                "files": files,
                "keys": INTERFACE_KEYS + ["net/ipv4/conf/all/rp_filter", "net/ipv4/conf/default/rp_filter"],
                "sentinels": SENTINELS,
                "links": LINKS,
                "after_links": INTERFACE_SENTINELS,
            }
            for files in trees
        ]
    )
    for (name, (files, expected)), result in zip(PATTERN_CASES.items(), observed):
        assert "error" not in result, result
        with tempfile.TemporaryDirectory(prefix="k8snode-sysctl-model-") as tmp:
            write_tree(Path(tmp), files)
            boot = api.effective_boot_sysctls(root=tmp)
        for key in result["after"]:
            winner = sysctl_boot.boot_assignment(key, boot)
            predicted = winner["value"] if winner and winner["value"] is not None else result["before"][key]
            assert predicted == result["after"][key], (
                f"{name}: {key}: model {predicted!r}, systemd-sysctl "
                + str(result["after"][key])
                + "\n"
                + show(files)
                + "\nlog:\n"
                + result["log"]
            )
        for interface, value in expected.items():
            assert result["after"][f"net/ipv4/conf/{interface}/rp_filter"] == value, (name, interface)
