"""
The audit: every requirement compared with the host now and at the next boot,
one check each, as data (``status``, ``required``, ``expected``, ``live``,
``boot``, ``detail``) that a person, ``--out=json`` and the fleet report can use.
Read-only: it reads /proc, /sys and /etc and starts no process.
"""

from . import apparmor, forwarding, host, kernel, namespace, netfilter, netowners, ports, release_checks, sysctl_boot
from .tables import KERNEL_CONFIG_REQUIRED
from .verdict import check as _check


def _load_blocker(name, loading, explicit):
    """Why ``name`` will not load (now, by ``modprobe name`` when ``explicit``, else by
    alias or systemd-modules-load), or None: modprobe.d's install and blacklist lines,
    kernel.modules_disabled."""
    install = loading["rules"]["install"].get(name)
    if install and install["loads_nothing"]:
        return f"modprobe.d replaces its loading with `{install['command']}` ({install['where']}): nothing loads it"
    if not explicit and name in loading["rules"]["blacklist"]:
        return (
            f"it is blacklisted ({loading['rules']['blacklist'][name]}): systemd-modules-load and the kernel's "
            "on-demand requests skip it (an explicit modprobe still loads it)"
        )
    return None


def _module_verdict(chosen, state, evidence, files, loading, release):
    """(status, detail, lost_at_reboot) of one module."""
    at_boot = _load_blocker(chosen, loading, explicit=False)
    demand = kernel.on_demand(chosen, release)
    if demand and (at_boot or loading["disabled"] or loading["helper"] is None):
        demand = None
    if state == "builtin":
        return "ok", f"{chosen} is built into the kernel ({evidence})", False
    if state == "loaded" and files and at_boot:
        return "fail", f"{chosen} is loaded now and listed in {files[0]}, but {at_boot}: lost at the next reboot", True
    if state == "loaded" and files:
        return "ok", f"{chosen} is loaded and listed in {files[0]} for boot", False
    if state == "loaded" and demand:
        detail = f"{chosen} is loaded now; no modules-load.d file lists it, and the kernel loads it again {demand}"
        return "warn", detail + ": state.apply k8snode persists it", False
    if state == "loaded":
        return "fail", f"{chosen} is loaded now but no modules-load.d file lists it: lost at the next reboot", True
    if state == "available":
        now = _load_blocker(chosen, loading, explicit=True)
        if now:
            return "fail", f"{chosen} is available but {now}: neither modprobe nor state.apply can load it", False
        if loading["disabled"]:
            detail = f"{chosen} is available, but kernel.modules_disabled is 1: no module loads until the next boot"
            return "fail", detail, False
        when = f"listed in {files[0]} for boot" if files else "not persisted either"
        if demand:
            detail = f"{chosen} is not loaded; the kernel loads it {demand} ({when})"
            return ("ok" if files else "warn"), detail + ("" if files else ": state.apply k8snode persists it"), False
        detail = f"{chosen} is available but not loaded ({when}): run state.apply k8snode"
        if at_boot:
            detail += f"; {at_boot}"
        return "fail", detail, False
    return "fail", f"{chosen} is not in this kernel: {evidence}", False


def _module_check(requirement, facts, persisted, hints, root, loading):
    chosen, state, evidence = kernel.resolve_module(requirement["alternatives"], facts, root)
    files = persisted.get(chosen, [])
    boot = ", ".join(files) if files else ("built in" if state == "builtin" else "not persisted")
    status, detail, lost = _module_verdict(chosen, state, evidence, files, loading, facts["release"])
    if state == "missing" and chosen in hints:
        detail += f" ({hints[chosen]})"
    return _check(
        status,
        requirement["required"],
        "loaded or built in, and loaded at boot",
        state,
        boot,
        detail,
        module=chosen,
        lost_at_reboot=lost,
        source=requirement.get("source"),
    )


def _boot_origin(winner, path_key):
    """Where the boot value comes from: ``FILE:LINE`` and, when another key or a
    glob wrote it, which one."""
    origin = f"{winner['file']}:{winner['line']}"
    if "inherited" in winner:
        origin += f" (copied from {sysctl_boot.dotted_key(winner['inherited'])} when the interface appears)"
    elif "pattern" in winner:
        origin += f" (glob {winner['pattern']})"
    elif winner["via"] != path_key:
        origin += f" (through {winner['via']})"
    return origin


def _refusals(winner):
    if not winner or not winner["refused"]:
        return ""
    return "; refused by the kernel at boot: " + ", ".join(
        f"{write['file']}:{write['line']} {write['value']!r} ({write['refused']})" for write in winner["refused"]
    )


