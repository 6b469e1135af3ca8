"""What tests read from a real node (tests/support/vm.py), in one guest call each."""

from __future__ import annotations

import json
import shlex

from tests.support import nodes

SYSCTL_FILE = "/etc/sysctl.d/99-k8snode.conf"
MODULES_FILE = "/etc/modules-load.d/k8snode.conf"


def proc_modules(node) -> set[str]:
    """Module names listed in the guest's /proc/modules."""
    return {line.split()[0] for line in node.sh("cat /proc/modules").splitlines() if line.strip()}


def live_sysctls(node, keys) -> dict[str, str | None]:
    """``{key: value read from /proc/sys, or None when the key does not exist}``."""
    keys = list(keys)
    script = "; ".join(
        f"f=/proc/sys/{shlex.quote(key.replace('.', '/'))}; "
        'if [ -e "$f" ]; then echo "$(cat "$f" | tr -s "\\t " " ")"; else echo "<none>"; fi'
        for key in keys
    )
    values = node.sh(script).splitlines()
    assert len(values) == len(keys), values
    return {key: (None if value == "<none>" else value) for key, value in zip(keys, values)}


def read_files(node, *paths) -> dict[str, str | None]:
    """``{path: contents, or None when missing}``, read in the guest."""
    script = (
        "import json, sys\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        out[p] = open(p).read()\n"
        "    except FileNotFoundError:\n"
        "        out[p] = None\n"
        "print(json.dumps(out))\n"
    )
    argv = " ".join(shlex.quote(path) for path in paths)
    return json.loads(node.sh(f"python3 -c {shlex.quote(script)} {argv}"))


def modules_load_journal(node) -> str:
    """What systemd-modules-load said during this boot.

    Matched by the identifier the program sends with each message, not with ``-u``:
    systemd-modules-load often runs before journald has started; its messages wait in
    the journal socket, and when the program has exited by the time journald reads
    them, journald cannot look up its cgroup, so they carry no ``_SYSTEMD_UNIT`` and
    ``-u systemd-modules-load.service`` finds nothing (seen on Debian 13 after a power
    cut, under load).
    """
    return node.sh("journalctl -b -o cat SYSLOG_IDENTIFIER=systemd-modules-load --no-pager")


def swaps(node) -> list[str]:
    """Devices in the guest's /proc/swaps."""
    return [line.split()[0] for line in node.sh("cat /proc/swaps").splitlines()[1:] if line.strip()]


def audit(master, node, **kwargs) -> dict:
    return nodes.audit(master, node, **kwargs)


def apply(master, node, *sls, **kwargs):
    """state.apply through the master: (exit code, the single state's return)."""
    code, ret = nodes.apply(master, node, *sls, **kwargs)
    return code, nodes.only_state(ret)


def sysctl_checks(report: dict) -> dict[str, dict]:
    return {name.split(":", 1)[1]: check for name, check in report["checks"].items() if name.startswith("sysctl:")}


def pillar(settings: dict) -> dict:
    """The ``pillar=`` of a state.apply: ``{"k8snode": settings}``."""
    return json.loads(json.dumps({"k8snode": settings}))


