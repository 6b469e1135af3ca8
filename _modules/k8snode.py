"""
Prepare and audit Linux hosts as Kubernetes nodes.

The execution module owns all the logic of k8snode; the ``k8snode.prepared``
state and the ``k8snode.report`` runner are thin wrappers around it.

Requirements are data (``DISTRIBUTIONS``, ``EXTRAS``, ``OS_FAMILIES``,
``OS_RELEASES``) and are resolved in one place, :func:`requirements`, in the
order written in ``RESOLUTION_ORDER``. Every other function works on the
resolved result.

Everything that reads the host takes a ``root`` directory, so the unit tests
run the same code on fake trees. The audit reads ``/proc``, ``/sys`` and
``/etc`` directly: it starts no subprocess and changes nothing.
"""

import contextlib
import copy
import errno
import fcntl
import fnmatch
import gzip
import logging
import os
import re
import tempfile

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "k8snode"


def __virtual__():
    if __grains__.get("kernel", "Linux") != "Linux":  # noqa: F821
        return False, "k8snode: Kubernetes nodes are Linux hosts"
    return __virtualname__


# --------------------------------------------------------------------------
# Requirements, as data
# --------------------------------------------------------------------------

#: Layers applied by :func:`requirements`, first to last; a later layer wins.
RESOLUTION_ORDER = ("distribution", "extras", "os_family", "os_release", "pillar", "arguments")

_BRIDGE_SYSCTLS = {
    # Pod traffic crossing a CNI bridge must traverse iptables so that
    # kube-proxy's service rules apply; the keys exist only with br_netfilter.
    "net.bridge.bridge-nf-call-iptables": {"value": 1, "needs_module": "br_netfilter"},
    "net.bridge.bridge-nf-call-ip6tables": {"value": 1, "needs_module": "br_netfilter"},
}
_FORWARDING = {
    # The node routes pod traffic; kubeadm preflight errors when it is 0.
    "net.ipv4.ip_forward": {"value": 1},
}
_CORE_MODULES = {
    # containerd's overlayfs snapshotter and the CNI bridge's netfilter hook.
    "overlay": {},
    "br_netfilter": {},
}

DISTRIBUTIONS = {
    "kubeadm": {
        "description": "kubeadm sets nothing itself: every module and sysctl is the operator's job, "
        "and the kubelet refuses to start with swap on (failSwapOn).",
        "modules": _CORE_MODULES,
        "sysctls": {**_FORWARDING, **_BRIDGE_SYSCTLS},
        "swap": "off",
    },
    "rke2": {
        "description": "RKE2 modprobes overlay and br_netfilter and sets forwarding at start only; "
        "persisting them makes the bridge sysctls apply at boot, before RKE2 runs.",
        "modules": _CORE_MODULES,
        "sysctls": {**_FORWARDING, **_BRIDGE_SYSCTLS},
        "swap": "warn",
    },
    "k3s": {
        "description": "K3s loads overlay, br_netfilter and nf_conntrack and sets forwarding at "
        "runtime only; nothing is persisted, and bridge-nf-call-iptables is often left to the host.",
        "modules": {**_CORE_MODULES, "nf_conntrack": {"alternatives": ["nf_conntrack", "nf_conntrack_ipv4"]}},
        "sysctls": {**_FORWARDING, **_BRIDGE_SYSCTLS},
        "swap": "warn",
    },
    "microk8s": {
        "description": "MicroK8s raises inotify and aio limits (floors, never lowered) and loads "
        "br_netfilter and nf_conntrack when their sysctls are missing; bridge-nf-call-iptables "
        "depends on the host.",
        "modules": {**_CORE_MODULES, "nf_conntrack": {"alternatives": ["nf_conntrack", "nf_conntrack_ipv4"]}},
        "sysctls": {
            **_FORWARDING,
            **_BRIDGE_SYSCTLS,
            "fs.inotify.max_user_instances": {"value": 1024, "compare": "min"},
            "fs.inotify.max_user_watches": {"value": 1048576, "compare": "min"},
            "fs.aio-max-nr": {"value": 1048576, "compare": "min"},
        },
        "swap": "warn",
    },
}

EXTRAS = {
    "ipvs": {
        "description": "kube-proxy in IPVS mode (kubespray's module list).",
        "modules": {
            "ip_vs": {},
            "ip_vs_rr": {},
            "ip_vs_wrr": {},
            "ip_vs_sh": {},
            "nf_conntrack": {"alternatives": ["nf_conntrack", "nf_conntrack_ipv4"]},
        },
    },
    "ipv6": {
        "description": "IPv6 or dual-stack clusters: kubeadm preflight checks IPv6 forwarding.",
        "sysctls": {"net.ipv6.conf.all.forwarding": {"value": 1}},
    },
    "protect_kernel_defaults": {
        "description": "kubelet protectKernelDefaults and the RKE2 CIS profile: the kubelet "
        "refuses to start when these differ.",
        "sysctls": {
            "vm.overcommit_memory": {"value": 1},
            "vm.panic_on_oom": {"value": 0},
            "kernel.panic": {"value": 10},
            "kernel.panic_on_oops": {"value": 1},
            # Exact, not floors: the kubelet errors on any other value, higher too.
            "kernel.keys.root_maxkeys": {"value": 1000000},
            "kernel.keys.root_maxbytes": {"value": 25000000},
        },
    },
    "inotify": {
        "description": "Many pods watching files (kubespray's floors).",
        "sysctls": {
            "fs.inotify.max_user_instances": {"value": 8192, "compare": "min"},
            "fs.inotify.max_user_watches": {"value": 524288, "compare": "min"},
        },
    },
    "max_map_count": {
        "description": "Elasticsearch and similar workloads (the seed's optional value).",
        "sysctls": {"vm.max_map_count": {"value": 262144, "compare": "min"}},
    },
}

OS_FAMILIES = {
    "Debian": {"boot": {"reads_etc_sysctl_conf": True, "etc_modules": "/etc/modules"}},
    "RedHat": {
        "boot": {"reads_etc_sysctl_conf": True},
        "hints": {
            "br_netfilter": "on RHEL 10 and Fedora it ships in the kernel-modules-extra package",
            "ip_vs": "on RHEL 10 and Fedora it ships in the kernel-modules-extra package",
        },
    },
    "Suse": {
        "boot": {"reads_etc_sysctl_conf": True},
        "hints": {"br_netfilter": "kernel-default-base lacks it: install kernel-default"},
    },
}

# (os_family, os IDs whose release numbers these are, first major release it
# applies to, layer); every matching entry applies, in this order. Release
# numbers only mean something for one OS: Ubuntu 22.04 is not "Debian 22".
OS_RELEASES = (
    # Debian 13's procps no longer ships /etc/sysctl.conf nor the
    # 99-sysctl.conf link to it: the file is not read at boot.
    ("Debian", ("debian",), 13, {"boot": {"reads_etc_sysctl_conf": False}}),
)

DEFAULTS = {
    "files": {
        "modules_load": "/etc/modules-load.d/k8snode.conf",
        "sysctl": "/etc/sysctl.d/99-k8snode.conf",
    },
    "boot": {"reads_etc_sysctl_conf": True, "etc_modules": None},
    "hints": {},
}

