"""
Bad input is refused before anything is read or changed: SaltInvocationError
whose message names the bad value and what is accepted. Module names go to
modprobe and sysctl keys become /proc/sys paths, so both are strict.
"""

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from _modules.k8snode import validate

BAD_SETTINGS = [
    # (settings, text the message must contain, text about what is accepted)
    ({"distribution": "openshift"}, "'openshift'", "kubeadm, microk8s, rke2"),
    ({"distribution": ["k3s"]}, "['k3s']", "kubeadm"),
    ({"modules": {"overlay; touch /x": {}}}, "'overlay; touch /x'", "plain module name"),
    ({"modules": {"../x": {}}}, "'../x'", "plain module name"),
    ({"modules": {"nf_conntrack": {"alternatives": ["nf_conntrack", "$(reboot)"]}}}, "'$(reboot)'", "module name"),
    ({"modules": {"nf_conntrack": {"alternatives": "nf_conntrack"}}}, "'nf_conntrack'", "non-empty list"),
    ({"modules": {"overlay": {"required": "yes"}}}, "'yes'", "true or false"),
    ({"modules": {"overlay": {"state": "loaded"}}}, "['state']", "alternatives, required"),
    ({"modules": ["overlay", "br_netfilter"]}, "['overlay', 'br_netfilter']", "a mapping"),
    ({"sysctls": {"../../etc/shadow": 1}}, "'../../etc/shadow'", "net.ipv4.ip_forward"),
    ({"sysctls": {"net.ipv4.ip forward": 1}}, "'net.ipv4.ip forward'", "no '..' or spaces"),
    ({"sysctls": {"net..ipv4.ip_forward": 1}}, "'net..ipv4.ip_forward'", "no '..'"),
    ({"sysctls": {"net/ipv4/../../x": 1}}, "'net/ipv4/../../x'", "no '..'"),
    ({"sysctls": {"net.*.x": 1}}, "'net.*.x'", "two plain leading components"),
    ({"sysctls": {"net.ipv4.conf.*.*": 1}}, "'net.ipv4.conf.*.*'", "a plain last one"),
    ({"sysctls": {"*.ipv4.conf.all.rp_filter": 1}}, "'*.ipv4.conf.all.rp_filter'", "two plain leading"),
    ({"sysctls": {"net.ipv4.conf.[ae]*.rp_filter": 1}}, "rp_filter'", "only '*' and '?' may be wildcards"),
    ({"sysctls": {"net.ipv4.conf.{lxc,eth}*.rp_filter": 1}}, "rp_filter'", "only '*' and '?'"),
    ({"sysctls": {"net.ipv4.conf.lxc\\*.rp_filter": 1}}, "rp_filter'", "only '*' and '?'"),
    ({"sysctls": {"net.ipv4.conf.lxc* x.rp_filter": 1}}, "rp_filter'", "net.ipv4.conf.*.rp_filter"),
    ({"sysctls": {"net.ipv4.ip_forward": "yes"}}, "'yes'", "an integer"),
    ({"sysctls": {"net.ipv4.ip_forward": True}}, "True", "an integer"),
    ({"sysctls": {"net.ipv4.ip_forward": 1.5}}, "1.5", "an integer"),
    ({"sysctls": {"net.ipv4.ip_forward": "1; reboot"}}, "'1; reboot'", "an integer"),
    ({"sysctls": {"net.ipv4.ip_forward": [1]}}, "[1]", "an integer"),
    ({"sysctls": {"net.ipv4.ip_forward": {"value": 1, "compare": "max"}}}, "'max'", "exact, min"),
    ({"sysctls": {"net.ipv4.ip_forward": {"value": 1, "persist": True}}}, "['persist']", "value, compare"),
    ({"sysctls": {"vm.max_map_count": {"compare": "min"}}}, "vm.max_map_count", "a value (new keys need one)"),
    (
        {"sysctls": {"net.ipv4.ip_local_port_range": {"value": "1024 65000", "compare": "min"}}},
        "'1024 65000'",
        "a single integer",
    ),  # fmt: skip
    ({"sysctls": "net.ipv4.ip_forward=1"}, "'net.ipv4.ip_forward=1'", "a mapping"),
    ({"sysctls": {"net.ipv4.ip_forward": {"value": 1, "needs_module": "br netfilter"}}}, "'br netfilter'", "module"),
    ({"swap": "on"}, "'on'", "off, warn, ignore"),
    ({"swap": True}, "True", "off, warn, ignore"),
    ({"files": {"sysctl": "/etc/passwd"}}, "'/etc/passwd'", "/etc/sysctl.d/NAME.conf"),
    ({"files": {"sysctl": "/etc/sysctl.d/../x.conf"}}, "'/etc/sysctl.d/../x.conf'", "/etc/sysctl.d/NAME.conf"),
    ({"files": {"sysctl": "/etc/sysctl.d/k8snode"}}, "'/etc/sysctl.d/k8snode'", "NAME.conf"),
    ({"files": {"sysctl": "etc/sysctl.d/k8snode.conf"}}, "'etc/sysctl.d/k8snode.conf'", "an absolute path"),
    (
        {"files": {"modules_load": "/etc/modules-load.d/.hidden.conf"}},
        "'/etc/modules-load.d/.hidden.conf'",
        "/etc/modules-load.d/NAME.conf",
    ),  # fmt: skip
    ({"files": {"modules_load": "/etc/sysctl.d/x.conf"}}, "'/etc/sysctl.d/x.conf'", "/etc/modules-load.d/"),
    ({"files": {"grub": "/etc/default/grub"}}, "'grub'", "modules_load, sysctl"),
    ({"extras": ["ipvs", "gpu"]}, "'gpu'", "inotify, ipv6, ipvs"),
    ({"extras": "ipvs"}, "'ipvs'", "a list of"),
    ({"extras": [{"ipvs": True}]}, "{'ipvs': True}", "a list of"),
    (
        {"sysctl": {"net.ipv4.ip_forward": 1}},
        "['sysctl']",
        "distribution, kubernetes_version, kubelet, extras, modules, sysctls, swap, files",
    ),
]


