"""The network plugin and kube-proxy mode on the Debian minion containers, through the master.

Cilium on a node where systemd's ``50-default.conf`` sets ``rp_filter = 2`` (its pods lose
egress): the audit names that file, ``state.apply k8snode`` fixes it now and for boot, and a
replay of boot (``sysctl --system``, as in test_prepare.py) proves our file wins. Calico's
"0 or 1" against the real /proc/sys. kube-proxy's nftables mode against the real kernel
(CI's has nf_tables built in and is newer than 5.13) and, through the same Salt call with
``root=``, against an older tree in the container that lacks both.
"""

import re
import shlex

import pytest

from tests.support import nodes
from tests.support.harness import RELEASES

RP_FILTER = "net.ipv4.conf.all.rp_filter"
RP_FILTER_PATH = "net/ipv4/conf/all/rp_filter"
SYSTEMD_DEFAULT = "/usr/lib/sysctl.d/50-default.conf"
SYSCTL_FILE = "/etc/sysctl.d/99-k8snode.conf"


def _apply_ok(master, minion, **kwargs):
    code, ret = nodes.apply(master, minion, **kwargs)
    assert code == 0, ret
    state = nodes.only_state(ret)
    assert state["result"] is True, state
    return state


def _persisted(minion):
    return nodes.read_file(minion, SYSCTL_FILE).splitlines()


@pytest.fixture
def rp_filter_restored(fresh_nodes):
    """rp_filter is per network namespace (the container's own); put it back and remove
    the planted systemd file after the test, whatever happens."""
    saved = {release: nodes.live(minion, RP_FILTER_PATH) for release, minion in fresh_nodes.items()}
    yield fresh_nodes
    for release, minion in fresh_nodes.items():
        nodes.sh(minion, f"rm -f {SYSTEMD_DEFAULT}; echo {saved[release]} > /proc/sys/{RP_FILTER_PATH}")


@pytest.mark.parametrize("release", RELEASES)
def test_cilium_rp_filter_from_systemd_default_is_fixed_for_now_and_for_boot(salt_master, rp_filter_restored, release):
    minion = rp_filter_restored[release]
    # What systemd >= 245 ships (Ubuntu's 10-network-security.conf sets the same key to 2).
    nodes.sh(
        minion,
        f"mkdir -p /usr/lib/sysctl.d; printf '{RP_FILTER} = 2\\n' > {SYSTEMD_DEFAULT}; "
        f"echo 2 > /proc/sys/{RP_FILTER_PATH}",
    )
    report = nodes.audit(salt_master, minion, cni="cilium")
    check = report["checks"][f"sysctl:{RP_FILTER}"]
    assert report["ready"] is False
    assert check["status"] == "fail"
    assert (check["live"], check["boot"], check["boot_file"]) == ("2", "2", SYSTEMD_DEFAULT)
    # A container runs no systemd: the detail may end by naming the boot model it assumed.
    assert (
        check["detail"].split(" (boot model: ")[0]
        == f"{RP_FILTER} is 2 now, needs 0; {SYSTEMD_DEFAULT}:1 sets 2 at boot"
    )
    assert check["source"] == "cni:cilium"

    state = _apply_ok(salt_master, minion, pillar={"k8snode": {"cni": "cilium"}})
    assert state["changes"][f"sysctl:{RP_FILTER}"] == {"old": "2", "new": "0"}
    # CI's kernel has no geneve (Cilium's optional tunnel): a note, not a failure.
    assert "optional module geneve unavailable" in state["comment"]
    assert nodes.live(minion, RP_FILTER_PATH) == "0"
    assert f"{RP_FILTER} = 0" in _persisted(minion)

    report = nodes.audit(salt_master, minion, cni="cilium")
    assert report["ready"] is True, report["failing"]
    assert report["cni"] == "cilium"
    check = report["checks"][f"sysctl:{RP_FILTER}"]
    assert (check["status"], check["boot"], check["boot_file"]) == ("ok", "0", SYSCTL_FILE)
    for module in ("ip_set", "xt_set", "ip_set_hash_ip", "xt_comment", "vxlan"):
        assert report["checks"][f"module:{module}"]["status"] == "ok", module

    # Boot: systemd-sysctl reads 50-default.conf, then ours (it sorts after); the last wins.
    nodes.sh(minion, f"echo 2 > /proc/sys/{RP_FILTER_PATH}; sysctl --system >/dev/null")
    assert nodes.live(minion, RP_FILTER_PATH) == "0"
    assert nodes.audit(salt_master, minion, cni="cilium")["ready"] is True


