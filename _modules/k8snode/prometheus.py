"""
The audit as Prometheus metrics, for node_exporter's textfile collector.

One prefix (``k8snode_``), base units (seconds), ``# HELP`` and ``# TYPE`` for
every family, label values escaped as the text exposition format requires, an
``_info`` gauge of 1 carrying the descriptive labels. The file is written
atomically (temp file in the same directory, rename) so node_exporter never
reads half of it, under a fixed name in a directory that only the minion's
configuration or pillar choose: never a caller's argument.
"""

import os

from . import writer
from .drift import ok_now_and_at_boot
from .validate import invalid

#: Debian's prometheus-node-exporter reads this directory (--collector.textfile.directory).
DEFAULT_TEXTFILE_DIRECTORY = "/var/lib/prometheus/node-exporter"
TEXTFILE_NAME = "k8snode.prom"
#: Minion config key, then pillar k8snode:drift:<key>, then the default.
TEXTFILE_SETTING = "textfile_directory"


def textfile_directory(config_value, pillar_value, source_names=("minion config", "pillar k8snode:drift")):
    """The directory to write to: the minion config's value, else the pillar's, else Debian's default.

    Must be an absolute, normalised path (no ``..``): it is root-owned configuration,
    but a typo must fail clearly, not write somewhere unexpected.
    """
    for value, source in ((config_value, source_names[0]), (pillar_value, source_names[1])):
        if value is None:
            continue
        if not isinstance(value, str) or not value.startswith("/") or os.path.normpath(value) != value or "\0" in value:
            raise invalid(
                source, TEXTFILE_SETTING, value, "an absolute, normalised directory path (no '..', no trailing '/')"
            )
        return value
    return DEFAULT_TEXTFILE_DIRECTORY


def configured_directory(opts, k8snode_pillar):
    """:func:`textfile_directory` from the minion's options and its pillar ``k8snode``
    (the one rule shared by ``k8snode.write_metrics`` and the beacon)."""
    drift = (k8snode_pillar or {}).get("drift") if isinstance(k8snode_pillar, dict) else None
    return textfile_directory(
        opts.get("k8snode_" + TEXTFILE_SETTING),
        drift.get(TEXTFILE_SETTING) if isinstance(drift, dict) else None,
    )


def escape_label_value(value):
    """Escape a label value: backslash, double quote and line feed (text format 0.0.4)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _family(lines, name, help_text, samples):
    lines.append(f"# HELP {name} {_escape_help(help_text)}")
    lines.append(f"# TYPE {name} gauge")
    for labels, value in samples:
        shown = ",".join(f'{key}="{escape_label_value(text)}"' for key, text in labels)
        lines.append(f"{name}{{{shown}}} {value}" if shown else f"{name} {value}")


def render(audit, resolved, timestamp):
    """The audit in the Prometheus text exposition format (``timestamp``: the audit's time, Unix seconds)."""
    lines = []
    checks = sorted(audit["checks"].items())
    sides = {name: ok_now_and_at_boot(name, check, resolved) for name, check in checks}
    _family(
        lines,
        "k8snode_ready",
        "1 when every required check passes now and at the next boot.",
        [((), int(audit["ready"]))],
    )
    _family(
        lines,
        "k8snode_check_ok",
        "1 when the check passes (now and at the next boot), per check.",
        [((("check", name),), int(check["status"] == "ok")) for name, check in checks],
    )
    _family(
        lines,
        "k8snode_check_live_ok",
        "1 when the check passes on the running host now.",
        [((("check", name),), int(sides[name][0])) for name, _ in checks],
    )
    _family(
        lines,
        "k8snode_check_boot_ok",
        "1 when the check will pass after the next boot (0 with live_ok 1: lost at reboot).",
        [((("check", name),), int(sides[name][1])) for name, _ in checks],
    )
    _family(
        lines,
        "k8snode_check_required",
        "1 when the check counts for k8snode_ready.",
        [((("check", name),), int(bool(check["required"]))) for name, check in checks],
    )
    _family(
        lines, "k8snode_audit_timestamp_seconds", "When the audit ran, in Unix seconds.", [((), f"{timestamp:.3f}")]
    )
    info = (
        ("distribution", audit["distribution"]),
        ("os", audit["os"]),
        ("os_family", audit["os_family"]),
        ("kernel", audit.get("kernel") or ""),
    )
    _family(lines, "k8snode_info", "The node's Kubernetes distribution profile and OS; always 1.", [(info, 1)])
    return "\n".join(lines) + "\n"


def write(text, directory):
    """Write ``text`` as ``<directory>/k8snode.prom`` atomically; return the path.

    The directory must exist (the node_exporter package creates it): a missing one
    means node_exporter is not set up here, and is said so instead of being created.
    """
    if not os.path.isdir(directory):
        raise invalid(
            "textfile collector",
            "directory",
            directory,
            "an existing directory (install prometheus-node-exporter, or set k8snode:drift:textfile_directory)",
        )
    path = os.path.join(directory, TEXTFILE_NAME)
    writer.atomic_write(path, text, mode=0o644)
    return path
