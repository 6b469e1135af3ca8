"""The host fights back: read-only places, files that are not ours, two runs at once, revert."""

import concurrent.futures

from tests.support import nodes
from tests.support.harness import salt_cmd

SYSCTL_FILE = "/etc/sysctl.d/99-k8snode.conf"
MODULES_FILE = "/etc/modules-load.d/k8snode.conf"


def test_a_read_only_sysctl_d_fails_that_file_and_the_rest_is_done(salt_master, fresh_nodes):
    minion = fresh_nodes["bookworm"]
    nodes.sh(
        minion,
        "echo 0 > /proc/sys/net/ipv4/ip_forward; mount --bind /etc/sysctl.d /etc/sysctl.d; mount -o remount,ro,bind /etc/sysctl.d",
    )
    try:
        code, ret = nodes.apply(salt_master, minion)
    finally:
        nodes.sh(minion, "umount /etc/sysctl.d")
    state = nodes.only_state(ret)
    assert code != 0
    assert state["result"] is False
    assert f"file:{SYSCTL_FILE}: cannot write: Read-only file system" in state["comment"]
    assert nodes.read_file(minion, SYSCTL_FILE) is None
    assert nodes.read_file(minion, MODULES_FILE).startswith("# Managed by Salt")
    assert nodes.live(minion, "net/ipv4/ip_forward") == "1"
    assert nodes.sh(minion, "ls -a /etc/sysctl.d").split() == [".", "..", "README.sysctl"]


def test_a_user_file_at_our_path_is_never_clobbered(salt_master, fresh_nodes):
    minion = fresh_nodes["bullseye"]
    nodes.sh(minion, f"printf 'net.ipv4.ip_forward = 0\\n' > {SYSCTL_FILE}")
    code, ret = nodes.apply(salt_master, minion)
    state = nodes.only_state(ret)
    assert code != 0
    assert f"file:{SYSCTL_FILE}: exists and was not written by k8snode" in state["comment"]
    assert nodes.read_file(minion, SYSCTL_FILE) == "net.ipv4.ip_forward = 0\n"
    assert nodes.read_file(minion, MODULES_FILE).startswith("# Managed by Salt")


def test_a_hand_edited_file_of_ours_is_restored_and_the_state_says_so(salt_master, fresh_nodes):
    minion = fresh_nodes["trixie"]
    code, _ = nodes.apply(salt_master, minion)
    assert code == 0
    original = nodes.read_file(minion, SYSCTL_FILE)
    nodes.sh(minion, f"sed -i 's/ip_forward = 1/ip_forward = 0/' {SYSCTL_FILE}")
    code, ret = nodes.apply(salt_master, minion)
    state = nodes.only_state(ret)
    assert code == 0, state
    assert f"{SYSCTL_FILE} restored (it was edited by hand)" in state["comment"]
    assert nodes.read_file(minion, SYSCTL_FILE) == original


def test_two_runs_at_once_leave_valid_files_and_a_clear_message_for_the_loser(salt_master, fresh_nodes):
    minion = fresh_nodes["bookworm"]

    def run():
        return salt_cmd(salt_master, "state.apply", "k8snode", tgt=minion.id)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: run(), range(2)))

    outputs = [result.data for result in results]
    winners = [out for out in outputs if isinstance(out, dict) and nodes.only_state(out)["result"] is True]
    if not winners:
        # Salt's own "already running" check races: two runs started within a few ms can
        # each see the other's job and both refuse (seen once in a cold CI-like run).
        # Then both say so, nothing of ours is half-written, and the next run works.
        assert all("is running as PID" in str(out) for out in outputs), outputs
        assert nodes.sh(minion, "ls -a /etc/sysctl.d /etc/modules-load.d | grep -c k8snode-tmp || true").strip() == "0"
        code, ret = nodes.apply(salt_master, minion)
        assert code == 0, ret
    for out in outputs:
        if out in winners:
            continue
        text = str(out)
        assert (
            "is running as PID" in text or "another k8snode run holds the lock" in text or "already prepared" in text
        ), text
    report = nodes.audit(salt_master, minion)
    assert report["ready"] is True, report["failing"]
    assert nodes.sh(minion, "ls -a /etc/sysctl.d /etc/modules-load.d | grep -c k8snode-tmp || true").strip() == "0"


def test_absent_after_a_partial_failure_restores_exactly_what_was_there(salt_master, fresh_nodes):
    minion = fresh_nodes["bullseye"]
    nodes.sh(minion, "printf '/dev/vdb none swap sw 0 0\\n' >> /etc/fstab")
    before = nodes.snapshot(minion)
    code, ret = nodes.apply(salt_master, minion, pillar={"k8snode": {"extras": ["ipvs"]}})
    assert code != 0
    assert "module:ip_vs" in nodes.only_state(ret)["comment"]
    code, ret = nodes.apply(salt_master, minion, "k8snode.absent")
    assert code == 0, ret
    nodes.sh(minion, "rm /etc/fstab.k8snode.bak")
    assert nodes.snapshot(minion) == before
