"""
Where the audit runs: whether the ``net.*`` values it reads are the node's.

``net.*`` sysctls are per network namespace (Documentation/networking/ip-sysctl.rst;
``net.ipv4.ip_forward`` and the bridge keys included); ``vm.*``, ``fs.*`` and ``kernel.*``
are the host's wherever they are read from. A minion in a container, or in a network
namespace of its own on the host (``ip netns exec``, systemd's ``PrivateNetwork=``),
reads and writes its own namespace's values: correct for that namespace, not for the
pods the node will run. The audit says so instead of calling those values the node's.

Evidence, read as files (no subprocess), the way systemd-detect-virt looks for a container
(src/basic/virt.c: ``/run/systemd/container``, ``/.dockerenv``, ``/run/.containerenv``)
and the way ``ip netns identify`` compares namespaces (the ``net:[inode]`` link under
``/proc/<pid>/ns/net``).
"""

import os

from . import host
from .verdict import check

#: Files whose presence says "this is a container" (systemd's virt.c), with the engine.
CONTAINER_MARKERS = (
    ("/run/systemd/container", None),  # its text names the manager (docker, podman, lxc, ...)
    ("/.dockerenv", "docker"),
    ("/run/.containerenv", "podman"),
)


def _namespace(root, pid):
    try:
        return os.readlink(host.path(root, f"/proc/{pid}/ns/net"))
    except OSError:
        return None


def container_evidence(root):
    """``(marker path, engine)`` of the first container marker found, else None."""
    for marker, engine in CONTAINER_MARKERS:
        if host.exists(root, marker):
            if engine is None:
                engine = (host.read_text(host.path(root, marker)) or "").strip() or "a container manager"
            return marker, engine
    return None


def network_namespace_check(root):
    """The audit's ``network_namespace`` check: a warning when the ``net.*`` values read are
    a container's or another namespace's than PID 1's; None on a host's own namespace."""
    own, init = _namespace(root, "self"), _namespace(root, 1)
    container = container_evidence(root)
    if container:
        marker, engine = container
        detail = (
            f"this minion runs in a container ({engine}: {marker}): the net.* values read and set are the "
            "container's network namespace's, not the node's; vm.*, fs.* and kernel.* are the host's. "
            "Audit the node itself (a minion on the host, or salt-ssh) for its pods' network settings"
        )
        return check("fail", False, "the node's network namespace", own, None, detail, container=engine)
    if own and init and own != init:
        detail = (
            f"this minion runs in another network namespace ({own}) than PID 1 ({init}): the net.* values "
            "read and set are that namespace's, not the node's"
        )
        return check("fail", False, "the node's network namespace", own, None, detail, init_namespace=init)
    return None
