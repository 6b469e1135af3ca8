"""`salt '*' state.apply k8snode` through the master, on the three Debian minion containers."""

import pytest

from tests.support import nodes
from tests.support.harness import RELEASES, salt_cmd, salt_run

SYSCTL_FILE = "/etc/sysctl.d/99-k8snode.conf"
MODULES_FILE = "/etc/modules-load.d/k8snode.conf"


def _apply_ok(master, minion, *sls, **kwargs):
    code, ret = nodes.apply(master, minion, *sls, **kwargs)
    assert code == 0, ret
    return ret


@pytest.mark.parametrize("release", RELEASES)
def test_apply_makes_a_fresh_node_ready_and_a_second_apply_changes_nothing(salt_master, fresh_nodes, release):
    minion = fresh_nodes[release]
    assert nodes.audit(salt_master, minion)["ready"] is False

    state = nodes.only_state(_apply_ok(salt_master, minion))
    assert state["result"] is True, state
    assert f"file:{SYSCTL_FILE}" in state["changes"]
    assert f"file:{MODULES_FILE}" in state["changes"]

    report = nodes.audit(salt_master, minion)
    assert report["ready"] is True, report["failing"]
    assert report["lost_at_reboot"] == []

    sysctl_file = nodes.read_file(minion, SYSCTL_FILE)
    assert sysctl_file.startswith("# Managed by Salt")
    assert "net.ipv4.ip_forward = 1" in sysctl_file.splitlines()
    assert nodes.sh(minion, f"stat -c %a {SYSCTL_FILE} {MODULES_FILE}").split() == ["644", "644"]
    assert {"overlay", "br_netfilter"} <= set(nodes.read_file(minion, MODULES_FILE).splitlines())

    again = nodes.only_state(_apply_ok(salt_master, minion))
    assert again["result"] is True
    assert again["changes"] == {}


def test_test_mode_reports_changes_and_writes_nothing(salt_master, fresh_nodes):
    minion = fresh_nodes["bookworm"]
    nodes.sh(minion, "echo 0 > /proc/sys/net/ipv4/ip_forward")
    before = nodes.snapshot(minion)

    code, ret = nodes.apply(salt_master, minion, test=True)
    state = nodes.only_state(ret)
    assert state["result"] is None
    assert state["changes"]["sysctl:net.ipv4.ip_forward"] == {"old": "0", "new": "1"}
    assert f"file:{SYSCTL_FILE}" in state["changes"]
    assert nodes.snapshot(minion) == before
    assert nodes.live(minion, "net/ipv4/ip_forward") == "0"


@pytest.mark.parametrize(
    ("release", "distribution"),
    [("bullseye", "rke2"), ("bookworm", "k3s"), ("trixie", "microk8s"), ("bookworm", "kubeadm")],
)
def test_each_distribution_pillar_gives_its_table(salt_master, fresh_nodes, release, distribution):
    minion = fresh_nodes[release]
    # How a site assigns a distribution: a grain, matched in pillar/top.sls.
    salt_run(salt_master, "grains.setval", "k8snode_distribution", distribution, tgt=minion.id)
    salt_run(salt_master, "saltutil.refresh_pillar", tgt=minion.id, wait=True)

    state = nodes.only_state(_apply_ok(salt_master, minion))
    assert state["result"] is True, state

    wanted = salt_run(salt_master, "k8snode.requirements", tgt=minion.id)
    assert wanted["distribution"] == distribution
    assert wanted["sysctls"]["net.ipv4.ip_forward"]["source"] == f"distribution:{distribution}"
    persisted = {}
    for line in nodes.read_file(minion, SYSCTL_FILE).splitlines()[1:]:
        key, _, value = line.partition(" = ")
        persisted[key] = value
    assert set(persisted) == set(wanted["sysctls"])
    for key, requirement in wanted["sysctls"].items():
        live = nodes.live(minion, key.replace(".", "/"))
        if requirement["compare"] == "min":
            assert int(persisted[key]) >= int(requirement["value"]), key
            assert int(live) >= int(requirement["value"]), key
        else:
            assert persisted[key] == requirement["value"] == live, key
    modules = set(nodes.read_file(minion, MODULES_FILE).splitlines()[1:])
    assert modules == {alternatives["alternatives"][0] for alternatives in wanted["modules"].values()}

    report = nodes.audit(salt_master, minion)
    assert report["distribution"] == distribution
    assert report["ready"] is True, report["failing"]