def meets(value, requirement):
    """Whether a sysctl value meets a requirement: ``one_of`` accepts any value of
    its ``accepted`` list; ``exact`` and ``min`` are ``sysctl_boot.value_satisfies``'s."""
    if requirement["compare"] == "one_of":
        return any(sysctl_boot.value_satisfies(value, accepted) for accepted in requirement["accepted"])
    return sysctl_boot.value_satisfies(value, requirement["value"], requirement["compare"])


def expected_text(requirement):
    """A requirement as a person reads it: ``1``, ``>= 262144``, ``0 or 1``."""
    if requirement["compare"] == "one_of":
        return " or ".join(requirement["accepted"])
    return requirement["value"] if requirement["compare"] == "exact" else f">= {requirement['value']}"


def _sysctl_check(key, requirement, boot, root, module_states, writers=()):
    live = sysctl_boot.read_live(root, key)
    path_key = sysctl_boot.sysctl_path(key)
    winner = sysctl_boot.boot_assignment(path_key, boot)
    # A winner without a file: every write at boot was refused by the kernel.
    winner_file = winner["file"] if winner else None
    boot_value = winner["value"] if winner else None
    shown_expected = expected_text(requirement)
    live_ok, boot_ok = meets(live, requirement), meets(boot_value, requirement)
    origin = _boot_origin(winner, path_key) if winner_file else None
    if live is None:
        needed = requirement.get("needs_module")
        why = f": {needed} is {module_states.get(needed, 'not loaded')}" if needed else ""
        detail = f"{key} does not exist in this kernel{why}"
    elif not live_ok:
        detail = f"{key} is {live} now, needs {shown_expected}"
        if origin and not boot_ok:
            detail += f"; {origin} sets {boot_value} at boot"
    elif origin is None:
        detail = f"{key} is {live} now but no sysctl.d file sets it: lost at the next reboot"
    elif not boot_ok:
        detail = f"{key} is {live} now but {origin} sets {boot_value} at boot"
    else:
        detail = f"{key} is {live}, set at boot by {origin}"
    detail += _refusals(winner)
    handler, assumed = sysctl_boot.kernel_handler(path_key, root)
    if winner and assumed:
        # The table of handlers does not know the key: its parsing is a guess.
        detail += f"; {assumed}"
    writes = sysctl_boot.boot_writes(path_key, boot)
    runtime = sysctl_boot.runtime_writers_of(path_key, writers)
    detail += sysctl_boot.owners_text(path_key, writes, runtime)
    if boot["ambiguous"]:
        detail += f" (boot model: {boot['applier']}; {boot['ambiguous']})"
    return _check(
        "ok" if live_ok and boot_ok else "fail",
        requirement["required"],
        shown_expected,
        live,
        boot_value,
        detail,
        boot_file=winner_file,
        boot_line=winner["line"] if winner_file else None,
        boot_via=winner["via"] if winner_file else None,
        boot_refused=[f"{write['file']}:{write['line']}" for write in winner["refused"]] if winner else [],
        boot_applier=boot["applier"],
        boot_writes=writes,
        boot_kernel_handler=handler["handler"] + (" (assumed)" if assumed else ""),
        runtime_writers=runtime,
        lost_at_reboot=live_ok and not boot_ok,
        source=requirement.get("source"),
    )


def _pattern_rows(pattern, boot, root):
    """Each key the pattern matches now: its name (what the wildcards matched: the
    interface), dotted key, live value and boot winner."""
    rows = []
    for match in host.sysctl_keys_matching(root, pattern):
        winner = sysctl_boot.interface_boot_assignment(match, boot)
        rows.append(
            {
                "name": sysctl_boot.wildcard_parts(pattern, match),
                "key": sysctl_boot.dotted_key(match),
                "live": sysctl_boot.read_live(root, match),
                "boot": winner["value"] if winner else None,
                "origin": _boot_origin(winner, match) if winner and winner["file"] else None,
            }
        )
    return rows


