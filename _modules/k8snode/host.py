"""
Reading the host: files relative to a ``root`` directory, and nothing else.

Every function that reads the host goes through :func:`path`, so the unit
tests run the same code on fake trees (and guard this one function against
touching the real host). Nothing here writes.
"""

import os


def path(root, relative):
    """``relative`` (``etc/fstab`` or ``/etc/fstab``) under ``root``."""
    return os.path.join(root, relative.lstrip("/"))


def exists(root, relative):
    """True when ``relative`` exists under ``root``."""
    return os.path.exists(path(root, relative))


def find_executable(root, name, directories):
    """``directory/name`` (relative) of the first of ``directories`` under ``root`` that
    holds an executable ``name``, else None: what a PATH lookup finds, never run."""
    for directory in directories:
        candidate = f"{directory}/{name}"
        if os.access(path(root, candidate), os.X_OK):
            return candidate
    return None


def read_text(full_path):
    """Return the file's text, or None when it does not exist or can't be read."""
    # os.read rather than open(): no buffer object nor isatty() per file (sysctl.d may hold many).
    try:
        fd = os.open(full_path, os.O_RDONLY)
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


def display(root, full_path):
    """The path as the host sees it (``/etc/...``), for messages and reports."""
    if root == "/":
        return full_path
    # Paths are built by path(root, ...): strip the root without relpath's two abspaths.
    prefix = os.path.join(root, "")
    return "/" + full_path[len(prefix) :] if full_path.startswith(prefix) else "/" + os.path.relpath(full_path, root)


def is_masked(full_path):
    """A link to /dev/null: systemd's way to mask a unit or a configuration file."""
    return os.path.islink(full_path) and os.readlink(full_path) == "/dev/null"


def same_file_in(paths, target):
    """Whether one of ``paths`` resolves to ``target`` (realpath): a stat per path, and
    realpath only for the ones on the same inode, not a walk of every path."""
    try:
        wanted = os.stat(target)
    except OSError:
        return False
    real = None
    for candidate in paths:
        try:
            if not os.path.samestat(os.stat(candidate), wanted):
                continue
        except OSError:
            continue
        real = real or os.path.realpath(target)
        if os.path.realpath(candidate) == real:
            return True
    return False


def conf_files(root, directories):
    """Return [(name, path)] sorted by name, as systemd's conf_files_list does: a name
    in an earlier directory masks the same name in a later one."""
    chosen = {}
    for directory in directories:
        full = path(root, directory)
        try:
            names = os.listdir(full)
        except OSError:
            continue
        for name in names:
            if name.endswith(".conf") and name not in chosen:
                chosen[name] = os.path.join(full, name)
    # A link to /dev/null masks the name: nothing is read.
    return [(name, chosen[name]) for name in sorted(chosen) if not is_masked(chosen[name])]


def sysctl_keys_matching(root, pattern):
    """The /proc/sys paths (``net/ipv4/conf/lxc1/rp_filter``) that exist now and that
    the glob ``pattern`` (a /proc/sys path) matches, sorted. Lists only the
    directories a wildcard component needs; the match itself is
    :func:`.sysctl_syntax.glob_matches`, the model of systemd-sysctl's glob(3)."""
    from .sysctl_syntax import expand_braces, glob_matches, is_glob

    found = set()
    for alternative in expand_braces(pattern):
        candidates = [""]
        for component in [part for part in alternative.split("/") if part]:
            if not is_glob(component):
                candidates = [f"{prefix}/{component}" if prefix else component for prefix in candidates]
                continue
            listed = []
            for prefix in candidates:
                try:
                    names = os.listdir(path(root, "proc/sys/" + prefix))
                except OSError:
                    continue
                listed.extend(f"{prefix}/{name}" if prefix else name for name in names)
            candidates = listed
        found.update(
            key for key in candidates if os.path.isfile(path(root, "proc/sys/" + key)) and glob_matches(pattern, key)
        )
    return sorted(found)


