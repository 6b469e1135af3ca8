"""
systemd-sysctl by version: which version runs here, read from files only, and what
changed between the versions k8snode meets (RHEL 8's 239, Debian 11's 247, Ubuntu
22.04's 249, Debian 12's and RHEL 9's 252, Ubuntu 24.04's 255, Debian 13's 257) in
what it reads. Each rule is a row with its source; the differential test
(tests/integration/test_sysctl_oracle.py) runs Debian 11's, 12's and 13's real
systemd-sysctl on the same trees as the model.

- ``/lib/sysctl.d`` is in the search path only of a build with ``-Dsplit-usr=true``
  (``CONF_PATHS_*`` add ``/lib/`` under ``HAVE_SPLIT_USR``), and systemd 255 removed
  it (NEWS, "CHANGES WITH 255": "Support for split-usr (...) and unmerged-usr
  (parallel directories /bin/ and /usr/bin/, /lib/ and /usr/lib/, ...) has been
  removed"). Measured
  on a /lib that is a real directory: Debian 11's 247 and Debian 12's 252 read it
  (Debian built them split-usr, with ``rootprefix=/``: dpkg lists
  ``/lib/systemd/systemd-sysctl``), Debian 13's 257 does not. The compiled strings do
  not tell (``/lib/sysctl.d`` is merged into the tail of ``/usr/lib/sysctl.d``), so
  before 255 a build is taken as split-usr, which dpkg's file list confirms on
  Debian and Ubuntu; the question only matters where /lib is not a link to /usr/lib.
- Everything else this model follows (parse_file(), the ordered hashmap, globs,
  ``-key`` lines, ``/etc/sysctl.conf`` only through a link) is the same in 247, 252
  and 257, as the differential test shows on each.
"""

import glob
import os
import re

from . import host

#: The first release without split-usr support (NEWS, "CHANGES WITH 255").
SPLIT_USR_REMOVED = 255
#: What the version is assumed to be when no file says it: the newest modelled.
ASSUMED_VERSION = 257

# libsystemd-shared-NNN.so (Debian: usr/lib/<triplet>/systemd/, Fedora and RHEL:
# usr/lib/systemd/ or usr/lib64/systemd/, with a tag such as 255.4-1.fc40).
_SHARED_LIBRARY_GLOBS = (
    "usr/lib/systemd/libsystemd-shared-*.so",
    "usr/lib64/systemd/libsystemd-shared-*.so",
    "usr/lib/*/systemd/libsystemd-shared-*.so",
    "lib/systemd/libsystemd-shared-*.so",
    "lib/*/systemd/libsystemd-shared-*.so",
)
_SHARED_VERSION = re.compile(r"libsystemd-shared-(\d+)")
# dpkg's file list of the systemd package: a rootprefix=/ (split-usr) build installs here.
_DPKG_LIST = "var/lib/dpkg/info/systemd.list"
_ROOTPREFIX_BINARY = "/lib/systemd/systemd-sysctl"


def _from_shared_library(root):
    for pattern in _SHARED_LIBRARY_GLOBS:
        for full in sorted(glob.glob(host.path(root, pattern))):
            match = _SHARED_VERSION.match(os.path.basename(full))
            if match:
                return int(match.group(1)), f"{host.display(root, full)} (libsystemd-shared {match.group(1)})"
    return None


def _from_dpkg_status(root):
    found = host.dpkg_installed_version(root, "systemd")
    if not found:
        return None
    match = re.match(r"(?:\d+:)?(\d+)", found[0])
    return (int(match.group(1)), found[1]) if match else None


def systemd_model(root):
    """
    The systemd-sysctl that applies sysctl.d here: ``{"version", "evidence",
    "reads_lib_sysctl_d", "assumed"}``. The version comes from the
    libsystemd-shared-NNN.so every systemd since 231 installs, then from dpkg's status
    file; when neither says, ``version`` is None, :data:`ASSUMED_VERSION` rules apply
    and ``assumed`` says so. ``reads_lib_sysctl_d``: whether ``/lib/sysctl.d`` is in
    its search path (it matters only where /lib is not a link to /usr/lib).
    """
    found = _from_shared_library(root) or _from_dpkg_status(root)
    assumed = []
    if found is None:
        version, evidence = None, "no systemd version found (libsystemd-shared-*.so, /var/lib/dpkg/status)"
        assumed.append(f"systemd version unknown: assuming systemd {ASSUMED_VERSION} rules")
    else:
        version, evidence = found
    effective = version or ASSUMED_VERSION
    lib_dir = host.path(root, "lib/sysctl.d")
    # The build only matters where /lib/sysctl.d is a directory of its own.
    lib_is_separate = os.path.isdir(lib_dir) and os.path.realpath(lib_dir) != os.path.realpath(
        host.path(root, "usr/lib/sysctl.d")
    )
    if effective >= SPLIT_USR_REMOVED:
        reads_lib = False
        why = f"systemd >= {SPLIT_USR_REMOVED} reads no /lib/sysctl.d (split-usr removed)"
    else:
        reads_lib = True
        listed = (host.read_text(host.path(root, _DPKG_LIST)) or "").splitlines()
        if _ROOTPREFIX_BINARY in listed:
            why = f"/{_DPKG_LIST} lists {_ROOTPREFIX_BINARY}: a split-usr build, /lib/sysctl.d is read"
        else:
            why = f"systemd {effective} < {SPLIT_USR_REMOVED}: taken as a split-usr build, /lib/sysctl.d is read"
            if lib_is_separate:
                assumed.append(why + " (/lib/sysctl.d is a directory of its own here)")
    return {
        "version": version,
        "evidence": f"{evidence}; {why}",
        "reads_lib_sysctl_d": reads_lib,
        "assumed": "; ".join(assumed) or None,
    }