#: Evidence that a module's feature is in the running kernel without it being
#: listed in /proc/modules: its kernel config option and what it creates.
MODULE_EVIDENCE = {
    "overlay": {"config": "OVERLAY_FS", "filesystem": "overlay"},
    "br_netfilter": {"config": "BRIDGE_NETFILTER", "path": "proc/sys/net/bridge/bridge-nf-call-iptables"},
    "nf_conntrack": {"config": "NF_CONNTRACK", "path": "proc/sys/net/netfilter/nf_conntrack_max"},
    "nf_conntrack_ipv4": {"config": "NF_CONNTRACK_IPV4"},
    "ip_vs": {"config": "IP_VS", "path": "proc/net/ip_vs"},
    "ip_vs_rr": {"config": "IP_VS_RR"},
    "ip_vs_wrr": {"config": "IP_VS_WRR"},
    "ip_vs_sh": {"config": "IP_VS_SH"},
    "ip_tables": {"config": "IP_NF_IPTABLES", "path": "proc/net/ip_tables_names"},
    "iptable_nat": {"config": "IP_NF_NAT"},
    "iptable_filter": {"config": "IP_NF_FILTER"},
}

#: What kubeadm's system verification requires of the kernel config.
KERNEL_CONFIG_REQUIRED = (
    "NAMESPACES", "NET_NS", "PID_NS", "IPC_NS", "UTS_NS", "CGROUPS", "CGROUP_CPUACCT",
    "CGROUP_DEVICE", "CGROUP_FREEZER", "CGROUP_PIDS", "CGROUP_SCHED", "CPUSETS", "MEMCG",
    "INET", "EXT4_FS", "PROC_FS", "NETFILTER_XT_TARGET_REDIRECT",
    "NETFILTER_XT_MATCH_COMMENT", "FAIR_GROUP_SCHED",
)  # fmt: skip

SWAP_POLICIES = ("off", "warn", "ignore")
SYSCTL_COMPARISONS = ("exact", "min")

# systemd-sysctl and systemd-modules-load read these, in this order; a file
# name in an earlier directory masks the same name in a later one.
SYSCTL_DIRS = ("etc/sysctl.d", "run/sysctl.d", "usr/local/lib/sysctl.d", "usr/lib/sysctl.d", "lib/sysctl.d")
MODULES_LOAD_DIRS = (
    "etc/modules-load.d",
    "run/modules-load.d",
    "usr/local/lib/modules-load.d",
    "usr/lib/modules-load.d",
    "lib/modules-load.d",
)

MANAGED_HEADER = (
    "# Managed by Salt (k8snode.prepared): local edits are overwritten; k8snode.absent removes this file.\n"
)
FSTAB_MARKER = "#k8snode-swap-off# "
FSTAB_BACKUP_SUFFIX = ".k8snode.bak"
LOCK_FILE = "run/k8snode.lock"
_TEMP_MARK = ".k8snode-tmp-"

_MODULE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,55}$")
_SYSCTL_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@/+-]*$")
_SYSCTL_VALUE = re.compile(r"^-?[0-9]+(?:\s+-?[0-9]+)*$")
_CONF_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]*\.conf$")
_GLOB_CHARS = set("*?[]")


# --------------------------------------------------------------------------
# Validation: every value from pillar or arguments passes through here
# --------------------------------------------------------------------------


def _invalid(source, what, value, accepted):
    return SaltInvocationError(f"k8snode: {source}: invalid {what} {value!r}: {accepted}")


def _check_module_name(name, source):
    if not isinstance(name, str) or not _MODULE_NAME.match(name):
        raise _invalid(
            source, "kernel module name", name, "a plain module name of letters, digits, '_' and '-' (at most 55)"
        )
    # modprobe and modules-load.d take either; the kernel (/proc/modules, /sys/module) uses '_'.
    return name.replace("-", "_")


def _check_sysctl_key(key, source):
    accepted = "a plain dotted or slashed name such as net.ipv4.ip_forward (no '..', spaces or globs)"
    if not isinstance(key, str) or not key:
        raise _invalid(source, "sysctl key", key, accepted)
    if _GLOB_CHARS & set(key):
        raise _invalid(source, "sysctl key", key, "globs are not allowed here; " + accepted)
    if not _SYSCTL_KEY.match(key) or ".." in key or "//" in key or key.endswith(("/", ".")):
        raise _invalid(source, "sysctl key", key, accepted)
    return key


def _normalize_sysctl_value(value, source, key):
    """Return ``value`` as /proc/sys prints it: integers separated by one space."""
    accepted = "an integer, or integers separated by spaces"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _invalid(source, f"value for {key}", value, accepted)
    text = str(value).strip()
    if not _SYSCTL_VALUE.match(text):
        raise _invalid(source, f"value for {key}", value, accepted)
    return " ".join(text.split())


def _check_managed_path(path, directory, source, what):
    accepted = f"an absolute path /{directory}/NAME.conf (NAME of letters, digits, '_', '-', '.', '@', '+')"
    if not isinstance(path, str) or os.path.dirname(path) != "/" + directory:
        raise _invalid(source, what, path, accepted)
    if not _CONF_NAME.match(os.path.basename(path)) or ".." in path:
        raise _invalid(source, what, path, accepted)
    return path


def _check_mapping(value, source, what):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(source, what, value, "a mapping (dict)")
    return value


# --------------------------------------------------------------------------
# Reading the host (pure: everything is relative to ``root``)
# --------------------------------------------------------------------------


def _path(root, relative):
    return os.path.join(root, relative.lstrip("/"))


def _read_text(path):
    """Return the file's text, or None when it does not exist or can't be read."""
    # os.read rather than open(): no buffer object nor isatty() per file (sysctl.d may hold many).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    # Config files are ASCII in practice; a stray byte must not hide the rest.
    return data.decode("utf-8", errors="replace")


def _os_identity(root):
    """Return (os_family, os id, major release) of the tree at ``root``."""
    if root == "/" and isinstance(globals().get("__grains__"), dict) and __grains__.get("os_family"):  # noqa: F821
        grains = __grains__  # noqa: F821
        try:
            major = int(str(grains.get("osmajorrelease") or 0).split(".")[0])
        except ValueError:
            major = 0
        return grains["os_family"], str(grains.get("os", "")).lower(), major
    release = {}
    for candidate in ("etc/os-release", "usr/lib/os-release"):
        text = _read_text(_path(root, candidate))
        if text is not None:
            release = parse_os_release(text)
            break
    ids = [release.get("ID", "")] + release.get("ID_LIKE", "").split()
    family = "unknown"
    for ident in ids:
        family = _FAMILY_OF_ID.get(ident) or ("Suse" if ident.startswith(("opensuse", "sle")) else None)
        if family:
            break
    try:
        major = int(release.get("VERSION_ID", "0").split(".")[0])
    except ValueError:
        major = 0
    return family or "unknown", release.get("ID", ""), major


_FAMILY_OF_ID = {
    "debian": "Debian",
    "ubuntu": "Debian",
    "raspbian": "Debian",
    "rhel": "RedHat",
    "centos": "RedHat",
    "fedora": "RedHat",
    "rocky": "RedHat",
    "almalinux": "RedHat",
    "ol": "RedHat",
    "amzn": "RedHat",
    "suse": "Suse",
    "sles": "Suse",
}


