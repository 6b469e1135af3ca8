"""
Network managers that take the network plugin's interfaces, routes or rules away from it,
read from their configuration files.

* NetworkManager, when enabled, manages every interface its configuration does not leave
  alone: it takes the addresses and routes of bridges, tunnels and vxlan devices the plugin
  creates (Calico's docs, "Configure NetworkManager"; rancher/rke2#786). What leaves an
  interface alone: ``unmanaged-devices=`` in a ``[keyfile]`` section, or a ``[device*]``
  section with ``match-device=`` and ``managed=0`` (NetworkManager.conf(5)); the files are
  NetworkManager.conf then conf.d in /usr/lib, /run and /etc, a later file winning.
* systemd-networkd, when enabled, removes at start and at each reconfiguration the routes
  and routing policy rules that no .network file configures: ``ManageForeignRoutes=``
  (v246) and ``ManageForeignRoutingPolicyRules=`` (v249) in networkd.conf, both default
  ``yes`` (networkd.conf(5); cilium/cilium#18706, flatcar/Flatcar#620). A .network file
  whose ``[Match]`` takes the plugin's interfaces (``Name=*``, or no match at all) makes
  networkd configure them too (projectcalico/calico#2471).

``prepare`` writes a drop-in of ours for each manager that is there when the pillar sets
``unmanage_plugin_interfaces: true`` (:func:`drop_ins`).
"""

import fnmatch
import os

from . import host
from .tables import PLUGIN_INTERFACES
from .verdict import check

_NM_MAIN = ("etc/NetworkManager/NetworkManager.conf",)
_NM_DIRS = ("etc/NetworkManager/conf.d", "run/NetworkManager/conf.d", "usr/lib/NetworkManager/conf.d")
NM_DROP_IN = "/etc/NetworkManager/conf.d/90-k8snode-unmanaged.conf"
_NETWORKD_MAIN = ("etc/systemd/networkd.conf", "run/systemd/networkd.conf", "usr/lib/systemd/networkd.conf")
_NETWORKD_DIRS = (
    "etc/systemd/networkd.conf.d",
    "run/systemd/networkd.conf.d",
    "usr/local/lib/systemd/networkd.conf.d",
    "usr/lib/systemd/networkd.conf.d",
    "lib/systemd/networkd.conf.d",
)
NETWORKD_DROP_IN = "/etc/systemd/networkd.conf.d/90-k8snode-foreign.conf"
#: Every drop-in prepare may write (revert removes those that are ours).
DROP_INS = (NM_DROP_IN, NETWORKD_DROP_IN)
#: networkd.conf's settings that remove what the plugin writes, and what they remove.
FOREIGN_SETTINGS = {"ManageForeignRoutes": "routes", "ManageForeignRoutingPolicyRules": "routing policy rules"}
_TRUE = ("1", "yes", "y", "true", "t", "on")
_FALSE = ("0", "no", "n", "false", "f", "off")


def plugin_interfaces(resolved):
    """``{example name: kind}`` of the resolved plugin's interfaces (every known plugin's
    when the pillar names none), and the patterns a drop-in leaves alone."""
    cni = resolved["cni"]["name"]
    plugins = [PLUGIN_INTERFACES[cni]] if cni in PLUGIN_INTERFACES else list(PLUGIN_INTERFACES.values())
    examples, patterns = {}, []
    for plugin in plugins:
        examples.update(plugin["examples"])
        patterns += [pattern for pattern in plugin["patterns"] if pattern not in patterns]
    return examples, patterns


