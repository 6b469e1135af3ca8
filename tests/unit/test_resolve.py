"""
Requirements resolution: the distribution's table, extras, OS family, OS
release, pillar, arguments, in RESOLUTION_ORDER, a later layer winning.

The expected sets are written here from each project's own behaviour, not read from
the module's tables (kubeadm's install docs and preflight, RKE2's systemd units, K3s'
pkg/agent/syssetup, MicroK8s' 10-microk8s.conf, the kubelet's protectKernelDefaults):
kubeadm does nothing itself (overlay, br_netfilter, ip_forward and the two
bridge keys are the operator's job; the kubelet refuses swap); RKE2 modprobes
overlay and br_netfilter; K3s also loads nf_conntrack; MicroK8s raises inotify
and aio limits as floors. kubelet's protectKernelDefaults compares exactly.
"""

import copy

import pytest

from _modules.k8snode import resolve as resolve_module
from _modules.k8snode import tables

CORE_MODULES = {"overlay", "br_netfilter"}
BRIDGE = {"net.bridge.bridge-nf-call-iptables": "1", "net.bridge.bridge-nf-call-ip6tables": "1"}
CORE_SYSCTLS = {"net.ipv4.ip_forward": "1", **BRIDGE}

EXPECTED = {
    "kubeadm": {"modules": CORE_MODULES, "sysctls": CORE_SYSCTLS, "floors": {}, "swap": "off"},
    "rke2": {"modules": CORE_MODULES, "sysctls": CORE_SYSCTLS, "floors": {}, "swap": "warn"},
    "k3s": {"modules": CORE_MODULES | {"nf_conntrack"}, "sysctls": CORE_SYSCTLS, "floors": {}, "swap": "warn"},
    "microk8s": {
        "modules": CORE_MODULES | {"nf_conntrack"},
        "sysctls": CORE_SYSCTLS,
        "floors": {
            "fs.inotify.max_user_instances": "1024",
            "fs.inotify.max_user_watches": "1048576",
            "fs.aio-max-nr": "1048576",
        },
        "swap": "warn",
    },
}

OS_TREES = {
    "Debian": lambda tree: tree.debian(12, sysctl_conf=""),
    "RedHat": lambda tree: tree.redhat(),
    "Suse": lambda tree: tree.suse(),
}


def stage_of(source):
    return source.split(":", 1)[0]


@pytest.mark.parametrize("family", sorted(OS_TREES))
@pytest.mark.parametrize("distribution", sorted(EXPECTED))
def test_distribution_per_os_family(k8snode, tree, distribution, family):
    OS_TREES[family](tree)
    resolved = k8snode.requirements(distribution, root=tree.path)
    expected = EXPECTED[distribution]

    assert resolved["distribution"] == distribution
    assert resolved["os_family"] == family
    # kubeadm's kube-proxy needs nf_conntrack at start (kubernetes/kops#17968): a rule of
    # its own, not the distribution's table.
    conntrack_rule = distribution == "kubeadm"
    modules = {name: spec for name, spec in resolved["modules"].items() if spec["source"] != "kube_proxy:conntrack"}
    assert ("nf_conntrack" in resolved["modules"] and "nf_conntrack" not in modules) is conntrack_rule
    assert set(modules) == expected["modules"]
    for spec in modules.values():
        assert spec["required"] is True
        assert spec["source"] == f"distribution:{distribution}"
    if "nf_conntrack" in expected["modules"]:
        assert resolved["modules"]["nf_conntrack"]["alternatives"] == ["nf_conntrack", "nf_conntrack_ipv4"]

    wanted = {**expected["sysctls"], **expected["floors"]}
    assert {key: spec["value"] for key, spec in resolved["sysctls"].items()} == wanted
    for key, spec in resolved["sysctls"].items():
        assert spec["compare"] == ("min" if key in expected["floors"] else "exact")
        assert spec["source"] == f"distribution:{distribution}"
        assert spec["needs_module"] == ("br_netfilter" if key in BRIDGE else None)
    assert resolved["swap"] == {"policy": expected["swap"], "source": f"distribution:{distribution}"}

    assert resolved["files"] == {
        "modules_load": {"path": "/etc/modules-load.d/k8snode.conf", "source": "defaults"},
        "sysctl": {"path": "/etc/sysctl.d/99-k8snode.conf", "source": "defaults"},
    }
    order = [f"distribution:{distribution}", f"os_family:{family}", "pillar", "arguments"]
    assert resolved["order"] == order + (["kube_proxy:conntrack"] if conntrack_rule else [])


