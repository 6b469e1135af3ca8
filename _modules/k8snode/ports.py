"""
Ephemeral ports inside the NodePort range.

The kernel picks the local port of an outgoing connection from
``net.ipv4.ip_local_port_range`` (IPv6 too), skipping ``net.ipv4.ip_local_reserved_ports``
(Documentation/networking/ip-sysctl.rst). A range that overlaps the cluster's NodePort
range (kube-apiserver's ``--service-node-port-range``, 30000-32767 by default) lets a
connection the node opens take a NodePort's number: kube-proxy cannot hold that port, and
traffic to the Service on this node is lost or goes to the wrong socket
(kubernetes/kubernetes#111682; the Kubernetes docs' Service page asks to keep the ranges
apart). The kernel's default range, 32768-60999, does not overlap the default NodePorts.

Read for now (/proc/sys) and for the next boot (sysctl.d, the boot model): the overlap
less the reserved ports. The fix is data: ``sysctls: {net.ipv4.ip_local_reserved_ports:
"30000-32767"}`` in the pillar (``prepare`` sets and persists it), or a narrower range.
"""

from . import sysctl_boot
from .validate import port_runs, port_runs_text
from .verdict import check

_RANGE_KEY = "net.ipv4.ip_local_port_range"
_RESERVED_KEY = "net.ipv4.ip_local_reserved_ports"
#: The kernel's own values at boot (net/ipv4/af_inet.c inet_init_net: 32768 60999; none reserved).
KERNEL_DEFAULT_RANGE = "32768 60999"


def parse_port_list(text):
    """``[(first, last)]`` of ``ip_local_reserved_ports``' form: ``"8080,30000-32767"``."""
    ranges = []
    for part in (text or "").replace(" ", "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            ranges.append((int(first), int(last or first)))
        except ValueError:
            continue
    return ranges


def _uncovered(port_range, node_ports, reserved):
    """The NodePorts inside ``port_range`` ("first last") not in ``reserved``, as ranges."""
    try:
        first, last = (int(field) for field in port_range.split())
    except (ValueError, AttributeError):
        return []
    low, high = max(first, node_ports[0]), min(last, node_ports[1])
    return port_runs(port for port in range(low, high + 1) if not any(a <= port <= b for a, b in reserved))


def node_ports_check(resolved, root, boot):
    """The audit's ``node_ports`` check: a warning while, or from the next boot, the
    ephemeral port range takes NodePorts that are not reserved."""
    node_ports = resolved["node_port_range"]
    wanted = f"{node_ports[0]}-{node_ports[1]}"
    live_range, live_reserved = sysctl_boot.read_live(root, _RANGE_KEY), sysctl_boot.read_live(root, _RESERVED_KEY)
    if live_range is None:
        return None  # not this kernel's network namespace's to say (no /proc/sys/net)
    boot_range = sysctl_boot.boot_assignment(sysctl_boot.sysctl_path(_RANGE_KEY), boot)
    boot_reserved = sysctl_boot.boot_assignment(sysctl_boot.sysctl_path(_RESERVED_KEY), boot)
    boot_range_value = (boot_range or {}).get("value") or KERNEL_DEFAULT_RANGE
    boot_reserved_value = (boot_reserved or {}).get("value") or ""
    live = _uncovered(live_range, node_ports, parse_port_list(live_reserved))
    at_boot = _uncovered(boot_range_value, node_ports, parse_port_list(boot_reserved_value))
    fix = (
        f'reserve them (pillar k8snode:sysctls: {{{_RESERVED_KEY}: "{wanted}"}}, which state.apply sets and '
        f"persists) or move {_RANGE_KEY} off {wanted}"
    )
    where = (boot_range or {}).get("file") or "the kernel's default"
    if not live and not at_boot:
        detail = f"{_RANGE_KEY} {live_range} leaves the NodePort range {wanted} alone"
        if live_reserved:
            detail += f" ({_RESERVED_KEY} {live_reserved})"
        return check("ok", False, f"no ephemeral port in {wanted}", live_range, boot_range_value, detail)
    if live:
        detail = (
            f"{_RANGE_KEY} is {live_range}: outgoing connections can take NodePorts {port_runs_text(live)} "
            f"(NodePort range {wanted}, kubernetes/kubernetes#111682); {fix}"
        )
    else:
        detail = (
            f"NodePorts are free now, but at the next boot {_RANGE_KEY} is {boot_range_value} ({where}) and "
            f"NodePorts {port_runs_text(at_boot)} are not reserved then; {fix}"
        )
    return check(
        "fail",
        False,
        f"no ephemeral port in {wanted}",
        live_range,
        boot_range_value,
        detail,
        lost_at_reboot=not live and bool(at_boot),
        taken_now=port_runs_text(live),
        taken_at_boot=port_runs_text(at_boot),
    )
