"""
What a Kubernetes node needs, as data: one table per distribution, per extra,
per OS family and per OS release, plus the defaults. Nothing here runs;
:mod:`.resolve` merges these layers in ``RESOLUTION_ORDER``.

A table entry is ``{"modules": {name: {"alternatives": [...], "required"}},
"sysctls": {key: {"value", "compare", "accepted", "needs_module"}}, "swap":
policy, "kernel_floor": {...}, "mounts": {...}, "deprecated": text}``; a
``description`` says why the entry exists (the README's profile table).
"""

#: Layers applied by :func:`requirements`, first to last; a later layer wins.
RESOLUTION_ORDER = (
    "distribution",
    "cni",
    "kube_proxy_mode",
    "extras",
    "os_family",
    "os_release",
    "pillar",
    "arguments",
)

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
    "user_namespaces": {
        "description": "Pods with hostUsers: false (KEP-127): idmap mounts on tmpfs, which the kubelet's "
        "volumes need, exist from Linux 6.3 (a warning below it).",
        # kubernetes.io/docs/concepts/workloads/pods/user-namespaces: "Linux 6.3 or later"
        # (tmpfs idmap mounts); the feature is beta and on by default from Kubernetes 1.33.
        "kernel_floor": {"version": "6.3", "why": "user namespaces: tmpfs idmap mounts (KEP-127)", "required": False},
    },
    "max_map_count": {
        "description": "Elasticsearch and similar workloads (the seed's optional value).",
        "sysctls": {"vm.max_map_count": {"value": 262144, "compare": "min"}},
    },
}

# --------------------------------------------------------------------------
# The network plugin (pillar k8snode:cni; none by default) and kube-proxy's
# mode (k8snode:kube_proxy_mode; iptables by default). Each value below is
# taken from the project's own documented requirements, cited per entry.
# --------------------------------------------------------------------------

# Cilium and Calico (Calico's system requirements page lists "RHEL 8 or
# later" among the known-good hosts) accept RHEL's 4.18, which carries the
# backports; Cilium names "4.18 on RHEL 8.10".
_CNI_KERNEL_FLOOR = {"version": "5.10", "os_family": {"RedHat": "4.18"}}

