"""
The checks that depend on the Kubernetes release and on the kubelet's own settings:
cgroups, swap, the recommended kernels, the container runtime, kubeadm's binaries,
and the release itself. Each verdict names the rule's source and the setting (with
the file it came from) that decided it. Read-only, like :mod:`.checks`.
"""

from . import host, kernel, releases, swap, verdict


def check(status, required, expected, live, detail, **extra):
    """:func:`.verdict.check` without a boot value: these checks are about the host now."""
    return verdict.check(status, required, expected, live, None, detail, **extra)


def _setting(resolved, name):
    entry = resolved["kubelet"][name]
    return entry["value"], entry["source"]


def cgroup_version(root):
    """1 or 2 by what is mounted at /sys/fs/cgroup first, or None."""
    types = host.mount_types(root, "/sys/fs/cgroup")
    if not types:
        return None
    return 2 if types[0] == "cgroup2" else 1


def _cgroup_v2_check(root):
    text = host.read_text(host.path(root, "sys/fs/cgroup/cgroup.controllers"))
    spec = releases.CGROUP_V2_CONTROLLERS
    if text is None:
        detail = "cgroup v2 is mounted at /sys/fs/cgroup (cgroup.controllers not readable: controllers not verified)"
        return check("ok", False, "cgroup v2", "v2", detail)
    enabled = set(text.split())
    missing = [name for name in spec["required"] if name not in enabled]
    optional = [name for name in spec["optional"] if name not in enabled]
    if missing:
        detail = (
            f"cgroup v2 without the {', '.join(missing)} controller(s) the kubelet needs "
            f"(/sys/fs/cgroup/cgroup.controllers: {' '.join(sorted(enabled)) or 'empty'})"
        )
        return check("fail", True, "cgroup v2", "v2", detail, source=spec["source"])
    detail = "cgroup v2 is mounted at /sys/fs/cgroup with " + ", ".join(spec["required"])
    if optional:
        detail += f" (optional {', '.join(optional)} missing)"
    return check("warn" if optional else "ok", not optional, "cgroup v2", "v2", detail, source=spec["source"])


def cgroup_check(resolved, root):
    """cgroup v2 with the controllers the kubelet needs; cgroup v1 as the release and
    the kubelet's ``failCgroupV1`` decide (the kubelet exits on v1 when it is true)."""
    version = cgroup_version(root)
    if version == 2:
        return _cgroup_v2_check(root)
    if version is None and not host.mount_types(root, "/proc"):
        # No mount table (a tree without /proc): nothing to decide from.
        return check("warn", False, "cgroup v2", None, "no /proc/mounts to read: cgroups not verified")
    if version is None:
        return check("fail", True, "cgroup v2", None, "no cgroup mount at /sys/fs/cgroup: the kubelet cannot run")
    release = resolved["kubernetes"]["version"]
    fail_v1, where = _setting(resolved, "fail_cgroup_v1")
    if fail_v1:
        detail = (
            f"cgroup v1 (/sys/fs/cgroup is not cgroup2): the kubelet {release} exits at start, failCgroupV1 is true "
            f"({where}). Boot the host with cgroup v2 (systemd.unified_cgroup_hierarchy=1 on the kernel command "
            "line), or run the kubelet with failCgroupV1: false (k8snode:kubelet:fail_cgroup_v1: false for a node "
            "not installed yet)"
        )
        return check("fail", True, "cgroup v2", "v1", detail, setting="failCgroupV1", setting_source=where)
    rule = releases.row(releases.CGROUP_V1, release)
    detail = f"cgroup v1 with Kubernetes {release}: {rule['why']}"
    if releases.minor(release) >= releases.minor("1.31"):
        detail += f"; the kubelet runs on it because failCgroupV1 is false ({where})"
    # An ok is required (it can fail); a warning is not (it must not block ready).
    status = rule["status"]
    return check(status, status == "ok", "cgroup v2", "v1", detail, source=rule["source"], setting_source=where)


def _swap_allowed(resolved, where, problems, cgroup, kernel_release):
    """Swap on with the kubelet's failSwapOn false: what swapBehavior and the release allow."""
    release = resolved["kubernetes"]["version"]
    behavior, behavior_where = _setting(resolved, "swap_behavior")
    rule = releases.row(releases.SWAP, release)
    base = f"swap is on ({'; '.join(problems)}); the kubelet runs with it: failSwapOn is false ({where})"
    if behavior == "LimitedSwap" and cgroup == 1 and rule["limited_swap_on_cgroup_v1"] == "fail":
        detail = (
            f"{base}, but swapBehavior LimitedSwap ({behavior_where}) needs cgroup v2 from Kubernetes 1.30: "
            "the kubelet exits at start on this cgroup v1 host"
        )
        return check("fail", True, "no swap", problems, detail, source=rule["source"])
    detail = f"{base}; swapBehavior {behavior} ({behavior_where}); NodeSwap in {release}: {rule['node_swap']}"
    floor = releases.TMPFS_NOSWAP_KERNEL
    found = kernel.parse_kernel_version(kernel_release)
    if behavior == "LimitedSwap" and found and found < kernel.parse_kernel_version(floor["version"]):
        detail += f"; kernel {kernel_release} < {floor['version']}: memory-backed volumes can be swapped out"
    return check("warn", False, "no swap", problems, detail, source=rule["source"])