def _pattern_check(key, requirement, boot, root, writers=()):
    """A pattern key (``net.ipv4.conf.lxc*.rp_filter``): every key it matches now,
    live and at boot, and what a key that appears later (a new interface) gets at
    boot; the detail names the interfaces that are off."""
    pattern = sysctl_boot.sysctl_path(key)
    shown_expected = expected_text(requirement)
    rows = _pattern_rows(pattern, boot, root)
    off_now = [row for row in rows if not meets(row["live"], requirement)]
    off_boot = [row for row in rows if not meets(row["boot"], requirement)]
    new_key = sysctl_boot.new_match(pattern)
    new = sysctl_boot.interface_boot_assignment(new_key, boot)
    new_value = new["value"] if new else None
    new_ok = meets(new_value, requirement)
    if new and new["file"]:
        new_text = f"a new match gets {new_value} at boot from {_boot_origin(new, new_key)}"
    else:
        new_text = "no sysctl.d line sets a new match (nor conf.default): it keeps the kernel's default"
    parts = []
    if off_now:
        listed = ", ".join(f"{row['name']} ({row['live']})" for row in off_now)
        parts.append(f"{len(off_now)} of {len(rows)} off now, needs {shown_expected}: {listed}")
    if off_boot:
        parts.append(
            "off at boot: "
            + ", ".join(f"{row['name']} ({row['boot']} from {row['origin'] or 'no file'})" for row in off_boot)
        )
    if not new_ok:
        parts.append(f"{new_text}, needs {shown_expected}")
    if parts:
        detail = f"{key}: " + "; ".join(parts)
    elif rows:
        detail = f"{key} is {shown_expected} on " + ", ".join(row["name"] for row in rows) + f"; {new_text}"
    else:
        detail = f"{key}: no key matches now; {new_text}"
    # Glob lines the host's procps will not apply (< 4.0): said with their file and line.
    ignored = [
        line
        for line in boot.get("ignored", ())
        if line["pattern"] == pattern
        or any(
            sysctl_boot.glob_matches(line["pattern"], key)
            for key in [new_key, *map(sysctl_boot.sysctl_path, (row["key"] for row in rows))]
        )
    ]
    if ignored:
        detail += "; " + "; ".join(
            f"{line['file']}:{line['line']} ({sysctl_boot.dotted_key(line['pattern'])} = {line['value']}) sets "
            f"nothing at boot: {line['reason'].split(':')[0]}"
            for line in ignored
        )
    runtime = sysctl_boot.runtime_writers_of(pattern, writers)
    detail += sysctl_boot.owners_text(pattern, [], runtime)
    if boot["ambiguous"]:
        detail += f" (boot model: {boot['applier']}; {boot['ambiguous']})"
    live_ok, boot_ok = not off_now, not off_boot and new_ok
    return _check(
        "ok" if live_ok and boot_ok else "fail",
        requirement["required"],
        shown_expected,
        {row["key"]: row["live"] for row in rows},
        {row["key"]: row["boot"] for row in rows},
        detail,
        pattern=pattern,
        off_now=[row["name"] for row in off_now],
        off_at_boot=[row["name"] for row in off_boot],
        boot_new_match=new_value,
        boot_writes=sysctl_boot.boot_writes(new_key, boot),
        runtime_writers=runtime,
        boot_file=new["file"] if new else None,
        boot_line=new["line"] if new else None,
        boot_applier=boot["applier"],
        boot_ignored=[f"{line['file']}:{line['line']}" for line in ignored],
        lost_at_reboot=live_ok and not boot_ok,
        source=requirement.get("source"),
    )


def _kernel_config_check(facts):
    if not facts["config"]:
        return _check(
            "warn",
            False,
            "readable kernel config",
            None,
            None,
            "kernel config not readable (/proc/config.gz, /boot/config-*): not verified",
        )
    missing = [option for option in KERNEL_CONFIG_REQUIRED if facts["config"].get(option) not in ("y", "m")]
    if missing:
        detail = "missing in " + facts["config_source"] + ": " + ", ".join("CONFIG_" + option for option in missing)
        return _check("warn", False, "kubeadm's required options =y or =m", missing, None, detail)
    return _check(
        "ok",
        False,
        "kubeadm's required options =y or =m",
        [],
        None,
        f"all kubeadm options present in {facts['config_source']}",
    )


def _kernel_floor_check(floors, release):
    """The running kernel against every floor (``kernel >= 5.13``), naming who sets each."""
    highest = max(floors, key=lambda floor: kernel.parse_kernel_version(floor["version"]))
    expected = f">= {highest['version']}"
    found = kernel.parse_kernel_version(release)
    if found is None:
        who = ", ".join(floor["source"] for floor in floors)
        detail = f"kernel release {release!r} (/proc/sys/kernel/osrelease) is not a version: cannot check {who}"
        return _check("fail", True, expected, release or None, None, detail, source=highest["source"])
    below = [floor for floor in floors if found < kernel.parse_kernel_version(floor["version"])]
    if below:
        needs = "; ".join(f"{floor['version']}, which {floor['source']} requires ({floor['why']})" for floor in below)
        # A floor of an optional feature (user namespaces) warns; any other fails.
        return _check(
            "fail",
            any(floor.get("required", True) for floor in below),
            expected,
            release,
            None,
            f"kernel {release} is older than {needs}",
            source=", ".join(floor["source"] for floor in below),
        )
    met = ", ".join(f">= {floor['version']} ({floor['source']})" for floor in floors)
    return _check("ok", True, expected, release, None, f"kernel {release} meets {met}", source=highest["source"])