_WANTS = ("etc/systemd/system/multi-user.target.wants", "etc/systemd/system/sockets.target.wants")
_IPV4_FORWARD, _IPV6_FORWARD = "net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"
# Programs that write sysctls while the host runs, after systemd-sysctl, told by
# their files alone (nothing is run): (name, files that say it is installed, units
# that start it, keys it writes and why).
_RUNTIME_WRITERS = (
    # firewalld turns forwarding on when a zone forwards or masquerades (firewalld#335).
    ("firewalld", ("etc/firewalld", "usr/lib/firewalld"), ("firewalld.service",), (_IPV4_FORWARD, _IPV6_FORWARD)),
    # A "shared" connection turns IPv4 forwarding on.
    (
        "NetworkManager",
        ("usr/sbin/NetworkManager", "etc/NetworkManager"),
        ("NetworkManager.service",),
        (_IPV4_FORWARD,),
    ),
    # dockerd sets ip_forward=1 (and the FORWARD policy to DROP) at every start.
    ("docker", ("usr/bin/dockerd", "usr/sbin/dockerd"), ("docker.service", "docker.socket"), (_IPV4_FORWARD,)),
)
#: Where systemd-networkd reads .network, .netdev and .link files, in its order.
NETWORKD_DIRS = ("etc/systemd/network", "run/systemd/network", "usr/lib/systemd/network", "lib/systemd/network")


def enabled_units(root, *units):
    """The wants links (``/etc/systemd/system/<target>.wants/<unit>``) that enable any of
    ``units`` at boot. The link itself says "enabled": its target is an absolute path on
    the host, which need not resolve under another root."""
    return [f"/{wants}/{unit}" for wants in _WANTS for unit in units if os.path.lexists(path(root, f"{wants}/{unit}"))]


def _networkd_ip_forward(root):
    """``IPForward=`` lines of systemd-networkd's .network files (flatcar/Flatcar#297:
    networkd sets forwarding after sysctl.d), as runtime writers."""
    found = []
    for _name, full in conf_files_with_suffix(root, NETWORKD_DIRS, ".network"):
        for number, line in enumerate((read_text(full) or "").splitlines(), 1):
            key, _, value = line.strip().partition("=")
            if key.strip() != "IPForward":
                continue
            value = value.strip().lower()
            keys = {"ipv4": (_IPV4_FORWARD,), "ipv6": (_IPV6_FORWARD,)}.get(value, (_IPV4_FORWARD, _IPV6_FORWARD))
            found.append(
                {
                    "name": "systemd-networkd",
                    "evidence": f"{display(root, full)}:{number}: IPForward={value}",
                    "keys": list(keys),
                }
            )
    return found


def conf_files_with_suffix(root, directories, suffix):
    """[(name, path)] of the files ending in ``suffix``, a name in an earlier
    directory masking the same name in a later one, masks left out."""
    chosen = {}
    for directory in directories:
        try:
            names = os.listdir(path(root, directory))
        except OSError:
            continue
        for name in names:
            if name.endswith(suffix) and not name.startswith(".") and name not in chosen:
                chosen[name] = path(root, f"{directory}/{name}")
    return [(name, chosen[name]) for name in sorted(chosen) if not is_masked(chosen[name])]


def runtime_sysctl_writers(root):
    """Known programs on the host that write sysctls after boot, by their files only:
    ``[{"name", "evidence", "keys", "enabled"?}]``, keys as /proc/sys paths."""
    writers = []
    for name, markers, units, keys in _RUNTIME_WRITERS:
        present = [marker for marker in markers if os.path.exists(path(root, marker))]
        if not present:
            continue
        enabled = enabled_units(root, *units)
        evidence = f"/{present[0]} exists; " + (f"enabled ({enabled[0]})" if enabled else "not enabled at boot")
        writers.append({"name": name, "evidence": evidence, "keys": list(keys), "enabled": bool(enabled)})
    return writers + _networkd_ip_forward(root)


_SYSTEMD_SYSCTL = ("usr/lib/systemd/systemd-sysctl", "lib/systemd/systemd-sysctl")
_PROCPS_SYSCTL = ("usr/sbin/sysctl", "sbin/sysctl", "usr/bin/sysctl", "bin/sysctl")


