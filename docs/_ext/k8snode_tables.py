"""
The reference tables of k8snode's site, built from the code's own data at build time:
``releases.py``, ``tables.py``, ``resolve.py``, ``prometheus.py`` and
``prometheus/k8snode-alerts.yaml``. :data:`TABLES` maps each ``.. k8snode-table:: NAME``
to its builder (see k8snode_docs.py). Cells are plain text or literals (no markup is
parsed from the data).
"""

import importlib
from pathlib import Path

import yaml
from docutils import nodes
from sphinx.util import logging

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "saltext.k8snode"
log = logging.getLogger(__name__)


def _data(name):
    return importlib.import_module(f"{PACKAGE}.modules.k8snode.{name}")


# --------------------------------------------------------------------------
# Building docutils nodes (no RST is parsed from the data: a ``*`` or a ``\`` in a
# source string stays what it is)
# --------------------------------------------------------------------------


class Code(str):
    """A cell shown as a literal."""


def _cell_content(value):
    if isinstance(value, Code):
        return nodes.paragraph("", "", nodes.literal(str(value), str(value)))
    if isinstance(value, (list, tuple)):
        paragraph = nodes.paragraph()
        for index, item in enumerate(value):
            if index:
                paragraph += nodes.Text(", ")
            paragraph += nodes.literal(str(item), str(item)) if isinstance(item, Code) else nodes.Text(str(item))
        return paragraph
    return nodes.paragraph(str(value), str(value))


def table(header, rows, widths=None):
    widths = widths or [1] * len(header)
    tgroup = nodes.tgroup(cols=len(header))
    for width in widths:
        tgroup += nodes.colspec(colwidth=width)
    thead = nodes.thead()
    thead += _row(header)
    tgroup += thead
    tbody = nodes.tbody()
    for row in rows:
        tbody += _row(row)
    tgroup += tbody
    result = nodes.table(classes=["k8snode-data"])
    result += tgroup
    return result


def _row(cells):
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        entry += _cell_content("-" if cell in (None, "", [], ()) else cell)
        row += entry
    return row


def setting_value(value):
    """A kubelet setting's value as its configuration file spells it (``true``, ``NoSwap``)."""
    return Code(str(value).lower() if isinstance(value, bool) else str(value))


def releases_text(entry):
    """The releases a row applies to (``since`` inclusive, ``until`` exclusive)."""
    since, until = entry.get("since"), entry.get("until")
    if until:
        major, minor = until.split(".")
        last = f"{major}.{int(minor) - 1}"
    if since and until:
        return f"{since} to {last}"
    if since:
        return f"from {since}"
    if until:
        return f"before {until}"
    return "all"


def _modules_text(modules):
    shown = []
    for name, spec in modules.items():
        text = name
        alternatives = [alt for alt in (spec or {}).get("alternatives", []) if alt != name]
        if alternatives:
            text += f" (or {', '.join(alternatives)})"
        if (spec or {}).get("required") is False:
            text += " (optional)"
        shown.append(Code(text))
    return shown


def _sysctl_text(key, spec):
    compare = spec.get("compare", "exact")
    if compare == "min":
        text = f"{key} >= {spec['value']}"
    elif compare == "one_of":
        text = f"{key} one of {', '.join(map(str, spec['accepted']))} (writes {spec['value']})"
    else:
        text = f"{key} = {spec['value']}"
    if spec.get("needs_module"):
        text += f" (needs {spec['needs_module']})"
    if spec.get("required") is False:
        text += " (optional)"
    return Code(text)


def _layer_adds(layer):
    adds = []
    adds += _modules_text(layer.get("modules", {}))
    adds += [_sysctl_text(key, spec) for key, spec in layer.get("sysctls", {}).items()]
    floor = layer.get("kernel_floor")
    if floor:
        text = f"kernel >= {floor['version']}"
        for family, version in floor.get("os_family", {}).items():
            text += f" ({version} on {family})"
        if floor.get("required") is False:
            text += " (a warning)"
        adds.append(Code(text))
    for path, mount in layer.get("mounts", {}).items():
        adds.append(Code(f"{mount['fstype']} at {path}" + ("" if mount.get("required", True) else " (optional)")))
    return adds


# --------------------------------------------------------------------------
# The tables
# --------------------------------------------------------------------------


