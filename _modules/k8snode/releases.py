"""
What changes with the Kubernetes release that will run on the node, as data.

The kubelet, kubeadm and kube-proxy of one minor release decide what the host must
offer; nothing here runs. Each row names the releases it applies to (``since``
inclusive, ``until`` exclusive, minor versions as ``"1.35"``) and its ``source``: the
KEP, the pull request or the file in the upstream repository that the row was read
from. :func:`row` picks the row of a table for a release; :mod:`.release_checks`
turns rows and host facts into checks.
"""

#: The minor releases these tables were written for (each row below was checked
#: against them); a newer release keeps the newest rules and says they may be stale.
KNOWN_RELEASES = ("1.28", "1.29", "1.30", "1.31", "1.32", "1.33", "1.34", "1.35", "1.36", "1.37")
NEWEST_KNOWN = KNOWN_RELEASES[-1]
#: The oldest release accepted as ``kubernetes_version`` (older ones are refused:
#: no row here was written for them).
OLDEST_ACCEPTED = "1.20"


# --------------------------------------------------------------------------
# The kubelet's own defaults (pkg/kubelet/apis/config/v1beta1/defaults.go in
# kubernetes/kubernetes) and what each distribution passes instead.
# --------------------------------------------------------------------------

#: The kubelet's setting names: pillar ``k8snode:kubelet`` key -> KubeletConfiguration
#: field (dotted for nested ones) and command-line flag (None: config file only).
KUBELET_SETTINGS = {
    "fail_swap_on": {"field": "failSwapOn", "flag": "fail-swap-on", "type": bool},
    "swap_behavior": {
        "field": "memorySwap.swapBehavior",
        "flag": None,
        "type": str,
        "accepted": ("NoSwap", "LimitedSwap"),
    },
    # The flag exists beside the field since 1.31 (k3s users pass kubelet-arg fail-cgroupv1=false).
    "fail_cgroup_v1": {"field": "failCgroupV1", "flag": "fail-cgroupv1", "type": bool},
    "protect_kernel_defaults": {"field": "protectKernelDefaults", "flag": "protect-kernel-defaults", "type": bool},
    "cgroup_driver": {
        "field": "cgroupDriver",
        "flag": "cgroup-driver",
        "type": str,
        "accepted": ("systemd", "cgroupfs"),
    },
}

#: The kubelet's defaults by release; each setting's rows oldest first.
KUBELET_DEFAULTS = {
    "fail_swap_on": (
        {
            "value": True,
            "source": "kubernetes/kubernetes pkg/kubelet/apis/config/v1beta1/defaults.go",
        },
    ),
    "swap_behavior": (
        {
            "until": "1.30",
            "value": "LimitedSwap",
            # NodeSwap beta in 1.28: an empty swapBehavior meant LimitedSwap.
            "source": "KEP-2400",
        },
        {
            "since": "1.30",
            "value": "NoSwap",
            # From 1.30 an empty swapBehavior is NoSwap (pkg/kubelet/apis/config/validation).
            "source": "KEP-2400",
        },
    ),
    "fail_cgroup_v1": (
        {"until": "1.31", "value": False, "source": "the setting does not exist before 1.31"},
        {
            "since": "1.31",
            "until": "1.35",
            "value": False,
            "source": "kubernetes/kubernetes#126031, KEP-4569",
        },
        {
            "since": "1.35",
            "value": True,
            # pkg/kubelet/apis/config/validation/validation_linux.go then refuses the config on cgroup v1.
            "source": "kubernetes/kubernetes#134298, KEP-5573",
        },
    ),
    "protect_kernel_defaults": (
        {"value": False, "source": "kubernetes/kubernetes pkg/kubelet/apis/config/v1beta1/defaults.go"},
    ),
    "cgroup_driver": (
        {"value": "cgroupfs", "source": "kubernetes/kubernetes pkg/kubelet/apis/config/v1beta1/defaults.go"},
    ),
}

#: What each distribution runs its kubelet with, when the node's files say nothing.
DISTRIBUTION_KUBELET = {
    "kubeadm": {
        "cgroup_driver": {
            "value": "systemd",
            "source": "kubeadm writes cgroupDriver: systemd into /var/lib/kubelet/config.yaml since 1.22",
        },
    },
    "k3s": {
        "fail_swap_on": {
            "value": False,
            "source": 'k3s-io/k3s pkg/daemons/agent/agent_linux.go: argsMap["fail-swap-on"] = "false"',
        },
    },
    "rke2": {
        "fail_swap_on": {
            "value": False,
            "source": "rke2 runs the k3s agent: k3s-io/k3s pkg/daemons/agent/agent_linux.go (fail-swap-on=false)",
        },
    },
    "microk8s": {
        "fail_swap_on": {
            "value": False,
            "source": "canonical/microk8s microk8s-resources/default-args/kubelet: --fail-swap-on=false",
        },
    },
}

# --------------------------------------------------------------------------
# Rules by release
# --------------------------------------------------------------------------