def _sections(text):
    """``[(section, key, value, line number)]`` of an ini file (systemd's and GLib's form)."""
    section, found = None, []
    for number, line in enumerate((text or "").splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if sep:
            found.append((section, key.strip(), value.strip(), number))
    return found


def _nm_spec_matches(spec, name, kind):
    """Whether one NetworkManager device spec (NetworkManager.conf(5), "Device List
    Format") takes the interface ``name`` of ``kind``."""
    spec = spec.strip()
    if spec == "*":
        return True
    what, sep, value = spec.partition(":")
    if not sep:
        return False  # a bare value is a MAC address
    if what == "interface-name":
        if value.startswith("="):
            return value[1:] == name
        return fnmatch.fnmatchcase(name, value.lstrip("~"))
    if what in ("type", "driver"):
        return value == kind
    return False  # mac:, s390-subchannels:, except: ... are not modelled


def _nm_files(root):
    files = [(None, host.path(root, main)) for main in _NM_MAIN]
    # conf.d: sorted by name over the three directories, /etc masking the same name.
    return files + list(host.conf_files(root, _NM_DIRS))


def nm_unmanaged(root):
    """``[(spec, where)]``: every device spec NetworkManager's files leave unmanaged."""
    specs = {}
    for _name, full in _nm_files(root):
        text = host.read_text(full)
        where = host.display(root, full)
        device_sections = {}
        for section, key, value, number in _sections(text):
            if section == "keyfile" and key in ("unmanaged-devices", "unmanaged-devices+"):
                found = [s for s in value.replace(",", ";").split(";") if s.strip()]
                if key == "unmanaged-devices":
                    specs = {}  # a later file's plain setting replaces the list
                specs.update({spec.strip(): f"{where}:{number}" for spec in found})
            elif section and section.startswith("device"):
                device_sections.setdefault(section, {})[key] = (value, number)
        for values in device_sections.values():
            managed, _ = values.get("managed", ("1", 0))
            if managed.lower() in _FALSE and "match-device" in values:
                value, number = values["match-device"]
                specs.update({spec.strip(): f"{where}:{number}" for spec in value.split(",") if spec.strip()})
    return list(specs.items())


def network_manager_check(resolved, root):
    """The audit's ``network_manager`` check; None when NetworkManager is not enabled."""
    if not host.enabled_units(root, "NetworkManager.service"):
        return None
    examples, patterns = plugin_interfaces(resolved)
    specs = nm_unmanaged(root)
    taken = sorted(
        name for name, kind in examples.items() if not any(_nm_spec_matches(s, name, kind) for s, _ in specs)
    )
    if not taken:
        detail = "NetworkManager leaves the network plugin's interfaces alone: " + ", ".join(
            sorted({where for _, where in specs})
        )
        return check("ok", False, "unmanaged", None, None, detail, unmanaged=[s for s, _ in specs])
    wanted = ";".join(f"interface-name:{pattern}" for pattern in patterns)
    detail = (
        f"NetworkManager is enabled and manages {', '.join(taken)}: it takes their addresses and routes from "
        f"the network plugin. Add [keyfile] unmanaged-devices={wanted} in /etc/NetworkManager/conf.d "
        "(or set pillar k8snode:unmanage_plugin_interfaces: true)"
    )
    return check("fail", False, "unmanaged", None, None, detail, managed=taken, unmanaged=[s for s, _ in specs])


def _boolean(value):
    value = value.lower()
    return True if value in _TRUE else False if value in _FALSE else None


#: Where systemd lists a service's processes: cgroup v2, then v1's name=systemd hierarchy.
_SERVICE_PROCS = (
    "sys/fs/cgroup/system.slice/{unit}/cgroup.procs",
    "sys/fs/cgroup/systemd/system.slice/{unit}/cgroup.procs",
)


def _service_pids(root, unit, name):
    """The PIDs of a systemd service: its cgroup's list (one read), else every process
    whose ``comm`` is ``name`` (a walk of /proc, for hosts where the cgroup is elsewhere)."""
    for template in _SERVICE_PROCS:
        text = host.read_text(host.path(root, template.format(unit=unit)))
        if text is not None:
            return text.split()
    try:
        pids = [entry for entry in os.listdir(host.path(root, "proc")) if entry.isdigit()]
    except OSError:
        return []
    return [pid for pid in pids if (host.read_text(host.path(root, f"proc/{pid}/comm")) or "").strip() == name]


def process_started(root, unit, name):
    """When the oldest process of the service ``unit`` (``comm`` ``name``) started, in
    seconds since the epoch (/proc/stat's btime plus the process's starttime, proc(5)), or None."""
    boot = next(
        (
            line.split()[1]
            for line in (host.read_text(host.path(root, "proc/stat")) or "").splitlines()
            if line.startswith("btime ")
        ),
        None,
    )
    ticks = []
    for pid in _service_pids(root, unit, name):
        stat = host.read_text(host.path(root, f"proc/{pid}/stat")) or ""
        fields = stat.rpartition(")")[2].split()  # after "pid (comm)": state is field 3
        if len(fields) > 19 and fields[19].isdigit():
            ticks.append(int(fields[19]))  # field 22, starttime
    if not ticks or boot is None:
        return None
    return int(boot) + min(ticks) / os.sysconf("SC_CLK_TCK")


def _networkd_files(root):
    main = next((host.path(root, m) for m in _NETWORKD_MAIN if host.exists(root, m)), None)
    return ([main] if main else []) + [full for _name, full in host.conf_files(root, _NETWORKD_DIRS)]


def networkd_foreign_settings(root, files):
    """``{setting: (value, where)}`` of networkd.conf's foreign-route settings in ``files``
    (:func:`_networkd_files`); the default (``yes``) where no file sets them."""
    settings = {name: (True, "systemd-networkd's default") for name in FOREIGN_SETTINGS}
    for full in files:
        for section, key, value, number in _sections(host.read_text(full)):
            if section == "Network" and key in FOREIGN_SETTINGS and _boolean(value) is not None:
                settings[key] = (_boolean(value), f"{host.display(root, full)}:{number}")
    return settings


def _network_file_takes(text, examples):
    """The examples a .network file's ``[Match]`` takes (systemd.network(5)): ``Name=``
    globs, ``!`` inverting the list; no match key at all takes every interface; any
    other match key is not modelled (the file is left out)."""
    names, other, unmanaged = None, False, False
    for section, key, value, _ in _sections(text):
        if section == "Match":
            if key == "Name":
                names = value.split() if value else None  # an empty Name= resets the list
            else:
                other = True
        elif section == "Link" and key == "Unmanaged" and _boolean(value):
            unmanaged = True
    if other or unmanaged:
        return []
    if names is None:
        return sorted(examples)
    inverted = names[0].startswith("!")
    globs = [names[0][1:], *names[1:]] if inverted else names
    return sorted(name for name in examples if any(fnmatch.fnmatchcase(name, g) for g in globs) != inverted)


def networkd_check(resolved, root):
    """The audit's ``networkd`` check; None when systemd-networkd is not enabled."""
    if not host.enabled_units(root, "systemd-networkd.service", "dbus-org.freedesktop.network1.service"):
        return None
    examples, _ = plugin_interfaces(resolved)
    files = _networkd_files(root)  # listed once: the settings and, when they hold, their age
    settings = networkd_foreign_settings(root, files)
    problems = [
        f"{name}=yes ({where}): it removes {FOREIGN_SETTINGS[name]} that no .network file configures, the "
        "network plugin's among them, at each start or reconfiguration"
        for name, (value, where) in settings.items()
        if value
    ]
    for _name, full in host.conf_files_with_suffix(root, host.NETWORKD_DIRS, ".network"):
        taken = _network_file_takes(host.read_text(full), examples)
        if taken:
            problems.append(f"{host.display(root, full)} matches {', '.join(taken)}: networkd configures them too")
    found = {name: {"value": value, "where": where} for name, (value, where) in settings.items()}
    if not problems:
        detail = "systemd-networkd keeps foreign routes and rules: " + ", ".join(
            f"{name}=no ({where})" for name, (_, where) in settings.items()
        )
        # comm is cut to 15 characters: systemd-network.
        started = process_started(root, "systemd-networkd.service", "systemd-network")
        newer = [host.display(root, full) for full in files if started is not None and os.stat(full).st_mtime > started]
        if newer:
            detail += (
                f"; but {', '.join(newer)} changed after systemd-networkd started: it applies them at its next "
                "start (systemctl restart systemd-networkd, or the next boot)"
            )
            return check("warn", False, "foreign routes kept", None, None, detail, settings=found, pending=newer)
        return check("ok", False, "foreign routes kept", None, None, detail, settings=found)
    detail = (
        "systemd-networkd is enabled: "
        + "; ".join(problems)
        + ". Set ManageForeignRoutes=no and ManageForeignRoutingPolicyRules=no in /etc/systemd/networkd.conf.d "
        "(or pillar k8snode:unmanage_plugin_interfaces: true), and narrow the [Match] of those files"
    )
    return check("fail", False, "foreign routes kept", None, None, detail, settings=found)


def drop_ins(resolved, root):
    """``{path: content}`` of the drop-ins ``prepare`` writes when the pillar asks
    (``unmanage_plugin_interfaces: true``), for each manager installed on the host."""
    if not resolved.get("unmanage_plugin_interfaces"):
        return {}
    files = {}
    _, patterns = plugin_interfaces(resolved)
    if host.exists(root, "etc/NetworkManager"):
        files[NM_DROP_IN] = "[keyfile]\nunmanaged-devices=" + ";".join(f"interface-name:{p}" for p in patterns) + "\n"
    if host.exists(root, "lib/systemd/systemd-networkd") or host.exists(root, "usr/lib/systemd/systemd-networkd"):
        files[NETWORKD_DROP_IN] = "[Network]\n" + "".join(f"{name}=no\n" for name in FOREIGN_SETTINGS)
    return files