def _known_releases():
    releases = _data("releases")
    text = (
        f"The rules were written for Kubernetes {', '.join(releases.KNOWN_RELEASES)}. "
        f"kubernetes_version accepts {releases.OLDEST_ACCEPTED} and later; a release newer than "
        f"{releases.NEWEST_KNOWN} keeps the rules of {releases.NEWEST_KNOWN} and the audit says they may be stale."
    )
    return [nodes.paragraph(text, text)]


def _kubelet_settings():
    releases = _data("releases")
    rows = []
    for name, setting in releases.KUBELET_SETTINGS.items():
        accepted = setting.get("accepted") or (["true", "false"] if setting["type"] is bool else [])
        flag = Code(f"--{setting['flag']}") if setting["flag"] else "configuration file only"
        rows.append([Code(name), Code(setting["field"]), flag, [Code(value) for value in accepted]])
    return [table(["pillar k8snode:kubelet key", "KubeletConfiguration field", "flag", "accepted"], rows)]


def _kubelet_defaults():
    releases = _data("releases")
    rows = []
    for name, entries in releases.KUBELET_DEFAULTS.items():
        field = releases.KUBELET_SETTINGS[name]["field"]
        for entry in entries:
            rows.append([Code(field), releases_text(entry), setting_value(entry["value"]), entry["source"]])
    return [table(["setting", "releases", "the kubelet's default", "source"], rows, [2, 1, 1, 4])]


def _distribution_kubelet():
    releases = _data("releases")
    rows = []
    for distribution, settings in releases.DISTRIBUTION_KUBELET.items():
        for name, entry in settings.items():
            field = releases.KUBELET_SETTINGS[name]["field"]
            rows.append([Code(distribution), Code(field), setting_value(entry["value"]), entry["source"]])
    return [table(["distribution", "setting", "value", "source"], rows, [1, 1, 1, 4])]


def _release_rows(columns):
    """One row per known release: ``columns(releases, version)`` gives its cells."""
    releases = _data("releases")
    return [[Code(version), *columns(releases, version)] for version in releases.KNOWN_RELEASES]


def _kubelet_by_release():
    def columns(releases, version):
        defaults = {
            releases.KUBELET_SETTINGS[name]["field"]: releases.row(entries, version)["value"]
            for name, entries in releases.KUBELET_DEFAULTS.items()
        }
        swap = releases.row(releases.SWAP, version)
        return [
            setting_value(defaults["failCgroupV1"]),
            releases.row(releases.CGROUP_V1, version)["status"],
            setting_value(defaults["failSwapOn"]),
            setting_value(defaults["memorySwap.swapBehavior"]),
            swap["node_swap"],
            swap["limited_swap_on_cgroup_v1"],
        ]

    header = [
        "release",
        "failCgroupV1 default",
        "cgroup v1 with failCgroupV1 false",
        "failSwapOn default",
        "swapBehavior default",
        "NodeSwap",
        "LimitedSwap on cgroup v1",
    ]
    return [table(header, _release_rows(columns), [1, 1, 1, 1, 1, 3, 1])]


def _kubeadm_by_release():
    def columns(releases, version):
        kernel = releases.row(releases.KERNEL_VALIDATION, version)
        if kernel["floor"]:
            kernel_text = f">= {kernel['floor']}"
        else:
            kernel_text = "no floor; recommended " + ", ".join(
                name if "." in name else f">= {name}" for name in kernel["recommended"]
            )
        containerd = releases.row(releases.CONTAINERD, version)
        ipvs = releases.row(releases.KUBE_PROXY["ipvs"], version)
        return [
            kernel_text,
            f"{containerd['status']} below {containerd['minimum']}" if containerd else None,
            "deprecated (warn)" if ipvs else None,
            [Code(entry["name"]) for entry in releases.rows(releases.KUBEADM_BINARIES, version)],
        ]

    header = ["release", "kernel", "containerd", "kube-proxy's IPVS mode", "preflight binaries (warn)"]
    return [table(header, _release_rows(columns), [1, 3, 1, 1, 3])]


def _ranged(table_name, fields, header):
    def render():
        releases = _data("releases")
        rows = [
            [releases_text(entry), *[_field(entry.get(field)) for field in fields], entry["source"]]
            for entry in getattr(releases, table_name)
        ]
        return [table(["releases", *header, "source"], rows, [1] * (len(fields) + 1) + [3])]

    return render


