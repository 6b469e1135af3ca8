"""
Netfilter as the audit can read it without running iptables or nft.

Two iptables backends at once: the legacy x_tables (iptables-legacy; the tables in use are
listed in ``/proc/net/ip_tables_names`` and ``ip6_tables_names``, per network namespace)
and nf_tables (iptables-nft, nft, firewalld, kube-proxy's nftables mode). nf_tables has
no file that lists its tables (its users count in ``/proc/modules`` stays up while
``nft_compat`` is loaded, with no rule left: measured on Debian 13), so they are read the
way ``nft list tables`` reads them: one netlink dump (``NFT_MSG_GETTABLE``), no process,
and only when ``nf_tables`` is already loaded (the request would load it otherwise).

kube-proxy and the network plugin each write to one backend; when they pick different
ones, or something else holds rules in the other, rules do not see each other and
Services or pods break (kubernetes/kubernetes#71305, projectcalico/calico#3709;
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

from . import host, kernel, nftables_netlink
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


def nf_tables_loaded(facts):
    return "nf_tables" in facts["loaded"] or "nf_tables" in facts["builtin"]


def nft_tables(facts, root):
    """``["ip filter", "inet kube-proxy"]``: the nf_tables tables of this network
    namespace, or None when they cannot be read (another root than ``/``, no privilege).
    ``[]`` when nf_tables is not loaded."""
    if not nf_tables_loaded(facts):
        return []
    if root != "/":
        return None
    try:
        return nftables_netlink.list_tables()
    except OSError:
        return None


def iptables_alternative(root):
    """The program ``iptables`` runs (``iptables-legacy``, ``iptables-nft``), or None."""
    try:
        return os.path.basename(os.readlink(host.path(root, _ALTERNATIVE)))
    except OSError:
        return None


def iptables_backends_check(facts, root, nft=None):
    """The audit's ``iptables_backends`` check; None when neither backend is in use and
    the alternative is not legacy on a kernel without it. ``nft``: :func:`nft_tables`."""
    legacy = legacy_tables(root)
    alternative = iptables_alternative(root)
    version = kernel.parse_kernel_version(facts["release"] or "")
    needs_option = bool(version) and tuple(version[:2]) >= LEGACY_OPTION_SINCE and bool(facts["config"])
    legacy_gone = needs_option and facts["config"].get(_LEGACY_OPTION) not in ("y", "m")
    evidence = {"legacy_tables": legacy, "nf_tables": nft, "alternative": alternative}
    if alternative and "legacy" in alternative and legacy_gone:
        detail = (
            f"/etc/alternatives/iptables is {alternative} but kernel {facts['release']} has no legacy x_tables "
            f"({_LEGACY_OPTION} is not set in {facts['config_source']}): every iptables call on the host fails. "
            "Switch to iptables-nft (update-alternatives --set iptables /usr/sbin/iptables-nft)"
        )
        return check("fail", False, "one iptables backend", alternative, None, detail, **evidence)
    if legacy and nft:
        detail = (
            f"both iptables backends have tables: legacy {', '.join(legacy)} (/proc/net/ip_tables_names) and "
            f"nf_tables {', '.join(nft)}. kube-proxy and the network plugin may write to different backends and not "
            "see each other's rules (kubernetes/kubernetes#71305, projectcalico/calico#3709); iptables here is "
            f"{alternative or 'not an alternative'}"
        )
        return check("fail", False, "one iptables backend", alternative, None, detail, **evidence)
    if legacy and nft is None and nf_tables_loaded(facts):
        detail = (
            f"legacy tables {', '.join(legacy)} in use; nf_tables is loaded but its tables could not be read "
            "(run the audit as root on the node itself)"
        )
        return check("warn", False, "one iptables backend", alternative, None, detail, **evidence)
    if not legacy and not nft:
        return None
    used = "legacy (" + ", ".join(legacy) + ")" if legacy else "nf_tables (" + ", ".join(nft) + ")"
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
