"""Precedence and swap for real (issue 11, tests 4 and 5, and 7 at the end) on one Debian 12 node.

Test 4: Debian 12's ``/etc/sysctl.conf`` (read through the ``99-sysctl.conf`` link, after
``99-k8snode.conf``) setting ``net.ipv4.ip_forward = 0``: the audit names that file, the
state fails that item naming it, a reboot gives the value the audit predicted; with
``files:`` naming a file that sorts last, the state succeeds and a reboot proves it.

Test 5: a swap file in ``/etc/fstab`` and one as an enabled systemd ``.swap`` unit,
active at boot.  k8snode's kubeadm profile turns swap off now (swapoff) and for the next
boot by commenting out the fstab lines; a swap unit it does not touch: that item fails
and asks for the unit to be masked or removed (``_swap_off`` in the execution module).
The test does what an operator told so would do, and proves it with real boots;
``k8snode.absent`` brings fstab swap back at the next boot.

The two tests used to boot their own node (seven boots between them, at 20 to 45 s
each under TCG).  Their setups touch different things (sysctl files, swap devices) and
each reboot below proves a step of both, so one node boots five times:

1. boot, both setups;
2. reboot: both swaps active at boot; the audit names ``99-sysctl.conf`` and both swap
   sources; the kubeadm apply fails the ``ip_forward`` item and the swap unit item;
   the operator disables the unit, the next apply fails only ``ip_forward``;
3. reboot: ``ip_forward`` is 0 as predicted, no swap; ``files:`` zz-k8snode.conf fixes it,
   applied masterless in the guest (``salt-call --local``, as Packer bakes an image), then
   a clean poweroff;
4. the first boot of a new node made from that disk (issue 24's image baking): with no
   Salt run, ``ip_forward`` is 1, no swap, the node is ready; ``k8snode.absent``;
5. reboot: fstab swap is back (and ``/etc/sysctl.conf`` wins again, as predicted), and
   nothing else of k8snode's is loaded or set (issue 11's test 7; it used to reboot the
   node of test_lifecycle_real.py once more); with ``failSwapOn: false`` in the kubelet's
   config file, kubeadm's profile leaves swap on and the node is ready; without that line
   it is not (issue 19).

Issue 20 on boot 5: a FORWARD policy of DROP restored by netfilter-persistent, kube-proxy's
first ``nf_conntrack_max`` write failing without the module, and a ClusterIP on one bridge
that needs br_netfilter and an accepting FORWARD chain.  Last, issue 14: a kernel without
nf_tables (its ``.ko`` removed), which the audit and the state name.

Issue 22 rides on the same boots: a sysctl.d file widens the ephemeral port range over the
NodePorts (``node_ports`` warns from boot 2); the pillar's ``ip_local_reserved_ports``
applied before boot 4 is the kernel's value after it (the fix survives the reboot), and
``k8snode.absent`` takes it away again at boot 5.
"""

import json

import pytest

from tests.integration.vm.conftest import VM_NODES
from tests.support import nodes, vm
from tests.support.vm_checks import (
    MODULES_FILE,
    SYSCTL_FILE,
    apply,
    audit,
    cluster_ip_on_one_bridge,
    live_sysctls,
    modules_load_journal,
    pillar,
    proc_modules,
    read_files,
    swaps,
    sysctl_checks,
)

pytestmark = pytest.mark.real_node(release="bookworm")

IP_FORWARD = "sysctl:net.ipv4.ip_forward"
SYSCTL_CONF_LINK = "/etc/sysctl.d/99-sysctl.conf"
PRECEDENCE_FAILURE = f"{IP_FORWARD}: {SYSCTL_CONF_LINK} sets 0 at boot"
LATER = {"files": {"sysctl": "/etc/sysctl.d/zz-k8snode.conf"}}
NODE_PORTS = "30000-32767"
RESERVED = {**LATER, "sysctls": {"net.ipv4.ip_local_reserved_ports": NODE_PORTS}}
WIDE_PORTS = "/etc/sysctl.d/60-wide-ports.conf"
#: kubeadm's modules: nothing but systemd-modules-load loads them at boot on these nodes.
KUBEADM_MODULES = ("overlay", "br_netfilter", "nf_conntrack")
BRIDGE_KEYS = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")
#: What Debian's iptables-persistent restores at boot (netfilter-persistent).
RULES_V4 = "/etc/iptables/rules.v4"

