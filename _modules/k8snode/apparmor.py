"""
AppArmor enabled in the kernel with no ``apparmor_parser`` on the host.

containerd's CRI gives every container AppArmor's default profile when the host supports
AppArmor, and loads it with ``apparmor_parser``. Its support test (pkg/apparmor
``hostSupports``) is: ``/sys/kernel/security/apparmor`` exists, ``/sbin/apparmor_parser``
exists, ``/sys/module/apparmor/parameters/enabled`` starts with ``Y``. containerd 1.6.0
to 1.6.17 left the parser out of that test (#5519): with AppArmor enabled and no parser,
every container create fails ("get apparmor_parser version: exec: apparmor_parser:
executable file not found", containerd/containerd#7547, k0sproject/k0s#1039). 1.6.18 and
1.7.0 put it back (#8087, #8086): containers then run unconfined, and a pod that asks for
an AppArmor profile fails ("apparmor is not supported", siderolabs/talos#8641).
"""

from . import host, release_checks
from .verdict import check

_ENABLED = "sys/module/apparmor/parameters/enabled"
_SECURITYFS = "sys/kernel/security/apparmor"
_PARSERS = ("sbin/apparmor_parser", "usr/sbin/apparmor_parser")
#: containerd releases that fail every container create without the parser: [first, fixed).
BROKEN_CONTAINERD = ((1, 6, 0), (1, 6, 18))
SOURCE = "containerd/containerd#7547, #8086, #8087 (1.6.18)"


def apparmor_check(resolved, root):
    """The audit's ``apparmor`` check; None unless AppArmor is enabled without its parser."""
    enabled = (host.read_text(host.path(root, _ENABLED)) or "").startswith("Y")
    if not enabled or not host.exists(root, _SECURITYFS):
        return None
    if any(host.exists(root, parser) for parser in _PARSERS):
        return None
    # k3s, RKE2 and MicroK8s bring their own containerd: its release is not in dpkg's list.
    found = release_checks.containerd_version(root) if resolved["distribution"] == "kubeadm" else None
    version, parsed = (found[0], found[2]) if found else (None, None)
    head = "AppArmor is enabled in the kernel (/sys/module/apparmor/parameters/enabled) and apparmor_parser is missing"
    fix = "install the apparmor package (apparmor_parser) or boot with apparmor=0"
    if parsed and BROKEN_CONTAINERD[0] <= parsed < BROKEN_CONTAINERD[1]:
        detail = (
            f"{head}: containerd {version} ({found[1]}) fails every container create (get apparmor_parser "
            f"version: executable file not found); {fix}"
        )
        return check("fail", True, "apparmor_parser", None, None, detail, containerd=version, source=SOURCE)
    runtime = f"containerd {version}" if version else "containerd 1.6.18 or later (1.6.0-1.6.17 fail every container)"
    detail = (
        f"{head}: {runtime} runs containers without AppArmor confinement, and a pod that asks for an AppArmor "
        f"profile fails (apparmor is not supported); {fix}"
    )
    return check("fail", False, "apparmor_parser", None, None, detail, containerd=version, source=SOURCE)