def ids(case):
    return repr(case[0])[:60]


@pytest.mark.parametrize(("settings", "bad", "accepted"), BAD_SETTINGS, ids=[ids(c) for c in BAD_SETTINGS])
def test_bad_pillar_is_refused_with_a_clear_message(k8snode, tree, settings, bad, accepted):
    tree.redhat()
    with pytest.raises(SaltInvocationError) as info:
        k8snode.requirements(root=tree.path, pillar=settings)
    message = str(info.value)
    assert bad in message
    assert accepted in message
    if "distribution" not in settings:
        # Where the bad value came from (the distribution's message says "k8snode" only).
        assert "pillar" in message


@pytest.mark.parametrize(("settings", "bad", "accepted"), BAD_SETTINGS, ids=[ids(c) for c in BAD_SETTINGS])
def test_bad_arguments_are_refused_and_prepare_writes_nothing(k8snode, tree, settings, bad, accepted):
    tree.redhat().fresh_node()
    tree.fstab("UUID=2c3d none swap sw 0 0\n").swaps("/dev/vda2")
    before = tree.snapshot()
    for call in (k8snode._prepare, k8snode.audit, k8snode._revert):
        with pytest.raises(SaltInvocationError) as info:
            call(root=tree.path, pillar={}, **settings)
        assert bad in str(info.value)
        assert accepted in str(info.value)
    assert tree.snapshot() == before
    assert tree.calls == []


@pytest.mark.parametrize("name", ["prepare", "revert"])
def test_the_changing_functions_refuse_a_root(k8snode, tree, name):
    """A caller allowed prepare may change this host, not write into a tree of its choice."""
    tree.redhat().fresh_node()
    before = tree.snapshot()
    with pytest.raises(SaltInvocationError, match=r"invalid setting 'root': .*running host only"):
        getattr(k8snode, name)(root=tree.path, pillar={})
    assert tree.snapshot() == before
    assert tree.calls == []


def test_bad_pillar_under_a_good_argument_still_fails(k8snode, tree):
    """Arguments override pillar values, but a broken pillar is reported, not hidden."""
    tree.redhat()
    k8snode.__pillar__ = {"k8snode": {"swap": "sometimes"}}
    with pytest.raises(SaltInvocationError, match="'sometimes'"):
        k8snode.requirements(root=tree.path, swap="off")


