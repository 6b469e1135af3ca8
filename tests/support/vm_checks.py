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


#: Two "pods" (network namespaces) on one Linux bridge, the backend behind a ClusterIP
#: written the way kube-proxy's iptables mode writes it (a DNAT in a KUBE-SERVICES chain
#: reached from PREROUTING and OUTPUT), and a client in the other pod connecting to the
#: ClusterIP: kubernetes/kubernetes#87426. The backend's reply is bridged straight back to
#: the client; only br_netfilter (with bridge-nf-call-iptables = 1) sends it through
#: conntrack, which turns its source back into the ClusterIP. iptables-legacy, so that
#: nf_tables stays unloaded for the tests that need it so. Everything is removed after.
CLUSTER_IP_SCRIPT = r"""
cleanup() {
    iptables-legacy -t nat -D PREROUTING -j KUBE-SERVICES 2>/dev/null
    iptables-legacy -t nat -D OUTPUT -j KUBE-SERVICES 2>/dev/null
    iptables-legacy -t nat -F KUBE-SERVICES 2>/dev/null; iptables-legacy -t nat -X KUBE-SERVICES 2>/dev/null
    [ -n "$server" ] && kill $server 2>/dev/null
    ip netns del k8snode-a 2>/dev/null; ip netns del k8snode-b 2>/dev/null; ip link del k8snode-br0 2>/dev/null
    sysctl -qw net.ipv4.ip_forward=$forward
}
forward=$(cat /proc/sys/net/ipv4/ip_forward); server=
trap cleanup EXIT
set -e
# Routing through the node is ip_forward's business (another requirement): on for this probe.
sysctl -qw net.ipv4.ip_forward=1
ip link add k8snode-br0 type bridge; ip addr add 10.244.0.1/24 dev k8snode-br0; ip link set k8snode-br0 up
n=2
for pod in a b; do
    ip netns add k8snode-$pod
    ip link add veth-$pod type veth peer name eth0 netns k8snode-$pod
    ip link set veth-$pod master k8snode-br0 up
    ip -n k8snode-$pod addr add 10.244.0.$n/24 dev eth0; ip -n k8snode-$pod link set eth0 up
    ip -n k8snode-$pod link set lo up; ip -n k8snode-$pod route add default via 10.244.0.1
    n=$((n + 1))
done
iptables-legacy -t nat -N KUBE-SERVICES
iptables-legacy -t nat -A PREROUTING -j KUBE-SERVICES
iptables-legacy -t nat -A OUTPUT -j KUBE-SERVICES
iptables-legacy -t nat -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp --dport 80 -j DNAT --to-destination 10.244.0.3:8080
ip netns exec k8snode-b python3 -m http.server 8080 --bind 10.244.0.3 >/dev/null 2>&1 &
server=$!
for i in $(seq 50); do ip netns exec k8snode-b ss -ltn | grep -q 10.244.0.3:8080 && break; sleep 0.2; done
set +e
ip netns exec k8snode-a python3 -c '
import urllib.request
try:
    print("answered", urllib.request.urlopen("http://10.96.0.10/", timeout=CLIENT_TIMEOUT).status)
except OSError as error:
    print("failed", type(error).__name__, error)
'
"""


def cluster_ip_on_one_bridge(node, timeout: float = 3) -> str:
    """``answered 200``, or ``failed <error>``: a pod reaching a pod on its own bridge
    through a ClusterIP (CLUSTER_IP_SCRIPT), on this node as it is now. ``timeout``: how
    long the client waits (an answer under TCG takes well under a second)."""
    return node.sh(CLUSTER_IP_SCRIPT.replace("CLIENT_TIMEOUT", str(timeout))).strip().splitlines()[-1]