CNIS = {
    # cilium/cilium Documentation/operations/system_requirements.rst.
    "cilium": {
        "description": "Cilium: kernel >= 5.10; ip_set, xt_set, ip_set_hash_ip and xt_comment for its "
        "iptables masquerading (the default), vxlan for its default tunnel; rp_filter = 0, "
        "which systemd >= 245 and Ubuntu set to 2 (pods lose egress); bpffs at /sys/fs/bpf.",
        "kernel_floor": {**_CNI_KERNEL_FLOOR, "why": "Cilium's eBPF datapath"},
        "modules": {
            # "Requirements for Iptables-based Masquerading" (enable-bpf-masquerade=false, the default).
            "ip_set": {},
            "xt_set": {},
            "ip_set_hash_ip": {},
            "xt_comment": {},
            # "Requirements for Tunneling and Routing": VXLAN is the default tunnel;
            # Geneve only with tunnel-protocol=geneve.
            "vxlan": {},
            "geneve": {"required": False},
            # "Requirements for L7 and FQDN Policies": only those policies use them,
            # and Cilium falls back without xt_socket.
            "xt_TPROXY": {"required": False},
            "xt_mark": {"required": False},
            "xt_CT": {"required": False},
            "xt_socket": {"required": False},
        },
        "sysctls": {
            # Cilium's own tools/sysctlfix writes these three (99-zzz-override_cilium.conf;
            # cilium/cilium#10645): the kernel uses max(conf.all, conf.DEV), so a loose or
            # strict `all` overrules Cilium's per-device 0; and systemd >= 245's
            # 50-default.conf sets net.ipv4.conf.*.rp_filter = 2 on every interface as it
            # appears, pods' lxc* veths and cilium_host included, which drops pod egress
            # (also after an OS update on running clusters: flatcar/Flatcar#181, whose fix
            # is the lxc* pattern in sysctl.d). Our patterns are globs too, so an explicit
            # line for one interface (net.ipv4.conf.lxc1.rp_filter) still beats them.
            "net.ipv4.conf.all.rp_filter": {"value": 0},
            "net.ipv4.conf.lxc*.rp_filter": {"value": 0},
            "net.ipv4.conf.cilium_*.rp_filter": {"value": 0},
        },
        "mounts": {
            # "Mounted eBPF filesystem": Cilium mounts it itself when missing, but a host
            # mount keeps its eBPF maps across agent restarts (systemd mounts it at boot).
            "/sys/fs/bpf": {
                "fstype": "bpf",
                "required": False,
                "why": "Cilium keeps its eBPF maps there across agent restarts (it mounts one "
                "itself when missing; systemd mounts it at boot; by hand: mount -t bpf bpffs /sys/fs/bpf)",
            },
        },
    },
    # docs.tigera.io/calico/latest/getting-started/kubernetes/requirements, "Kernel dependencies".
    "calico": {
        "description": "Calico: kernel >= 5.10; the ip_set and iptables modules Felix programs; ipip or "
        "vxlan by the IP pool's encapsulation; rp_filter 0 or 1, since Felix exits on loose (2).",
        "kernel_floor": {**_CNI_KERNEL_FLOOR, "why": "Calico's system requirements"},
        "modules": {
            # The page also lists ipt_set (an alias of xt_set) and xt_icmp / xt_icmp6
            # (part of ip_tables / ip6_tables): no module of their own to load.
            "ip_set": {},
            "ip_tables": {},
            "ip6_tables": {},
            "ipt_REJECT": {},
            "ipt_rpfilter": {},
            "nf_conntrack_netlink": {},
            "xt_addrtype": {},
            "xt_conntrack": {},
            "xt_mark": {},
            "xt_multiport": {},
            "xt_set": {},
            "xt_u32": {},
            # Only with kube-proxy in IPVS mode.
            "xt_ipvs": {"required": False},
            # The IP pool's encapsulation decides (IPIP or VXLAN, WireGuard when enabled):
            # make yours strict with modules: {ipip: {required: true}}.
            "ipip": {"required": False},
            "vxlan": {"required": False},
            "wireguard": {"required": False},
        },
        "sysctls": {
            # Felix refuses loose mode (2): "Calico requires net.ipv4.conf.all.rp_filter
            # to be set to 0 or 1" (unless IgnoreLooseRPF). Strict (1) is what prepare
            # writes when neither is set: it keeps the anti-spoofing Felix wants.
            "net.ipv4.conf.all.rp_filter": {"value": 1, "compare": "one_of", "accepted": [0, 1]},
        },
    },
    # flannel-io/flannel README and Documentation/backends.md.
    "flannel": {
        "description": "Flannel: exits without /proc/sys/net/bridge/bridge-nf-call-iptables (br_netfilter, "
        "which kubeadm stopped checking in 1.30); vxlan for its default VXLAN backend.",
        "modules": {"br_netfilter": {}, "vxlan": {}},
        "sysctls": {"net.bridge.bridge-nf-call-iptables": {"value": 1, "needs_module": "br_netfilter"}},
    },
}

KUBE_PROXY_MODES = {
    "iptables": {
        # The iptables binary decides the kernel part (legacy ip_tables or, with
        # iptables-nft, nf_tables): no module is right for every host.
        "description": "kube-proxy's default mode: the distribution's br_netfilter and bridge sysctls.",
    },
    "ipvs": {
        "description": "kube-proxy in IPVS mode (kubespray's module list); deprecated since Kubernetes 1.35.",
        "modules": {
            "ip_vs": {},
            "ip_vs_rr": {},
            "ip_vs_wrr": {},
            "ip_vs_sh": {},
            "nf_conntrack": {"alternatives": ["nf_conntrack", "nf_conntrack_ipv4"]},
        },
        # Deprecated from Kubernetes 1.35 on: releases.KUBE_PROXY, by release.
    },
    "nftables": {
        # kubernetes.io/docs/reference/node/kernel-version-requirements: "kube-proxy
        # nftables proxy mode" needs kernel >= 5.13 (and nft >= 1.0.1, a package).
        "description": "kube-proxy in nftables mode: nf_tables, kernel >= 5.13.",
        "kernel_floor": {"version": "5.13", "why": "kube-proxy's nftables mode"},
        "modules": {"nf_tables": {}},
    },
    "none": {
        "description": "No kube-proxy: the network plugin replaces it (Cilium's kube-proxy replacement).",
    },
}

