"""
What a Kubernetes node needs, as data: one table per distribution, per extra,
per OS family and per OS release, plus the defaults. Nothing here runs;
:mod:`.resolve` merges these layers in ``RESOLUTION_ORDER``.

A table entry is ``{"modules": {name: {"alternatives": [...]}}, "sysctls":
{key: {"value", "compare", "needs_module"}}, "swap": policy, ...}``; a
``description`` says why the entry exists (the README's profile table).
"""

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
    "Debian": {"boot": {"etc_modules": "/etc/modules"}},
    "RedHat": {
        "hints": {
            "br_netfilter": "on RHEL 10 and Fedora it ships in the kernel-modules-extra package",
            "ip_vs": "on RHEL 10 and Fedora it ships in the kernel-modules-extra package",
        },
    },
    "Suse": {
        "hints": {"br_netfilter": "kernel-default-base lacks it: install kernel-default"},
    },
}

# (os_family, os IDs whose release numbers these are, first major release it
# applies to, layer); every matching entry applies, in this order. Release
# numbers only mean something for one OS: Ubuntu 22.04 is not "Debian 22".
OS_RELEASES = ()

DEFAULTS = {
    "files": {
        "modules_load": "/etc/modules-load.d/k8snode.conf",
        "sysctl": "/etc/sysctl.d/99-k8snode.conf",
    },
    # reads_etc_sysctl_conf: None = as the host's sysctl applier does (systemd-sysctl
    # reads it only through a sysctl.d link, procps' `sysctl --system` reads it last),
    # whatever the OS family; False/True force it for `sysctl --system` hosts.
    "boot": {"reads_etc_sysctl_conf": None, "etc_modules": None},
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