def swap_check(resolved, root, cgroup, kernel_release):
    """Swap now and at boot against k8snode's policy and the kubelet's failSwapOn."""
    policy = resolved["swap"]
    found = swap.swap_status(root)
    active, at_boot = found["active"], found["at_boot"]
    problems = [f"active: {device}" for device in active] + [f"at boot: {where}" for where in at_boot]
    if policy["policy"] == "ignore":
        return {**check("ok", False, "any", active, "swap is not checked (policy ignore)"), "boot": at_boot}
    if not problems:
        return {**check("ok", policy["policy"] == "off", "no swap", [], "no swap now and none at boot"), "boot": []}
    fail_swap_on, where = _setting(resolved, "fail_swap_on")
    if fail_swap_on:
        detail = (
            "swap is on: " + "; ".join(problems) + f". The kubelet exits at start with swap on while failSwapOn "
            f"is true ({where}): run state.apply k8snode (swap: off), or set failSwapOn: false to run with swap"
        )
        result = check("fail", True, "no swap", active, detail, source=policy["source"], setting_source=where)
    elif policy["policy"] == "off":
        detail = "swap is on: " + "; ".join(problems) + f". k8snode's swap policy is off ({policy['source']})"
        result = check("fail", True, "no swap", active, detail, source=policy["source"], setting_source=where)
    else:
        result = _swap_allowed(resolved, where, problems, cgroup, kernel_release)
        result["live"] = active
    return {**result, "boot": at_boot, "lost_at_reboot": False}


def kernel_recommended_check(resolved, kernel_release):
    """kubeadm's list of recommended kernels (from 1.34): others pass with a warning."""
    recommended = resolved["kernel_recommended"]
    found = kernel.parse_kernel_version(kernel_release)
    if not recommended or not recommended["versions"] or found is None:
        return None
    names = recommended["versions"]
    ok = any(
        found[:2] == kernel.parse_kernel_version(name)[:2] if "." in name else found[0] >= int(name) for name in names
    )
    expected = ", ".join(name if "." in name else f">= {name}" for name in names)
    detail = (
        f"kernel {kernel_release} is {'one' if ok else 'none'} of kubeadm's recommended kernels ({expected})"
        f" for Kubernetes {resolved['kubernetes']['version']}"
    )
    return check("ok" if ok else "warn", False, expected, kernel_release, detail, source=recommended["source"])


_RUNTIME_PACKAGES = ("containerd.io", "containerd")


def containerd_version(root):
    """``(version, evidence, (major, minor, patch))`` of the containerd dpkg installed
    (Docker's containerd.io or Debian's containerd), or None."""
    found = host.dpkg_installed_version(root, *_RUNTIME_PACKAGES)
    if found is None:
        return None
    version, evidence = found
    parsed = kernel.parse_kernel_version(version.split(":", 1)[-1])
    return (version, evidence, parsed) if parsed else None


def containerd_check(resolved, root):
    """The containerd release that dpkg installed, against the release's minimum."""
    if resolved["distribution"] not in ("kubeadm",):
        return None  # k3s, RKE2 and MicroK8s bring their own containerd
    rule = releases.row(releases.CONTAINERD, resolved["kubernetes"]["version"])
    found = containerd_version(root)
    if rule is None or found is None:
        return None
    version, evidence, parsed = found
    ok = parsed >= kernel.parse_kernel_version(rule["minimum"])
    expected = f">= {rule['minimum']}"
    detail = f"containerd {version} ({evidence})" + ("" if ok else f": {rule['why']}")
    return check("ok" if ok else rule["status"], False, expected, version, detail, source=rule["source"])


def binaries_check(resolved, root):
    """kubeadm's preflight binaries for the release, found in PATH's directories (never run)."""
    if resolved["distribution"] != "kubeadm":
        return None
    release = resolved["kubernetes"]["version"]
    wanted = [entry for entry in releases.KUBEADM_BINARIES if releases.applies(entry, release)]
    missing = [entry for entry in wanted if not host.find_executable(root, entry["name"], releases.BINARY_DIRECTORIES)]
    expected = ", ".join(entry["name"] for entry in wanted)
    if not missing:
        return check("ok", False, expected, [], f"kubeadm {release}'s preflight finds {expected} in PATH")
    names = [entry["name"] for entry in missing]
    detail = f"kubeadm {release}'s preflight looks for these and does not find them in PATH: {', '.join(names)}"
    return check(
        "warn", False, expected, names, detail, source="kubernetes/kubernetes cmd/kubeadm/app/preflight/checks.go"
    )


def kubernetes_check(resolved):
    """The release the verdicts are for and where it came from; a warning when the
    rules may be stale or the kubelet's own files could not be read."""
    kubernetes = resolved["kubernetes"]
    detail = f"verdicts for Kubernetes {kubernetes['version']} ({kubernetes['assumed'] or kubernetes['source']})"
    settings = ", ".join(
        f"{releases.KUBELET_SETTINGS[name]['field']}={entry['value']} ({entry['source']})"
        for name, entry in sorted(resolved["kubelet"].items())
        if entry["origin"] in ("node", "pillar", "arguments")
    )
    if settings:
        detail += f"; kubelet settings: {settings}"
    warnings = [text for text in (kubernetes["stale"], *resolved["kubelet_problems"]) if text]
    if warnings:
        detail += "; " + "; ".join(warnings)
    return check(
        "warn" if warnings else "ok",
        False,
        f"<= {kubernetes['newest_known']}",
        kubernetes["version"],
        detail,
        source=kubernetes["source"],
        assumed=bool(kubernetes["assumed"]),
    )