def _field(value):
    if isinstance(value, (list, tuple)):
        return [Code(item) for item in value]
    return "-" if value is None else str(value)


def _cgroup_v2():
    releases = _data("releases")
    spec = releases.CGROUP_V2_CONTROLLERS
    rows = [
        ["required (fail)", [Code(name) for name in spec["required"]], spec["source"]],
        ["optional (warn)", [Code(name) for name in spec["optional"]], spec["source"]],
    ]
    return [table(["", "controllers in /sys/fs/cgroup/cgroup.controllers", "source"], rows, [1, 2, 3])]


def _single_rules():
    """The rules that are one row each (no release range)."""
    releases = _data("releases")
    tmpfs = releases.TMPFS_NOSWAP_KERNEL
    conntrack = releases.KUBE_PROXY_CONNTRACK
    rows = [
        [
            "cgroup v1 with failCgroupV1 true",
            "fail: " + releases.CGROUP_V1_REFUSED,
            "cmd/kubelet/app/server.go",
        ],
        [
            "LimitedSwap on a kernel older than " + tmpfs["version"],
            "warn: memory-backed volumes can be swapped out",
            tmpfs["source"],
        ],
        [
            f"{conntrack['module']} at boot ({', '.join(conntrack['distributions'])}; kube-proxy modes "
            f"{', '.join(conntrack['modes'])})",
            "required: " + conntrack["why"],
            conntrack["source"],
        ],
    ]
    rows += [
        [f"br_netfilter and the bridge sysctls with cni: {cni}", "optional: " + why, releases.BRIDGE_NOT_NEEDED_SOURCE]
        for cni, why in releases.ROUTED_CNIS.items()
    ]
    return [table(["rule", "verdict", "source"], rows, [2, 3, 2])]


def _distributions():
    tables = _data("tables")
    rows = [
        [
            Code(name),
            _modules_text(profile.get("modules", {})),
            [_sysctl_text(key, spec) for key, spec in profile.get("sysctls", {}).items()],
            Code(profile["swap"]),
            profile["description"],
        ]
        for name, profile in tables.DISTRIBUTIONS.items()
    ]
    return [table(["distribution", "modules", "sysctls", "swap", "why"], rows, [1, 2, 3, 1, 3])]


def _extras():
    tables = _data("tables")
    rows = [[Code(name), _layer_adds(extra), extra["description"]] for name, extra in tables.EXTRAS.items()]
    rows += [
        [Code(name), "-", f"an alias of {setting}: {value}"] for name, (setting, value) in tables.EXTRA_ALIASES.items()
    ]
    return [table(["extra", "adds", "why"], rows, [1, 3, 3])]


def _cnis():
    tables = _data("tables")
    rows = [[Code(name), _layer_adds(cni), cni["description"]] for name, cni in tables.CNIS.items()]
    rows.append([Code("none"), "-", "the default: the distribution's table only"])
    return [table(["cni", "adds", "why"], rows, [1, 3, 3])]


def _kube_proxy_modes():
    tables = _data("tables")
    releases = _data("releases")
    rows = []
    for name, mode in tables.KUBE_PROXY_MODES.items():
        deprecated = [f"{entry['deprecated']} ({releases_text(entry)})" for entry in releases.KUBE_PROXY.get(name, ())]
        rows.append([Code(name), _layer_adds(mode), " ".join([mode["description"], *deprecated])])
    return [table(["kube_proxy_mode", "adds", "why"], rows, [1, 2, 4])]


def _os_families():
    tables = _data("tables")
    rows = []
    for family, layer in tables.OS_FAMILIES.items():
        boot = [Code(f"{key}: {value}") for key, value in layer.get("boot", {}).items()]
        hints = [f"{module}: {hint}" for module, hint in layer.get("hints", {}).items()]
        rows.append([Code(family), boot, "; ".join(hints)])
    return [table(["os_family", "how it boots", "hints for a missing module"], rows, [1, 2, 4])]


def _resolution_order():
    tables = _data("tables")
    items = nodes.enumerated_list()
    for layer in tables.RESOLUTION_ORDER:
        item = nodes.list_item()
        item += nodes.paragraph("", "", nodes.literal(layer, layer))
        items += item
    return [items]


