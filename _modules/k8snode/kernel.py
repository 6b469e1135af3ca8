"""
The kernel's modules: which are loaded, built in, available or missing, with
the evidence, and which files load them at boot (systemd-modules-load).

A module can be in the kernel without being listed in ``/proc/modules``: built
in (``modules.builtin``, ``CONFIG_X=y``), or on a kernel without module support
at all (WSL2, Firecracker, CI's VM kernel). ``lsmod`` and Salt's
``kmod.present`` miss those; here the evidence decides.
"""

import gzip
import os
import re

from . import host
from .tables import MODULE_EVIDENCE, ON_DEMAND

# systemd-modules-load reads these, in this order; a file name in an earlier
# directory masks the same name in a later one.
MODULES_LOAD_DIRS = (
    "etc/modules-load.d",
    "run/modules-load.d",
    "usr/local/lib/modules-load.d",
    "usr/lib/modules-load.d",
    "lib/modules-load.d",
)


def _module_name(filename):
    """``kernel/net/bridge/br_netfilter.ko.xz`` -> ``br_netfilter``."""
    base = os.path.basename(filename.strip())
    base = base.split(".ko", 1)[0]
    return base.replace("-", "_")


def parse_proc_modules(text):
    """Return the set of module names listed in ``/proc/modules`` text."""
    names = set()
    for line in text.splitlines():
        fields = line.split()
        if fields:
            names.add(fields[0].replace("-", "_"))
    return names


def parse_module_list(text):
    """Return module names from ``modules.builtin`` or ``modules.dep`` text."""
    names = set()
    for line in text.splitlines():
        module_path = line.split(":", 1)[0].strip()
        if module_path.endswith((".ko", ".ko.xz", ".ko.zst", ".ko.gz")):
            names.add(_module_name(module_path))
    return names


def parse_kernel_config(text):
    """Parse a kernel ``.config``: ``{"OVERLAY_FS": "y", ...}`` (options not set are absent)."""
    options = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            options[key[len("CONFIG_") :]] = value.strip().strip('"')
    return options


_KERNEL_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def parse_kernel_version(release):
    """``(major, minor, patch)`` of a kernel release, or None: distributions add their
    own suffix after the upstream version (``6.1.0-21-amd64``, ``4.18.0-513.el8.x86_64``,
    ``5.15.0-1043-azure``, ``6.8.0-rc1``); a floor such as ``5.13`` has no patch (0)."""
    found = _KERNEL_VERSION.match(str(release or "").strip())
    if not found:
        return None
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch or 0)


def _read_kernel_config(root, release):
    """Return (options, source path) of the running kernel's config, or ({}, None)."""
    config_gz = host.path(root, "proc/config.gz")
    try:
        with gzip.open(config_gz, "rb") as handle:
            return parse_kernel_config(handle.read().decode("utf-8", "replace")), "/proc/config.gz"
    except (OSError, EOFError):
        pass
    for candidate in (f"boot/config-{release}", f"lib/modules/{release}/config", f"usr/lib/modules/{release}/config"):
        text = host.read_text(host.path(root, candidate))
        if text is not None:
            return parse_kernel_config(text), "/" + candidate
    return {}, None


def kernel_facts(root):
    """What the running kernel offers: loaded, built-in and available modules, its
    config and filesystems (see the API's ``kernel_facts``)."""
    release = host.kernel_release(root)
    proc_modules = host.read_text(host.path(root, "proc/modules"))
    builtin, available = set(), set()
    for moddir in (f"lib/modules/{release}", f"usr/lib/modules/{release}"):
        text = host.read_text(host.path(root, moddir + "/modules.builtin"))
        if text is not None:
            builtin |= parse_module_list(text)
        text = host.read_text(host.path(root, moddir + "/modules.dep"))
        if text is not None:
            available |= parse_module_list(text)
    config, config_source = _read_kernel_config(root, release)
    filesystems = set()
    for line in (host.read_text(host.path(root, "proc/filesystems")) or "").splitlines():
        if line.split():
            filesystems.add(line.split()[-1])
    return {
        "release": release,
        "module_support": proc_modules is not None,
        "loaded": sorted(parse_proc_modules(proc_modules or "")),
        "builtin": sorted(builtin),
        "available": sorted(available),
        "config": config,
        "config_source": config_source,
        "filesystems": sorted(filesystems),
    }


def _builtin_evidence(name, facts, root):
    """Why ``name`` is in the kernel without being listed in /proc/modules, or None."""
    if name in facts["builtin"]:
        return f"listed in /lib/modules/{facts['release']}/modules.builtin"
    evidence = MODULE_EVIDENCE.get(name, {})
    if facts["config"].get(evidence.get("config")) == "y":
        return f"CONFIG_{evidence['config']}=y in {facts['config_source']}"
    sysfs = host.path(root, f"sys/module/{name}")
    if os.path.isdir(sysfs) and not os.path.exists(os.path.join(sysfs, "initstate")):
        return f"/sys/module/{name} without initstate"
    if evidence.get("filesystem") and evidence["filesystem"] in facts["filesystems"]:
        return f"{evidence['filesystem']} listed in /proc/filesystems"
    if evidence.get("path") and os.path.exists(host.path(root, evidence["path"])):
        return f"/{evidence['path']} exists"
    return None


