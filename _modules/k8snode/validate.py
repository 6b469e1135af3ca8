"""
Validation of every value that comes from pillar or arguments.

Each check names the bad value, where it came from (``source``) and what is
accepted, and raises before anything is read or changed. Names and values that
pass are safe to put in a file systemd reads and to hand to ``modprobe`` as an
argument (never through a shell).
"""

import os
import re

from salt.exceptions import SaltInvocationError

_MODULE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,55}$")
_SYSCTL_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@/+-]*$")
_SYSCTL_VALUE = re.compile(r"^-?[0-9]+(?:\s+-?[0-9]+)*$")
_CONF_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]*\.conf$")
GLOB_CHARS = frozenset("*?[]{}\\")
# A pattern key: globs (``*`` and ``?`` only) in the middle components, so that it
# selects one setting across interfaces (net.ipv4.conf.*.rp_filter) and never a
# whole subtree; systemd-sysctl reads it with glob(3) (see sysctl_syntax.glob_matches).
_PATTERN_COMPONENT = re.compile(r"^[A-Za-z0-9_:@+*?-]+$")


def invalid(source, what, value, accepted):
    """The error for a bad value: ``k8snode: <source>: invalid <what> <value>: <accepted>``."""
    return SaltInvocationError(f"k8snode: {source}: invalid {what} {value!r}: {accepted}")


def check_module_name(name, source):
    """Return the module name with ``_`` for ``-`` (the kernel's spelling), or raise."""
    if not isinstance(name, str) or not _MODULE_NAME.match(name):
        raise invalid(
            source, "kernel module name", name, "a plain module name of letters, digits, '_' and '-' (at most 55)"
        )
    # modprobe and modules-load.d take either; the kernel (/proc/modules, /sys/module) uses '_'.
    return name.replace("-", "_")


def check_sysctl_key(key, source):
    """Return ``key``, a plain sysctl name or a pattern key, or raise."""
    accepted = (
        "a plain dotted or slashed name such as net.ipv4.ip_forward (no '..' or spaces), or a pattern "
        "with '*' or '?' in the middle components only, such as net.ipv4.conf.*.rp_filter"
    )
    if not isinstance(key, str) or not key:
        raise invalid(source, "sysctl key", key, accepted)
    if set(key) & (GLOB_CHARS - {"*", "?"}):
        raise invalid(source, "sysctl key", key, "only '*' and '?' may be wildcards; " + accepted)
    if not _SYSCTL_KEY.match(key.replace("*", "_").replace("?", "_")) or ".." in key or "//" in key:
        raise invalid(source, "sysctl key", key, accepted)
    if key.endswith(("/", ".")):
        raise invalid(source, "sysctl key", key, accepted)
    if GLOB_CHARS & set(key):
        check_sysctl_pattern(key, source, accepted)
    return key


def check_sysctl_pattern(key, source, accepted):
    """A pattern key: ``*`` and ``?`` only (no ``[``, braces or escapes), never in the
    first or the last component, and a component of ``*`` alone needs a literal
    component before it besides the first (``net.*.x`` would reach every protocol)."""
    separator = "." if key.find(".") != -1 and (key.find("/") == -1 or key.find(".") < key.find("/")) else "/"
    components = key.split(separator)
    if len(components) < 4 or set(components[0] + components[1] + components[-1]) & GLOB_CHARS:
        raise invalid(
            source, "sysctl key", key, "a pattern needs two plain leading components and a plain last one; " + accepted
        )
    if not all(_PATTERN_COMPONENT.match(part) for part in components[2:-1]):
        raise invalid(source, "sysctl key", key, accepted)
    return key


#: Keys the kernel parses as a list of ports and ranges (proc_do_large_bitmap).
PORT_LIST_KEYS = ("net.ipv4.ip_local_reserved_ports",)
_PORT_ITEM = re.compile(r"^([0-9]{1,5})(?:-([0-9]{1,5}))?$")


def port_runs(ports):
    """``[(first, last)]``: the runs of consecutive ports in ``ports`` (any order)."""
    runs = []
    for port in sorted(set(ports)):
        if runs and port == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], port)
        else:
            runs.append((port, port))
    return runs


def port_runs_text(runs):
    """Runs as the kernel prints a port list (proc_do_large_bitmap): ``"22,30000-32767"``."""
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _normalize_port_list(value, source, key):
    """A port list as the kernel prints it back (proc_do_large_bitmap): sorted, merged
    ranges, ``"22,30000-32767"``; empty reserves nothing."""
    accepted = 'ports and ranges separated by commas, e.g. "30000-32767" or "22,30000-32767" (0-65535)'
    ports = set()
    for item in str(value).replace(" ", "").split(","):
        found = _PORT_ITEM.match(item) if item else None
        if item and not found:
            raise invalid(source, f"value for {key}", value, accepted)
        if found:
            first, last = int(found.group(1)), int(found.group(2) or found.group(1))
            if not first <= last <= 65535:
                raise invalid(source, f"value for {key}", value, accepted)
            ports.update(range(first, last + 1))
    return port_runs_text(port_runs(ports))


