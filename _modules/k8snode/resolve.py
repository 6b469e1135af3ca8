"""
Resolution: the tables, then the OS, then pillar, then arguments, merged into
the one resolved description of what this host needs. Every other part of
k8snode works on its result; every user value is validated on the way in.
"""

import copy

from . import releases
from .tables import (
    CNIS,
    DEFAULTS,
    DISTRIBUTIONS,
    EXTRA_ALIASES,
    EXTRAS,
    KUBE_PROXY_MODES,
    NODE_PORT_RANGE,
    OS_FAMILIES,
    OS_RELEASES,
    REQUIREMENT_COMPARISONS,
    RESOLUTION_ORDER,
    SWAP_POLICIES,
)
from .validate import (
    check_kubelet_settings,
    check_kubernetes_version,
    check_managed_path,
    check_mapping,
    check_module_name,
    check_port_range,
    check_sysctl_key,
    invalid,
    normalize_sysctl_value,
)


def _merge_modules(resolved, layer, source, dropped):
    for name, spec in check_mapping(layer, source, "modules").items():
        name = check_module_name(name, source)
        if spec is False:
            resolved.pop(name, None)
            dropped.add(name)
            continue
        if spec is True or spec is None:
            spec = {}
        spec = check_mapping(spec, source, f"module {name}")
        unknown = set(spec) - {"alternatives", "required"}
        if unknown:
            raise invalid(source, f"setting for module {name}", sorted(unknown), "alternatives, required")
        item = resolved.setdefault(name, {"alternatives": [name], "required": True})
        if "alternatives" in spec:
            alternatives = spec["alternatives"]
            if not isinstance(alternatives, list) or not alternatives:
                raise invalid(source, f"alternatives for {name}", alternatives, "a non-empty list of module names")
            item["alternatives"] = [check_module_name(alt, source) for alt in alternatives]
        if "required" in spec:
            if not isinstance(spec["required"], bool):
                raise invalid(source, f"required for module {name}", spec["required"], "true or false")
            item["required"] = spec["required"]
        item["source"] = source


def _merge_sysctls(resolved, layer, source):
    for key, spec in check_mapping(layer, source, "sysctls").items():
        check_sysctl_key(key, source)
        if spec is False:
            resolved.pop(key, None)
            continue
        if not isinstance(spec, dict):
            spec = {"value": spec}
        unknown = set(spec) - {"value", "compare", "accepted", "required", "needs_module"}
        if unknown:
            raise invalid(
                source, f"setting for sysctl {key}", sorted(unknown), "value, compare, accepted, required, needs_module"
            )
        item = resolved.setdefault(key, {"compare": "exact", "required": True, "needs_module": None})
        if "value" in spec:
            item["value"] = normalize_sysctl_value(spec["value"], source, key)
        if "value" not in item:
            raise invalid(source, f"sysctl {key}", spec, "a value (new keys need one)")
        if "compare" in spec:
            if spec["compare"] not in REQUIREMENT_COMPARISONS:
                raise invalid(
                    source, f"compare for {key}", spec["compare"], "one of " + ", ".join(REQUIREMENT_COMPARISONS)
                )
            item["compare"] = spec["compare"]
        if item["compare"] == "min" and len(item["value"].split()) != 1:
            raise invalid(source, f"value for {key}", item["value"], "a single integer for compare: min")
        _merge_accepted(item, spec, source, key)
        if "required" in spec:
            if not isinstance(spec["required"], bool):
                raise invalid(source, f"required for sysctl {key}", spec["required"], "true or false")
            item["required"] = spec["required"]
        if spec.get("needs_module") is not None:
            item["needs_module"] = check_module_name(spec["needs_module"], source)
        item["source"] = source