KUBELET_SWAP = "apiVersion: kubelet.config.k8s.io/v1beta1\\nkind: KubeletConfiguration\\nfailSwapOn: false\\n"
FSTAB_SWAP = "/swapfstab"
UNIT_SWAP = "/swapunit"
UNIT = "swapunit.swap"
UNIT_LINK = f"/etc/systemd/system/swap.target.wants/{UNIT}"
UNIT_FAILURE = f"swap: swap comes back at boot from {UNIT_LINK}: mask or remove it"

SETUP = f"""
echo 'net.ipv4.ip_forward = 0' >> /etc/sysctl.conf
echo 'net.ipv4.ip_local_port_range = 10000 65000' > {WIDE_PORTS}
for f in {FSTAB_SWAP} {UNIT_SWAP}; do
    dd if=/dev/zero of=$f bs=1M count=16 status=none; chmod 600 $f; mkswap $f >/dev/null
done
echo '{FSTAB_SWAP} none swap sw 0 0' >> /etc/fstab
printf '[Unit]\\nDescription=k8snode test: swap as a unit\\n[Swap]\\nWhat={UNIT_SWAP}\\n[Install]\\nWantedBy=swap.target\\n' \\
    > /etc/systemd/system/{UNIT}
systemctl daemon-reload
systemctl enable {UNIT} 2>/dev/null
sync
"""


def bake(master, node, pillar_data):
    """``salt-call --local state.apply k8snode`` inside the guest, as Packer's masterless
    provisioner runs it while it builds an image (issue 24): the state tree uploaded first
    (here from the master's file server, ``cp.get_dir``), the pillar given on the command
    line; the modules are the ones on the node (conftest's ``vm_extension``, as an image
    baked with the extension has them). Returns (exit code, the single state's return)."""
    code, copied = node.link.salt(node.minion_id, "cp.get_dir", "salt://k8snode", "/srv/bake")
    assert code == 0 and copied, copied
    ran = node.run(
        "salt-call --local --retcode-passthrough --out=json --file-root=/srv/bake "
        f"state.apply k8snode pillar='{json.dumps(pillar_data)}'",
        timeout=300,
    )
    return ran["retcode"], nodes.only_state(json.loads(ran["stdout"])["local"])