#: Two pods (network namespaces, as the kubelet's sandboxes are) wired to one bridge by
#: Debian's CNI ``bridge`` plugin with ``host-local`` IPAM, called the way containerd's CRI
#: and the kubelet call it (CNI_COMMAND/CNI_NETNS/CNI_IFNAME/CNI_ARGS in the environment,
#: the network configuration on stdin); the backend behind a ClusterIP written the way
#: kube-proxy's iptables mode writes it (a DNAT in a KUBE-SERVICES chain reached from
#: PREROUTING and OUTPUT); a client in the other pod connecting to the ClusterIP:
#: kubernetes/kubernetes#87426. The backend's reply is bridged straight back to the
#: client; only br_netfilter (with bridge-nf-call-iptables = 1) sends it through
#: conntrack, which turns its source back into the ClusterIP. The pods' processes are
#: Debian's busybox-static (httpd, nc). iptables-legacy, so that nf_tables stays
#: unloaded for the tests that need it so. Everything is removed after (CNI DEL first).
CLUSTER_IP_SCRIPT = r"""
CNI=/usr/lib/cni
conf='{"cniVersion": "1.0.0", "name": "k8snode-pods", "type": "bridge", "bridge": "k8snode-br0",
  "isGateway": true, "ipMasq": false,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]],
           "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/run/k8snode-cni/ipam"}}'
cni() {  # cni ADD|DEL POD IP
    echo "$conf" | CNI_COMMAND=$1 CNI_CONTAINERID=k8snode-$2 CNI_NETNS=/run/netns/k8snode-$2 CNI_IFNAME=eth0 \
        CNI_PATH=$CNI CNI_ARGS="IgnoreUnknown=1;IP=$3" $CNI/bridge >/dev/null
}
cleanup() {
    set +e
    iptables-legacy -t nat -D PREROUTING -j KUBE-SERVICES 2>/dev/null
    iptables-legacy -t nat -D OUTPUT -j KUBE-SERVICES 2>/dev/null
    iptables-legacy -t nat -F KUBE-SERVICES 2>/dev/null; iptables-legacy -t nat -X KUBE-SERVICES 2>/dev/null
    [ -n "$server" ] && kill $server 2>/dev/null
    cni DEL a 10.244.0.2 2>/dev/null; cni DEL b 10.244.0.3 2>/dev/null
    ip netns del k8snode-a 2>/dev/null; ip netns del k8snode-b 2>/dev/null; ip link del k8snode-br0 2>/dev/null
    rm -rf /run/k8snode-cni
    sysctl -qw net.ipv4.ip_forward=$forward
}
forward=$(cat /proc/sys/net/ipv4/ip_forward); server=
trap cleanup EXIT
set -e
ip netns add k8snode-a; ip netns add k8snode-b
cni ADD a 10.244.0.2; cni ADD b 10.244.0.3
# What the bridge plugin left in ip_forward (as a gateway it turns it on: ip.EnableForward).
echo "ip_forward after CNI ADD: $(cat /proc/sys/net/ipv4/ip_forward)"
# Routing through the node is ip_forward's business, another requirement: on for this
# probe either way, and put back after.
sysctl -qw net.ipv4.ip_forward=1
iptables-legacy -t nat -N KUBE-SERVICES
iptables-legacy -t nat -A PREROUTING -j KUBE-SERVICES
iptables-legacy -t nat -A OUTPUT -j KUBE-SERVICES
iptables-legacy -t nat -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp --dport 80 -j DNAT --to-destination 10.244.0.3:8080
mkdir -p /run/k8snode-cni/www; echo k8snode-pod-b > /run/k8snode-cni/www/index.html
ip netns exec k8snode-b busybox httpd -f -p 10.244.0.3:8080 -h /run/k8snode-cni/www &
server=$!
for i in $(seq 50); do ip netns exec k8snode-b ss -ltn | grep -q 10.244.0.3:8080 && break; sleep 0.1; done
set +e
# The client: an HTTP GET over busybox nc (busybox-static's wget segfaults in Debian 12:
# static glibc's getaddrinfo).
reply=$(printf 'GET / HTTP/1.0\r\n\r\n' | ip netns exec k8snode-a busybox nc -w CLIENT_TIMEOUT 10.96.0.10 80 2>&1)
status=$(echo "$reply" | head -n 1 | tr -d '\r'); body=$(echo "$reply" | tail -n 1)
if [ "$status" = "HTTP/1.1 200 OK" ] && [ "$body" = k8snode-pod-b ]; then echo "answered 200"
else echo "failed: $(echo "${reply:-no answer}" | head -n 1)"; fi
"""


def cluster_ip_on_one_bridge(node, timeout: float = 3, forward_seen: list | None = None) -> str:
    """``answered 200``, or ``failed: <error>``: a pod reaching a pod on its own bridge
    through a ClusterIP (CLUSTER_IP_SCRIPT), on this node as it is now. ``timeout``: how
    long the client waits, in whole seconds (an answer under TCG takes well under one).
    ``forward_seen``, when given, gets the ip_forward value the CNI ADDs left."""
    lines = node.sh(CLUSTER_IP_SCRIPT.replace("CLIENT_TIMEOUT", str(max(1, round(timeout))))).strip().splitlines()
    if forward_seen is not None:
        forward_seen.extend(line.rsplit(" ", 1)[1] for line in lines if line.startswith("ip_forward after CNI ADD"))
    return lines[-1]


#: The test pod's image (images/vm/make-pod-image: Debian's busybox-static, one layer).
POD_IMAGE, POD_ARCHIVE = "k8snode.test/pod:1", "/usr/local/lib/k8snode/pod.tar"