def _kernel_config():
    tables = _data("tables")
    paragraph = nodes.paragraph()
    for index, option in enumerate(tables.KERNEL_CONFIG_REQUIRED):
        if index:
            paragraph += nodes.Text(", ")
        paragraph += nodes.literal("CONFIG_" + option, "CONFIG_" + option)
    return [paragraph]


def _on_demand():
    tables = _data("tables")
    rows = [
        [Code(name), entry["how"] + (f" (from Linux {entry['since']})" if "since" in entry else "")]
        for name, entry in tables.ON_DEMAND.items()
    ]
    return [table(["module", "the kernel loads it"], rows, [1, 4])]


def _module_evidence():
    tables = _data("tables")
    rows = []
    for name, evidence in tables.MODULE_EVIDENCE.items():
        other = [Code(evidence[key]) for key in ("filesystem", "path") if key in evidence]
        rows.append([Code(name), Code("CONFIG_" + evidence["config"]), other])
    return [table(["module", "kernel config option", "what it creates"], rows, [1, 2, 3])]


def _forward_accepting():
    tables = _data("tables")
    rows = [[Code(name), source] for name, source in tables.FORWARD_ACCEPTING_CNIS.items()]
    return [table(["cni", "source"], rows, [1, 4])]


#: What each top-level pillar ``k8snode`` key is for. The keys themselves come from the
#: code (what resolve accepts, and the drift key): a key without a line here, or a line
#: for a key the code does not accept, fails the build.
PILLAR_KEYS = {
    "distribution": "The Kubernetes distribution profile. Default kubeadm.",
    "kubernetes_version": "The minor release that will run here; default: the installed kubelet, else the newest "
    "release the rules know (said as assumed). Quote it in YAML.",
    "kubelet": "The kubelet's settings for a node not installed yet; the node's own kubelet files win.",
    "cni": "The network plugin; adds what its documentation requires. Default none.",
    "kube_proxy_mode": "kube-proxy's mode. Default iptables.",
    "extras": "Optional bundles added to the distribution's table.",
    "modules": "Kernel modules to add or change ({name: {alternatives, required}}); name: false drops one.",
    "sysctls": "Sysctls to add or change ({key: value} or {key: {value, compare, accepted, required}}); "
    "key: false drops one.",
    "swap": "The swap policy. Default: the distribution's.",
    "files": "The files k8snode owns. A sysctl file must sort after any other file that sets the same keys.",
    "node_port_range": "The cluster's NodePort range (kube-apiserver's --service-node-port-range), which the "
    "ephemeral port range must leave alone (the node_ports check).",
    "unmanage_plugin_interfaces": "true: prepare writes drop-ins that make NetworkManager and systemd-networkd, where "
    "installed, leave the network plugin's interfaces, routes and rules alone (the network_manager and networkd "
    "checks). Default false.",
    "drift": "Continuous readiness: the beacon, self-heal and metrics (not part of the requirements; "
    "every sub-key is in pillar/pillar.example).",
}


def _pillar_keys():
    tables = _data("tables")
    releases = _data("releases")
    resolve = _data("resolve")
    api = importlib.import_module(f"{PACKAGE}.modules.k8snode")
    # Each computed only for a key the code accepts (a table it reads may come with its key).
    accepted = {
        "distribution": lambda: [Code(name) for name in tables.DISTRIBUTIONS],
        "kubernetes_version": lambda: (
            f'"{releases.OLDEST_ACCEPTED}" or later, e.g. "{releases.NEWEST_KNOWN}" or "v{releases.NEWEST_KNOWN}.2"'
        ),
        "kubelet": lambda: [Code(name) for name in releases.KUBELET_SETTINGS],
        "cni": lambda: [Code(name) for name in (*tables.CNIS, "none")],
        "kube_proxy_mode": lambda: [Code(name) for name in tables.KUBE_PROXY_MODES],
        "extras": lambda: [Code(name) for name in (*tables.EXTRAS, *tables.EXTRA_ALIASES)],
        "modules": lambda: "a mapping",
        "sysctls": lambda: "a mapping; compare: " + ", ".join(tables.REQUIREMENT_COMPARISONS),
        "swap": lambda: [Code(name) for name in tables.SWAP_POLICIES],
        "files": lambda: [Code(f"{key}: {value}") for key, value in tables.DEFAULTS["files"].items()],
        "node_port_range": lambda: 'a range "first-last"; default "{}-{}"'.format(*tables.NODE_PORT_RANGE),
        "unmanage_plugin_interfaces": lambda: [Code("true"), Code("false")],
        "drift": lambda: "a mapping",
    }
    keys = [*resolve._OVERRIDE_KEYS, api.DRIFT_KEY]
    for key in sorted(set(keys) ^ set(PILLAR_KEYS)):
        log.warning("k8snode-table pillar-keys: pillar key %r is accepted by the code or described here, not both", key)
    rows = [[Code(key), accepted[key]() if key in accepted else None, PILLAR_KEYS.get(key)] for key in keys]
    return [table(["key", "accepted", "what it is"], rows, [1, 3, 4])]


