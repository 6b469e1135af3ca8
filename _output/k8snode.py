"""
A terminal view of k8snode audits and fleet reports, for a person to scan.

.. code-block:: bash

    salt-call k8snode.audit --out=k8snode
    salt '*' k8snode.audit --out=k8snode
    salt-run k8snode.report        # uses this outputter unless --out is given
"""

import salt.utils.color

__virtualname__ = "k8snode"

_MARKS = {"ok": "ok  ", "fail": "FAIL", "warn": "warn"}
_HOST_COLORS = {"ready": "GREEN", "not ready": "RED", "no answer": "YELLOW", "error": "RED", "unknown": "YELLOW"}
_CHECK_COLORS = {"ok": "GREEN", "fail": "RED", "warn": "YELLOW"}


def __virtual__():
    return __virtualname__


def _colors():
    return salt.utils.color.get_colors(__opts__.get("color"), __opts__.get("color_theme"))


def _paint(colors, color, text):
    return f"{colors[color]}{text}{colors['ENDC']}"


def _is_audit(data):
    return isinstance(data, dict) and "checks" in data and "ready" in data


def _render_audit(minion, audit, colors):
    state = "ready" if audit["ready"] else "not ready"
    summary = audit.get("summary", {})
    kubernetes = audit.get("kubernetes") or {}
    release = f" {kubernetes['version']}{' (assumed)' if kubernetes.get('assumed') else ''}" if kubernetes else ""
    lines = [
        "{}: {} ({}{} on {}, kernel {}) - {} ok, {} fail, {} warn".format(
            minion,
            _paint(colors, _HOST_COLORS[state], state.upper()),
            audit.get("distribution"),
            release,
            audit.get("os"),
            audit.get("kernel"),
            summary.get("ok", 0),
            summary.get("fail", 0),
            summary.get("warn", 0),
        )
    ]
    width = max((len(name) for name in audit["checks"]), default=0)
    for name, check in audit["checks"].items():
        mark = _paint(colors, _CHECK_COLORS[check["status"]], _MARKS[check["status"]])
        optional = "" if check.get("required") else " (optional)"
        lines.append(f"  {mark} {name.ljust(width)}  {check['detail']}{optional}")
    if audit.get("lost_at_reboot"):
        lines.append("  lost at the next reboot: " + ", ".join(audit["lost_at_reboot"]))
    return lines


def _render_report(report, colors):
    hosts = report["hosts"]
    width = max((len(minion) for minion in hosts), default=4)
    lines = [f"{'HOST'.ljust(width)}  {'STATUS':<10}  FAILING CHECKS"]
    for minion, host in hosts.items():
        status = _paint(colors, _HOST_COLORS[host["status"]], host["status"].ljust(10))
        failing = ", ".join(host["failing"]) or host.get("error", "") or "-"
        lines.append(f"{minion.ljust(width)}  {status}  {failing}")
    counts = report["counts"]
    lines.append("")
    lines.append("fleet: " + ", ".join(f"{count} {status}" for status, count in counts.items() if count))
    if report.get("from_memory"):
        ages = [host["last_known"]["age_seconds"] for host in hosts.values() if "last_known" in host]
        oldest = f", the oldest {max(ages)} s ago" if ages else ""
        lines.append(
            f"from the fleet memory, nothing published: each host's last audit return{oldest} (ages: --out=json)"
        )
    if report["common_failures"]:
        lines.append("most common failures:")
        lines.extend(f"  {count:>4} x {name}" for name, count in report["common_failures"])
    lost = sorted({name for host in hosts.values() for name in host.get("lost_at_reboot", [])})
    if lost:
        lines.append("lost at the next reboot somewhere: " + ", ".join(lost))
    return lines


def output(data, **kwargs):
    """
    Render an audit (``{minion: audit}``) or a fleet report as text.

    CLI Example:

    .. code-block:: bash

        salt-call k8snode.audit --out=k8snode
    """
    colors = _colors()
    if isinstance(data, dict) and "hosts" in data and "counts" in data:
        return "\n".join(_render_report(data, colors))
    lines = []
    for minion, answer in (data or {}).items():
        if _is_audit(answer):
            lines.extend(_render_audit(minion, answer, colors))
        else:
            lines.append(f"{minion}: {answer}")
    return "\n".join(lines)