#: Debian's containerd started by hand (its unit is masked in the image: Debian's
#: containerd.service runs `modprobe overlay` before it starts, which would hide what the
#: snapshotter does by itself), with its overlayfs snapshotter, the CRI plugin off (no
#: kubelet here), everything under its own root and state; the pod image imported
#: (unpacked by the snapshotter) and a container run from it. Prints the snapshotter's
#: plugin status (``ok`` or ``skip``: containerd checks overlay at start with a test
#: mount) and ``ran`` or ``failed: <ctr's error>``. Stopped and removed after.
CONTAINERD_SCRIPT = r"""
set +e  # every outcome is printed, none ends the script (tests/support/vm.py runs sh -e)
dir=/run/k8snode-containerd; root=/var/lib/k8snode-containerd; sock=$dir/containerd.sock; daemon=
cleanup() {
    [ -n "$daemon" ] && kill $daemon 2>/dev/null && wait $daemon 2>/dev/null
    awk '$2 ~ "^(/run|/var/lib)/k8snode-containerd" {print $2}' /proc/mounts | sort -r | xargs -r umount
    rm -rf $dir $root
}
trap cleanup EXIT
mkdir -p $dir
printf 'version = 2\nroot = "%s"\nstate = "%s"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "%s"\n' \
    $root $dir/state $sock > $dir/config.toml
containerd --config $dir/config.toml >$dir/log 2>&1 &
daemon=$!
for i in $(seq 300); do ctr -a $sock version >/dev/null 2>&1 && break; sleep 0.1; done
echo "overlayfs $(ctr -a $sock plugins ls | awk '$1 == "io.containerd.snapshotter.v1" && $2 == "overlayfs" {print $NF}')"
out=$( (ctr -a $sock images import --snapshotter overlayfs POD_ARCHIVE >/dev/null &&
        ctr -a $sock run --rm --snapshotter overlayfs POD_IMAGE k8snode-pod /bin/busybox echo ran) 2>&1)
[ "$out" = ran ] && echo ran || echo "failed: $(echo "$out" | tail -n 1)"
"""


def containerd_runs_a_pod(node) -> tuple[str, str]:
    """(the overlayfs snapshotter's status, ``ran`` or ``failed: ...``) on this node as it
    is now: containerd's overlayfs snapshotter running the test pod (CONTAINERD_SCRIPT)."""
    script = CONTAINERD_SCRIPT.replace("POD_ARCHIVE", POD_ARCHIVE).replace("POD_IMAGE", POD_IMAGE)
    plugin, outcome = node.sh(script).strip().splitlines()[-2:]
    return plugin.split(" ", 1)[1] if " " in plugin else "", outcome


#: A route as a network plugin writes it (flannel's host-gw: another node's pod CIDR via
#: that node's address) on a link systemd-networkd manages (a dummy link of its own
#: .netdev/.network, so that the node's uplink and the minion's connection stay as they
#: are), then systemd-networkd restarted as an update or an operator restarts it: prints
#: "route kept" or "route removed" (ManageForeignRoutes=, networkd.conf(5)).
PLUGIN_ROUTE_SCRIPT = r"""
set +e
mkdir -p /etc/systemd/network
if [ ! -e /etc/systemd/network/10-k8sdummy.netdev ]; then
    printf '[NetDev]\nName=k8sdummy0\nKind=dummy\n' > /etc/systemd/network/10-k8sdummy.netdev
    printf '[Match]\nName=k8sdummy0\n[Network]\nAddress=10.99.0.1/24\n' > /etc/systemd/network/10-k8sdummy.network
    sync
fi
configured() {  # networkd's own state file for the link says it is done with it
    for i in $(seq 100); do
        index=$(cat /sys/class/net/k8sdummy0/ifindex 2>/dev/null) \
            && grep -q '^ADMIN_STATE=configured' "/run/systemd/netif/links/$index" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
systemctl restart systemd-networkd && configured || { echo "k8sdummy0 not configured"; exit 1; }
ip route replace 10.244.1.0/24 via 10.99.0.2 dev k8sdummy0 || exit 1
systemctl restart systemd-networkd && configured || { echo "k8sdummy0 not configured again"; exit 1; }
sleep 1
if ip route show 10.244.1.0/24 | grep -q 'via 10.99.0.2'; then echo "route kept"; else echo "route removed"; fi
ip route del 10.244.1.0/24 2>/dev/null
exit 0
"""

#: One rule in each iptables backend (INPUT, a port nothing listens on: no traffic changes).
TWO_BACKENDS_SCRIPT = (
    "iptables-legacy -A INPUT -p tcp --dport 9 -j ACCEPT && iptables-nft -A INPUT -p tcp --dport 9 -j ACCEPT"
)