def _metric_families():
    """The families and their help text, from the renderer itself (an audit with no checks)."""
    prometheus = _data("prometheus")
    audit = {"ready": True, "checks": {}, "distribution": "kubeadm", "os": "", "os_family": "", "kernel": ""}
    text = prometheus.render(audit, {}, 0.0)
    helps, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, help_text = line[len("# HELP ") :].split(" ", 1)
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, kind = line[len("# TYPE ") :].split(" ", 1)
            types[name] = kind
    per_check = {"k8snode_check_ok", "k8snode_check_live_ok", "k8snode_check_boot_ok", "k8snode_check_required"}
    rows = [
        [
            Code(name),
            types[name],
            Code("check")
            if name in per_check
            else ("distribution, os, os_family, kernel" if name.endswith("_info") else "-"),
            helps[name],
        ]
        for name in helps
    ]
    return [table(["family", "type", "labels", "help"], rows, [2, 1, 1, 4])]


def _alerts():
    """Each alerting rule as a definition: its expression, duration, severity, summary, description."""
    rules = yaml.safe_load((REPO / "prometheus" / "k8snode-alerts.yaml").read_text())
    alerts = nodes.definition_list()
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            annotations = rule.get("annotations", {})
            fields = nodes.field_list()
            for name, value in (
                ("expr", Code(" ".join(rule["expr"].split()))),
                ("for", rule.get("for")),
                ("severity", rule.get("labels", {}).get("severity")),
                ("summary", annotations.get("summary")),
                ("description", " ".join(annotations.get("description", "").split())),
            ):
                if value:
                    body = nodes.field_body()
                    body += _cell_content(value)
                    fields += nodes.field("", nodes.field_name(name, name), body)
            item = nodes.definition_list_item()
            item += nodes.term("", "", nodes.literal(rule["alert"], rule["alert"]))
            definition = nodes.definition()
            definition += fields
            item += definition
            alerts += item
    return [alerts]


TABLES = {
    "known-releases": _known_releases,
    "kubelet-by-release": _kubelet_by_release,
    "kubeadm-by-release": _kubeadm_by_release,
    "kubelet-settings": _kubelet_settings,
    "kubelet-defaults": _kubelet_defaults,
    "distribution-kubelet": _distribution_kubelet,
    "cgroup-v1": _ranged("CGROUP_V1", ["status", "why"], ["status with failCgroupV1 false", "why"]),
    "cgroup-v2": _cgroup_v2,
    "swap": _ranged("SWAP", ["node_swap", "limited_swap_on_cgroup_v1"], ["NodeSwap", "LimitedSwap on cgroup v1"]),
    "kernel-validation": _ranged(
        "KERNEL_VALIDATION", ["floor", "recommended"], ["floor (older: fail)", "recommended (others: warn)"]
    ),
    "containerd": _ranged("CONTAINERD", ["minimum", "status", "why"], ["minimum", "below it", "why"]),
    "kubeadm-binaries": _ranged("KUBEADM_BINARIES", ["name"], ["binary"]),
    "single-rules": _single_rules,
    "distributions": _distributions,
    "extras": _extras,
    "cnis": _cnis,
    "kube-proxy-modes": _kube_proxy_modes,
    "os-families": _os_families,
    "resolution-order": _resolution_order,
    "kernel-config": _kernel_config,
    "on-demand": _on_demand,
    "module-evidence": _module_evidence,
    "forward-accepting": _forward_accepting,
    "pillar-keys": _pillar_keys,
    "metric-families": _metric_families,
    "alerts": _alerts,
}
