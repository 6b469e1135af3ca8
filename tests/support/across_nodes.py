"""Pods on two real nodes, reaching each other across a private L2 link (issue 20, scenario 3).

Each node gets what flannel's ``host-gw`` backend gives it (flannel-io/flannel
Documentation/backends.md: "host-gw ... create IP routes to subnets via remote machine
IPs"; pkg/backend/hostgw): a pod subnet of its own (10.244.<n>.0/24) on a bridge, and a
route to the other node's pod subnet via that node's address on the shared link. The pod is
a network namespace wired by Debian's CNI ``bridge`` plugin with ``host-local`` IPAM, called
as containerd's CRI calls it; its process is Debian's busybox-static. A packet from the pod
on node 1 to the pod on node 2 is routed by node 1 and by node 2: both need
``net.ipv4.ip_forward = 1`` (Documentation/networking/ip-sysctl.rst: "Forward Packets
between interfaces").
"""

from tests.support.harness import salt_cmd
from tests.support.vm import LINK_MACS

#: The link's subnet: node n has 192.168.77.<n>; its pods 10.244.<n>.0/24, its pod 10.244.<n>.2.
LINK_SUBNET = "192.168.77"

#: One node's share: its link NIC addressed, its pod up (CNI ADD), the route to the other
#: node's pod subnet, an HTTP server in the pod. Prints what networkd does with the link NIC
#: and ip_forward before and after the CNI ADD (the bridge plugin as a gateway turns it on).
POD_SCRIPT = r"""
me=NODE; peer=PEER; mac=MAC; cni=/usr/lib/cni
nic=$(for d in /sys/class/net/*; do [ "$(cat "$d/address")" = "$mac" ] && echo "${d##*/}"; done; true)
[ -n "$nic" ] || { echo "no NIC with $mac"; exit 1; }
echo "networkd: $(sed -n 's/^ADMIN_STATE=//p' "/run/systemd/netif/links/$(cat /sys/class/net/$nic/ifindex)")"
echo "ip_forward before the pod: $(cat /proc/sys/net/ipv4/ip_forward)"
ip addr replace LINK.$me/24 dev "$nic"; ip link set "$nic" up
ip netns add k8snode-pod
printf '{"cniVersion": "1.0.0", "name": "k8snode-node-pods", "type": "bridge", "bridge": "k8snode-cni0",
  "isGateway": true, "ipMasq": false, "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.%s.0/24"}]],
  "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/run/k8snode-cni/ipam"}}' "$me" \
  | CNI_COMMAND=ADD CNI_CONTAINERID=k8snode-pod CNI_NETNS=/run/netns/k8snode-pod CNI_IFNAME=eth0 CNI_PATH=$cni \
    CNI_ARGS="IgnoreUnknown=1;IP=10.244.$me.2" $cni/bridge >/dev/null
echo "ip_forward after CNI ADD: $(cat /proc/sys/net/ipv4/ip_forward)"
# flannel host-gw: the other node's pod subnet via the other node's address on the link.
ip route replace 10.244.$peer.0/24 via LINK.$peer dev "$nic"
mkdir -p /run/k8snode-pod/www; echo "k8snode-pod-$me" > /run/k8snode-pod/www/index.html
ip netns exec k8snode-pod busybox httpd -p 10.244.$me.2:8080 -h /run/k8snode-pod/www </dev/null >/dev/null 2>&1
for i in $(seq 50); do ip netns exec k8snode-pod ss -ltn | grep -q "10.244.$me.2:8080" && break; sleep 0.1; done
"""

#: From the pod on this node to the pod on the other node: an HTTP GET over busybox nc.
PROBE_SCRIPT = r"""
set +e
reply=$(printf 'GET / HTTP/1.0\r\n\r\n' | ip netns exec k8snode-pod busybox nc -w TIMEOUT 10.244.PEER.2 8080 2>&1)
body=$(echo "$reply" | tail -n 1)
if [ "$body" = "k8snode-pod-PEER" ]; then echo "answered"; else echo "failed: $(echo "${reply:-no answer}" | head -n 1)"; fi
"""


def _fill(script: str, me: int, peer: int) -> str:
    return (
        script.replace("NODE", str(me))
        .replace("PEER", str(peer))
        .replace("MAC", LINK_MACS[me - 1])
        .replace("LINK", LINK_SUBNET)
    )


def start_pods(nodes) -> list[dict]:
    """The pod on each of the two nodes (node 1, node 2 in ``nodes``' order): per node
    ``{"networkd": ..., "before": ip_forward before, "after": ip_forward after the CNI ADD}``."""
    seen = []
    for me, node in enumerate(nodes, 1):
        lines = node.sh(_fill(POD_SCRIPT, me, 3 - me)).strip().splitlines()
        values = dict(line.split(": ", 1) for line in lines if ": " in line)
        seen.append(
            {
                "networkd": values["networkd"],
                "before": values["ip_forward before the pod"],
                "after": values["ip_forward after CNI ADD"],
            }
        )
    return seen


def pod_to_pod(nodes, timeout: int = 3) -> str:
    """``answered`` or ``failed: ...``: the pod on node 1 reaching the pod on node 2."""
    return nodes[0].sh(_fill(PROBE_SCRIPT, 1, 2).replace("TIMEOUT", str(timeout))).strip().splitlines()[-1]


def on_both(master, nodes, fun: str, *args) -> dict:
    """``salt -L a,b FUN``: one publish, the two minions working side by side (under TCG an
    audit takes seconds); ``{minion id: return}``, both nodes having answered."""
    result = salt_cmd(master, fun, *args, tgt=[node.id for node in nodes], tgt_type="list")
    assert isinstance(result.data, dict) and sorted(result.data) == sorted(node.id for node in nodes), result
    return result.data


def audits(master, nodes) -> list[dict]:
    """Each node's ``k8snode.audit``, in ``nodes``' order, from one publish."""
    returns = on_both(master, nodes, "k8snode.audit")
    for node in nodes:
        assert isinstance(returns[node.id], dict) and "checks" in returns[node.id], returns
    return [returns[node.id] for node in nodes]