def _merge_accepted(item, spec, source, key):
    """``compare: one_of`` takes any value of ``accepted``; ``value`` (one of them) is
    what prepare writes when none holds. Another comparison drops the list."""
    if "accepted" in spec:
        accepted = spec["accepted"]
        if item["compare"] != "one_of":
            raise invalid(source, f"accepted for {key}", accepted, "only with compare: one_of")
        if not isinstance(accepted, list) or not accepted:
            raise invalid(source, f"accepted for {key}", accepted, "a non-empty list of values")
        item["accepted"] = [normalize_sysctl_value(value, source, key) for value in accepted]
    if item["compare"] != "one_of":
        item.pop("accepted", None)
        return
    if "accepted" not in item:
        raise invalid(source, f"sysctl {key}", spec, "compare: one_of needs accepted: [values]")
    if item["value"] not in item["accepted"]:
        raise invalid(
            source, f"value for {key}", item["value"], "one of its accepted values " + ", ".join(item["accepted"])
        )


def _merge_network_plugin_data(resolved, layer, source):
    """What only the tables give: a kernel version floor, mounts, a deprecation."""
    floor = layer.get("kernel_floor")
    if floor:
        version = floor.get("os_family", {}).get(resolved["os_family"], floor["version"])
        resolved["kernel_floors"].append(
            {"version": version, "source": source, "why": floor["why"], "required": floor.get("required", True)}
        )
    for path, mount in layer.get("mounts", {}).items():
        resolved["mounts"][path] = {**mount, "source": source}
    if layer.get("deprecated"):
        resolved["deprecations"].append({"source": source, "detail": layer["deprecated"]})


def _merge_swap(resolved, value, source):
    # YAML reads a bare `off` as False: take it as the user meant it.
    if value is False:
        value = "off"
    if value not in SWAP_POLICIES:
        raise invalid(source, "swap policy", value, "one of " + ", ".join(SWAP_POLICIES))
    resolved["swap"] = {"policy": value, "source": source}


def _merge_files(resolved, layer, source):
    directories = {"modules_load": "etc/modules-load.d", "sysctl": "etc/sysctl.d"}
    for what, path in check_mapping(layer, source, "files").items():
        if what not in directories:
            raise invalid(source, "file setting", what, "modules_load, sysctl")
        resolved["files"][what] = {
            "path": check_managed_path(path, directories[what], source, f"{what} file"),
            "source": source,
        }


def _merge_layer(resolved, layer, source):
    if "modules" in layer:
        _merge_modules(resolved["modules"], layer["modules"], source, resolved["dropped_modules"])
    if "sysctls" in layer:
        _merge_sysctls(resolved["sysctls"], layer["sysctls"], source)
    if "swap" in layer:
        _merge_swap(resolved, layer["swap"], source)
    if "files" in layer:
        _merge_files(resolved, layer["files"], source)
    _merge_network_plugin_data(resolved, layer, source)
    resolved["boot"].update(layer.get("boot", {}))
    resolved["hints"].update(layer.get("hints", {}))


_OVERRIDE_KEYS = (
    "distribution",
    "kubernetes_version",
    "kubelet",
    "extras",
    "modules",
    "sysctls",
    "swap",
    "files",
    "cni",
    "kube_proxy_mode",
    "node_port_range",
    "unmanage_plugin_interfaces",
)
_NO_CNI = "none"


def _check_overrides(overrides, source):
    overrides = check_mapping(overrides, source, "k8snode settings")
    unknown = set(overrides) - set(_OVERRIDE_KEYS)
    if unknown:
        raise invalid(source, "setting", sorted(unknown), "one of " + ", ".join(_OVERRIDE_KEYS))
    extras = overrides.get("extras")
    known_extras = set(EXTRAS) | set(EXTRA_ALIASES)
    if extras is not None and (
        not isinstance(extras, list) or any(not isinstance(extra, str) or extra not in known_extras for extra in extras)
    ):
        raise invalid(source, "extras", extras, "a list of: " + ", ".join(sorted(known_extras)))
    cni = overrides.get("cni")
    if cni is not None and (not isinstance(cni, str) or cni not in (*CNIS, _NO_CNI)):
        raise invalid(source, "cni", cni, "one of " + ", ".join([*sorted(CNIS), _NO_CNI]))
    mode = overrides.get("kube_proxy_mode")
    if mode is not None and (not isinstance(mode, str) or mode not in KUBE_PROXY_MODES):
        raise invalid(source, "kube_proxy_mode", mode, "one of " + ", ".join(sorted(KUBE_PROXY_MODES)))
    unmanage = overrides.get("unmanage_plugin_interfaces")
    if unmanage is not None and not isinstance(unmanage, bool):
        raise invalid(source, "unmanage_plugin_interfaces", unmanage, "true or false")
    overrides = dict(overrides)
    if overrides.get("node_port_range") is not None:
        overrides["node_port_range"] = check_port_range(overrides["node_port_range"], source)
    if overrides.get("kubernetes_version") is not None:
        overrides["kubernetes_version"] = check_kubernetes_version(
            overrides["kubernetes_version"], source, releases.OLDEST_ACCEPTED, releases.NEWEST_KNOWN
        )
    if "kubelet" in overrides:
        overrides["kubelet"] = check_kubelet_settings(overrides["kubelet"], source, releases.KUBELET_SETTINGS)
    return overrides