def test_os_family_boot_data_and_hints(k8snode, make_tree):
    debian = k8snode.requirements(root=make_tree("d").debian(12).path)
    # reads_etc_sysctl_conf: None, decided by the host's sysctl applier, not the OS family.
    assert debian["boot"] == {"reads_etc_sysctl_conf": None, "etc_modules": "/etc/modules"}
    assert debian["hints"] == {}
    assert debian["os"] == "debian-12"

    trixie = k8snode.requirements(root=make_tree("t").debian(13, sysctl_link=False).path)
    assert trixie["boot"] == {"reads_etc_sysctl_conf": None, "etc_modules": "/etc/modules"}
    assert trixie["order"] == [
        "distribution:kubeadm",
        "os_family:Debian",
        "pillar",
        "arguments",
        "kube_proxy:conntrack",
    ]

    rhel = k8snode.requirements(root=make_tree("r").redhat(os_id="rhel", version="10.0").path)
    assert rhel["os_family"] == "RedHat"
    assert rhel["os"] == "rhel-10"
    assert rhel["boot"] == {"reads_etc_sysctl_conf": None, "etc_modules": None}
    assert "kernel-modules-extra" in rhel["hints"]["br_netfilter"]
    assert "kernel-modules-extra" in rhel["hints"]["ip_vs"]

    suse = k8snode.requirements(root=make_tree("s").suse().path)
    assert suse["os_family"] == "Suse"
    assert suse["boot"]["etc_modules"] is None
    assert "kernel-default-base" in suse["hints"]["br_netfilter"]


