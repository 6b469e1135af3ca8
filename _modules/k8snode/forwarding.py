"""
What sets the filter FORWARD chain's policy at boot, read from the files that configure
it: the live policy needs iptables or nft (a subprocess), which the audit does not run.

A DROP policy there drops pod traffic that the node routes or (with br_netfilter)
bridges, unless the network plugin ACCEPTs it in its own rules
(tables.FORWARD_ACCEPTING_CNIS). Who sets DROP at boot:

* dockerd, when it starts with ``net.ipv4.ip_forward`` at 0: it turns forwarding on and
  sets the policy to DROP (moby/libnetwork#1526; docs.docker.com "Docker on a router";
  moby integration/network/bridge/iptablesdoc new-daemon.md: "sets the POLICY to DROP if
  the sysctl net.ipv4.ip_forward was not set to '1', and the daemon set it itself").
  Not with ``"ip-forward-no-drop": true``, ``"ip-forward": false`` or ``"iptables": false``
  in daemon.json, nor when the boot value of ip_forward is already 1 (kubernetes/kops#3977:
  "we set the ip_forward sysctl, which meant that docker wouldn't change the rule");
* netfilter-persistent (Debian's iptables-persistent) restoring ``/etc/iptables/rules.v4``,
  and iptables-services restoring ``/etc/sysconfig/iptables``: the ``:FORWARD DROP`` line
  of their ``*filter`` table (iptables-save's format);
* ufw when enabled (``ENABLED=yes`` in /etc/ufw/ufw.conf): ``DEFAULT_FORWARD_POLICY`` in
  /etc/default/ufw, ``"DROP"`` as Debian and Ubuntu ship it;
* firewalld when enabled: its zones decide what is forwarded (said, not modelled).
"""

import json

from . import host, sysctl_boot
from .releases import BINARY_DIRECTORIES
from .tables import FORWARD_ACCEPTING_CNIS
from .verdict import check

#: (rules file, who restores it at boot, the restorer: a command in PATH or a path).
_RULES_FILES = (
    ("/etc/iptables/rules.v4", "netfilter-persistent", "netfilter-persistent"),
    ("/etc/sysconfig/iptables", "iptables.service", "/usr/libexec/iptables/iptables.init"),
)
_DOCKER_CONFIG = "/etc/docker/daemon.json"
#: "flannel, calico and cilium": the plugins the table says ACCEPT their own traffic.
_ACCEPTING = " and ".join(", ".join(FORWARD_ACCEPTING_CNIS).rsplit(", ", 1))


def _installed(root, program):
    if program.startswith("/"):
        return host.exists(root, program)
    return host.find_executable(root, program, BINARY_DIRECTORIES) is not None


def _rules_file(root, path, by, restorer):
    text = host.read_text(host.path(root, path))
    if text is None or not _installed(root, restorer):
        return None
    table = None
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if words and words[0].startswith("*"):
            table = words[0][1:]
        elif table == "filter" and len(words) >= 2 and words[0] == ":FORWARD":
            return {"policy": words[1], "by": by, "where": f"{path}:{number}", "why": f"{by} restores it at boot"}
    return None


def _docker(root, boot_ip_forward):
    if not _installed(root, "dockerd"):
        return None
    text = host.read_text(host.path(root, _DOCKER_CONFIG))
    try:
        config = json.loads(text) if text and text.strip() else {}
    except ValueError as error:
        return {"policy": "unknown", "by": "dockerd", "where": _DOCKER_CONFIG, "why": f"unreadable JSON ({error})"}
    if not isinstance(config, dict):
        return {"policy": "unknown", "by": "dockerd", "where": _DOCKER_CONFIG, "why": "not a JSON object"}
    for key, value in (("iptables", False), ("ip-forward", False), ("ip-forward-no-drop", True)):
        if config.get(key) is value:
            return None  # dockerd leaves the policy alone
    if boot_ip_forward == "1":
        return None  # forwarding is on before dockerd starts: it does not touch the policy
    where = _DOCKER_CONFIG if text is not None else "dockerd's defaults"
    return {
        "policy": "DROP",
        "by": "dockerd",
        "where": where,
        "why": f"net.ipv4.ip_forward is {boot_ip_forward or '0 (no file sets it)'} at boot: dockerd turns it on at start "
        'and sets the policy to DROP (set ip_forward = 1 in sysctl.d, or "ip-forward-no-drop": true)',
    }


def _ufw(root):
    enabled = host.read_text(host.path(root, "/etc/ufw/ufw.conf")) or ""
    if not any(line.replace(" ", "").lower() == "enabled=yes" for line in enabled.splitlines()):
        return None
    defaults = host.read_text(host.path(root, "/etc/default/ufw")) or ""
    for number, line in enumerate(defaults.splitlines(), 1):
        name, sep, value = line.strip().partition("=")
        if sep and name == "DEFAULT_FORWARD_POLICY":
            policy = value.strip().strip("\"'").upper()
            return {"policy": policy, "by": "ufw", "where": f"/etc/default/ufw:{number}", "why": "ufw is enabled"}
    return None


def _firewalld(root):
    enabled = host.enabled_units(root, "firewalld.service")
    if not enabled:
        return None
    return {
        "policy": "zones",
        "by": "firewalld",
        "where": enabled[0],
        "why": "firewalld is enabled: its zones decide what is forwarded (the pods' interfaces need a zone that "
        "forwards, e.g. trusted)",
    }


def boot_policy_sources(root, boot):
    """Every file that sets the FORWARD policy at boot: ``{policy, by, where, why}``."""
    winner = sysctl_boot.boot_assignment(sysctl_boot.sysctl_path("net.ipv4.ip_forward"), boot)
    boot_ip_forward = winner["value"] if winner else None
    found = [_rules_file(root, path, by, restorer) for path, by, restorer in _RULES_FILES]
    found += [_docker(root, boot_ip_forward), _ufw(root), _firewalld(root)]
    return [source for source in found if source]


def forward_policy_check(resolved, root, boot):
    """The audit's ``forward_policy`` check, or None when no file sets the policy (the
    kernel's ACCEPT). Never required (the plugin may ACCEPT its own traffic, and the live
    policy is not read): a warning naming each file that drops."""
    sources = boot_policy_sources(root, boot)
    if not sources:
        return None
    blocking = [source for source in sources if source["policy"] != "ACCEPT"]
    if not blocking:
        detail = "the filter FORWARD policy at boot is ACCEPT: " + ", ".join(s["where"] for s in sources)
        return check("ok", False, "ACCEPT", None, "ACCEPT", detail, sources=sources)
    cni = resolved["cni"]["name"]
    named = "; ".join(f"{s['policy']} from {s['where']} ({s['by']}: {s['why']})" for s in blocking)
    boot_policy = "DROP" if any(s["policy"] == "DROP" for s in blocking) else blocking[0]["policy"]
    if cni in FORWARD_ACCEPTING_CNIS:
        detail = (
            f"filter FORWARD policy at boot: {named}; {cni} ACCEPTs its pods' traffic in its own rules "
            f"({FORWARD_ACCEPTING_CNIS[cni]})"
        )
        return check("ok", False, "ACCEPT", None, boot_policy, detail, sources=sources)
    plugin = f"the network plugin {cni}" if cni else "the network plugin (pillar k8snode:cni is not set)"
    detail = (
        f"filter FORWARD policy at boot: {named}; pod traffic routed or bridged through this node is dropped "
        f"unless {plugin} ACCEPTs it in its own rules ({_ACCEPTING} do)"
    )
    return check("fail", False, "ACCEPT", None, boot_policy, detail, sources=sources)