def _chosen(setting, pillar, arguments, default):
    """(value, where it was set) of a setting: the arguments, else the pillar, else the default."""
    for source, overrides in (("arguments", arguments), ("pillar k8snode", pillar)):
        if overrides.get(setting) is not None:
            return overrides[setting], source
    return default, "defaults"


def _kube_proxy_mode(pillar, arguments, extras):
    """The mode, where it was set, and whether its layer applies in its own stage;
    ``extras: [ipvs]`` is an alias of ``kube_proxy_mode: ipvs``."""
    mode, source = _chosen("kube_proxy_mode", pillar, arguments, "iptables")
    for extra in extras:
        setting, value = EXTRA_ALIASES.get(extra, (None, None))
        if setting != "kube_proxy_mode":
            continue
        if source != "defaults" and mode != value:
            raise invalid(
                source,
                "kube_proxy_mode",
                mode,
                f"extras: [{extra}] means kube_proxy_mode: {value}; drop one of them",
            )
        if source == "defaults":
            mode, source = value, f"extras:{extra}"
    return {"mode": mode, "source": source}


def _extra_layers(extras, kube_proxy_mode):
    layers = []
    for extra in extras:
        if extra in EXTRA_ALIASES:
            # The alias applies its mode's table here, unless the mode was set itself.
            if kube_proxy_mode["source"] == f"extras:{extra}":
                layers.append((f"extras:{extra}", KUBE_PROXY_MODES[EXTRA_ALIASES[extra][1]]))
            continue
        layers.append((f"extras:{extra}", EXTRAS[extra]))
    return layers


def _kubernetes_release(distribution, pillar, arguments, installed):
    """The release the node's verdicts are for: the arguments, the pillar, what the
    host has installed for this distribution, else the newest the tables know (said in
    ``assumed``). ``stale`` says when the release is newer than every row."""
    version, source = _chosen("kubernetes_version", pillar, arguments, None)
    assumed = None
    mine = [found for found in installed if found["distribution"] == distribution]
    if version is None and mine:
        version, source = mine[0]["release"], mine[0]["evidence"]
    elif version is None:
        version, source = releases.NEWEST_KNOWN, "defaults"
        assumed = (
            f"assumed {version}: no {distribution} kubelet found on the host, no pillar k8snode:kubernetes_version"
        )
    stale = None
    if releases.minor(version) > releases.minor(releases.NEWEST_KNOWN):
        stale = f"rules may be stale for {version}: the tables were written for {releases.NEWEST_KNOWN} and older"
    return {
        "version": version,
        "source": source,
        "assumed": assumed,
        "stale": stale,
        "installed": installed,
        "newest_known": releases.NEWEST_KNOWN,
    }


def _kubelet_settings(version, distribution, pillar, arguments, node):
    """Each kubelet setting that decides a verdict, where it came from (``source``) and
    which layer gave it (``origin``): the kubelet's default for ``version``, the
    distribution's own flags, the pillar, the arguments, and last the node's own files
    (what the kubelet will really read)."""
    settings = {}
    for name, table in releases.KUBELET_DEFAULTS.items():
        default = releases.row(table, version)
        settings[name] = {
            "value": default["value"],
            "source": f"the kubelet's {version} default: {default['source']}",
            "origin": "default",
        }
    for name, entry in releases.DISTRIBUTION_KUBELET.get(distribution, {}).items():
        settings[name] = {**entry, "origin": "distribution"}
    for origin, source, overrides in (
        ("pillar", "pillar k8snode:kubelet", pillar),
        ("arguments", "arguments kubelet", arguments),
    ):
        for name, value in (overrides.get("kubelet") or {}).items():
            settings[name] = {"value": value, "source": f"{source}:{name}", "origin": origin}
    for name, entry in node["settings"].items():
        settings[name] = {**entry, "origin": "node"}
    return settings