def parse_os_release(text):
    """
    Parse os-release(5) text into a dict.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.parse_os_release "$(cat /etc/os-release)"
    """
    result = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        result[key.strip()] = value
    return result


def _kernel_release(root):
    text = _read_text(_path(root, "proc/sys/kernel/osrelease"))
    return text.strip() if text else ""


def _module_name(filename):
    """``kernel/net/bridge/br_netfilter.ko.xz`` -> ``br_netfilter``."""
    base = os.path.basename(filename.strip())
    base = base.split(".ko", 1)[0]
    return base.replace("-", "_")


def parse_proc_modules(text):
    """
    Return the set of module names listed in ``/proc/modules`` text.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.parse_proc_modules "$(cat /proc/modules)"
    """
    names = set()
    for line in text.splitlines():
        fields = line.split()
        if fields:
            names.add(fields[0].replace("-", "_"))
    return names


def parse_module_list(text):
    """
    Return module names from ``modules.builtin`` or ``modules.dep`` text.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.parse_module_list "$(cat /lib/modules/$(uname -r)/modules.builtin)"
    """
    names = set()
    for line in text.splitlines():
        path = line.split(":", 1)[0].strip()
        if path.endswith((".ko", ".ko.xz", ".ko.zst", ".ko.gz")):
            names.add(_module_name(path))
    return names


def parse_kernel_config(text):
    """
    Parse a kernel ``.config``: ``{"OVERLAY_FS": "y", ...}`` (options not set are absent).

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.parse_kernel_config "$(zcat /proc/config.gz)"
    """
    options = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            options[key[len("CONFIG_") :]] = value.strip().strip('"')
    return options


def _read_kernel_config(root, release):
    """Return (options, source path) of the running kernel's config, or ({}, None)."""
    config_gz = _path(root, "proc/config.gz")
    try:
        with gzip.open(config_gz, "rb") as handle:
            return parse_kernel_config(handle.read().decode("utf-8", "replace")), "/proc/config.gz"
    except (OSError, EOFError):
        pass
    for candidate in (f"boot/config-{release}", f"lib/modules/{release}/config", f"usr/lib/modules/{release}/config"):
        text = _read_text(_path(root, candidate))
        if text is not None:
            return parse_kernel_config(text), "/" + candidate
    return {}, None


def kernel_facts(root="/"):
    """
    Read what the running kernel offers: loaded, built-in and available modules,
    its config and filesystems. Reads files only.

    root
        Directory to read the host from (for tests and chroots). Default ``/``.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.kernel_facts
    """
    release = _kernel_release(root)
    proc_modules = _read_text(_path(root, "proc/modules"))
    builtin, available = set(), set()
    for moddir in (f"lib/modules/{release}", f"usr/lib/modules/{release}"):
        text = _read_text(_path(root, moddir + "/modules.builtin"))
        if text is not None:
            builtin |= parse_module_list(text)
        text = _read_text(_path(root, moddir + "/modules.dep"))
        if text is not None:
            available |= parse_module_list(text)
    config, config_source = _read_kernel_config(root, release)
    filesystems = set()
    for line in (_read_text(_path(root, "proc/filesystems")) or "").splitlines():
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
    sysfs = _path(root, f"sys/module/{name}")
    if os.path.isdir(sysfs) and not os.path.exists(os.path.join(sysfs, "initstate")):
        return f"/sys/module/{name} without initstate"
    if evidence.get("filesystem") and evidence["filesystem"] in facts["filesystems"]:
        return f"{evidence['filesystem']} listed in /proc/filesystems"
    if evidence.get("path") and os.path.exists(_path(root, evidence["path"])):
        return f"/{evidence['path']} exists"
    return None


def _module_state(name, facts, root):
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


def _conf_files(root, directories):
    """Return [(name, path)] sorted by name, as systemd's conf_files_list does."""
    chosen = {}
    for directory in directories:
        full = _path(root, directory)
        try:
            names = os.listdir(full)
        except OSError:
            continue
        for name in names:
            if name.endswith(".conf") and name not in chosen:
                chosen[name] = os.path.join(full, name)
    result = []
    for name in sorted(chosen):
        path = chosen[name]
        # A link to /dev/null masks the name: nothing is read.
        if os.path.islink(path) and os.readlink(path) == "/dev/null":
            continue
        result.append((name, path))
    return result


def _display(root, path):
    if root == "/":
        return path
    # Paths are built by _path(root, ...): strip the root without relpath's two abspaths.
    prefix = os.path.join(root, "")
    return "/" + path[len(prefix) :] if path.startswith(prefix) else "/" + os.path.relpath(path, root)


def _same_file_in(paths, target):
    """Whether one of ``paths`` resolves to ``target`` (realpath): a stat per path, and
    realpath only for the ones on the same inode, not a walk of every path."""
    try:
        wanted = os.stat(target)
    except OSError:
        return False
    real = None
    for path in paths:
        try:
            if not os.path.samestat(os.stat(path), wanted):
                continue
        except OSError:
            continue
        real = real or os.path.realpath(target)
        if os.path.realpath(path) == real:
            return True
    return False


def parse_modules_load(text):
    """
    Return module names listed in modules-load.d(5) or ``/etc/modules`` text.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.parse_modules_load "$(cat /etc/modules-load.d/k8snode.conf)"
    """
    names = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        # /etc/modules allows parameters after the name.
        names.append(line.split()[0].replace("-", "_"))
    return names


def boot_modules(root="/", etc_modules=None):
    """
    Return the modules that will be loaded at boot and the files that list them:
    ``{"br_netfilter": ["/etc/modules-load.d/k8snode.conf"], ...}``.

    root
        Directory to read the host from. Default ``/``.
    etc_modules
        Also read this file (Debian's ``/etc/modules``). Default: from the OS data.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.boot_modules
    """
    if etc_modules is None:
        etc_modules = _resolve_layers(None, {}, {}, root)["boot"]["etc_modules"]
    persisted = {}
    files = [path for _, path in _conf_files(root, MODULES_LOAD_DIRS)]
    if etc_modules:
        etc_path = _path(root, etc_modules)
        # Debian links /etc/modules-load.d/modules.conf to it: read it once.
        if not _same_file_in(files, etc_path):
            files.append(etc_path)
    for path in files:
        for name in parse_modules_load(_read_text(path) or ""):
            persisted.setdefault(name, []).append(_display(root, path))
    return persisted


def sysctl_path(key):
    """
    Return the /proc/sys path of a sysctl key, as systemd-sysctl reads it: when the
    first separator is ``/`` the dots are part of names (``net/ipv4/conf/eth0.1/forwarding``).

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.sysctl_path net.ipv4.ip_forward
    """
    key = key.strip()
    first_slash, first_dot = key.find("/"), key.find(".")
    if first_slash != -1 and (first_dot == -1 or first_slash < first_dot):
        return key.strip("/")
    return key.translate(_SWAP_DOTS_AND_SLASHES)


_SWAP_DOTS_AND_SLASHES = str.maketrans("./", "/.")


