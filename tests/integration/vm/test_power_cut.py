"""A power cut (hard reset, no shutdown) right after `state.apply k8snode` returns."""

import pytest

from tests.support.vm_checks import (
    MODULES_FILE,
    SYSCTL_FILE,
    apply,
    audit,
    live_sysctls,
    pillar,
    proc_modules,
    read_files,
)

pytestmark = pytest.mark.real_node

NAIVE_FILE = "/etc/sysctl.d/50-naive-writer.conf"
NAIVE_TEXT = "net.ipv4.conf.all.log_martians = 1\n"


def test_a_power_cut_right_after_apply_keeps_the_managed_files_whole(salt_master, fresh_vm):
    """The cut is real enough to lose data, so this test can fail.

    Right after the apply returns, in the very call that precedes the cut, a file of the
    same kind is written the naive way: a shell redirect, no fsync (what a writer without
    ``atomic_write``'s fsync and rename does).  After the boot it is empty or missing:
    the cut that k8snode's files survive loses the data of a write without fsync.  Had
    k8snode written its files that way, systemd would find them empty or absent at boot
    and load and set nothing.
    """
    node = fresh_vm("bookworm")
    settings = {"extras": ["max_map_count"]}
    code, state = apply(salt_master, node, pillar=pillar(settings))
    assert code == 0 and state["result"] is True, state
    written = {path: state["changes"][f"file:{path}"]["new"] for path in (SYSCTL_FILE, MODULES_FILE)}

    # At once: no shutdown, no sync.
    node.power_cut(last_script=f"printf '{NAIVE_TEXT}' > {NAIVE_FILE}")

    after = read_files(node, SYSCTL_FILE, MODULES_FILE, NAIVE_FILE)
    assert after[NAIVE_FILE] != NAIVE_TEXT, "the write without fsync survived: the cut proves nothing"
    for path, text in written.items():
        assert after[path] == text, f"{path} after the cut: {after[path]!r}"
    strays = node.sh("ls -a /etc/sysctl.d /etc/modules-load.d | grep k8snode-tmp || true").strip()
    assert strays == ""
    assert {"overlay", "br_netfilter"} <= proc_modules(node)
    assert live_sysctls(node, ["net.ipv4.ip_forward", "vm.max_map_count"]) == {
        "net.ipv4.ip_forward": "1",
        "vm.max_map_count": "262144",
    }
    report = audit(salt_master, node, **settings)
    assert report["ready"] is True, report["failing"]
