"""
The sysctl.d model against the real procps ``sysctl --system`` of each Debian
release (bullseye's procps 3.3.17, bookworm's 4.0.2, trixie's 4.0.4), on a host
without systemd: the minion images themselves.

Every tree is written twice: in one container per release, where ``sysctl --system``
applies it in a fresh network namespace (tests/support/sysctl_oracle.py's driver),
and in a directory on the host whose /usr/sbin/sysctl names that release's procps
version, where ``effective_boot_sysctls`` computes the boot values with the
version-aware procps model (``_modules/k8snode/sysctl_procps.py``). Each compared
key must agree, as in test_sysctl_oracle.py.
"""

import concurrent.futures
import contextlib
import tempfile
import time
from pathlib import Path

import pytest

from _modules.k8snode import sysctl_boot
from tests.integration.test_sysctl_oracle import COMPARED, SENTINELS, show, trees
from tests.support import harness
from tests.support.sysctl_oracle import drawn, first_disagreement, running_oracle, shrink_against, write_tree

SYSCTL_SYSTEM = ("/sbin/sysctl", "--system")
# procps generation of each release, checked against the binary's own --version.
PROCPS_OF = {"bullseye": "3.3.17", "bookworm": "4.0.2", "trixie": "4.0.4"}


@pytest.fixture(scope="module")
def oracles(minion_images):
    """One container per release for the whole module, each with its driver."""
    with contextlib.ExitStack() as stack:
        drivers = {
            release: stack.enter_context(
                running_oracle(harness.owner_labels(), image=minion_images[release], command=SYSCTL_SYSTEM)
            )
            for release in PROCPS_OF
        }
        for release, driver in drivers.items():
            assert driver.version == f"sysctl from procps-ng {PROCPS_OF[release]}", driver.version
        yield drivers


def model_values(api, files, version_line, keys=COMPARED):
    with tempfile.TemporaryDirectory(prefix="k8snode-procps-model-") as tmp:
        root = Path(tmp)
        write_tree(root, files, procps_version=version_line)
        boot = api.effective_boot_sysctls(root=str(root))
        assert boot["applier"] == sysctl_boot.PROCPS and boot["ambiguous"] is None, boot["applier_evidence"]
        assert boot["procps"]["version"] == version_line.rsplit(" ", 1)[-1]
        return {key: sysctl_boot.boot_assignment(key, boot) for key in keys}


def disagreements(api, files, observed, version_line):
    assert "error" not in observed, observed
    # Not "Operation not permitted": procps prints it (a stale errno) for a glob match
    # that is a directory (net.* matches net/ipv4), which it skips.
    assert "Read-only file system" not in observed["log"], "the oracle could not write: " + observed["log"]
    found = []
    for key, winner in model_values(api, files, version_line, list(observed["after"])).items():
        predicted = winner["value"] if winner and winner["value"] is not None else observed["before"][key]
        if predicted != observed["after"][key]:
            found.append(f"{key}: model {predicted!r} ({winner}), sysctl --system {observed['after'][key]!r}")
    return found


def check_trees(oracle, api, trees_to_check):
    observed = oracle.run([{"files": files, "keys": COMPARED, "sentinels": SENTINELS} for files in trees_to_check])
    for files, result in zip(trees_to_check, observed):
        found = disagreements(api, files, result, oracle.version)
        assert not found, (
            f"{oracle.version}, tree:\n" + show(files) + "\n" + "\n".join(found) + "\nlog:\n" + result["log"]
        )


# ------------------------------------------------------------------ generated trees

BATCH = 100
EXAMPLES = 300


def _first_disagreement(oracle, api, collected):
    """The first generated tree on which the model and this release's procps
    disagree, or None; and how long the release took."""
    started = time.monotonic()
    failing = first_disagreement(
        oracle,
        collected,
        lambda files: {"files": files, "keys": COMPARED, "sentinels": SENTINELS},
        lambda files, observed: disagreements(api, files, observed, oracle.version),
        BATCH,
    )
    return failing, time.monotonic() - started