def _routed_cni_drops_bridge(resolved, cni):
    """A routed plugin (Calico, Cilium) has no bridge for br_netfilter to hook: the
    distribution's br_netfilter and bridge sysctls become optional (a later layer with
    ``required: true`` makes them required again)."""
    why = releases.ROUTED_CNIS.get(cni)
    if not why:
        return
    items = [resolved["modules"].get("br_netfilter")] + [
        requirement for key, requirement in resolved["sysctls"].items() if key.startswith("net.bridge.bridge-nf-call-")
    ]
    for item in items:
        if item and item.get("source", "").startswith("distribution:"):
            item["required"] = False
            item["optional_because"] = f"{why}; {releases.BRIDGE_NOT_NEEDED_SOURCE}"


def _release_rules(resolved):
    """What the Kubernetes release adds: kubeadm's kernel validation, kube-proxy
    deprecations, and the swap policy the node's kubelet allows."""
    version = resolved["kubernetes"]["version"]
    if resolved["distribution"] == "kubeadm":
        validation = releases.row(releases.KERNEL_VALIDATION, version)
        if validation["floor"]:
            resolved["kernel_floors"].append(
                {
                    "version": validation["floor"],
                    "source": f"kubeadm {version}",
                    "why": validation["source"],
                    "required": True,
                }
            )
        if validation["recommended"]:
            resolved["kernel_recommended"] = {"versions": validation["recommended"], "source": validation["source"]}
    conntrack = releases.KUBE_PROXY_CONNTRACK
    if (
        resolved["distribution"] in conntrack["distributions"]
        and resolved["kube_proxy_mode"]["mode"] in conntrack["modes"]
        and conntrack["module"] not in resolved["modules"]
        and conntrack["module"] not in resolved["dropped_modules"]
    ):
        resolved["modules"][conntrack["module"]] = {
            "alternatives": list(conntrack["alternatives"]),
            "required": True,
            "source": conntrack["source"],
            "why": conntrack["why"],
        }
        resolved["order"].append(conntrack["source"])
    mode = resolved["kube_proxy_mode"]
    # The layer that chose the mode (kube_proxy_mode:ipvs, or its alias extras:ipvs).
    layer = mode["source"] if mode["source"].startswith("extras:") else f"kube_proxy_mode:{mode['mode']}"
    for rule in releases.rows(releases.KUBE_PROXY.get(mode["mode"], ()), version):
        resolved["deprecations"].append({"source": layer, "detail": rule["deprecated"], "rule": rule["source"]})
    fail_swap_on = resolved["kubelet"]["fail_swap_on"]
    chosen_policy = resolved["swap"]["source"] in ("arguments", "pillar")
    if (
        fail_swap_on["value"] is False
        and fail_swap_on["origin"] in ("node", "pillar", "arguments")
        and not chosen_policy
    ):
        # Swap on purpose: the kubelet runs with it, so prepare leaves it on and the audit
        # checks what the kubelet needs then (release_checks.swap_check).
        resolved["swap"] = {"policy": "warn", "source": f"kubelet failSwapOn: false ({fail_swap_on['source']})"}


def _no_node(distribution):
    return {"installed": [], "settings": {}, "files": [], "problems": []}


