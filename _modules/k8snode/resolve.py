"""
Resolution: the tables, then the OS, then pillar, then arguments, merged into
the one resolved description of what this host needs. Every other part of
k8snode works on its result; every user value is validated on the way in.
"""

import copy

from .tables import (
    DEFAULTS,
    DISTRIBUTIONS,
    EXTRAS,
    OS_FAMILIES,
    OS_RELEASES,
    RESOLUTION_ORDER,
    SWAP_POLICIES,
    SYSCTL_COMPARISONS,
)
from .validate import (
    check_managed_path,
    check_mapping,
    check_module_name,
    check_sysctl_key,
    invalid,
    normalize_sysctl_value,
)


def _merge_modules(resolved, layer, source):
    for name, spec in check_mapping(layer, source, "modules").items():
        name = check_module_name(name, source)
        if spec is False:
            resolved.pop(name, None)
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
        unknown = set(spec) - {"value", "compare", "required", "needs_module"}
        if unknown:
            raise invalid(
                source, f"setting for sysctl {key}", sorted(unknown), "value, compare, required, needs_module"
            )
        item = resolved.setdefault(key, {"compare": "exact", "required": True, "needs_module": None})
        if "value" in spec:
            item["value"] = normalize_sysctl_value(spec["value"], source, key)
        if "value" not in item:
            raise invalid(source, f"sysctl {key}", spec, "a value (new keys need one)")
        if "compare" in spec:
            if spec["compare"] not in SYSCTL_COMPARISONS:
                raise invalid(source, f"compare for {key}", spec["compare"], "one of " + ", ".join(SYSCTL_COMPARISONS))
            item["compare"] = spec["compare"]
        if item["compare"] == "min" and len(item["value"].split()) != 1:
            raise invalid(source, f"value for {key}", item["value"], "a single integer for compare: min")
        if "required" in spec:
            if not isinstance(spec["required"], bool):
                raise invalid(source, f"required for sysctl {key}", spec["required"], "true or false")
            item["required"] = spec["required"]
        if spec.get("needs_module") is not None:
            item["needs_module"] = check_module_name(spec["needs_module"], source)
        item["source"] = source


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
        _merge_modules(resolved["modules"], layer["modules"], source)
    if "sysctls" in layer:
        _merge_sysctls(resolved["sysctls"], layer["sysctls"], source)
    if "swap" in layer:
        _merge_swap(resolved, layer["swap"], source)
    if "files" in layer:
        _merge_files(resolved, layer["files"], source)
    resolved["boot"].update(layer.get("boot", {}))
    resolved["hints"].update(layer.get("hints", {}))


_OVERRIDE_KEYS = ("distribution", "extras", "modules", "sysctls", "swap", "files")


def _check_overrides(overrides, source):
    overrides = check_mapping(overrides, source, "k8snode settings")
    unknown = set(overrides) - set(_OVERRIDE_KEYS)
    if unknown:
        raise invalid(source, "setting", sorted(unknown), "one of " + ", ".join(_OVERRIDE_KEYS))
    extras = overrides.get("extras")
    if extras is not None and (
        not isinstance(extras, list) or any(not isinstance(extra, str) or extra not in EXTRAS for extra in extras)
    ):
        raise invalid(source, "extras", extras, "a list of: " + ", ".join(sorted(EXTRAS)))
    return overrides


def resolve(distribution, pillar, arguments, identity):
    """
    The one place where requirements are resolved: the layers of ``RESOLUTION_ORDER``
    merged in order, a later one winning, each value tagged with its ``source``.

    ``identity``: ``{"os_family", "os", "major", "source"}`` of the host (from its
    grains or its os-release file: the caller says which, in ``source``).
    """
    pillar = _check_overrides(pillar, "pillar k8snode")
    arguments = _check_overrides(arguments, "arguments")
    source = "arguments" if distribution or arguments.get("distribution") else "pillar k8snode"
    distribution = distribution or arguments.get("distribution") or pillar.get("distribution") or "kubeadm"
    if not isinstance(distribution, str) or distribution not in DISTRIBUTIONS:
        raise invalid(source, "distribution", distribution, "one of " + ", ".join(sorted(DISTRIBUTIONS)))
    family, os_id, major = identity["os_family"], identity["os"], identity["major"]
    resolved = {
        "distribution": distribution,
        "os_family": family,
        "os": f"{os_id}-{major}" if os_id else "unknown",
        "os_source": identity["source"],
        "extras": [],
        "modules": {},
        "sysctls": {},
        "swap": {"policy": "off", "source": "defaults"},
        "files": {what: {"path": path, "source": "defaults"} for what, path in DEFAULTS["files"].items()},
        "boot": dict(DEFAULTS["boot"]),
        "hints": dict(DEFAULTS["hints"]),
        "order": [],
    }
    extras = list(pillar.get("extras") or []) + [
        e for e in arguments.get("extras") or [] if e not in (pillar.get("extras") or [])
    ]
    layers = {
        "distribution": [(f"distribution:{distribution}", DISTRIBUTIONS[distribution])],
        "extras": [(f"extras:{extra}", EXTRAS[extra]) for extra in extras],
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
    resolved["extras"] = extras
    return resolved