def test_calico_makes_loose_rp_filter_strict_and_leaves_an_accepted_value(salt_master, rp_filter_restored):
    minion = rp_filter_restored["bookworm"]
    nodes.sh(minion, f"echo 2 > /proc/sys/{RP_FILTER_PATH}")
    check = nodes.audit(salt_master, minion, cni="calico")["checks"][f"sysctl:{RP_FILTER}"]
    assert (check["status"], check["expected"], check["live"]) == ("fail", "0 or 1", "2")

    state = _apply_ok(salt_master, minion, pillar={"k8snode": {"cni": "calico"}})
    assert state["changes"][f"sysctl:{RP_FILTER}"] == {"old": "2", "new": "1"}
    assert nodes.live(minion, RP_FILTER_PATH) == "1"
    assert f"{RP_FILTER} = 1" in _persisted(minion)
    report = nodes.audit(salt_master, minion, cni="calico")
    assert report["ready"] is True, report["failing"]

    # 0 now and 1 at boot are both accepted: nothing to change.
    nodes.sh(minion, f"echo 0 > /proc/sys/{RP_FILTER_PATH}")
    assert _apply_ok(salt_master, minion, pillar={"k8snode": {"cni": "calico"}})["changes"] == {}
    assert nodes.live(minion, RP_FILTER_PATH) == "0"

    # A fresh node at 0 stays at 0, now and in the file for boot (not moved to 1).
    other = rp_filter_restored["bullseye"]
    nodes.sh(other, f"echo 0 > /proc/sys/{RP_FILTER_PATH}")
    state = _apply_ok(salt_master, other, pillar={"k8snode": {"cni": "calico"}})
    assert f"sysctl:{RP_FILTER}" not in state["changes"]
    assert nodes.live(other, RP_FILTER_PATH) == "0"
    assert f"{RP_FILTER} = 0" in _persisted(other)
    assert nodes.audit(salt_master, other, cni="calico")["ready"] is True


def _old_kernel_tree(minion, root, release):
    """A read-only tree in the container: a kernel with module support, no nf_tables."""
    script = (
        f"r={shlex.quote(root)}; rm -rf $r; mkdir -p $r/proc/sys/kernel $r/etc $r/lib/modules/{release}; "
        f"echo {release} > $r/proc/sys/kernel/osrelease; : > $r/proc/modules; "
        f": > $r/lib/modules/{release}/modules.dep; : > $r/lib/modules/{release}/modules.builtin; "
        "printf 'ID=debian\\nVERSION_ID=\"11\"\\n' > $r/etc/os-release"
    )
    nodes.sh(minion, script)


def test_nftables_mode_on_the_real_kernel_and_on_an_old_tree(salt_master, fresh_nodes):
    minion = fresh_nodes["trixie"]
    release = nodes.sh(minion, "cat /proc/sys/kernel/osrelease").strip()
    major, minor = (int(part) for part in re.match(r"(\d+)\.(\d+)", release).groups())
    assert (major, minor) >= (5, 13), f"CI's kernel {release} is expected to be newer than 5.13"

    report = nodes.audit(salt_master, minion, kube_proxy_mode="nftables")
    assert report["kube_proxy_mode"] == "nftables"
    floor = report["checks"]["kernel_version"]
    assert (floor["status"], floor["expected"], floor["live"]) == ("ok", ">= 5.13", release)
    module = report["checks"]["module:nf_tables"]
    assert (module["status"], module["live"]) == ("ok", "builtin"), module
    assert module["detail"] == "nf_tables is built into the kernel (CONFIG_NF_TABLES=y in /proc/config.gz)"

    old = "/tmp/k8snode-old-kernel"
    _old_kernel_tree(minion, old, "5.10.0-28-amd64")
    try:
        report = nodes.audit(salt_master, minion, kube_proxy_mode="nftables", root=old)
    finally:
        nodes.sh(minion, f"rm -rf {old}")
    assert report["ready"] is False
    floor = report["checks"]["kernel_version"]
    assert floor["status"] == "fail"
    assert floor["detail"] == (
        "kernel 5.10.0-28-amd64 is older than 5.13, which kube_proxy_mode:nftables requires "
        "(kube-proxy's nftables mode)"
    )
    module = report["checks"]["module:nf_tables"]
    assert (module["status"], module["live"]) == ("fail", "missing")
    assert module["detail"].startswith("nf_tables is not in this kernel")
    assert {"kernel_version", "module:nf_tables"} <= set(report["failing"])