def parse_sysctl_conf(text):
    """
    Parse sysctl.d(5) text into ``(assignments, problems)``: assignments are
    ``(line number, key, value, ignore_failure)`` in file order; problems are
    ``(line number, reason)`` for lines systemd-sysctl would ignore.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.parse_sysctl_conf "$(cat /etc/sysctl.d/99-k8snode.conf)"
    """
    assignments, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if "=" not in line:
            problems.append((number, "not an assignment"))
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        ignore_failure = key.startswith("-")
        # systemd strips one '-': the rest belongs to the key.
        key = key[1:].strip() if ignore_failure else key
        if not key:
            problems.append((number, "empty key"))
            continue
        assignments.append((number, key, " ".join(value.split()), ignore_failure))
    return assignments, problems


def _sysctl_files(root, reads_etc_sysctl_conf, replace=None):
    """Return the sysctl files read at boot, in order, as display paths mapped to text."""
    replace = replace or {}
    files = [path for _, path in _conf_files(root, SYSCTL_DIRS)]
    etc_conf = _path(root, "etc/sysctl.conf")
    etc_conf_last = reads_etc_sysctl_conf and os.path.isfile(etc_conf) and not _same_file_in(files, etc_conf)
    if etc_conf_last:
        # procps' `sysctl --system` and older inits read it last.
        files.append(etc_conf)
    ordered = []
    for path in files:
        shown = _display(root, path)
        ordered.append((shown, replace[shown] if shown in replace else _read_text(path) or ""))
    for shown, text in replace.items():
        # A file of ours that does not exist yet takes its place by name.
        if text is not None and shown not in dict(ordered):
            ordered.append((shown, text))
    listed = [item for item in ordered if item[1] is not None]
    return sorted(listed, key=lambda item: _boot_sort_key(item[0], etc_conf_last))


def _boot_sort_key(shown, etc_conf_last):
    # Files from the sysctl.d directories sort by name; /etc/sysctl.conf
    # (read directly) comes after all of them.
    if shown == "/etc/sysctl.conf" and etc_conf_last:
        return (1, "")
    return (0, os.path.basename(shown))


def effective_boot_sysctls(root="/", reads_etc_sysctl_conf=None, replace=None):
    """
    Compute the sysctl values that hold after the next boot, the way systemd-sysctl
    applies them: all sysctl.d directories, a name in an earlier directory masking
    the same name in a later one, files sorted by name, the last assignment winning,
    an explicit key winning over a glob.

    root
        Directory to read the host from. Default ``/``.
    reads_etc_sysctl_conf
        Whether ``/etc/sysctl.conf`` is read at boot. Default: from the OS data.
    replace
        ``{path: text}`` of files to consider with other contents (what a state
        is about to write); ``None`` as text removes the file.

    Returns ``{"files": [...], "values": {path_key: {"value", "file", "line",
    "assignments": [[file, value], ...]}}, "globs": [...], "problems": [...]}``;
    keys are /proc/sys paths (``net/ipv4/ip_forward``).

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.effective_boot_sysctls
    """
    if reads_etc_sysctl_conf is None:
        reads_etc_sysctl_conf = _resolve_layers(None, {}, {}, root)["boot"]["reads_etc_sysctl_conf"]
    values, globs, problems, files = {}, [], [], []
    for shown, text in _sysctl_files(root, reads_etc_sysctl_conf, replace):
        files.append(shown)
        assignments, bad_lines = parse_sysctl_conf(text)
        problems.extend(f"{shown}:{number}: {reason}" for number, reason in bad_lines)
        for number, key, value, _ in assignments:
            path_key = sysctl_path(key)
            if not _GLOB_CHARS.isdisjoint(path_key):
                globs.append({"pattern": path_key, "value": value, "file": shown, "line": number})
                continue
            entry = values.get(path_key)
            if entry is None:
                entry = values[path_key] = {"assignments": []}
            entry.update(value=value, file=shown, line=number)
            entry["assignments"].append([shown, value])
    return {"files": files, "values": values, "globs": globs, "problems": problems}


def _boot_assignment(path_key, boot):
    """The assignment that wins at boot for one key: explicit first, then the last glob."""
    if path_key in boot["values"]:
        return boot["values"][path_key]
    for glob in reversed(boot["globs"]):
        if fnmatch.fnmatchcase(path_key, glob["pattern"]):
            return glob
    return None


def _read_live_sysctl(root, key):
    text = _read_text(_path(root, "proc/sys/" + sysctl_path(key)))
    return None if text is None else " ".join(text.split())


def value_satisfies(actual, expected, compare="exact"):
    """
    Tell whether a sysctl value meets a requirement: ``exact`` compares every
    field, ``min`` (a floor) accepts anything at least as high.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.value_satisfies 524288 8192 compare=min
    """
    if actual is None:
        return False
    got, want = str(actual).split(), str(expected).split()
    if compare == "min":
        try:
            return len(got) == len(want) and all(int(g) >= int(w) for g, w in zip(got, want))
        except ValueError:
            return False
    return got == want


# --------------------------------------------------------------------------
# Resolution: data, then OS, then pillar, then arguments
# --------------------------------------------------------------------------


def _merge_modules(resolved, layer, source):
    for name, spec in _check_mapping(layer, source, "modules").items():
        name = _check_module_name(name, source)
        if spec is False:
            resolved.pop(name, None)
            continue
        if spec is True or spec is None:
            spec = {}
        spec = _check_mapping(spec, source, f"module {name}")
        unknown = set(spec) - {"alternatives", "required"}
        if unknown:
            raise _invalid(source, f"setting for module {name}", sorted(unknown), "alternatives, required")
        item = resolved.setdefault(name, {"alternatives": [name], "required": True})
        if "alternatives" in spec:
            alternatives = spec["alternatives"]
            if not isinstance(alternatives, list) or not alternatives:
                raise _invalid(source, f"alternatives for {name}", alternatives, "a non-empty list of module names")
            item["alternatives"] = [_check_module_name(alt, source) for alt in alternatives]
        if "required" in spec:
            if not isinstance(spec["required"], bool):
                raise _invalid(source, f"required for module {name}", spec["required"], "true or false")
            item["required"] = spec["required"]
        item["source"] = source


def _merge_sysctls(resolved, layer, source):
    for key, spec in _check_mapping(layer, source, "sysctls").items():
        _check_sysctl_key(key, source)
        if spec is False:
            resolved.pop(key, None)
            continue
        if not isinstance(spec, dict):
            spec = {"value": spec}
        unknown = set(spec) - {"value", "compare", "required", "needs_module"}
        if unknown:
            raise _invalid(
                source, f"setting for sysctl {key}", sorted(unknown), "value, compare, required, needs_module"
            )
        item = resolved.setdefault(key, {"compare": "exact", "required": True, "needs_module": None})
        if "value" in spec:
            item["value"] = _normalize_sysctl_value(spec["value"], source, key)
        if "value" not in item:
            raise _invalid(source, f"sysctl {key}", spec, "a value (new keys need one)")
        if "compare" in spec:
            if spec["compare"] not in SYSCTL_COMPARISONS:
                raise _invalid(source, f"compare for {key}", spec["compare"], "one of " + ", ".join(SYSCTL_COMPARISONS))
            item["compare"] = spec["compare"]
        if item["compare"] == "min" and len(item["value"].split()) != 1:
            raise _invalid(source, f"value for {key}", item["value"], "a single integer for compare: min")
        if "required" in spec:
            if not isinstance(spec["required"], bool):
                raise _invalid(source, f"required for sysctl {key}", spec["required"], "true or false")
            item["required"] = spec["required"]
        if spec.get("needs_module") is not None:
            item["needs_module"] = _check_module_name(spec["needs_module"], source)
        item["source"] = source


