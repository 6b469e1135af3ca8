"""
Netfilter as the audit can read it without running iptables or nft.

Two iptables backends at once: the legacy x_tables (iptables-legacy; the tables in use are
listed in ``/proc/net/ip_tables_names`` and ``ip6_tables_names``, per network namespace)
and nf_tables (iptables-nft and nft; in use while the ``nf_tables`` module has users in
``/proc/modules``). kube-proxy and the network plugin each write to one backend; when they
pick different ones, or something else holds rules in the other, rules do not see each
other and Services or pods break (kubernetes/kubernetes#71305, projectcalico/calico#3709;
kube-proxy's image runs iptables-wrapper, which picks the backend that has rules).
``/etc/alternatives/iptables`` says which one the host's own ``iptables`` (the CNI plugins'
portmap and bridge call it) uses. From Linux 6.17 the legacy backend exists only with
``CONFIG_NETFILTER_XTABLES_LEGACY`` (net/netfilter/Kconfig): without it every
iptables-legacy call fails.

conntrack headroom: ``nf_conntrack_count`` near ``nf_conntrack_max`` drops new
connections ("nf_conntrack: table full, dropping packet"); kube-proxy raises the maximum
at its start (``conntrack.maxPerCore`` 32768 per CPU, ``min`` 131072:
pkg/proxy/apis/config/v1alpha1/defaults.go), so a node without it yet is warned about
the value it has now.
"""

import os

from . import host, kernel
from .verdict import check

_LEGACY_TABLES = ("proc/net/ip_tables_names", "proc/net/ip6_tables_names")
_ALTERNATIVE = "etc/alternatives/iptables"
_LEGACY_OPTION = "CONFIG_NETFILTER_XTABLES_LEGACY"
#: The first kernel whose legacy x_tables need _LEGACY_OPTION (Linux 6.17's net/netfilter/Kconfig).
LEGACY_OPTION_SINCE = (6, 17)
#: A warning from this share of the table (the kernel drops new flows at 100 %).
CONNTRACK_HEADROOM = 0.9


def legacy_tables(root):
    """The legacy iptables tables in use in this network namespace: ``["filter", "nat"]``."""
    tables = []
    for path in _LEGACY_TABLES:
        tables += [name for name in (host.read_text(host.path(root, path)) or "").split() if name not in tables]
    return tables


def nf_tables_users(root):
    """``(count, [modules])`` of the nf_tables module's users in /proc/modules, or None
    when it is not loaded as a module."""
    for line in (host.read_text(host.path(root, "proc/modules")) or "").splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "nf_tables":
            users = [name for name in fields[3].split(",") if name and name != "-"]
            return int(fields[2]) if fields[2].isdigit() else 0, users
    return None


def iptables_alternative(root):
    """The program ``iptables`` runs (``iptables-legacy``, ``iptables-nft``), or None."""
    try:
        return os.path.basename(os.readlink(host.path(root, _ALTERNATIVE)))
    except OSError:
        return None


def iptables_backends_check(facts, root):
    """The audit's ``iptables_backends`` check; None when neither backend is in use and
    the alternative is not legacy on a kernel without it."""
    legacy = legacy_tables(root)
    nft = nf_tables_users(root)
    alternative = iptables_alternative(root)
    version = kernel.parse_kernel_version(facts["release"] or "")
    needs_option = bool(version) and tuple(version[:2]) >= LEGACY_OPTION_SINCE and bool(facts["config"])
    legacy_gone = needs_option and facts["config"].get(_LEGACY_OPTION) not in ("y", "m")
    evidence = {"legacy_tables": legacy, "nf_tables_users": nft[1] if nft else None, "alternative": alternative}
    if alternative and "legacy" in alternative and legacy_gone:
        detail = (
            f"/etc/alternatives/iptables is {alternative} but kernel {facts['release']} has no legacy x_tables "
            f"({_LEGACY_OPTION} is not set in {facts['config_source']}): every iptables call on the host fails. "
            "Switch to iptables-nft (update-alternatives --set iptables /usr/sbin/iptables-nft)"
        )
        return check("fail", False, "one iptables backend", alternative, None, detail, **evidence)
    nft_in_use = bool(nft and nft[0] > 0)
    if legacy and nft_in_use:
        detail = (
            f"both iptables backends hold rules: legacy tables {', '.join(legacy)} (/proc/net/ip_tables_names) and "
            f"nf_tables ({nft[0]} users in /proc/modules"
            + (f": {', '.join(nft[1])}" if nft[1] else "")
            + "). kube-proxy and the network plugin may write to different backends and not see each other's "
            f"rules (kubernetes/kubernetes#71305, projectcalico/calico#3709); iptables here is {alternative or 'unknown'}"
        )
        return check("fail", False, "one iptables backend", alternative, None, detail, **evidence)
    if not legacy and not nft_in_use:
        return None
    used = "legacy (" + ", ".join(legacy) + ")" if legacy else "nf_tables"
    detail = f"one iptables backend in use: {used}; iptables here is {alternative or 'not an alternative'}"
    return check("ok", False, "one iptables backend", alternative, None, detail, **evidence)


def conntrack_headroom_check(resolved, root):
    """The audit's ``conntrack_headroom`` check (live only); None without nf_conntrack."""
    count = host.read_text(host.path(root, "proc/sys/net/netfilter/nf_conntrack_count"))
    maximum = host.read_text(host.path(root, "proc/sys/net/netfilter/nf_conntrack_max"))
    try:
        count, maximum = int(count), int(maximum)
    except (TypeError, ValueError):
        return None
    share = count / maximum if maximum else 1.0
    live = f"{count}/{maximum}"
    if share < CONNTRACK_HEADROOM:
        detail = f"nf_conntrack_count {count} of nf_conntrack_max {maximum} ({share:.0%})"
        return check("ok", False, f"< {CONNTRACK_HEADROOM:.0%} of nf_conntrack_max", live, None, detail)
    detail = (
        f"nf_conntrack_count {count} is {share:.0%} of nf_conntrack_max {maximum}: at 100 % the kernel drops new "
        "connections (nf_conntrack: table full). Raise net.netfilter.nf_conntrack_max"
    )
    if resolved["distribution"] == "kubeadm" and resolved["kube_proxy_mode"]["mode"] != "none":
        detail += " (kube-proxy raises it at start to 32768 per CPU, at least 131072: conntrack.maxPerCore, min)"
    return check("fail", False, f"< {CONNTRACK_HEADROOM:.0%} of nf_conntrack_max", live, None, detail)