@pytest.mark.parametrize("release", RELEASES)
def test_after_a_reboot_replay_the_node_is_ready_again(salt_master, fresh_nodes, release):
    minion = fresh_nodes[release]
    _apply_ok(salt_master, minion)
    nodes.sh(minion, "echo 0 > /proc/sys/net/ipv4/ip_forward; echo 0 > /proc/sys/net/bridge/bridge-nf-call-iptables")
    assert nodes.audit(salt_master, minion)["ready"] is False

    # What systemd-sysctl does at boot (the host_kernel_guard restores fs.* afterwards).
    nodes.sh(minion, "sysctl --system >/dev/null")
    report = nodes.audit(salt_master, minion)
    assert report["ready"] is True, report["failing"]
    assert nodes.live(minion, "net/ipv4/ip_forward") == "1"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"distribution": "openshift"}, "'openshift'"),
        ({"modules": {"overlay; touch /x": {}}}, "'overlay; touch /x'"),
        ({"sysctls": {"../../etc/shadow": 1}}, "'../../etc/shadow'"),
        ({"sysctls": {"net.ipv4.ip_forward": "on"}}, "'on'"),
    ],
)
def test_bad_pillar_fails_naming_the_value_and_writes_nothing(salt_master, fresh_nodes, settings, named):
    minion = fresh_nodes["bullseye"]
    nodes.sh(minion, "echo 0 > /proc/sys/net/ipv4/ip_forward")
    before = nodes.snapshot(minion)
    code, ret = nodes.apply(salt_master, minion, pillar={"k8snode": settings})
    state = nodes.only_state(ret)
    assert code != 0
    assert state["result"] is False
    assert named in state["comment"]
    assert state["changes"] == {}
    assert nodes.snapshot(minion) == before
    assert nodes.sh(minion, "ls /x 2>/dev/null || echo absent").strip() == "absent"


def test_absent_returns_the_files_to_what_they_were(salt_master, fresh_nodes):
    minion = fresh_nodes["trixie"]
    nodes.sh(
        minion,
        "printf '/swapfile none swap sw 0 0\\n' >> /etc/fstab; echo 'vm.swappiness = 10' > /etc/sysctl.d/98-site.conf",
    )
    before = nodes.snapshot(minion)

    state = nodes.only_state(_apply_ok(salt_master, minion))
    assert "file:/etc/fstab" in state["changes"]
    fstab = nodes.read_file(minion, "/etc/fstab")
    assert "#k8snode-swap-off# /swapfile none swap sw 0 0" in fstab
    assert nodes.read_file(minion, "/etc/fstab.k8snode.bak").endswith("/swapfile none swap sw 0 0\n")

    removed = nodes.only_state(_apply_ok(salt_master, minion, "k8snode.absent"))
    assert removed["result"] is True
    assert "left as they are" in removed["comment"]
    nodes.sh(minion, "rm /etc/fstab.k8snode.bak")
    assert nodes.snapshot(minion) == before


def test_a_failing_item_does_not_stop_the_others(salt_master, fresh_nodes):
    minion = fresh_nodes["bookworm"]
    nodes.sh(minion, "echo 0 > /proc/sys/net/ipv4/ip_forward")
    code, ret = nodes.apply(salt_master, minion, pillar={"k8snode": {"extras": ["ipvs"]}})
    state = nodes.only_state(ret)
    assert code != 0
    assert state["result"] is False
    assert "module:ip_vs:" in state["comment"]
    assert "module:ip_vs_rr:" in state["comment"]
    # Everything else was still done.
    assert state["changes"]["sysctl:net.ipv4.ip_forward"] == {"old": "0", "new": "1"}
    assert nodes.live(minion, "net/ipv4/ip_forward") == "1"
    assert "net.ipv4.ip_forward = 1" in nodes.read_file(minion, SYSCTL_FILE)


def test_a_read_only_proc_sys_fails_those_items_clearly(salt_master, fresh_nodes):
    minion = fresh_nodes["bullseye"]
    nodes.sh(minion, "echo 0 > /proc/sys/net/ipv4/ip_forward; mount -o remount,ro /proc/sys")
    try:
        code, ret = nodes.apply(salt_master, minion)
    finally:
        nodes.sh(minion, "mount -o remount,rw /proc/sys")
    state = nodes.only_state(ret)
    assert code != 0
    assert state["result"] is False
    assert "sysctl:net.ipv4.ip_forward: cannot set 1: /proc/sys is read-only here" in state["comment"]
    # The boot configuration was still written.
    assert "net.ipv4.ip_forward = 1" in nodes.read_file(minion, SYSCTL_FILE)


def test_the_highstate_top_file_targets_the_nodes(salt_master, fresh_nodes):
    minion = fresh_nodes["bullseye"]
    top = salt_run(salt_master, "state.show_top", tgt=minion.id)
    assert top == {"base": ["k8snode"]}
    ret = salt_cmd(salt_master, "state.highstate", tgt=minion.id)
    assert ret.returncode == 0, ret
    assert nodes.audit(salt_master, minion)["ready"] is True