#: Extras that are another setting now: ``extras: [ipvs]`` is ``kube_proxy_mode: ipvs``.
EXTRA_ALIASES = {"ipvs": ("kube_proxy_mode", "ipvs")}

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
    "ip6_tables": {"config": "IP6_NF_IPTABLES", "path": "proc/net/ip6_tables_names"},
    "nf_tables": {"config": "NF_TABLES"},
    "ip_set": {"config": "IP_SET"},
    "ip_set_hash_ip": {"config": "IP_SET_HASH_IP"},
    "xt_set": {"config": "NETFILTER_XT_SET"},
    "xt_comment": {"config": "NETFILTER_XT_MATCH_COMMENT"},
    "xt_TPROXY": {"config": "NETFILTER_XT_TARGET_TPROXY"},
    "xt_mark": {"config": "NETFILTER_XT_MARK"},
    "xt_CT": {"config": "NETFILTER_XT_TARGET_CT"},
    "xt_socket": {"config": "NETFILTER_XT_MATCH_SOCKET"},
    "xt_addrtype": {"config": "NETFILTER_XT_MATCH_ADDRTYPE"},
    "xt_conntrack": {"config": "NETFILTER_XT_MATCH_CONNTRACK"},
    "xt_multiport": {"config": "NETFILTER_XT_MATCH_MULTIPORT"},
    "xt_u32": {"config": "NETFILTER_XT_MATCH_U32"},
    "xt_ipvs": {"config": "NETFILTER_XT_MATCH_IPVS"},
    "ipt_REJECT": {"config": "IP_NF_TARGET_REJECT"},
    "ipt_rpfilter": {"config": "IP_NF_MATCH_RPFILTER"},
    "nf_conntrack_netlink": {"config": "NF_CT_NETLINK"},
    "vxlan": {"config": "VXLAN"},
    "geneve": {"config": "GENEVE"},
    "ipip": {"config": "NET_IPIP"},
    "wireguard": {"config": "WIREGUARD"},
}