def test_sysctl_conf_wins_at_boot_and_swap_goes_off_and_comes_back_as_the_audit_says(salt_master, fresh_vm, request):
    node = fresh_vm()
    # Debian 12: procps links 99-sysctl.conf to /etc/sysctl.conf, read after 99-k8snode.conf.
    assert node.sh(f"readlink {SYSCTL_CONF_LINK}").strip() == "../sysctl.conf"
    node.sh(SETUP)

    node.reboot()  # 2
    # systemd activated both at boot (in a "container" it leaves fstab swap alone).
    assert sorted(swaps(node)) == [FSTAB_SWAP, UNIT_SWAP]
    report = audit(salt_master, node)
    check = report["checks"][IP_FORWARD]
    assert (check["boot"], check["boot_file"]) == ("0", SYSCTL_CONF_LINK), check
    check = report["checks"]["swap"]
    assert check["status"] == "fail"
    assert check["boot"] == [f"/etc/fstab: {FSTAB_SWAP}", UNIT_LINK], check
    check = report["checks"]["node_ports"]
    assert (check["status"], check["live"], check["taken_now"]) == ("warn", "10000 65000", NODE_PORTS), check

    predicted = _kubeadm_fails_the_later_file_and_the_swap_unit(salt_master, node)

    node.reboot()  # 3
    boot_values = {key: check["boot"] for key, check in sysctl_checks(predicted).items()}
    assert boot_values["net.ipv4.ip_forward"] == "0"
    assert live_sysctls(node, boot_values) == boot_values  # ip_forward: 0, as predicted
    assert swaps(node) == []
    assert audit(salt_master, node)["failing"] == [IP_FORWARD]  # swap is off for good

    code, state = bake(salt_master, node, pillar(RESERVED))
    assert code == 0 and state["result"] is True, state
    # The file the kubeadm applies wrote is ours: the new name replaces it, or it would
    # still act at boot (and outlive k8snode.absent).
    assert state["changes"][f"file:{SYSCTL_FILE}"]["new"] is None, state
    predicted = audit(salt_master, node)
    check = predicted["checks"][IP_FORWARD]
    assert (check["status"], check["boot"], check["boot_file"]) == ("ok", "1", "/etc/sysctl.d/zz-k8snode.conf")
    check = predicted["checks"]["node_ports"]
    assert (check["status"], check["boot"]) == ("ok", "10000 65000"), check
    assert predicted["ready"] is True, predicted["failing"]
    assert (predicted["checks"]["swap"]["live"], predicted["checks"]["swap"]["boot"]) == ([], [])

    # As Packer ends a build: a clean poweroff. Boot 4 is the first boot of a new node made
    # from that disk, with its own minion id and no Salt run before these checks.
    node.poweroff()
    node = vm.from_baked_disk(node, f"{node.minion_id}-baked")
    request.node.stash[VM_NODES].append(node)  # killed and its key deleted after the test
    node.boot()  # 4
    assert live_sysctls(node, ["net.ipv4.ip_forward", "net.ipv4.ip_local_reserved_ports"]) == {
        "net.ipv4.ip_forward": "1",
        "net.ipv4.ip_local_reserved_ports": NODE_PORTS,  # the kernel's own reading of the file
    }
    assert swaps(node) == []
    # kubeadm's profile persisted nf_conntrack: kube-proxy's first write at start works (issue 20).
    assert node.sh("echo 262144 > /proc/sys/net/netfilter/nf_conntrack_max && echo ok").strip() == "ok"
    # Debian's systemd boots cgroup v2: ready for the 1.35 kubelet, whose failCgroupV1 defaults to true.
    report = audit(salt_master, node, kubernetes_version="1.35")
    assert report["ready"] is True, report["failing"]
    assert (report["checks"]["cgroup"]["status"], report["checks"]["cgroup"]["live"]) == ("ok", "v2")
    assert report["checks"]["node_ports"]["status"] == "ok", report["checks"]["node_ports"]

    # With the same files: as the prepare, so that it removes zz-k8snode.conf too.
    code, state = apply(salt_master, node, "k8snode.absent", pillar=pillar(RESERVED))
    assert code == 0 and state["result"] is True, state
    assert {f"file:{LATER['files']['sysctl']}", f"file:{MODULES_FILE}"} <= set(state["changes"]), state
    _a_firewall_file_will_drop_forwarded_traffic(node)
    predicted = audit(salt_master, node)
    assert predicted["checks"]["swap"]["boot"] == [f"/etc/fstab: {FSTAB_SWAP}"], predicted["checks"]["swap"]
    check = predicted["checks"][IP_FORWARD]
    assert (check["boot"], check["boot_file"]) == ("0", SYSCTL_CONF_LINK), check
    assert predicted["checks"]["node_ports"]["lost_at_reboot"] is True, predicted["checks"]["node_ports"]
    _absent_leaves_them_loaded_and_set_until_the_reboot(predicted)

    node.reboot()  # 5
    assert swaps(node) == [FSTAB_SWAP]
    after = _nothing_of_ours_at_the_boot_after_absent(salt_master, node)
    assert after["checks"]["node_ports"]["taken_now"] == NODE_PORTS
    _kube_proxys_first_write_fails_without_nf_conntrack(node, after)
    _a_cluster_ip_on_one_bridge_needs_br_netfilter(node, after)

    _swap_on_purpose(salt_master, node)
    _a_kernel_without_nf_tables_fails_naming_it(salt_master, node)  # issue 14


def _a_firewall_file_will_drop_forwarded_traffic(node):
    """Issue 20, scenario 5, for the next boot: a firewall file that drops forwarded
    traffic, restored by Debian's netfilter-persistent (with iptables-legacy, so that
    nf_tables stays unloaded for the last phase)."""
    node.sh(
        "update-alternatives --quiet --set iptables /usr/sbin/iptables-legacy; "
        f"printf '*filter\\n:INPUT ACCEPT [0:0]\\n:FORWARD DROP [0:0]\\n:OUTPUT ACCEPT [0:0]\\nCOMMIT\\n' > {RULES_V4}; sync"
    )


def _absent_leaves_them_loaded_and_set_until_the_reboot(predicted):
    """Issue 11, test 7, before the reboot: still loaded and set now, but nothing persists
    them, and the audit says what the next boot loses."""
    lost = {"module:br_netfilter", "module:nf_conntrack", IP_FORWARD, f"sysctl:{BRIDGE_KEYS[0]}"}
    assert lost <= set(predicted["lost_at_reboot"]), predicted["lost_at_reboot"]
    # overlay is not lost: the kernel loads it again on the first overlay mount.
    check = predicted["checks"]["module:overlay"]
    assert (check["status"], check["lost_at_reboot"]) == ("warn", False), check
    assert "the kernel loads it again" in check["detail"], check
    for key in BRIDGE_KEYS:
        assert predicted["checks"][f"sysctl:{key}"]["boot"] is None, predicted["checks"][f"sysctl:{key}"]