#: cgroup v1 hosts. ``status`` is the verdict when the kubelet's failCgroupV1 is
#: false; with it true the kubelet exits at start (``fail``).
CGROUP_V1 = (
    {
        "until": "1.31",
        "status": "ok",
        "why": "cgroup v1 is supported",
        "source": "KEP-4569 (cgroup v1 maintenance mode starts in 1.31)",
    },
    {
        "since": "1.31",
        "status": "warn",
        "why": "cgroup v1 is in maintenance mode since 1.31: no new features, kubeadm warns",
        "source": "KEP-4569, kubernetes/kubernetes#126031",
    },
)
#: The kubelet's message when it refuses cgroup v1 (cmd/kubelet/app/server.go).
CGROUP_V1_REFUSED = "kubelet exits at start on a cgroup v1 host when failCgroupV1 is true"

#: The cgroup v2 controllers the kubelet needs (k8s.io/system-validators
#: validators/types_unix.go, DefaultSysSpec.CgroupsV2; devices and freezer are not
#: files of cgroup.controllers on v2, so they are not listed here).
CGROUP_V2_CONTROLLERS = {
    "required": ("cpu", "cpuset", "memory", "pids"),
    "optional": ("hugetlb",),
    "source": "kubernetes/system-validators validators/types_unix.go (CgroupsV2, CgroupsV2Optional)",
}

#: Swap with the kubelet's failSwapOn false: what swapBehavior may be used.
SWAP = (
    {
        "until": "1.28",
        "limited_swap_on_cgroup_v1": "ok",
        "node_swap": "alpha, off by default: pods use swap without limits",
        "source": "KEP-2400 (NodeSwap alpha 1.22-1.27)",
    },
    {
        "since": "1.28",
        "until": "1.30",
        "limited_swap_on_cgroup_v1": "ok",
        "node_swap": "beta, feature gate off by default",
        "source": "KEP-2400 (NodeSwap beta in 1.28, gate off)",
    },
    {
        "since": "1.30",
        "until": "1.34",
        "limited_swap_on_cgroup_v1": "fail",
        "node_swap": "beta, on by default (NoSwap unless LimitedSwap is set)",
        "source": "KEP-2400; kubernetes/kubernetes#123738 (1.30, cmd/kubelet/app/server.go: LimitedSwap "
        '"is only supported with cgroupv2"); #122745 removed UnlimitedSwap',
    },
    {
        "since": "1.34",
        "limited_swap_on_cgroup_v1": "fail",
        "node_swap": "GA (NoSwap unless LimitedSwap is set)",
        "source": "KEP-2400; pkg/features/kube_features.go (NodeSwap GA and locked in 1.34)",
    },
)
#: Memory-backed volumes (emptyDir medium Memory, secrets) are mounted noswap only
#: from this kernel on; below it their pages may be swapped out.
TMPFS_NOSWAP_KERNEL = {
    "version": "6.4",
    "source": "kubernetes/kubernetes pkg/util/kernel/constants.go (TmpfsNoswapSupportKernelVersion)",
}

#: Kernel versions kubeadm's system verification checks (k8s.io/system-validators
#: validators/types_unix.go, KernelSpec.Versions; the validators' release kubeadm pins
#: per Kubernetes release). ``floor``: an older kernel is "unsupported" and fails
#: kubeadm's preflight; ``recommended``: from validators v1.10.1 (kubeadm 1.34) a kernel
#: outside the list only warns, and no floor is left.
KERNEL_VALIDATION = (
    {
        "until": "1.32",
        "floor": "3.10",
        "recommended": None,
        "source": "kubernetes/system-validators v1.8.0 validators/types_unix.go (KernelSpec: 3.10 or later)",
    },
    {
        "since": "1.32",
        "until": "1.34",
        "floor": "4.19",
        "recommended": None,
        "source": "kubernetes/system-validators v1.9.x validators/types_unix.go (^4\\.19.*$ is the oldest accepted "
        "pattern; an unmatched kernel is an error)",
    },
    {
        "since": "1.34",
        "floor": None,
        "recommended": ("5.4", "5.10", "5.15", "6"),
        "source": "kubernetes/system-validators v1.10.1 validators/types_unix.go (Versions ^5\\.4, ^5\\.10, ^5\\.15, "
        ">= 6; an unmatched kernel is a warning since kubernetes/system-validators#49, kubernetes/kubernetes#131919)",
    },
)

#: kube-proxy's modes by release.
KUBE_PROXY = {
    "ipvs": (
        {
            "since": "1.35",
            "deprecated": "kube-proxy's IPVS mode is deprecated since Kubernetes 1.35 (KEP-5495); "
            "the nftables mode is its replacement (kube_proxy_mode: nftables)",
            "source": "KEP-5495 (kubernetes/enhancements, sig-network): IPVS deprecated in 1.35",
        },
    ),
}