def sysctl_applier(root):
    """
    Which program applies sysctl.d at boot: ``{"applier", "evidence", "ambiguous"}``.
    ``systemd-sysctl`` when systemd is the running init (``/run/systemd/system``,
    sd_booted()'s test), procps' ``sysctl --system`` on a host without systemd.
    ``ambiguous`` says why the answer is a guess (systemd installed but not
    running, a tree that is not the running host), else None.
    """
    from .sysctl_boot import PROCPS, SYSTEMD

    where = "" if root == "/" else f" in {root}"
    binary = next((name for name in _SYSTEMD_SYSCTL if os.path.exists(path(root, name))), None)
    if os.path.isdir(path(root, "run/systemd/system")):
        ambiguous = None if root == "/" else f"{root} is not the running host: its /run/systemd/system says systemd"
        return {"applier": SYSTEMD, "evidence": f"/run/systemd/system exists{where}", "ambiguous": ambiguous}
    if binary:
        return {
            "applier": SYSTEMD,
            "evidence": f"/{binary} is installed{where}",
            "ambiguous": f"systemd is installed{where} but not running (no /run/systemd/system): "
            "assuming it is the init at the next boot",
        }
    procps = next((name for name in _PROCPS_SYSCTL if os.path.exists(path(root, name))), None)
    if procps:
        return {
            "applier": PROCPS,
            "evidence": f"no systemd{where}; /{procps} is procps'",
            "ambiguous": None
            if os.path.exists(path(root, "etc/init.d/procps"))
            else f"no systemd and no /etc/init.d/procps{where}: assuming something runs `sysctl --system` at boot",
        }
    return {
        "applier": PROCPS,
        "evidence": f"neither systemd-sysctl nor sysctl found{where}",
        "ambiguous": "nothing applies sysctl.d here that k8snode knows of: assuming `sysctl --system` rules",
    }


def parse_os_release(text):
    """Parse os-release(5) text into a dict."""
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


def os_identity(root):
    """Return ``{"os_family", "os", "major", "source"}`` from the tree's os-release file."""
    release, source = {}, None
    for candidate in ("etc/os-release", "usr/lib/os-release"):
        text = read_text(path(root, candidate))
        if text is not None:
            release, source = parse_os_release(text), "/" + candidate
            break
    ids = [release.get("ID", "")] + release.get("ID_LIKE", "").split()
    family = None
    for ident in ids:
        family = _FAMILY_OF_ID.get(ident) or ("Suse" if ident.startswith(("opensuse", "sle")) else None)
        if family:
            break
    try:
        major = int(release.get("VERSION_ID", "0").split(".")[0])
    except ValueError:
        major = 0
    return {"os_family": family or "unknown", "os": release.get("ID", ""), "major": major, "source": source}


def kernel_release(root):
    """The running kernel's release (``uname -r``), from /proc."""
    text = read_text(path(root, "proc/sys/kernel/osrelease"))
    return text.strip() if text else ""


def mount_types(root, mount_point):
    """The filesystem types mounted at ``mount_point`` (/proc/mounts), in mount order."""
    text = read_text(path(root, "proc/self/mounts")) or read_text(path(root, "proc/mounts"))
    return [
        fields[2]
        for fields in (line.split() for line in (text or "").splitlines())
        if len(fields) >= 3 and fields[1] == mount_point
    ]


DPKG_STATUS = "var/lib/dpkg/status"


def dpkg_installed_version(root, *packages):
    """``(version, evidence)`` of the first of ``packages`` (in the order given) that dpkg's
    status file says is installed (``2:3.3.17-5``, ``/var/lib/dpkg/status: procps
    2:3.3.17-5``), or None; the file is read once for all of them."""
    text = read_text(path(root, DPKG_STATUS)) or ""
    found = {}
    for stanza in text.split("\n\n"):
        fields = dict(
            line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith((" ", "\t"))
        )
        package = fields.get("Package", "").strip()
        if package in packages and "installed" in fields.get("Status", "").split():
            found[package] = fields.get("Version", "").strip()
    package = next((package for package in packages if package in found), None)
    return (found[package], f"/{DPKG_STATUS}: {package} {found[package]}") if package else None