def _nothing_of_ours_at_the_boot_after_absent(salt_master, node):
    """Issue 11, test 7, after the reboot: systemd loaded and set nothing of k8snode's
    (the kernel's own lists, the journal), and the audit agrees. Returns that audit."""
    assert not set(KUBEADM_MODULES) & proc_modules(node)
    journal = modules_load_journal(node)
    for module in KUBEADM_MODULES:
        assert module not in journal, journal
    assert node.sh("grep -rl k8snode /etc/sysctl.d /etc/modules-load.d || true").strip() == ""
    assert live_sysctls(node, ["net.ipv4.ip_forward", BRIDGE_KEYS[0]]) == {
        "net.ipv4.ip_forward": "0",
        BRIDGE_KEYS[0]: None,
    }
    assert node.sh("iptables-legacy -S FORWARD").splitlines()[0] == "-P FORWARD DROP"  # restored at boot
    after = audit(salt_master, node)
    assert after["ready"] is False
    assert after["lost_at_reboot"] == []
    check = after["checks"]["forward_policy"]
    assert (check["status"], check["boot"]) == ("warn", "DROP"), check
    assert f"DROP from {RULES_V4}:3 (netfilter-persistent" in check["detail"], check
    for module in ("overlay", "br_netfilter"):
        check = after["checks"][f"module:{module}"]
        assert (check["live"], check["boot"]) == ("available", "not persisted"), check
    return after


def _swap_on_purpose(salt_master, node):
    """Issue 19: swap on with the kubelet's ``failSwapOn: false`` in its own config file.
    kubeadm's profile leaves swap on and the node is ready; without that line the
    kubelet's default (true) makes it exit at start, and the audit says so."""
    node.sh(f"mkdir -p /var/lib/kubelet && printf '{KUBELET_SWAP}' > /var/lib/kubelet/config.yaml && sync")
    code, state = apply(salt_master, node, pillar=pillar(LATER))
    assert code == 0 and state["result"] is True, state
    assert swaps(node) == [FSTAB_SWAP]  # prepare left it on
    report = audit(salt_master, node, kubernetes_version="1.35")
    assert report["ready"] is True, report["failing"]
    check = report["checks"]["swap"]
    assert check["status"] == "warn" and check["live"] == [FSTAB_SWAP], check
    assert "failSwapOn is false (/var/lib/kubelet/config.yaml: failSwapOn)" in check["detail"], check

    node.sh("sed -i '/failSwapOn/d' /var/lib/kubelet/config.yaml")
    report = audit(salt_master, node, kubernetes_version="1.35")
    assert report["ready"] is False
    assert report["failing"] == ["swap"], report["failing"]
    assert "failSwapOn is true (the kubelet's 1.35 default" in report["checks"]["swap"]["detail"]


def _kubeadm_fails_the_later_file_and_the_swap_unit(salt_master, node):
    """Two applies of kubeadm's profile: the first fails ip_forward (naming the file that
    wins) and the swap unit; after the operator disables the unit, only ip_forward.
    Returns the audit's prediction for the next boot."""
    code, state = apply(salt_master, node)
    assert code != 0 and state["result"] is False, state
    assert PRECEDENCE_FAILURE in state["comment"], state
    assert {f"swap:{FSTAB_SWAP}", f"swap:{UNIT_SWAP}", "file:/etc/fstab"} <= set(state["changes"]), state
    assert UNIT_FAILURE in state["comment"], state
    assert swaps(node) == []
    files = read_files(node, "/etc/fstab", "/etc/fstab.k8snode.bak", SYSCTL_FILE)
    assert f"#k8snode-swap-off# {FSTAB_SWAP} none swap sw 0 0" in files["/etc/fstab"].splitlines()
    assert f"{FSTAB_SWAP} none swap sw 0 0" in files["/etc/fstab.k8snode.bak"].splitlines()
    assert "net.ipv4.ip_forward = 1" in files[SYSCTL_FILE]
    predicted = audit(salt_master, node)
    check = predicted["checks"][IP_FORWARD]
    assert (check["status"], check["live"], check["boot"]) == ("fail", "1", "0"), check
    assert IP_FORWARD in predicted["lost_at_reboot"]

    # What the swap failure asks for: the unit no longer starts at boot.
    node.sh(f"systemctl disable {UNIT} 2>/dev/null")
    code, state = apply(salt_master, node)
    assert code != 0 and state["result"] is False, state
    # Failures are listed sorted by item: a swap failure would come first.
    assert state["comment"].startswith(f"Failed: {PRECEDENCE_FAILURE}"), state
    assert UNIT_FAILURE not in state["comment"], state
    predicted = audit(salt_master, node)
    assert predicted["failing"] == [IP_FORWARD], predicted["failing"]
    assert (predicted["checks"]["swap"]["live"], predicted["checks"]["swap"]["boot"]) == ([], [])
    check = predicted["checks"][IP_FORWARD]
    assert (check["status"], check["live"], check["boot"]) == ("fail", "1", "0"), check
    return predicted