def module_state(name, facts, root):
    """Return (state, evidence) of one module: loaded, builtin, available or missing."""
    if name in facts["loaded"]:
        return "loaded", "listed in /proc/modules"
    evidence = _builtin_evidence(name, facts, root)
    if evidence:
        return "builtin", evidence
    if name in facts["available"]:
        return "available", f"in /lib/modules/{facts['release']}/modules.dep, not loaded"
    where = "no module support in this kernel" if not facts["module_support"] else "not loaded, not built in"
    return "missing", f"{where}, and no {name}.ko under /lib/modules/{facts['release'] or '?'}"


def resolve_module(alternatives, facts, root):
    """Return (name, state, evidence) of the first alternative that is present, else
    the first available, else the first one (missing)."""
    states = [(alt, *module_state(alt, facts, root)) for alt in alternatives]
    for wanted in (("loaded", "builtin"), ("available",)):
        for alt, state, evidence in states:
            if state in wanted:
                return alt, state, evidence
    return states[0]


def parse_modules_load(text):
    """Return module names listed in modules-load.d(5) or ``/etc/modules`` text."""
    names = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        # /etc/modules allows parameters after the name.
        names.append(line.split()[0].replace("-", "_"))
    return names


def boot_modules(root, etc_modules):
    """``{module: [files that list it]}`` for the next boot; ``etc_modules`` (Debian's
    ``/etc/modules``) is read too when given."""
    persisted = {}
    files = [full for _, full in host.conf_files(root, MODULES_LOAD_DIRS)]
    if etc_modules:
        etc_path = host.path(root, etc_modules)
        # Debian links /etc/modules-load.d/modules.conf to it: read it once.
        if not host.same_file_in(files, etc_path):
            files.append(etc_path)
    for full in files:
        for name in parse_modules_load(host.read_text(full) or ""):
            persisted.setdefault(name, []).append(host.display(root, full))
    return persisted


# kmod reads these (modprobe.d(5)); a file name in an earlier directory masks the same
# name in a later one, as for modules-load.d.
MODPROBE_DIRS = ("etc/modprobe.d", "run/modprobe.d", "usr/local/lib/modprobe.d", "usr/lib/modprobe.d", "lib/modprobe.d")
# An install command that loads nothing: modprobe runs it instead of inserting the module.
_NO_OP_COMMANDS = ("false", "true", "/bin/false", "/bin/true", "/usr/bin/false", "/usr/bin/true")


def _modprobe_lines(text):
    """(line number, words) of modprobe.d text: comments dropped, ``\\`` continuations joined."""
    pending, start = "", None
    for number, line in enumerate(text.splitlines(), 1):
        if start is None:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        words = (pending + line).split()
        pending, first = "", start
        start = None
        if words and not words[0].startswith("#"):
            yield first, words


def modprobe_rules(root):
    """What modprobe.d says of loading modules: ``{"blacklist": {name: "file:line"},
    "install": {name: {"command", "where", "loads_nothing"}}}``. ``blacklist`` stops
    loading by alias (the kernel's on-demand requests, udev) and systemd-modules-load
    (kmod's deny-list: "Module 'x' is deny-listed (by kmod)"), not an explicit
    ``modprobe x``; an ``install`` line replaces every load, explicit or not, with its
    command (``/bin/false`` loads nothing). The first line for a name wins, as in kmod."""
    rules = {"blacklist": {}, "install": {}}
    for _, full in host.conf_files(root, MODPROBE_DIRS):
        shown = host.display(root, full)
        for number, words in _modprobe_lines(host.read_text(full) or ""):
            if words[0] not in ("blacklist", "install") or len(words) < 2:
                continue
            name = words[1].replace("-", "_")
            where = f"{shown}:{number}"
            if words[0] == "blacklist":
                rules["blacklist"].setdefault(name, where)
                continue
            command = " ".join(words[2:])
            loads_nothing = not words[2:] or (words[2] in _NO_OP_COMMANDS and "--ignore-install" not in command)
            rules["install"].setdefault(name, {"command": command, "where": where, "loads_nothing": loads_nothing})
    return rules


def modules_disabled(root):
    """Whether ``kernel.modules_disabled`` is 1 now: no module loads until the next boot."""
    return (host.read_text(host.path(root, "proc/sys/kernel/modules_disabled")) or "0").strip() == "1"


def request_module_helper(root):
    """What the kernel runs for its own module requests (``kernel.modprobe``,
    /sbin/modprobe by default), or None when those requests load nothing: an empty value
    (kernel/module/kmod.c: ``if (!modprobe_path[0]) return -ENOENT``) or a command that
    loads nothing (``/bin/false``, ``/bin/true``). An explicit modprobe is not affected."""
    text = host.read_text(host.path(root, "proc/sys/kernel/modprobe"))
    if text is None:
        return "/sbin/modprobe"  # not readable here: the kernel's default
    helper = text.strip()
    return helper if helper and helper not in _NO_OP_COMMANDS else None


def on_demand(name, release):
    """How the kernel loads ``name`` by itself when it is first needed (``ON_DEMAND``), or
    None; the running kernel must be at least the entry's ``since``."""
    entry = ON_DEMAND.get(name)
    if not entry:
        return None
    found = parse_kernel_version(release)
    if entry.get("since") and (found is None or found < parse_kernel_version(entry["since"])):
        return None
    return entry["how"]