def _mount_check(mount_point, mount, root):
    types = host.mount_types(root, mount_point)
    fstype = mount["fstype"]
    if fstype in types:
        detail = f"{fstype} filesystem mounted at {mount_point}"
        return _check("ok", mount["required"], f"{fstype} mounted", fstype, None, detail, source=mount["source"])
    found = f" (found {', '.join(types)})" if types else ""
    detail = f"no {fstype} filesystem at {mount_point}{found}: {mount['why']}"
    return _check("fail", mount["required"], f"{fstype} mounted", types or None, None, detail, source=mount["source"])


def _deprecation_check(deprecation):
    detail = deprecation["detail"]
    return _check(
        "warn", False, "a supported setting", deprecation["source"], None, detail, source=deprecation["source"]
    )


def audit(resolved, root):
    facts = kernel.kernel_facts(root)
    persisted = kernel.boot_modules(root, resolved["boot"]["etc_modules"])
    boot = sysctl_boot.effective_boot_sysctls(root, resolved["boot"]["reads_etc_sysctl_conf"])
    writers = host.runtime_sysctl_writers(root)
    checks = {}
    module_states = {}
    loading = {
        "rules": kernel.modprobe_rules(root),
        "disabled": kernel.modules_disabled(root),
        "helper": kernel.request_module_helper(root),
    }
    for name, requirement in resolved["modules"].items():
        check = _module_check(requirement, facts, persisted, resolved["hints"], root, loading)
        checks[f"module:{name}"] = check
        module_states[name] = check["live"]
    for key, requirement in resolved["sysctls"].items():
        if sysctl_boot.is_glob(sysctl_boot.sysctl_path(key)):
            checks[f"sysctl:{key}"] = _pattern_check(key, requirement, boot, root, writers)
        else:
            checks[f"sysctl:{key}"] = _sysctl_check(key, requirement, boot, root, module_states, writers)
    cgroup = release_checks.cgroup_version(root)
    checks["swap"] = release_checks.swap_check(resolved, root, cgroup, facts["release"])
    checks["kernel_config"] = _kernel_config_check(facts)
    checks["cgroup"] = release_checks.cgroup_check(resolved, root)
    checks["kubernetes"] = release_checks.kubernetes_check(resolved)
    if resolved["kernel_floors"]:
        checks["kernel_version"] = _kernel_floor_check(resolved["kernel_floors"], facts["release"])
    optional = {
        "kernel_recommended": release_checks.kernel_recommended_check(resolved, facts["release"]),
        "container_runtime": release_checks.containerd_check(resolved, root),
        "binaries": release_checks.binaries_check(resolved, root),
        "forward_policy": forwarding.forward_policy_check(resolved, root, boot),
        "network_namespace": namespace.network_namespace_check(root),
        "network_manager": netowners.network_manager_check(resolved, root),
        "networkd": netowners.networkd_check(resolved, root),
        "iptables_backends": netfilter.iptables_backends_check(facts, root, netfilter.nft_tables(facts, root)),
        "node_ports": ports.node_ports_check(resolved, root, boot),
        "conntrack_headroom": netfilter.conntrack_headroom_check(resolved, root),
        "apparmor": apparmor.apparmor_check(resolved, root),
    }
    checks.update({name: found for name, found in optional.items() if found})
    for mount_point, mount in resolved["mounts"].items():
        checks[f"mount:{mount_point}"] = _mount_check(mount_point, mount, root)
    for deprecation in resolved["deprecations"]:
        checks[f"deprecated:{deprecation['source']}"] = _deprecation_check(deprecation)
    summary = {"ok": 0, "fail": 0, "warn": 0}
    for check in checks.values():
        summary[check["status"]] += 1
    return {
        "ready": all(check["status"] == "ok" for check in checks.values() if check["required"]),
        "distribution": resolved["distribution"],
        "kubernetes": {key: resolved["kubernetes"][key] for key in ("version", "source", "assumed", "stale")},
        "cni": resolved["cni"]["name"],
        "kube_proxy_mode": resolved["kube_proxy_mode"]["mode"],
        "os_family": resolved["os_family"],
        "os": resolved["os"],
        "kernel": facts["release"],
        "summary": summary,
        "failing": sorted(name for name, check in checks.items() if check["status"] == "fail"),
        "lost_at_reboot": sorted(name for name, check in checks.items() if check.get("lost_at_reboot")),
        "checks": checks,
        "boot_problems": boot["problems"],
        "boot_applier": {key: boot[key] for key in ("applier", "applier_evidence", "ambiguous")},
    }