def _kube_proxys_first_write_fails_without_nf_conntrack(node, report):
    """Issue 20, scenario 4: after a boot with nothing persisted, kube-proxy's first write
    at start (cmd/kube-proxy/app/conntrack.go SetMax) finds no nf_conntrack_max: it would
    exit (kubernetes/kops#17968), and the audit (``report``, kubeadm's profile; k3s' has
    the same rule: tests/unit/test_releases.py) fails on that module. Boot 4 showed the
    same write working with the module persisted."""
    wrote = node.sh(
        "grep -q '^nf_conntrack ' /proc/modules && echo loaded; "
        "echo 262144 > /proc/sys/net/netfilter/nf_conntrack_max 2>/dev/null && echo ok || echo enoent"
    )
    assert wrote.split() == ["enoent"], wrote
    check = report["checks"]["module:nf_conntrack"]
    assert (check["status"], check["live"]) == ("fail", "available"), check


def _a_cluster_ip_on_one_bridge_needs_br_netfilter(node, report):
    """Issue 20, scenarios 2 and 5, on a node that booted with nothing of k8snode's and a
    FORWARD policy of DROP from rules.v4: the ClusterIP gets no answer; the audit fails
    br_netfilter (the backend's reply is bridged past conntrack: kubernetes/kubernetes#87426)
    and warns on forward_policy. ``modprobe br_netfilter`` (bridge-nf-call-iptables is 1
    when it loads) is not enough while FORWARD drops the routed SYN (the bridge plugin adds
    no ACCEPT rule); with the policy ACCEPT the same ClusterIP answers."""
    check = report["checks"]["module:br_netfilter"]
    assert (check["status"], check["live"]) == ("fail", "available"), check
    assert cluster_ip_on_one_bridge(node).startswith("failed")
    assert node.sh("modprobe br_netfilter; cat /proc/sys/net/bridge/bridge-nf-call-iptables").strip() == "1"
    assert cluster_ip_on_one_bridge(node).startswith("failed")  # FORWARD still drops
    node.sh(f"iptables-legacy -P FORWARD ACCEPT; rm -f {RULES_V4}; sync")
    assert cluster_ip_on_one_bridge(node) == "answered 200"


def _a_kernel_without_nf_tables_fails_naming_it(salt_master, node):
    """A kernel that lacks nf_tables, for real: its .ko removed and ``depmod`` run, so that
    modules.dep no longer lists it and ``modprobe`` cannot find it (what a kernel built
    without CONFIG_NF_TABLES looks like, minus modules.builtin)."""
    assert "nf_tables" not in proc_modules(node)
    node.sh('rm -f "$(modinfo -n nf_tables)"; depmod -a; ! modprobe -n nf_tables 2>/dev/null')
    report = audit(salt_master, node, kube_proxy_mode="nftables")
    check = report["checks"]["module:nf_tables"]
    assert (check["status"], check["live"]) == ("fail", "missing"), check
    assert "nf_tables is not in this kernel" in check["detail"], check
    assert "module:nf_tables" in report["failing"]
    assert report["checks"]["kernel_version"]["status"] == "ok"  # the version is not what fails

    code, state = apply(salt_master, node, pillar=pillar({"kube_proxy_mode": "nftables"}))
    assert code != 0 and state["result"] is False, state
    assert "module:nf_tables: " in state["comment"], state
    assert "modprobe nf_tables: modprobe: FATAL: Module nf_tables not found" in state["comment"], state
    assert "nf_tables" not in proc_modules(node)