def _merge_swap(resolved, value, source):
    # YAML reads a bare `off` as False: take it as the user meant it.
    if value is False:
        value = "off"
    if value not in SWAP_POLICIES:
        raise _invalid(source, "swap policy", value, "one of " + ", ".join(SWAP_POLICIES))
    resolved["swap"] = {"policy": value, "source": source}


def _merge_files(resolved, layer, source):
    directories = {"modules_load": "etc/modules-load.d", "sysctl": "etc/sysctl.d"}
    for what, path in _check_mapping(layer, source, "files").items():
        if what not in directories:
            raise _invalid(source, "file setting", what, "modules_load, sysctl")
        resolved["files"][what] = {
            "path": _check_managed_path(path, directories[what], source, f"{what} file"),
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
    overrides = _check_mapping(overrides, source, "k8snode settings")
    unknown = set(overrides) - set(_OVERRIDE_KEYS)
    if unknown:
        raise _invalid(source, "setting", sorted(unknown), "one of " + ", ".join(_OVERRIDE_KEYS))
    extras = overrides.get("extras")
    if extras is not None and (
        not isinstance(extras, list) or any(not isinstance(extra, str) or extra not in EXTRAS for extra in extras)
    ):
        raise _invalid(source, "extras", extras, "a list of: " + ", ".join(sorted(EXTRAS)))
    return overrides


def _resolve_layers(distribution, pillar, arguments, root):
    """The one place where requirements are resolved; see :func:`requirements`."""
    pillar = _check_overrides(pillar, "pillar k8snode")
    arguments = _check_overrides(arguments, "arguments")
    source = "arguments" if distribution or arguments.get("distribution") else "pillar k8snode"
    distribution = distribution or arguments.get("distribution") or pillar.get("distribution") or "kubeadm"
    if not isinstance(distribution, str) or distribution not in DISTRIBUTIONS:
        raise _invalid(source, "distribution", distribution, "one of " + ", ".join(sorted(DISTRIBUTIONS)))
    family, os_id, major = _os_identity(root)
    resolved = {
        "distribution": distribution,
        "os_family": family,
        "os": f"{os_id}-{major}" if os_id else "unknown",
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


def _pillar_settings():
    pillar = globals().get("__pillar__")
    return (pillar or {}).get("k8snode") or {}


def _clean(kwargs):
    return {key: value for key, value in kwargs.items() if not key.startswith("__")}


def requirements(distribution=None, root="/", pillar=None, **overrides):
    """
    Resolve what this host needs for its Kubernetes distribution, and say where
    each value came from. The layers apply in this order, a later one winning:
    the distribution's table, extras, the OS family, the OS release, the pillar
    ``k8snode``, then the arguments.

    distribution
        ``kubeadm`` (default), ``rke2``, ``k3s`` or ``microk8s``.
    extras
        List of optional bundles: ``ipvs``, ``ipv6``, ``protect_kernel_defaults``,
        ``inotify``, ``max_map_count``.
    modules
        ``{name: {alternatives: [...], required: bool}}``; ``name: false`` drops it.
    sysctls
        ``{key: value}`` or ``{key: {value, compare: exact|min, required}}``;
        ``key: false`` drops it.
    swap
        ``off`` (no swap now nor at boot), ``warn`` or ``ignore``.
    files
        ``{modules_load: /etc/modules-load.d/NAME.conf, sysctl: /etc/sysctl.d/NAME.conf}``.
    pillar
        The ``k8snode`` settings to use instead of this minion's pillar.
    root
        Directory to read the host from. Default ``/``.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.requirements
        salt '*' k8snode.requirements distribution=rke2 extras='[ipvs]'
    """
    if pillar is None:
        pillar = _pillar_settings()
    return _resolve_layers(distribution, pillar, _clean(overrides), root)


# --------------------------------------------------------------------------
# Per-item status
# --------------------------------------------------------------------------


def _resolve_module(requirement, facts, root):
    """Pick the first alternative that is present, else the first available, else report the first."""
    states = [(alt, *_module_state(alt, facts, root)) for alt in requirement["alternatives"]]
    for wanted in (("loaded", "builtin"), ("available",)):
        for alt, state, evidence in states:
            if state in wanted:
                return alt, state, evidence
    return states[0]


def module_status(name, root="/", alternatives=None):
    """
    Tell whether a kernel module is loaded, built in, available but not loaded,
    or missing, with the evidence, and which files load it at boot.

    name
        The module, e.g. ``br_netfilter``.
    alternatives
        Names to try in order instead of ``name`` alone (``[nf_conntrack, nf_conntrack_ipv4]``).

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.module_status br_netfilter
    """
    _check_module_name(name, "arguments")
    alternatives = [_check_module_name(alt, "arguments") for alt in (alternatives or [name])]
    facts = kernel_facts(root)
    chosen, state, evidence = _resolve_module({"alternatives": alternatives}, facts, root)
    return {
        "name": chosen,
        "state": state,
        "evidence": evidence,
        "persisted": boot_modules(root).get(chosen, []),
        "module_support": facts["module_support"],
    }


def sysctl_status(key, value=None, compare="exact", root="/"):
    """
    Report one sysctl: its live value, the value that holds after reboot and the
    file that sets it, and whether both meet ``value``.

    key
        e.g. ``net.ipv4.ip_forward``.
    value
        The value wanted; without it only the values are reported.
    compare
        ``exact`` or ``min`` (a floor).

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.sysctl_status net.ipv4.ip_forward 1
    """
    _check_sysctl_key(key, "arguments")
    if compare not in SYSCTL_COMPARISONS:
        raise _invalid("arguments", "compare", compare, "one of " + ", ".join(SYSCTL_COMPARISONS))
    boot = effective_boot_sysctls(root)
    winner = _boot_assignment(sysctl_path(key), boot)
    status = {
        "key": key,
        "exists": os.path.exists(_path(root, "proc/sys/" + sysctl_path(key))),
        "live": _read_live_sysctl(root, key),
        "boot": winner["value"] if winner else None,
        "boot_file": winner["file"] if winner else None,
    }
    if value is not None:
        wanted = _normalize_sysctl_value(value, "arguments", key)
        status["live_ok"] = value_satisfies(status["live"], wanted, compare)
        status["boot_ok"] = value_satisfies(status["boot"], wanted, compare)
    return status


def swap_status(root="/"):
    """
    Report active swap (``/proc/swaps``) and swap that comes back at boot
    (``/etc/fstab`` entries, systemd swap units, zram-generator).

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.swap_status
    """
    active = []
    for line in (_read_text(_path(root, "proc/swaps")) or "").splitlines()[1:]:
        if line.split():
            active.append(line.split()[0])
    at_boot = [f"/etc/fstab: {device}" for device in _fstab_swap_lines(_read_text(_path(root, "etc/fstab")) or "")[1]]
    # Only enabled units start at boot: the ones linked from a .wants directory.
    for directory in ("etc/systemd/system/swap.target.wants", "etc/systemd/system/local-fs.target.wants"):
        try:
            names = sorted(os.listdir(_path(root, directory)))
        except OSError:
            continue
        for name in names:
            unit = os.path.join(_path(root, directory), name)
            if name.endswith(".swap") and not _is_masked(unit):
                at_boot.append(f"/{directory}/{name}")
    if os.path.exists(_path(root, "etc/systemd/zram-generator.conf")):
        at_boot.append("/etc/systemd/zram-generator.conf")
    if _is_masked(_path(root, "etc/systemd/system/swap.target")):
        # kubespray's way: with swap.target masked, systemd activates no swap at boot.
        at_boot = []
    return {"active": active, "at_boot": sorted(set(at_boot))}


def _is_masked(path):
    return os.path.islink(path) and os.readlink(path) == "/dev/null"


def _fstab_swap_lines(text):
    """Return (line indexes, devices) of the fstab swap entries activated at boot."""
    indexes, devices = [], []
    for index, line in enumerate(text.splitlines()):
        fields = line.split()
        noauto = len(fields) >= 4 and "noauto" in fields[3].split(",")
        if len(fields) >= 3 and not fields[0].startswith("#") and fields[2] == "swap" and not noauto:
            indexes.append(index)
            devices.append(fields[0])
    return indexes, devices


def _cgroup_version(root):
    for line in (
        _read_text(_path(root, "proc/self/mounts")) or _read_text(_path(root, "proc/mounts")) or ""
    ).splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == "/sys/fs/cgroup":
            return 2 if fields[2] == "cgroup2" else 1
    return None


# --------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------


def _check(status, required, expected, live, boot, detail, **extra):
    if status == "fail" and not required:
        status = "warn"
    return {
        "status": status,
        "required": required,
        "expected": expected,
        "live": live,
        "boot": boot,
        "detail": detail,
        **extra,
    }


def _module_check(requirement, facts, persisted, hints, root):
    chosen, state, evidence = _resolve_module(requirement, facts, root)
    files = persisted.get(chosen, [])
    boot = ", ".join(files) if files else ("built in" if state == "builtin" else "not persisted")
    hint = f" ({hints[chosen]})" if chosen in hints else ""
    live_ok = state in ("loaded", "builtin")
    if state == "builtin":
        status, detail = "ok", f"{chosen} is built into the kernel ({evidence})"
    elif state == "loaded" and files:
        status, detail = "ok", f"{chosen} is loaded and listed in {files[0]} for boot"
    elif state == "loaded":
        status, detail = "fail", f"{chosen} is loaded now but no modules-load.d file lists it: lost at the next reboot"
    elif state == "available":
        when = f"listed in {files[0]} for boot" if files else "not persisted either"
        status, detail = "fail", f"{chosen} is available but not loaded ({when}): run state.apply k8snode"
    else:
        status, detail = "fail", f"{chosen} is not in this kernel: {evidence}{hint}"
    return _check(
        status,
        requirement["required"],
        "loaded or built in, and loaded at boot",
        state,
        boot,
        detail,
        module=chosen,
        lost_at_reboot=live_ok and status != "ok",
        source=requirement.get("source"),
    )


def _sysctl_check(key, requirement, boot, root, module_states):
    expected, compare = requirement["value"], requirement["compare"]
    live = _read_live_sysctl(root, key)
    winner = _boot_assignment(sysctl_path(key), boot)
    boot_value = winner["value"] if winner else None
    shown_expected = expected if compare == "exact" else f">= {expected}"
    live_ok, boot_ok = value_satisfies(live, expected, compare), value_satisfies(boot_value, expected, compare)
    if live is None:
        needed = requirement.get("needs_module")
        why = f": {needed} is {module_states.get(needed, 'not loaded')}" if needed else ""
        detail = f"{key} does not exist in this kernel{why}"
    elif not live_ok:
        detail = f"{key} is {live} now, needs {shown_expected}"
        if winner and not boot_ok:
            detail += f"; {winner['file']} sets {boot_value} at boot"
    elif winner is None:
        detail = f"{key} is {live} now but no sysctl.d file sets it: lost at the next reboot"
    elif not boot_ok:
        detail = f"{key} is {live} now but {winner['file']} sets {boot_value} at boot"
    else:
        detail = f"{key} is {live}, set at boot by {winner['file']}"
    return _check(
        "ok" if live_ok and boot_ok else "fail",
        requirement["required"],
        shown_expected,
        live,
        boot_value,
        detail,
        boot_file=winner["file"] if winner else None,
        lost_at_reboot=live_ok and not boot_ok,
        source=requirement.get("source"),
    )


def _swap_check(policy, root):
    swap = swap_status(root)
    problems = [f"active: {device}" for device in swap["active"]] + [f"at boot: {where}" for where in swap["at_boot"]]
    if policy["policy"] == "ignore":
        return _check("ok", False, "any", swap["active"], swap["at_boot"], "swap is not checked (policy ignore)")
    if not problems:
        return _check("ok", policy["policy"] == "off", "no swap", [], [], "no swap now and none at boot")
    status = "fail" if policy["policy"] == "off" else "warn"
    return _check(
        status,
        policy["policy"] == "off",
        "no swap",
        swap["active"],
        swap["at_boot"],
        "swap is on: " + "; ".join(problems),
        lost_at_reboot=False,
        source=policy["source"],
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


def _cgroup_check(root):
    version = _cgroup_version(root)
    if version == 2:
        return _check("ok", False, "cgroup v2", "v2", None, "cgroup v2 is mounted at /sys/fs/cgroup")
    return _check(
        "warn",
        False,
        "cgroup v2",
        f"v{version}" if version else None,
        None,
        "cgroup v1: kubeadm warns, and kubelet refuses it from 1.35 by default"
        if version
        else "no cgroup mount at /sys/fs/cgroup",
    )


def _audit(resolved, root):
    facts = kernel_facts(root)
    persisted = boot_modules(root, resolved["boot"]["etc_modules"])
    boot = effective_boot_sysctls(root, resolved["boot"]["reads_etc_sysctl_conf"])
    checks = {}
    module_states = {}
    for name, requirement in resolved["modules"].items():
        check = _module_check(requirement, facts, persisted, resolved["hints"], root)
        checks[f"module:{name}"] = check
        module_states[name] = check["live"]
    for key, requirement in resolved["sysctls"].items():
        checks[f"sysctl:{key}"] = _sysctl_check(key, requirement, boot, root, module_states)
    checks["swap"] = _swap_check(resolved["swap"], root)
    checks["kernel_config"] = _kernel_config_check(facts)
    checks["cgroup"] = _cgroup_check(root)
    summary = {"ok": 0, "fail": 0, "warn": 0}
    for check in checks.values():
        summary[check["status"]] += 1
    return {
        "ready": all(check["status"] == "ok" for check in checks.values() if check["required"]),
        "distribution": resolved["distribution"],
        "os_family": resolved["os_family"],
        "os": resolved["os"],
        "kernel": facts["release"],
        "summary": summary,
        "failing": sorted(name for name, check in checks.items() if check["status"] == "fail"),
        "lost_at_reboot": sorted(name for name, check in checks.items() if check.get("lost_at_reboot")),
        "checks": checks,
        "boot_problems": boot["problems"],
    }


def audit(distribution=None, root="/", pillar=None, **overrides):
    """
    Tell whether this host is a correct Kubernetes node for its distribution,
    what is wrong, and what will be lost at the next reboot. Read-only: it reads
    ``/proc``, ``/sys`` and ``/etc`` and changes nothing.

    Takes the same arguments as :func:`requirements`. Returns ``ready`` (true
    only when every required check is ``ok``), ``distribution``, ``os_family``,
    ``summary`` (counts per status), ``failing``, ``lost_at_reboot`` and
    ``checks``: ``{"module:overlay": {"status": "ok"|"fail"|"warn", "required",
    "expected", "live", "boot", "detail"}, "sysctl:net.ipv4.ip_forward": ...,
    "swap": ..., "kernel_config": ..., "cgroup": ...}``.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.audit
        salt '*' k8snode.audit distribution=k3s --out=k8snode
    """
    return _audit(requirements(distribution, root=root, pillar=pillar, **overrides), root)


# --------------------------------------------------------------------------
# Changing the host: used by the k8snode.prepared and k8snode.absent states
# --------------------------------------------------------------------------


def _is_ours(text):
    return text is not None and text.startswith(MANAGED_HEADER)


def _remove_stray_temps(path):
    directory, base = os.path.split(path)
    prefix = "." + base + _TEMP_MARK
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def atomic_write(path, content, mode=0o644):
    """
    Write ``content`` to ``path`` so that readers see the old file or the new one,
    never a part: a temporary file in the same directory (whose name does not end
    in ``.conf``, so systemd never reads it), fsync, then rename. Leftovers of an
    interrupted earlier write are removed first.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.atomic_write /etc/modules-load.d/k8snode.conf "overlay"
    """
    directory, base = os.path.split(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    _remove_stray_temps(path)
    fd, temp = tempfile.mkstemp(prefix="." + base + _TEMP_MARK, dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class _Outcome:
    """Collects per-item changes and failures of one prepare or revert run."""

    def __init__(self, test):
        self.test = test
        self.changes = {}
        self.failures = {}
        self.notes = []

    def change(self, item, old, new):
        self.changes[item] = {"old": old, "new": new}

    def fail(self, item, reason):
        self.failures[item] = reason

    def result(self, done_comment):
        if self.failures:
            result = False
            comment = "Failed: " + "; ".join(f"{item}: {reason}" for item, reason in sorted(self.failures.items()))
        elif self.test and self.changes:
            result, comment = None, f"{len(self.changes)} change(s) would be made"
        else:
            result, comment = True, (f"{len(self.changes)} change(s) made" if self.changes else done_comment)
        if self.notes:
            comment += ". " + " ".join(self.notes)
        return {"result": result, "changes": self.changes, "comment": comment, "failures": self.failures}


def _run(argv):
    return __salt__["cmd.run_all"](argv, python_shell=False, ignore_retcode=True)  # noqa: F821


def _write_managed(outcome, root, path, content):
    """Write a file of ours when it differs; never touch a file that is not ours."""
    full = _path(root, path)
    old = _read_text(full)
    if old == content:
        return True
    if old is not None and not _is_ours(old):
        outcome.fail(
            f"file:{path}",
            "exists and was not written by k8snode: refusing to overwrite it; choose another name in files:",
        )
        return False
    note = "restored (it was edited by hand)" if old is not None else "created"
    outcome.change(f"file:{path}", old, content)
    if old is not None:
        outcome.notes.append(f"{path} {note}.")
    if outcome.test:
        return True
    try:
        atomic_write(full, content)
    except OSError as exc:
        outcome.fail(f"file:{path}", f"cannot write: {exc.strerror or exc}")
        return False
    return True


def _load_modules(outcome, resolved, facts, root):
    """Load what is missing; return {requirement name: module name now present}."""
    present = {}
    for name, requirement in resolved["modules"].items():
        chosen, state, evidence = _resolve_module(requirement, facts, root)
        if state in ("loaded", "builtin"):
            present[name] = chosen
            continue
        candidates = [chosen] if state == "available" else requirement["alternatives"]
        if outcome.test:
            if state == "available":
                outcome.change(f"module:{name}", "not loaded", f"{chosen} loaded")
                present[name] = chosen
            elif requirement["required"]:
                outcome.fail(f"module:{name}", f"would fail: {evidence}")
            continue
        errors = []
        for candidate in candidates:
            run = _run(["modprobe", "--", candidate])
            if run["retcode"] == 0:
                outcome.change(f"module:{name}", "not loaded", f"{candidate} loaded")
                present[name] = candidate
                break
            errors.append(f"modprobe {candidate}: {(run.get('stderr') or '').strip() or 'exit ' + str(run['retcode'])}")
        else:
            hint = resolved["hints"].get(name)
            reason = f"{evidence}; " + "; ".join(errors) + (f" ({hint})" if hint else "")
            if requirement["required"]:
                outcome.fail(f"module:{name}", reason)
            else:
                outcome.notes.append(f"optional module {name} unavailable: {reason}.")
    return present


def _render(lines):
    return MANAGED_HEADER + "".join(line + "\n" for line in lines)


def _desired_sysctls(resolved, root, own_boot_values):
    """Values for our sysctl file: floors keep the highest of the value we wrote,
    the live value and what the other files set at boot, never lower them."""
    others = effective_boot_sysctls(
        root, resolved["boot"]["reads_etc_sysctl_conf"], replace={resolved["files"]["sysctl"]["path"]: None}
    )
    desired = {}
    for key, requirement in resolved["sysctls"].items():
        value = requirement["value"]
        if requirement["compare"] == "min":
            other = _boot_assignment(sysctl_path(key), others)
            candidates = (own_boot_values.get(sysctl_path(key)), _read_live_sysctl(root, key), other and other["value"])
            higher = [int(found) for found in candidates if value_satisfies(found, value, "min")]
            if higher:
                value = str(max(higher))
        desired[key] = value
    return desired


def _set_sysctls(outcome, resolved, root, desired, loading=()):
    """Set live values; return the keys the kernel has (the ones to persist).

    ``loading``: modules that test mode would have loaded (their keys don't exist yet)."""
    existing = []
    for key, value in desired.items():
        requirement = resolved["sysctls"][key]
        proc = _path(root, "proc/sys/" + sysctl_path(key))
        live = _read_live_sysctl(root, key)
        if live is None:
            needed = requirement.get("needs_module")
            if needed and needed in loading:
                # test=True: the key appears once the module loads; the real run sets and persists it.
                existing.append(key)
                outcome.change(f"sysctl:{key}", None, value)
                continue
            reason = f"{key} does not exist in this kernel" + (f" ({needed} is not loaded)" if needed else "")
            if requirement["required"]:
                outcome.fail(f"sysctl:{key}", reason)
            else:
                outcome.notes.append(f"optional {reason}.")
            continue
        existing.append(key)
        if value_satisfies(live, requirement["value"], requirement["compare"]):
            continue
        outcome.change(f"sysctl:{key}", live, value)
        if outcome.test:
            continue
        try:
            with open(proc, "w", encoding="ascii") as handle:
                handle.write(value)
        except OSError as exc:
            reason = (
                "/proc/sys is read-only here" if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else exc.strerror
            )
            outcome.fail(f"sysctl:{key}", f"cannot set {value}: {reason}")
            del outcome.changes[f"sysctl:{key}"]
    return existing


def _check_boot_precedence(outcome, resolved, root, sysctl_file, content):
    boot = effective_boot_sysctls(root, resolved["boot"]["reads_etc_sysctl_conf"], replace={sysctl_file: content})
    for key, requirement in resolved["sysctls"].items():
        if f"sysctl:{key}" in outcome.failures:
            continue
        winner = _boot_assignment(sysctl_path(key), boot)
        if (
            winner
            and winner["file"] != sysctl_file
            and not value_satisfies(winner["value"], requirement["value"], requirement["compare"])
        ):
            outcome.fail(
                f"sysctl:{key}",
                f"{winner['file']} sets {winner['value']} at boot and is read after {sysctl_file}: "
                "change that file or choose a sysctl file name that sorts after it (files: sysctl:)",
            )


def _swap_off(outcome, resolved, root):
    if resolved["swap"]["policy"] != "off":
        return
    swap = swap_status(root)
    for device in swap["active"]:
        outcome.change(f"swap:{device}", "active", "off")
        if not outcome.test:
            run = _run(["swapoff", "--", device])
            if run["retcode"] != 0:
                outcome.fail(f"swap:{device}", f"swapoff failed: {(run.get('stderr') or '').strip()}")
    fstab = _path(root, "etc/fstab")
    text = _read_text(fstab)
    indexes, _ = _fstab_swap_lines(text or "")
    if indexes:
        lines = text.splitlines(keepends=True)
        for index in indexes:
            lines[index] = FSTAB_MARKER + lines[index]
        new = "".join(lines)
        outcome.change("file:/etc/fstab", text, new)
        if not outcome.test:
            backup = fstab + FSTAB_BACKUP_SUFFIX
            try:
                if not os.path.exists(backup):
                    atomic_write(backup, text, os.stat(fstab).st_mode & 0o777)
                atomic_write(fstab, new, os.stat(fstab).st_mode & 0o777)
            except OSError as exc:
                outcome.fail("file:/etc/fstab", f"cannot write: {exc.strerror or exc}")
    others = [where for where in swap["at_boot"] if not where.startswith("/etc/fstab")]
    if others:
        outcome.fail(
            "swap",
            "swap comes back at boot from " + ", ".join(others) + ": mask or remove it (k8snode edits only /etc/fstab)",
        )


class _Lock:
    """An exclusive, non-blocking lock so that two runs never interleave their writes."""

    def __init__(self, root):
        self.path = _path(root, LOCK_FILE)
        self.handle = None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.handle = open(self.path, "a+", encoding="ascii")  # noqa: SIM115
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self.handle.close()
            raise CommandExecutionError(
                f"k8snode: another k8snode run holds the lock {self.path}; try again when it ends"
            ) from exc
        return self

    def __exit__(self, *_):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def prepare(distribution=None, test=False, root="/", pillar=None, **overrides):
    """
    Make this host a correct node for its Kubernetes distribution and keep it so
    across reboots; change only what differs. Modules first (loaded unless
    already loaded or built in, then listed in the modules-load.d file k8snode
    owns), then sysctls (set live, then written to the sysctl.d file it owns,
    floors never lowered), then swap where the policy is ``off`` (swapoff, and
    fstab swap lines commented out with a marker after a backup).

    Invalid settings raise before anything is changed. One failing item does not
    stop the others. Takes the arguments of :func:`requirements`, and ``test``.

    Returns ``{"result": True|False|None, "changes": {item: {"old", "new"}},
    "comment": str, "failures": {item: reason}}``.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.prepare test=True
        salt '*' k8snode.prepare distribution=k3s
    """
    resolved = requirements(distribution, root=root, pillar=pillar, **overrides)
    outcome = _Outcome(bool(test))
    with _Lock(root) if not test else _NoLock():
        facts = kernel_facts(root)
        present = _load_modules(outcome, resolved, facts, root)
        modules_file = resolved["files"]["modules_load"]["path"]
        _write_managed(outcome, root, modules_file, _render(sorted(set(present.values()))))

        sysctl_file = resolved["files"]["sysctl"]["path"]
        own = _read_text(_path(root, sysctl_file))
        own_values = {}
        if _is_ours(own):
            own_values = {sysctl_path(key): value for _, key, value, _ in parse_sysctl_conf(own)[0]}
        desired = _desired_sysctls(resolved, root, own_values)
        # test=True loads nothing: preview the keys of the modules it would load.
        loading = {present[name] for name in present if f"module:{name}" in outcome.changes} if test else set()
        existing = _set_sysctls(outcome, resolved, root, desired, loading)
        content = _render(f"{key} = {desired[key]}" for key in sorted(existing))
        _check_boot_precedence(outcome, resolved, root, sysctl_file, content)
        _write_managed(outcome, root, sysctl_file, content)

        _swap_off(outcome, resolved, root)
    ret = outcome.result(f"{resolved['distribution']} node already prepared")
    ret["distribution"] = resolved["distribution"]
    return ret


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False


def revert(test=False, root="/", pillar=None, **overrides):
    """
    Undo what :func:`prepare` persisted: remove the modules-load.d and sysctl.d
    files k8snode wrote and uncomment the fstab swap lines it commented out.
    Loaded modules and live sysctl values are left alone: unloading
    br_netfilter on a live node breaks its pod network.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.revert test=True
    """
    # The same settings as prepare are accepted (and checked); only the file names matter here.
    resolved = requirements(overrides.pop("distribution", None), root=root, pillar=pillar, **overrides)
    outcome = _Outcome(bool(test))
    with _Lock(root) if not test else _NoLock():
        for what in ("modules_load", "sysctl"):
            path = resolved["files"][what]["path"]
            text = _read_text(_path(root, path))
            if text is None:
                continue
            if not _is_ours(text):
                outcome.notes.append(f"{path} was not written by k8snode: left alone.")
                continue
            outcome.change(f"file:{path}", text, None)
            if not test:
                try:
                    os.unlink(_path(root, path))
                except OSError as exc:
                    outcome.fail(f"file:{path}", f"cannot remove: {exc.strerror}")
        fstab = _path(root, "etc/fstab")
        text = _read_text(fstab)
        if text and FSTAB_MARKER in text:
            restored = "".join(
                line[len(FSTAB_MARKER) :] if line.startswith(FSTAB_MARKER) else line
                for line in text.splitlines(keepends=True)
            )
            outcome.change("file:/etc/fstab", text, restored)
            if not test:
                try:
                    atomic_write(fstab, restored, os.stat(fstab).st_mode & 0o777)
                except OSError as exc:
                    outcome.fail("file:/etc/fstab", f"cannot write: {exc.strerror}")
    outcome.notes.append("Loaded modules and live sysctl values were left as they are.")
    return outcome.result("nothing of k8snode's to remove")