def test_model_agrees_with_procps_on_generated_trees(oracles, api, record_property):
    """300 trees drawn (derandomized) by hypothesis, the same for each release, sent to
    the three containers at once in batches; the first disagreeing tree is shrunk by
    hypothesis against that release's procps and printed."""
    collected = drawn(trees(), EXAMPLES)
    assert len(collected) >= EXAMPLES
    with concurrent.futures.ThreadPoolExecutor(len(oracles)) as pool:
        futures = {
            release: pool.submit(_first_disagreement, oracle, api, collected) for release, oracle in oracles.items()
        }
        outcomes = {release: future.result() for release, future in futures.items()}
    for release, (_, seconds) in outcomes.items():
        record_property(f"procps_oracle_seconds_{release}", round(seconds, 1))
    for release, (failing, _) in outcomes.items():
        if failing is None:
            continue
        _shrink(oracles[release], api)
        check_trees(oracles[release], api, [failing])


def _shrink(oracle, api):
    """Let hypothesis find and shrink a failing tree against this release's procps
    (it raises with the smallest one)."""
    shrink_against(trees(), lambda files: check_trees(oracle, api, [files]))


# ------------------------------------------------------------------ named rules

ETC = "/etc/sysctl.d/"
OLD, NEW = "3.3.17", "4.0"
# name: (files, key, what procps 3.3.17 leaves, what procps 4.0.x leaves); None:
# nothing reaches the key, or the kernel refuses every write (the sentinel stays).
RULES = {
    "glob_line_expands_only_from_4_0": (
        {ETC + "10-a.conf": {"text": "net.ipv4.conf.*.rp_filter = 2\n"}},
        "net/ipv4/conf/all/rp_filter", None, "2",
    ),
    "glob_skips_a_key_named_by_a_later_line": (
        {ETC + "10-a.conf": {"text": "net.ipv4.conf.*.rp_filter = 2\n"},
         ETC + "20-b.conf": {"text": "net.ipv4.conf.default.rp_filter = 1\n"}},
        "net/ipv4/conf/default/rp_filter", "1", "1",
    ),
    "glob_skips_a_key_named_by_an_earlier_line": (
        {ETC + "10-a.conf": {"text": "net.ipv4.conf.default.rp_filter = 1\n"},
         ETC + "20-b.conf": {"text": "net.ipv4.conf.*.rp_filter = 2\n"}},
        "net/ipv4/conf/default/rp_filter", "1", "1",
    ),
    "glob_does_not_skip_a_key_spelled_with_double_dots": (
        {ETC + "10-a.conf": {"text": "net.ipv4..ip_forward = 1\n"},
         ETC + "20-b.conf": {"text": "net.*.ip_forward = 0\n"}},
        "net/ipv4/ip_forward", "1", "0",
    ),
    "negative_key_keeps_glob_off_from_4_0_refused_before": (
        {ETC + "10-a.conf": {"text": "net.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\n"}},
        "net/ipv4/conf/all/rp_filter", None, None,
    ),
    "negative_key_does_not_undo_an_explicit_value": (
        {ETC + "10-a.conf": {"text": "net.ipv4.conf.all.rp_filter = 0\n"},
         ETC + "20-b.conf": {"text": "-net.ipv4.conf.all.rp_filter\n"}},
        "net/ipv4/conf/all/rp_filter", "0", "0",
    ),
    "braces_are_literal": (
        {ETC + "10-a.conf": {"text": "net.ipv4.conf.*{all,lo}.forwarding = 0\n"}},
        "net/ipv4/ip_forward", None, None,
    ),
    "caret_negates_in_brackets": (
        {ETC + "10-a.conf": {"text": "net.ipv4.conf.[^a]*.rp_filter = 2\n"}},
        "net/ipv4/conf/default/rp_filter", None, "2",
    ),
    "last_line_wins_in_file_order": (
        {ETC + "10-a.conf": {"text": "net.ipv4.ip_forward = 1\n"},
         ETC + "20-b.conf": {"text": "net.ipv4.conf.all.forwarding = 0\n"},
         ETC + "99-k8snode.conf": {"text": "net.ipv4.ip_forward = 1\n"}},
        "net/ipv4/ip_forward", "1", "1",
    ),
    "hidden_files_are_read": (
        {ETC + ".99-k8s.conf": {"text": "net.ipv4.ip_forward = 0\n"}}, "net/ipv4/ip_forward", "0", "0",
    ),
    "etc_sysctl_conf_is_read_last": (
        {"/etc/sysctl.conf": {"text": "net.ipv4.ip_forward = 0\n"},
         ETC + "zz.conf": {"text": "net.ipv4.ip_forward = 1\n"}},
        "net/ipv4/ip_forward", "0", "0",
    ),
    "etc_sysctl_conf_read_again_after_its_link": (
        {"/etc/sysctl.conf": {"text": "net.ipv4.ip_forward = 0\n"},
         ETC + "99-sysctl.conf": {"link": "../sysctl.conf"},
         ETC + "zz.conf": {"text": "net.ipv4.ip_forward = 1\n"}},
        "net/ipv4/ip_forward", "0", "0",
    ),
    "etc_masks_usr_lib": (
        {"/usr/lib/sysctl.d/10-a.conf": {"text": "net.ipv4.ip_forward = 0\n"},
         ETC + "10-a.conf": {"text": "net.ipv4.ip_forward = 1\n"}},
        "net/ipv4/ip_forward", "1", "1",
    ),
    "dev_null_masks": (
        {"/usr/lib/sysctl.d/10-a.conf": {"text": "net.ipv4.ip_forward = 0\n"},
         "/run/sysctl.d/10-a.conf": {"link": "/dev/null"}},
        "net/ipv4/ip_forward", None, None,
    ),
    "trailing_dot_finds_no_key": (
        {ETC + "10-a.conf": {"text": "net.ipv4.ip_forward. = 0\n"}}, "net/ipv4/ip_forward", None, None,
    ),
    "carriage_return_ends_the_value_only_before_4_0": (
        {ETC + "10-a.conf": {"text": "net.ipv4.ip_forward = 0\rnet.ipv4.ip_forward = 1\r"}},
        "net/ipv4/ip_forward", "0", None,
    ),
    "crlf_is_stripped": (
        {ETC + "10-a.conf": {"text": "net.ipv4.ip_forward = 0\r\n"}}, "net/ipv4/ip_forward", "0", "0",
    ),
    "vertical_tab_stripped_from_4_0": (
        {ETC + "10-a.conf": {"text": "net.ipv4.conf.all.rp_filter = 2\x0b\n"}},
        "net/ipv4/conf/all/rp_filter", None, "2",
    ),
    "nul_ends_the_line_text": (
        {ETC + "10-a.conf": {"text": "net.ipv4.ip_forward = 0\0net.ipv4.ip_forward = 1\n"}},
        "net/ipv4/ip_forward", "0", "0",
    ),
    "empty_value_refused_or_skipped": (
        {ETC + "10-a.conf": {"text": "net.ipv4.ip_forward =\n"}}, "net/ipv4/ip_forward", None, None,
    ),
    "trailing_comment_is_ignored_by_the_kernel": (
        {ETC + "10-a.conf": {"text": "net.ipv4.ip_forward = 0 # routing\n"}}, "net/ipv4/ip_forward", "0", "0",
    ),
    "quoted_value_refused": (
        {ETC + "10-a.conf": {"text": 'net.ipv4.ip_forward = "0"\n'}}, "net/ipv4/ip_forward", None, None,
    ),
    "dash_with_space_finds_no_key": (
        {ETC + "10-a.conf": {"text": "- net.ipv4.ip_forward = 0\n"}}, "net/ipv4/ip_forward", None, None,
    ),
    "dash_before_key_ignores_failure_and_sets": (
        {ETC + "10-a.conf": {"text": "-net.ipv4.ip_forward = 0\n"}}, "net/ipv4/ip_forward", "0", "0",
    ),
}  # fmt: skip


def test_rules(oracles, api):
    """Each rule, one tree each, on every release at once: the model predicts what
    that procps generation leaves (None: the sentinel stays), and the real
    ``sysctl --system`` does the same."""
    for release, oracle in oracles.items():
        generation = OLD if PROCPS_OF[release].startswith("3.") else NEW
        observed = oracle.run(
            [{"files": files, "keys": COMPARED, "sentinels": SENTINELS} for files, *_ in RULES.values()]
        )
        for (name, (files, key, old, new)), result in zip(RULES.items(), observed):
            expected = old if generation == OLD else new
            winner = model_values(api, files, oracle.version)[key]
            assert (winner["value"] if winner else None) == expected, (release, name, winner)
            found = disagreements(api, files, result, oracle.version)
            assert not found, (release, name, found, result["log"])