#: Modules the kernel loads by itself when they are first needed (request_module through
#: an alias), unless modprobe.d or kernel.modules_disabled stops it: a module that is only
#: available is not a failure for them (k8snode still persists them, as the seed asks).
ON_DEMAND = {
    # fs/filesystems.c get_fs_type(): request_module("fs-%s"); fs/overlayfs: MODULE_ALIAS_FS("overlay").
    "overlay": {"how": 'on the first overlay mount (request_module("fs-overlay"), MODULE_ALIAS_FS)'},
    # Since Linux 5.15 (commit 2199f562730d) the IPVS generic netlink family autoloads;
    # kube-proxy stopped reading /proc/modules for it (kubernetes/kubernetes#114669).
    "ip_vs": {"how": "on the first IPVS netlink call (genl family autoload, Linux 5.15)", "since": "5.15"},
    # net/netfilter/ipvs/ip_vs_sched.c: request_module("ip_vs_%s", sched_name).
    "ip_vs_rr": {"how": 'when a virtual service first uses its scheduler (request_module("ip_vs_rr"))'},
    "ip_vs_wrr": {"how": 'when a virtual service first uses its scheduler (request_module("ip_vs_wrr"))'},
    "ip_vs_sh": {"how": 'when a virtual service first uses its scheduler (request_module("ip_vs_sh"))'},
    # net/netfilter/nfnetlink.c: request_module("nfnetlink-subsys-%d"); nf_tables: MODULE_ALIAS_NFNL_SUBSYS.
    "nf_tables": {"how": 'on the first nftables netlink call (request_module("nfnetlink-subsys-10"))'},
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
#: What a requirement may use: ``one_of`` accepts any value of its ``accepted``
#: list (prepare writes ``value`` when none holds).
REQUIREMENT_COMPARISONS = (*SYSCTL_COMPARISONS, "one_of")

# Network plugins that ACCEPT their own pods' traffic in the filter FORWARD chain, so
# that a DROP policy there (Docker's, a firewall's) does not stop it. The bridge plugin
# alone, kube-proxy (its KUBE-FORWARD accepts only marked or established packets) and a
# plugin not listed here do not: a DROP policy drops pod traffic through the node.
FORWARD_ACCEPTING_CNIS = {
    # flannel-io/flannel#872 (v0.9.1: "Add iptables rules to FORWARD chain" for its
    # network, after Docker 1.13's DROP) and #978 (--iptables-forward-rules, default true).
    "flannel": "flannel-io/flannel#872, #978 (--iptables-forward-rules, default true)",
    # projectcalico/felix#1318 ("Explicitly ACCEPT packets that are allowed by host
    # policy ... compatible with using DROP as the iptables policy") and #1842 ("whenever
    # Calico policy intends to allow a packet, it must explicitly ACCEPT that packet").
    "calico": "projectcalico/felix#1318, #1842",
    # cilium/cilium pkg/datapath/iptables/iptables.go: the CILIUM_FORWARD chain fed from
    # filter FORWARD accepts traffic to and from its cilium_host and lxc interfaces.
    "cilium": "cilium/cilium pkg/datapath/iptables/iptables.go (CILIUM_FORWARD)",
}

# The interfaces each network plugin creates on the node, as glob patterns, with names
# they take (the examples a network manager's own matching is tested against), and where
# the plugin's project says so. A network manager that manages them (NetworkManager
# without an unmanaged-devices entry, a catch-all systemd-networkd .network file) takes
# addresses, routes or the link itself away from the plugin.
PLUGIN_INTERFACES = {
    # docs.tigera.io/calico/latest/operations/troubleshoot/troubleshooting "Configure
    # NetworkManager": unmanaged-devices=interface-name:cali*;interface-name:tunl*;
    # interface-name:vxlan.calico;interface-name:vxlan-v6.calico;interface-name:wireguard.cali;
    # interface-name:wg-v6.cali (projectcalico/calico#2471 for networkd).
    "calico": {
        "patterns": ["cali*", "tunl*", "vxlan.calico", "vxlan-v6.calico", "wireguard.cali", "wg-v6.cali"],
        "examples": {
            "cali1a2b3c4d5e6": "veth",
            "tunl0": "ipip",
            "vxlan.calico": "vxlan",
            "wireguard.cali": "wireguard",
        },
        "source": "Calico's docs, Configure NetworkManager; projectcalico/calico#2471",
    },
    # docs.rke2.io known issues "NetworkManager" (rancher/rke2#786): the canal (Calico +
    # flannel) file unmanaged-devices=interface-name:cali*;interface-name:flannel*; the
    # bridge flannel's CNI config names is cni0.
    "flannel": {
        "patterns": ["flannel*", "cni0", "veth*"],
        "examples": {"flannel.1": "vxlan", "cni0": "bridge", "veth1a2b3c4d": "veth"},
        "source": "RKE2's docs, Known issues: NetworkManager (rancher/rke2#786); flannel's kube-flannel.yml (cni0)",
    },
    # docs.cilium.io "System requirements": systemd-networkd >= 245 removes Cilium's
    # routing policy rules (cilium/cilium#18706, flatcar/Flatcar#620); Cilium's own
    # interfaces are cilium_host, cilium_net, cilium_vxlan and the pods' lxc*.
    "cilium": {
        "patterns": ["cilium_*", "lxc*"],
        "examples": {"cilium_host": "veth", "cilium_vxlan": "vxlan", "lxc1a2b3c4d5e6": "veth"},
        "source": "Cilium's docs, System requirements (systemd-networkd); cilium/cilium#18706",
    },
}

# kube-apiserver's --service-node-port-range default (pkg/kubeapiserver/options
# DefaultServiceNodePortRange: 30000-32767).
NODE_PORT_RANGE = (30000, 32767)