@pytest.mark.parametrize(
    ("os_release", "family"),
    [
        ({"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "24.04"}, "Debian"),
        ({"ID": "almalinux", "ID_LIKE": "rhel centos fedora", "VERSION_ID": "9.4"}, "RedHat"),
        ({"ID": "fedora", "VERSION_ID": "41"}, "RedHat"),
        ({"ID": "sles", "ID_LIKE": "suse", "VERSION_ID": "15.6"}, "Suse"),
        ({"ID": "opensuse-tumbleweed", "ID_LIKE": "opensuse suse", "VERSION_ID": "20250101"}, "Suse"),
        ({"ID": "linuxmint", "ID_LIKE": "ubuntu debian", "VERSION_ID": "22"}, "Debian"),
        ({"ID": "arch"}, "unknown"),
    ],
)
def test_os_family_detection_from_os_release(k8snode, tree, os_release, family):
    tree.os_release(**os_release)
    assert k8snode.requirements(root=tree.path)["os_family"] == family


def test_usr_lib_os_release_fallback(k8snode, tree):
    tree.write("usr/lib/os-release", 'ID=rocky\nVERSION_ID="9.4"\n')
    resolved = k8snode.requirements(root=tree.path)
    assert (resolved["os_family"], resolved["os"]) == ("RedHat", "rocky-9")


def test_no_pillar_means_kubeadm(k8snode, tree):
    tree.redhat()
    resolved = k8snode.requirements(root=tree.path)
    assert resolved["distribution"] == "kubeadm"
    assert resolved["swap"]["policy"] == "off"


def test_minion_pillar_is_used(k8snode, tree):
    tree.redhat()
    k8snode.__pillar__ = {"k8snode": {"distribution": "microk8s", "extras": ["ipv6"]}}
    resolved = k8snode.requirements(root=tree.path)
    assert resolved["distribution"] == "microk8s"
    assert resolved["sysctls"]["net.ipv6.conf.all.forwarding"]["source"] == "extras:ipv6"
    # An explicit pillar= replaces the minion's pillar.
    assert k8snode.requirements(root=tree.path, pillar={})["distribution"] == "kubeadm"


def test_pillar_distribution_and_arguments_override(k8snode, tree):
    tree.redhat()
    assert k8snode.requirements(root=tree.path, pillar={"distribution": "k3s"})["distribution"] == "k3s"
    assert k8snode.requirements("rke2", root=tree.path, pillar={"distribution": "k3s"})["distribution"] == "rke2"
    assert (
        k8snode.requirements(root=tree.path, pillar={"distribution": "k3s"}, distribution="microk8s")["distribution"]
        == "microk8s"
    )


def test_pillar_adds_drops_and_changes(k8snode, tree):
    tree.debian(12)
    pillar = {
        "modules": {
            "br_netfilter": False,
            "ip_vs": {},
            "veth": True,
            "nf_conntrack": {"alternatives": ["nf_conntrack"]},
        },
        "sysctls": {
            "net.bridge.bridge-nf-call-ip6tables": False,
            "net.ipv4.ip_forward": {"required": False},
            "vm.max_map_count": 262144,
            "net.ipv4.ip_local_port_range": "32768   60999",
            "fs.inotify.max_user_watches": {"value": 524288, "compare": "min"},
        },
        "files": {"sysctl": "/etc/sysctl.d/zz-k8snode.conf"},
        "swap": "warn",
    }
    resolved = k8snode.requirements(root=tree.path, pillar=pillar)
    assert set(resolved["modules"]) == {"overlay", "ip_vs", "veth", "nf_conntrack"}
    assert resolved["modules"]["ip_vs"] == {"alternatives": ["ip_vs"], "required": True, "source": "pillar"}
    assert resolved["modules"]["overlay"]["source"] == "distribution:kubeadm"
    assert resolved["modules"]["nf_conntrack"]["alternatives"] == ["nf_conntrack"]

    sysctls = resolved["sysctls"]
    assert "net.bridge.bridge-nf-call-ip6tables" not in sysctls
    # Only `required` changed: the value stays the distribution's.
    assert sysctls["net.ipv4.ip_forward"] == {
        "value": "1",
        "compare": "exact",
        "required": False,
        "needs_module": None,
        "source": "pillar",
    }
    assert sysctls["vm.max_map_count"]["value"] == "262144"
    assert sysctls["net.ipv4.ip_local_port_range"]["value"] == "32768 60999"
    assert sysctls["fs.inotify.max_user_watches"]["compare"] == "min"
    assert sysctls["net.bridge.bridge-nf-call-iptables"]["source"] == "distribution:kubeadm"
    assert resolved["files"]["sysctl"] == {"path": "/etc/sysctl.d/zz-k8snode.conf", "source": "pillar"}
    assert resolved["files"]["modules_load"]["source"] == "defaults"
    assert resolved["swap"] == {"policy": "warn", "source": "pillar"}


def test_arguments_override_pillar(k8snode, tree):
    tree.redhat()
    resolved = k8snode.requirements(
        root=tree.path,
        pillar={"sysctls": {"vm.max_map_count": 262144}, "swap": "warn", "files": {"sysctl": "/etc/sysctl.d/a.conf"}},
        sysctls={"vm.max_map_count": 524288},
        swap="ignore",
        files={"sysctl": "/etc/sysctl.d/b.conf"},
    )
    assert resolved["sysctls"]["vm.max_map_count"]["value"] == "524288"
    assert resolved["sysctls"]["vm.max_map_count"]["source"] == "arguments"
    assert resolved["swap"] == {"policy": "ignore", "source": "arguments"}
    assert resolved["files"]["sysctl"] == {"path": "/etc/sysctl.d/b.conf", "source": "arguments"}


def test_salt_private_kwargs_are_ignored(k8snode, tree):
    tree.redhat()
    resolved = k8snode.requirements(root=tree.path, __pub_fun="k8snode.requirements", __pub_jid="1")
    assert resolved["distribution"] == "kubeadm"


def test_extras(k8snode, tree):
    tree.redhat()
    resolved = k8snode.requirements(
        root=tree.path, pillar={"extras": ["ipvs"]}, extras=["ipvs", "protect_kernel_defaults", "max_map_count"]
    )
    assert resolved["extras"] == ["ipvs", "protect_kernel_defaults", "max_map_count"]
    for name in ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh"):
        assert resolved["modules"][name]["source"] == "extras:ipvs"
    assert resolved["modules"]["nf_conntrack"]["alternatives"] == ["nf_conntrack", "nf_conntrack_ipv4"]
    kubelet = {
        "vm.overcommit_memory": "1",
        "vm.panic_on_oom": "0",
        "kernel.panic": "10",
        "kernel.panic_on_oops": "1",
        "kernel.keys.root_maxkeys": "1000000",
        "kernel.keys.root_maxbytes": "25000000",
    }
    for key, value in kubelet.items():
        spec = resolved["sysctls"][key]
        assert spec["value"] == value
        assert spec["source"] == "extras:protect_kernel_defaults"
    assert resolved["sysctls"]["vm.max_map_count"] == {
        "value": "262144",
        "compare": "min",
        "required": True,
        "needs_module": None,
        "source": "extras:max_map_count",
    }
    assert resolved["order"] == [
        "distribution:kubeadm",
        "extras:ipvs",
        "extras:protect_kernel_defaults",
        "extras:max_map_count",
        "os_family:RedHat",
        "pillar",
        "arguments",
    ]


def test_protect_kernel_defaults_is_exact_like_the_kubelet(k8snode, tree):
    """kubelet's setupKernelTunables errors on ``val != expected`` for all six keys, higher or not."""
    tree.redhat().modular(loaded=["overlay", "br_netfilter"]).kernel_defaults(
        {"kernel.keys.root_maxkeys": 2000000, "vm.overcommit_memory": 1, "kernel.panic": 10, "kernel.panic_on_oops": 1}
    )
    tree.sysctl_d(
        "90-kubelet.conf",
        "vm.overcommit_memory = 1\nvm.panic_on_oom = 0\nkernel.panic = 10\nkernel.panic_on_oops = 1\n"
        "kernel.keys.root_maxkeys = 2000000\nkernel.keys.root_maxbytes = 25000000\n",
    )
    result = k8snode.audit(root=tree.path, extras=["protect_kernel_defaults"])
    check = result["checks"]["sysctl:kernel.keys.root_maxkeys"]
    assert check["status"] == "fail", check
    assert check["expected"] == "1000000"
    assert result["checks"]["sysctl:kernel.keys.root_maxbytes"]["status"] == "ok"
    assert result["checks"]["sysctl:vm.overcommit_memory"]["status"] == "ok"


def test_later_extra_wins_over_distribution(k8snode, tree):
    tree.redhat()
    resolved = k8snode.requirements("microk8s", root=tree.path, extras=["inotify"])
    spec = resolved["sysctls"]["fs.inotify.max_user_instances"]
    assert (spec["value"], spec["compare"], spec["source"]) == ("8192", "min", "extras:inotify")
    assert resolved["sysctls"]["fs.aio-max-nr"]["source"] == "distribution:microk8s"


def test_order_follows_resolution_order(k8snode, tree):
    tree.debian(13, sysctl_link=False)
    resolved = k8snode.requirements(
        "k3s",
        root=tree.path,
        pillar={"extras": ["ipv6", "inotify"], "cni": "flannel"},
        extras=["max_map_count"],
        kube_proxy_mode="nftables",
    )
    stages = [stage_of(source) for source in resolved["order"]]
    # No OS release layer applies (tables.OS_RELEASES is empty since the boot model is detected).
    assert set(stages) == set(tables.RESOLUTION_ORDER) - {"os_release"}
    positions = [tables.RESOLUTION_ORDER.index(stage) for stage in stages]
    assert positions == sorted(positions)
    assert resolved["order"][1:6] == [
        "cni:flannel",
        "kube_proxy_mode:nftables",
        "extras:ipv6",
        "extras:inotify",
        "extras:max_map_count",
    ]


def test_resolution_does_not_mutate_the_tables(k8snode, tree):
    tree.redhat()
    before = copy.deepcopy((tables.DISTRIBUTIONS, tables.EXTRAS, tables.OS_FAMILIES, tables.DEFAULTS))
    k8snode.requirements(
        "k3s",
        root=tree.path,
        pillar={"modules": {"nf_conntrack": {"required": False}}, "sysctls": {"net.ipv4.ip_forward": 0}},
        extras=["ipvs"],
    )
    after = (tables.DISTRIBUTIONS, tables.EXTRAS, tables.OS_FAMILIES, tables.DEFAULTS)
    assert after == before
    assert k8snode.requirements("k3s", root=tree.path)["sysctls"]["net.ipv4.ip_forward"]["value"] == "1"


def test_optional_check_fails_as_warn_and_keeps_ready(k8snode, tree):
    tree.redhat().modular(loaded=["overlay", "nf_conntrack"]).kernel_defaults().swaps()
    tree.modules_load("k8s.conf", ["overlay", "nf_conntrack"])
    tree.sysctl_d("99-kubernetes.conf", "net.ipv4.ip_forward = 1\n")
    tree.sysctl("net.ipv4.ip_forward", 1)
    pillar = {
        "modules": {"br_netfilter": {"required": False}},
        "sysctls": {
            "net.bridge.bridge-nf-call-iptables": {"required": False},
            "net.bridge.bridge-nf-call-ip6tables": {"required": False},
        },
    }
    strict = k8snode.audit(root=tree.path)
    assert strict["ready"] is False
    assert strict["checks"]["module:br_netfilter"]["status"] == "fail"

    result = k8snode.audit(root=tree.path, pillar=pillar)
    br = result["checks"]["module:br_netfilter"]
    assert (br["status"], br["required"]) == ("warn", False)
    assert result["checks"]["sysctl:net.bridge.bridge-nf-call-iptables"]["status"] == "warn"
    assert "module:br_netfilter" not in result["failing"]
    assert result["ready"] is True
    assert result["summary"]["warn"] >= 3


@pytest.mark.parametrize(
    ("grains", "layer"),
    [
        ({"os_family": "Debian", "os": "Debian", "osmajorrelease": 13}, True),
        ({"os_family": "Debian", "os": "Debian", "osmajorrelease": 12}, False),
        ({"os_family": "Debian", "os": "Ubuntu", "osmajorrelease": 24}, False),
    ],
)
def test_real_root_takes_os_identity_from_grains(k8snode, monkeypatch, grains, layer):
    """On / the grains say which OS this is (resolution reads no file for it)."""
    # The kubelet's files under / are not this test's business (and the unit guard forbids /).
    monkeypatch.setattr(k8snode, "_node_reader", lambda root: resolve_module._no_node)
    k8snode.__grains__ = grains
    resolved = k8snode.requirements(root="/", pillar={})
    assert resolved["os_family"] == "Debian"
    assert resolved["os"] == f"{grains['os'].lower()}-{grains['osmajorrelease']}"
    assert not any(source.startswith("os_release:") for source in resolved["order"])
    assert resolved["boot"]["reads_etc_sysctl_conf"] is None


def test_virtual_only_on_linux(k8snode):
    k8snode.__grains__ = {"kernel": "Linux"}
    assert k8snode.__virtual__() == "k8snode"
    k8snode.__grains__ = {"kernel": "Windows"}
    loaded, reason = k8snode.__virtual__()
    assert loaded is False
    assert "Linux" in reason


def test_the_pillar_example_is_accepted_as_it_is_written():
    """pillar/pillar.example documents every key: each one it sets resolves, none is refused."""
    from pathlib import Path

    import yaml

    example = yaml.safe_load((Path(__file__).parents[2] / "pillar/pillar.example").read_text())["k8snode"]
    example.pop("drift")  # the beacon's settings, not requirements (k8snode.requirements ignores them)
    identity = {"os_family": "Debian", "os": "debian", "major": 12, "source": "test"}
    resolved = resolve_module.resolve(None, example, {}, identity)
    assert resolved["distribution"] == "kubeadm"
    assert resolved["node_port_range"] == (30000, 32767)
    assert resolved["unmanage_plugin_interfaces"] is False