def resolve(distribution, pillar, arguments, identity, read_node=_no_node):
    """
    The one place where requirements are resolved: the layers of ``RESOLUTION_ORDER``
    merged in order, a later one winning, each value tagged with its ``source``; then
    the Kubernetes release and the kubelet's settings, and what they change.

    ``identity``: ``{"os_family", "os", "major", "source"}`` of the host (from its
    grains or its os-release file: the caller says which, in ``source``).
    ``read_node(distribution)``: what the host's files say of its Kubernetes
    (``{"installed": kubelet.installed_releases, **kubelet.node_settings}``).
    """
    pillar = _check_overrides(pillar, "pillar k8snode")
    arguments = _check_overrides(arguments, "arguments")
    source = "arguments" if distribution or arguments.get("distribution") else "pillar k8snode"
    distribution = distribution or arguments.get("distribution") or pillar.get("distribution") or "kubeadm"
    if not isinstance(distribution, str) or distribution not in DISTRIBUTIONS:
        raise invalid(source, "distribution", distribution, "one of " + ", ".join(sorted(DISTRIBUTIONS)))
    family, os_id, major = identity["os_family"], identity["os"], identity["major"]
    node = read_node(distribution)
    kubernetes = _kubernetes_release(distribution, pillar, arguments, node["installed"])
    kubelet = _kubelet_settings(kubernetes["version"], distribution, pillar, arguments, node)
    resolved = {
        "distribution": distribution,
        "kubernetes": kubernetes,
        "kubelet": kubelet,
        "kubelet_files": node["files"],
        "kubelet_problems": node["problems"],
        "os_family": family,
        "os": f"{os_id}-{major}" if os_id else "unknown",
        "os_source": identity["source"],
        "extras": [],
        "cni": None,
        "kube_proxy_mode": None,
        "modules": {},
        # Names a layer dropped (``name: false``): the release rules add none of them back.
        "dropped_modules": set(),
        "sysctls": {},
        "swap": {"policy": "off", "source": "defaults"},
        "files": {what: {"path": path, "source": "defaults"} for what, path in DEFAULTS["files"].items()},
        "boot": dict(DEFAULTS["boot"]),
        "hints": dict(DEFAULTS["hints"]),
        "kernel_floors": [],
        "kernel_recommended": None,
        "mounts": {},
        "deprecations": [],
        "order": [],
        "node_port_range": _chosen("node_port_range", pillar, arguments, NODE_PORT_RANGE)[0],
        "unmanage_plugin_interfaces": bool(_chosen("unmanage_plugin_interfaces", pillar, arguments, False)[0]),
    }
    extras = list(pillar.get("extras") or []) + [
        e for e in arguments.get("extras") or [] if e not in (pillar.get("extras") or [])
    ]
    kernel_defaults = kubelet["protect_kernel_defaults"]
    if kernel_defaults["value"] is True and "protect_kernel_defaults" not in extras:
        # The kubelet exits when these sysctls differ: its setting makes them required.
        extras.append("protect_kernel_defaults")
    cni, cni_source = _chosen("cni", pillar, arguments, _NO_CNI)
    resolved["cni"] = {"name": None if cni == _NO_CNI else cni, "source": cni_source}
    resolved["kube_proxy_mode"] = mode = _kube_proxy_mode(pillar, arguments, extras)
    layers = {
        "distribution": [(f"distribution:{distribution}", DISTRIBUTIONS[distribution])],
        "cni": [(f"cni:{cni}", CNIS[cni])] if cni != _NO_CNI else [],
        # The default mode (iptables) needs nothing beyond the distribution: its
        # layer applies, and shows in ``order``, only when it was chosen.
        "kube_proxy_mode": [(f"kube_proxy_mode:{mode['mode']}", KUBE_PROXY_MODES[mode["mode"]])]
        if mode["source"] in ("arguments", "pillar k8snode")
        else [],
        "extras": _extra_layers(extras, mode),
        "os_family": [(f"os_family:{family}", OS_FAMILIES.get(family, {}))],
        "os_release": [
            (f"os_release:{fam}>={first}", layer)
            for fam, os_ids, first, layer in OS_RELEASES
            if fam == family and os_id in os_ids and major >= first
        ],
        "pillar": [("pillar", pillar)],
        "arguments": [("arguments", arguments)],
    }
    for stage in RESOLUTION_ORDER:
        for source, layer in layers[stage]:
            _merge_layer(resolved, copy.deepcopy(layer), source)
            resolved["order"].append(source)
        if stage == "cni":
            _routed_cni_drops_bridge(resolved, cni)
    resolved["extras"] = extras
    _release_rules(resolved)
    resolved["dropped_modules"] = sorted(resolved["dropped_modules"])
    return resolved