def test_pillar_k8snode_must_be_a_mapping(k8snode, tree):
    tree.redhat()
    k8snode.__pillar__ = {"k8snode": ["kubeadm"]}
    with pytest.raises(SaltInvocationError, match="a mapping"):
        k8snode.audit(root=tree.path)


@pytest.mark.parametrize(
    "call",
    [
        lambda m, root: m.module_status("overlay; reboot", root=root),
        lambda m, root: m.module_status("nf_conntrack", root=root, alternatives=["nf_conntrack", "../x"]),
        lambda m, root: m.sysctl_status("../../etc/shadow", root=root),
        lambda m, root: m.sysctl_status("net.ipv4.ip_forward", "on", root=root),
        lambda m, root: m.sysctl_status("net.ipv4.ip_forward", 1, compare="max", root=root),
        lambda m, root: m.requirements("openshift", root=root),
    ],
)
def test_bad_function_arguments(k8snode, tree, call):
    tree.redhat()
    with pytest.raises(SaltInvocationError):
        call(k8snode, tree.path)


@pytest.mark.parametrize(
    "key",
    ["net.ipv4.ip_forward", "net/ipv4/conf/eth0.1/forwarding", "net.ipv4.conf.eth0/1.forwarding", "fs.aio-max-nr",
     "net.ipv6.conf.cali@1.forwarding", "kernel.sched_rt_runtime_us", "net.ipv4.conf.*.rp_filter",
     "net.ipv4.conf.lxc*.rp_filter", "net/ipv4/conf/cilium_*/rp_filter", "net.ipv4.conf.eth?.rp_filter"],
)  # fmt: skip
def test_good_keys_accepted(k8snode, key):
    assert validate.check_sysctl_key(key, "test") == key


@pytest.mark.parametrize(("value", "normal"), [(1, "1"), ("1", "1"), (" 1 ", "1"), ("1024\t65000", "1024 65000"),
                                               (-1, "-1"), ("4096 87380 6291456", "4096 87380 6291456")])  # fmt: skip
def test_good_values_normalised(k8snode, value, normal):
    assert validate.normalize_sysctl_value(value, "test", "k") == normal


def test_lock_held_by_another_run(k8snode, tree):
    import fcntl

    tree.redhat().fresh_node()
    lock = tree.p("run/k8snode.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    before = None
    with open(lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = tree.snapshot()
        with pytest.raises(CommandExecutionError, match="another k8snode run holds the lock"):
            k8snode._prepare(root=tree.path)
        assert tree.snapshot() == before
    assert tree.calls == []


def test_empty_pillar_means_kubeadm(k8snode, tree):
    tree.redhat()
    for empty in ({}, {"k8snode": None}, {"k8snode": {}}):
        k8snode.__pillar__ = empty
        assert k8snode.requirements(root=tree.path)["distribution"] == "kubeadm"


def test_a_huge_pillar_with_one_bad_value_names_it_and_writes_nothing(k8snode, tree):
    tree.redhat().fresh_node()
    sysctls = {f"net.ipv4.conf.eth{index}.rp_filter": 1 for index in range(10_000)}
    sysctls["net.ipv4.conf.eth9999.rp_filter"] = "loose"
    before = tree.snapshot()
    with pytest.raises(SaltInvocationError) as info:
        k8snode._prepare(root=tree.path, pillar={"sysctls": sysctls})
    assert "net.ipv4.conf.eth9999.rp_filter 'loose'" in str(info.value)
    assert tree.snapshot() == before
    assert tree.calls == []


def test_a_huge_valid_pillar_resolves_every_key(k8snode, tree):
    tree.redhat()
    sysctls = {f"net.ipv4.conf.eth{index}.rp_filter": {"value": 1, "required": False} for index in range(10_000)}
    resolved = k8snode.requirements(root=tree.path, pillar={"sysctls": sysctls})
    assert len(resolved["sysctls"]) == 10_000 + 3
    assert resolved["sysctls"]["net.ipv4.conf.eth42.rp_filter"]["source"] == "pillar"