def normalize_sysctl_value(value, source, key):
    """Return ``value`` as /proc/sys prints it: integers separated by one space (a port
    list for :data:`PORT_LIST_KEYS`)."""
    accepted = "an integer, or integers separated by spaces"
    if key in PORT_LIST_KEYS and isinstance(value, str):
        return _normalize_port_list(value, source, key)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise invalid(source, f"value for {key}", value, accepted)
    text = str(value).strip()
    if not _SYSCTL_VALUE.match(text):
        raise invalid(source, f"value for {key}", value, accepted)
    return " ".join(text.split())


def check_managed_path(path, directory, source, what):
    """A file k8snode may own: ``/<directory>/NAME.conf`` and nothing else."""
    accepted = f"an absolute path /{directory}/NAME.conf (NAME of letters, digits, '_', '-', '.', '@', '+')"
    if not isinstance(path, str) or os.path.dirname(path) != "/" + directory:
        raise invalid(source, what, path, accepted)
    if not _CONF_NAME.match(os.path.basename(path)) or ".." in path:
        raise invalid(source, what, path, accepted)
    return path


def check_mapping(value, source, what):
    """``None`` is an empty mapping; anything but a dict is an error."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(source, what, value, "a mapping (dict)")
    return value


_KUBERNETES_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+)(?:[-+][0-9A-Za-z.+-]*)?)?$")


def check_kubernetes_version(value, source, oldest, newest):
    """Return the minor release (``"1.35"``) of ``1.35``, ``"1.35"``, ``v1.35.2``, or raise.

    YAML reads an unquoted ``1.30`` as the number 1.3: a float is taken only when its
    text has two digits after the point, and the error says to quote it otherwise."""
    accepted = (
        f'a Kubernetes release such as "{newest}" or "v{newest}.2" (major.minor[.patch], quoted in YAML), '
        f"{oldest} or later"
    )
    if isinstance(value, bool) or not isinstance(value, (str, float)):
        raise invalid(source, "kubernetes_version", value, accepted)
    text = repr(value) if isinstance(value, float) else value.strip()
    if isinstance(value, float) and len(text.partition(".")[2]) != 2:
        raise invalid(source, "kubernetes_version", value, "quote it: YAML reads 1.30 as the number 1.3; " + accepted)
    found = _KUBERNETES_VERSION.match(text)
    if not found or found.group(1) != "1":
        raise invalid(source, "kubernetes_version", value, accepted)
    release = f"1.{int(found.group(2))}"
    if int(found.group(2)) < int(oldest.split(".")[1]):
        raise invalid(source, "kubernetes_version", value, accepted)
    return release


def check_kubelet_settings(value, source, settings):
    """Return ``{name: value}`` of the pillar's ``kubelet:`` mapping, each name one of
    ``settings`` (``releases.KUBELET_SETTINGS``) with a value of its type, or raise."""
    value = check_mapping(value, source, "kubelet settings")
    checked = {}
    for name, setting in value.items():
        if name not in settings:
            raise invalid(source, "kubelet setting", name, "one of " + ", ".join(sorted(settings)))
        spec = settings[name]
        if spec["type"] is bool and not isinstance(setting, bool):
            raise invalid(source, f"kubelet {name} ({spec['field']})", setting, "true or false")
        if spec["type"] is str and (not isinstance(setting, str) or setting not in spec["accepted"]):
            raise invalid(source, f"kubelet {name} ({spec['field']})", setting, "one of " + ", ".join(spec["accepted"]))
        checked[name] = setting
    return checked


def check_port_range(value, source):
    """Return ``(first, last)`` of a NodePort range written as kube-apiserver's
    ``--service-node-port-range`` is (``"30000-32767"``), or raise."""
    accepted = 'a port range "first-last" as kube-apiserver\'s --service-node-port-range, e.g. "30000-32767"'
    found = re.fullmatch(r"\s*([0-9]{1,5})\s*-\s*([0-9]{1,5})\s*", value) if isinstance(value, str) else None
    if not found:
        raise invalid(source, "node_port_range", value, accepted)
    first, last = int(found.group(1)), int(found.group(2))
    if not 1 <= first <= last <= 65535:
        raise invalid(source, "node_port_range", value, accepted + " (1 <= first <= last <= 65535)")
    return first, last