#: kube-proxy writes nf_conntrack_max (and nf_conntrack's hashsize) at start in every
#: mode (cmd/kube-proxy/app/server_linux.go platformSetup -> setupConntrack,
#: cmd/kube-proxy/app/conntrack.go SetMax) and exits when the key is missing: "Error
#: running ProxyServer" err="open /proc/sys/net/netfilter/nf_conntrack_max: no such file
#: or directory" (kubernetes/kops#17968, Rocky 9). Only conntrack.maxPerCore: 0 skips
#: it: K3s sets that (and loads nf_conntrack itself), MicroK8s loads it. So the module
#: must be loaded at boot, before kube-proxy, where kubeadm's kube-proxy runs; RKE2's
#: kube-proxy arguments were not verified and it keeps its own table.
KUBE_PROXY_CONNTRACK = {
    "distributions": ("kubeadm",),
    "modes": ("iptables", "ipvs", "nftables"),
    "module": "nf_conntrack",
    "alternatives": ["nf_conntrack", "nf_conntrack_ipv4"],
    "source": "kube_proxy:conntrack",
    "why": "kube-proxy writes nf_conntrack_max at start and exits without it "
    "(cmd/kube-proxy/app/conntrack.go; kubernetes/kops#17968)",
}

#: The container runtime: containerd before 2.0 lacks the CRI RuntimeConfig call
#: through which the kubelet learns the cgroup driver (KEP-4033; containerd 2.0 and
#: CRI-O 1.28 have it). The kubelet falls back to its own cgroupDriver and logs it; the
#: end of that fallback moved from 1.36 to 1.37, then to 1.38: a warning until a
#: release is known to refuse it.
CONTAINERD = (
    {
        "since": "1.34",
        "minimum": "2.0",
        "status": "warn",
        "why": "containerd < 2.0 lacks the CRI RuntimeConfig call (KEP-4033): the kubelet falls back to its own "
        "cgroupDriver, a fallback planned to end in Kubernetes 1.38",
        "source": "KEP-4033; kubeadm ContainerRuntimeVersion preflight warning (kubernetes/kubernetes#134906, 1.35); "
        "removal deferred to 1.38 (kubernetes/kubernetes#139121)",
    },
)

#: The binaries kubeadm's preflight looks for in PATH (InPathCheck in
#: cmd/kubeadm/app/preflight/checks_linux.go); a missing one is a warning here.
_PREFLIGHT = "kubernetes/kubernetes cmd/kubeadm/app/preflight/checks_linux.go"
KUBEADM_BINARIES = (
    {"name": "crictl", "source": f"{_PREFLIGHT} (InPathCheck crictl, mandatory)"},
    {"name": "conntrack", "until": "1.32", "source": f"{_PREFLIGHT} (only below 1.32, kubernetes/kubernetes#126952)"},
    {"name": "ip", "until": "1.33", "source": f"{_PREFLIGHT} (dropped in 1.33, kubernetes/kubernetes#129131)"},
    {"name": "iptables", "until": "1.33", "source": f"{_PREFLIGHT} (dropped in 1.33, kubernetes/kubernetes#129131)"},
    {"name": "mount", "source": f"{_PREFLIGHT} (InPathCheck mount, mandatory)"},
    {"name": "nsenter", "until": "1.33", "source": f"{_PREFLIGHT} (dropped in 1.33, kubernetes/kubernetes#129450)"},
    {"name": "losetup", "since": "1.33", "source": f"{_PREFLIGHT} (added in 1.33, kubernetes/kubernetes#129450)"},
    {"name": "cp", "since": "1.33", "source": f"{_PREFLIGHT} (added in 1.33, kubernetes/kubernetes#130045)"},
)
#: Where kubeadm's PATH looks (a node's default PATH for root).
BINARY_DIRECTORIES = ("usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin")

#: Network plugins that route pod traffic without a Linux bridge: br_netfilter and
#: the bridge sysctls do nothing for them. kubeadm stopped checking the sysctls in
#: 1.30 for that reason.
ROUTED_CNIS = {
    "calico": "Calico routes pod traffic (each pod's veth is a routed /32 on the host): no bridge for "
    "br_netfilter to hook (projectcalico/calico: felix programs routes, not a bridge)",
    "cilium": "Cilium's datapath attaches eBPF to each pod's veth and routes; it does not use a Linux bridge",
}
BRIDGE_NOT_NEEDED_SOURCE = "kubernetes/kubernetes#123464 (kubeadm 1.30 drops the bridge-nf-call checks)"


def minor(version):
    """``(1, 35)`` of ``"1.35"``."""
    major, minor_part = version.split(".")[:2]
    return int(major), int(minor_part)


def applies(entry, version):
    """Whether a row applies to ``version`` (``since`` <= version < ``until``)."""
    found = minor(version)
    if "since" in entry and found < minor(entry["since"]):
        return False
    return not ("until" in entry and found >= minor(entry["until"]))


def row(table, version):
    """The row of ``table`` that applies to ``version``, or None (the newest that applies)."""
    matching = [entry for entry in table if applies(entry, version)]
    return matching[-1] if matching else None


def rows(table, version):
    """Every row of ``table`` that applies to ``version``."""
    return [entry for entry in table if applies(entry, version)]
