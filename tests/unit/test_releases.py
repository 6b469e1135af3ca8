"""
Verdicts by Kubernetes release and by the kubelet's own settings.

The expected values below are written from the upstream sources, not from
``releases.py``:

* kubernetes/kubernetes#126031 (KEP-4569, 1.31): ``failCgroupV1`` added, default false;
  cgroup v1 in maintenance mode from 1.31 (kubeadm warns).
* kubernetes/kubernetes#134298 (KEP-5573, 1.35): ``failCgroupV1`` defaults to true;
  pkg/kubelet/apis/config/validation/validation_linux.go: "kubelet is configured to not
  run on a host using cgroup v1".
* pkg/kubelet/apis/config/v1beta1/defaults.go: ``FailSwapOn = true``;
  pkg/kubelet/cm/container_manager_linux.go: "running with swap on is not supported".
* kubernetes/kubernetes#123738 (1.30), cmd/kubelet/app/server.go: LimitedSwap "is only
  supported with cgroupv2"; pkg/util/kernel/constants.go: TmpfsNoswapSupportKernelVersion 6.4.
* k3s (fail-swap-on=false) and MicroK8s (default-args/kubelet: --fail-swap-on=false) run
  the kubelet with swap allowed.
* kubernetes/kubernetes#123464 (kubeadm 1.30): the bridge-nf-call checks are gone because
  routed plugins (Calico, Cilium) do not need them.
* kubernetes/system-validators: v1.9.x (kubeadm 1.32, 1.33) accepts 4.19 and later only
  (an error below); v1.10.1 (kubeadm 1.34) accepts 5.4, 5.10, 5.15 and >= 6 and only warns
  for any other kernel.
* KEP-5495 / kubernetes/kubernetes#134539: kube-proxy's IPVS mode deprecated in 1.35.
* KEP-4033: containerd >= 2.0 has RuntimeConfig; kubeadm 1.35 warns (#134906).
* cmd/kubeadm/app/preflight/checks_linux.go: conntrack below 1.32 only (#126952); losetup
  added and nsenter dropped in 1.33 (#129450).
"""

import pytest
from salt.exceptions import SaltInvocationError

from _modules.k8snode import kubelet


def cgroup_v1_node(tree):
    """A Debian 12 node prepared for kubeadm whose /sys/fs/cgroup is cgroup v1."""
    tree.debian(12).fresh_node()
    tree.mounts("v1")
    return tree


def cgroup_v2_node(tree, controllers=None):
    tree.debian(12).fresh_node()
    tree.mounts("cgroup2")
    if controllers is None:
        tree.cgroup_controllers()
    else:
        tree.cgroup_controllers(controllers)
    return tree


# --------------------------------------------------------------------- the release


@pytest.mark.parametrize(
    ("given", "release"),
    [("1.35", "1.35"), ("v1.33.4", "1.33"), ("1.34.0-1.1", "1.34"), (1.35, "1.35"), ("1.40", "1.40")],
)
def test_the_release_from_arguments(k8snode, tree, given, release):
    tree.debian(12).fresh_node()
    resolved = k8snode.requirements(root=tree.path, kubernetes_version=given)
    assert resolved["kubernetes"]["version"] == release
    assert resolved["kubernetes"]["source"] == "arguments"
    assert resolved["kubernetes"]["assumed"] is None


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (1.3, "quote it"),  # YAML reads an unquoted 1.30 as 1.3
        ("1.19", "1.20 or later"),
        ("2.0", "major.minor"),
        ("latest", "major.minor"),
        (True, "major.minor"),
        ("1.35; rm -rf /", "major.minor"),
    ],
)
def test_a_malformed_release_is_an_error_naming_it(k8snode, tree, given, said):
    tree.debian(12).fresh_node()
    with pytest.raises(SaltInvocationError) as error:
        k8snode.audit(root=tree.path, pillar={"kubernetes_version": given})
    assert repr(given) in str(error.value)
    assert "pillar k8snode" in str(error.value)
    assert said in str(error.value)


def test_the_release_installed_by_dpkg(k8snode, tree):
    tree.debian(12).fresh_node()
    tree.dpkg_installed(kubelet="1.33.4-1.1", containerd="1.6.20~ds1-1")
    resolved = k8snode.requirements(root=tree.path)
    assert resolved["kubernetes"]["version"] == "1.33"
    assert resolved["kubernetes"]["source"] == "/var/lib/dpkg/status: kubelet 1.33.4-1.1"
    # The pillar wins over the host.
    assert k8snode.requirements(root=tree.path, pillar={"kubernetes_version": "1.35"})["kubernetes"]["source"] == (
        "pillar k8snode"
    )


def test_the_release_rke2_unpacked(k8snode, tree):
    tree.debian(12).fresh_node()
    tree.write("var/lib/rancher/rke2/data/v1.34.2-rke2r1-0123456789ab/bin/.keep", "")
    assert k8snode.requirements("rke2", root=tree.path)["kubernetes"]["version"] == "1.34"
    # Another distribution's kubelet says nothing of this one's.
    assert k8snode.requirements("kubeadm", root=tree.path)["kubernetes"]["assumed"]


def test_the_release_of_the_microk8s_snap(k8snode, tree):
    tree.debian(12).fresh_node()
    tree.write("snap/microk8s/current/meta/snap.yaml", "name: microk8s\nversion: v1.36.1\n")
    assert k8snode.requirements("microk8s", root=tree.path)["kubernetes"]["version"] == "1.36"


def test_no_kubelet_and_no_pillar_assumes_the_newest_release_and_says_so(k8snode, tree):
    tree.debian(12).fresh_node()
    report = k8snode.audit(root=tree.path)
    newest = report["kubernetes"]["version"]
    assert report["kubernetes"]["assumed"] == (
        f"assumed {newest}: no kubeadm kubelet found on the host, no pillar k8snode:kubernetes_version"
    )
    assert f"assumed {newest}" in report["checks"]["kubernetes"]["detail"]
    # December 2026: 1.37 is out (kubernetes/website#55932).
    assert tuple(map(int, newest.split("."))) >= (1, 37)


def test_a_release_past_the_tables_keeps_the_newest_rules_and_says_they_may_be_stale(k8snode, tree):
    cgroup_v1_node(tree)
    report = k8snode.audit(root=tree.path, kubernetes_version="1.45")
    assert report["kubernetes"]["stale"].startswith("rules may be stale for 1.45")
    assert report["checks"]["kubernetes"]["status"] == "warn"
    assert report["checks"]["cgroup"]["status"] == "fail"  # failCgroupV1 still true


# -------------------------------------------------------------------- cgroup v1


@pytest.mark.parametrize(
    ("release", "status", "ready"),
    [
        ("1.30", "ok", True),  # before maintenance mode
        ("1.31", "warn", True),  # maintenance mode, failCgroupV1 default false
        ("1.34", "warn", True),
        ("1.35", "fail", False),  # failCgroupV1 default true
        ("1.37", "fail", False),
    ],
)
def test_cgroup_v1_by_release(k8snode, tree, release, status, ready):
    cgroup_v1_node(tree)
    k8snode._prepare(root=tree.path)
    report = k8snode.audit(root=tree.path, kubernetes_version=release)
    assert report["checks"]["cgroup"]["status"] == status
    assert report["ready"] is ready, report["failing"]


def test_cgroup_v1_fails_from_135_naming_the_kubelets_default(k8snode, tree):
    cgroup_v1_node(tree)
    check = k8snode.audit(root=tree.path, kubernetes_version="1.35")["checks"]["cgroup"]
    assert check["required"] is True
    assert "failCgroupV1 is true" in check["detail"]
    assert (
        "failCgroupV1 is true (the kubelet's 1.35 default: kubernetes/kubernetes#134298, KEP-5573)" in check["detail"]
    )
    assert "kubernetes/kubernetes#134298" in check["detail"]
    assert "k8snode:kubelet:fail_cgroup_v1: false" in check["detail"]


def test_cgroup_v1_with_failcgroupv1_false_in_pillar_is_ready_with_a_warning(k8snode, tree):
    cgroup_v1_node(tree)
    k8snode._prepare(root=tree.path)
    pillar = {"kubernetes_version": "1.35", "kubelet": {"fail_cgroup_v1": False}}
    report = k8snode.audit(root=tree.path, pillar=pillar)
    assert report["ready"] is True, report["failing"]
    assert report["checks"]["cgroup"]["status"] == "warn"
    assert "failCgroupV1 is false (pillar k8snode:kubelet:fail_cgroup_v1)" in report["checks"]["cgroup"]["detail"]


def test_the_nodes_kubelet_config_decides_over_the_pillar(k8snode, tree):
    cgroup_v1_node(tree)
    k8snode._prepare(root=tree.path)
    tree.write("var/lib/kubelet/config.yaml", "kind: KubeletConfiguration\nfailCgroupV1: false\n")
    pillar = {"kubernetes_version": "1.35", "kubelet": {"fail_cgroup_v1": True}}
    report = k8snode.audit(root=tree.path, pillar=pillar)
    assert report["ready"] is True, report["failing"]
    assert "/var/lib/kubelet/config.yaml: failCgroupV1" in report["checks"]["cgroup"]["detail"]


def test_failcgroupv1_true_set_on_a_134_kubelet_fails(k8snode, tree):
    cgroup_v1_node(tree)
    tree.write("var/lib/kubelet/config.yaml", "failCgroupV1: true\n")
    check = k8snode.audit(root=tree.path, kubernetes_version="1.34")["checks"]["cgroup"]
    assert check["status"] == "fail"
    assert "/var/lib/kubelet/config.yaml: failCgroupV1" in check["detail"]


def test_k3s_kubelet_arg_fail_cgroupv1(k8snode, tree):
    cgroup_v1_node(tree)
    tree.write("etc/rancher/k3s/config.yaml", 'kubelet-arg:\n  - "fail-cgroupv1=false"\n')
    check = k8snode.audit("k3s", root=tree.path, kubernetes_version="1.35")["checks"]["cgroup"]
    assert check["status"] == "warn"
    assert "/etc/rancher/k3s/config.yaml: --fail-cgroupv1" in check["detail"]


def test_cgroup_v2_needs_the_kubelets_controllers(k8snode, tree):
    cgroup_v2_node(tree, controllers=("cpuset", "cpu", "io", "pids"))
    check = k8snode.audit(root=tree.path)["checks"]["cgroup"]
    assert check["status"] == "fail"
    assert "memory" in check["detail"]
    cgroup_v2_node(tree)
    assert k8snode.audit(root=tree.path)["checks"]["cgroup"]["status"] == "ok"


# ------------------------------------------------------------------------- swap


def swap_node(tree, cgroup="cgroup2"):
    tree.debian(12).fresh_node()
    tree.mounts(cgroup)
    tree.cgroup_controllers()
    tree.swaps("/swapfile")
    tree.fstab("/swapfile none swap sw 0 0\n")
    return tree


def test_kubeadm_with_swap_and_the_kubelets_default_is_not_ready(k8snode, tree):
    swap_node(tree)
    check = k8snode.audit(root=tree.path, kubernetes_version="1.35")["checks"]["swap"]
    assert check["status"] == "fail"
    assert "failSwapOn is true" in check["detail"]
    assert "defaults.go" in check["detail"]


def test_kubeadm_with_swap_and_failswapon_false_is_ready_and_prepare_keeps_swap(k8snode, tree):
    swap_node(tree)
    tree.write("var/lib/kubelet/config.yaml", "failSwapOn: false\n")
    k8snode._prepare(root=tree.path)
    assert tree.argvs("swapoff") == []
    assert "/swapfile none swap" in tree.read("etc/fstab")
    report = k8snode.audit(root=tree.path, kubernetes_version="1.35")
    assert report["ready"] is True, report["failing"]
    assert report["checks"]["swap"]["status"] == "warn"
    assert "failSwapOn is false (/var/lib/kubelet/config.yaml: failSwapOn)" in report["checks"]["swap"]["detail"]
    assert "swapBehavior NoSwap" in report["checks"]["swap"]["detail"]


def test_kubeadm_flags_override_the_config_file(k8snode, tree):
    swap_node(tree)
    tree.write("var/lib/kubelet/config.yaml", "failSwapOn: true\n")
    tree.write("var/lib/kubelet/kubeadm-flags.env", 'KUBELET_KUBEADM_ARGS="--fail-swap-on=false --v=2"\n')
    check = k8snode.audit(root=tree.path)["checks"]["swap"]
    assert check["status"] == "warn"
    assert "/var/lib/kubelet/kubeadm-flags.env: --fail-swap-on" in check["detail"]


@pytest.mark.parametrize(("release", "status"), [("1.29", "warn"), ("1.30", "fail"), ("1.35", "fail")])
def test_limited_swap_needs_cgroup_v2_from_130(k8snode, tree, release, status):
    swap_node(tree, cgroup="v1")
    tree.write(
        "var/lib/kubelet/config.yaml",
        "failSwapOn: false\nfailCgroupV1: false\nmemorySwap:\n  swapBehavior: LimitedSwap\n",
    )
    check = k8snode.audit(root=tree.path, kubernetes_version=release)["checks"]["swap"]
    assert check["status"] == status


def test_limited_swap_on_a_kernel_below_64_warns_for_memory_backed_volumes(k8snode, tree):
    swap_node(tree)  # Debian 12's 6.1
    tree.write("var/lib/kubelet/config.yaml", "failSwapOn: false\nmemorySwap: {swapBehavior: LimitedSwap}\n")
    check = k8snode.audit(root=tree.path, kubernetes_version="1.35")["checks"]["swap"]
    assert check["status"] == "warn"
    assert "6.4" in check["detail"] and "memory-backed volumes" in check["detail"]


def test_a_swap_policy_off_chosen_in_pillar_still_fails(k8snode, tree):
    swap_node(tree)
    tree.write("var/lib/kubelet/config.yaml", "failSwapOn: false\n")
    check = k8snode.audit(root=tree.path, pillar={"swap": "off"})["checks"]["swap"]
    assert check["status"] == "fail"
    assert "k8snode's swap policy is off (pillar)" in check["detail"]


@pytest.mark.parametrize("distribution", ["k3s", "rke2", "microk8s"])
def test_distributions_that_run_the_kubelet_with_swap_warn(k8snode, tree, distribution):
    swap_node(tree)
    check = k8snode.audit(distribution, root=tree.path)["checks"]["swap"]
    assert check["status"] == "warn"
    assert "failSwapOn is false" in check["detail"]


@pytest.mark.parametrize(
    ("distribution", "path", "text"),
    [
        ("k3s", "etc/rancher/k3s/config.yaml.d/90-swap.yaml", "kubelet-arg+: [fail-swap-on=true]\n"),
        ("microk8s", "var/snap/microk8s/current/args/kubelet", "--fail-swap-on=true\n--cgroup-driver=systemd\n"),
    ],
)
def test_a_distribution_told_to_fail_on_swap_fails(k8snode, tree, distribution, path, text):
    swap_node(tree)
    tree.write(path, text)
    check = k8snode.audit(distribution, root=tree.path)["checks"]["swap"]
    assert check["status"] == "fail"
    assert f"/{path}: --fail-swap-on" in check["detail"]


# ------------------------------------------------------------- kubelet settings


def test_unreadable_kubelet_files_are_said_not_raised(k8snode, tree):
    cgroup_v2_node(tree)
    tree.write("var/lib/kubelet/config.yaml", "failSwapOn: [unclosed\n")
    tree.write("var/lib/kubelet/kubeadm-flags.env", 'KUBELET_KUBEADM_ARGS="--fail-swap-on=maybe"\n')
    check = k8snode.audit(root=tree.path)["checks"]["kubernetes"]
    assert check["status"] == "warn"
    assert "/var/lib/kubelet/config.yaml is not valid YAML" in check["detail"]
    assert "--fail-swap-on is 'maybe'" in check["detail"]


@pytest.mark.parametrize(
    ("kubelet", "said"),
    [
        ({"failSwapOn": False}, "one of cgroup_driver, fail_cgroup_v1"),
        ({"fail_swap_on": "no"}, "true or false"),
        ({"swap_behavior": "UnlimitedSwap"}, "NoSwap, LimitedSwap"),
        ("fail_swap_on", "a mapping"),
    ],
)
def test_bad_kubelet_settings_in_pillar(k8snode, tree, kubelet, said):
    tree.debian(12).fresh_node()
    with pytest.raises(SaltInvocationError) as error:
        k8snode.requirements(root=tree.path, pillar={"kubelet": kubelet})
    assert said in str(error.value)


def test_protect_kernel_defaults_in_the_kubelet_config_requires_its_sysctls(k8snode, tree):
    cgroup_v2_node(tree)
    assert "kernel.panic" not in k8snode.requirements(root=tree.path)["sysctls"]
    tree.write("var/lib/kubelet/config.yaml", "protectKernelDefaults: true\n")
    resolved = k8snode.requirements(root=tree.path)
    assert resolved["sysctls"]["kernel.panic"]["value"] == "10"
    assert resolved["sysctls"]["vm.overcommit_memory"]["required"] is True


def test_a_kubelet_config_named_by_flags_is_read_first(tree):
    tree.write(
        "etc/rancher/rke2/config.yaml", "kubelet-arg:\n- config=/etc/rancher/rke2/kubelet.yaml\n- fail-swap-on=true\n"
    )
    tree.write("etc/rancher/rke2/kubelet.yaml", "failSwapOn: false\nfailCgroupV1: false\n")
    found = kubelet.node_settings(tree.path, "rke2")
    assert found["settings"]["fail_swap_on"] == {
        "value": True,
        "source": "/etc/rancher/rke2/config.yaml: --fail-swap-on",
    }
    assert found["settings"]["fail_cgroup_v1"]["source"] == "/etc/rancher/rke2/kubelet.yaml: failCgroupV1"


# ------------------------------------------------- bridge, kernels, kube-proxy


@pytest.mark.parametrize(("cni", "required"), [("calico", False), ("cilium", False), ("flannel", True), ("none", True)])
def test_bridge_requirements_follow_the_network_plugin(k8snode, tree, cni, required):
    tree.debian(12).fresh_node()
    resolved = k8snode.requirements(root=tree.path, cni=cni)
    assert resolved["modules"]["br_netfilter"]["required"] is required
    assert resolved["sysctls"]["net.bridge.bridge-nf-call-iptables"]["required"] is required


def test_a_user_who_asks_for_the_bridge_with_calico_gets_it(k8snode, tree):
    tree.debian(12).fresh_node()
    pillar = {"cni": "calico", "sysctls": {"net.bridge.bridge-nf-call-iptables": {"required": True}}}
    resolved = k8snode.requirements(root=tree.path, pillar=pillar)
    assert resolved["sysctls"]["net.bridge.bridge-nf-call-iptables"]["required"] is True
    assert resolved["sysctls"]["net.bridge.bridge-nf-call-ip6tables"]["required"] is False


@pytest.mark.parametrize(
    ("release", "kernel", "version_status", "recommended_status"),
    [
        ("1.31", "4.14.0-1", "ok", None),  # validators v1.8: 3.10 and later
        ("1.33", "4.14.0-1", "fail", None),  # v1.9: below 4.19 is an error
        ("1.33", "4.19.0-27-amd64", "ok", None),
        ("1.34", "4.19.0-27-amd64", None, "warn"),  # v1.10.1: no floor, 4.19 not in the list
        ("1.34", "5.8.0-1", None, "warn"),
        ("1.35", "5.10.0-30-amd64", None, "ok"),
        ("1.35", "6.1.0-21-amd64", None, "ok"),
    ],
)
def test_kubeadms_kernel_validation_by_release(k8snode, make_tree, release, kernel, version_status, recommended_status):
    tree = make_tree("node", release=kernel)
    tree.debian(12).fresh_node()
    checks = k8snode.audit(root=tree.path, kubernetes_version=release)["checks"]
    assert checks.get("kernel_version", {}).get("status") == version_status
    assert checks.get("kernel_recommended", {}).get("status") == recommended_status


@pytest.mark.parametrize(("release", "deprecated"), [("1.34", False), ("1.35", True), ("1.37", True)])
def test_ipvs_is_deprecated_from_135(k8snode, tree, release, deprecated):
    tree.debian(12).fresh_node()
    checks = k8snode.audit(root=tree.path, kube_proxy_mode="ipvs", kubernetes_version=release)["checks"]
    assert ("deprecated:kube_proxy_mode:ipvs" in checks) is deprecated


@pytest.mark.parametrize(
    ("release", "containerd", "status"),
    [
        ("1.33", "1.6.20~ds1-1", None),
        ("1.34", "1.6.20~ds1-1", "warn"),
        ("1.35", "1.7.24-1", "warn"),
        ("1.35", "2.0.2-1", "ok"),
    ],
)
def test_containerd_before_2_by_release(k8snode, tree, release, containerd, status):
    tree.debian(12).fresh_node()
    tree.dpkg_installed(containerd=containerd)
    check = k8snode.audit(root=tree.path, kubernetes_version=release)["checks"].get("container_runtime")
    assert (check or {}).get("status") == status


@pytest.mark.parametrize(
    ("release", "wanted", "not_wanted"),
    [
        ("1.31", {"conntrack", "nsenter"}, {"losetup"}),
        ("1.32", {"nsenter"}, {"conntrack"}),
        ("1.33", {"losetup", "cp"}, {"nsenter", "conntrack"}),
    ],
)
def test_kubeadms_preflight_binaries_by_release(k8snode, tree, release, wanted, not_wanted):
    tree.debian(12).fresh_node()
    check = k8snode.audit(root=tree.path, kubernetes_version=release)["checks"]["binaries"]
    assert check["status"] == "warn"
    assert wanted <= set(check["live"])
    assert not (not_wanted & set(check["live"]))
    tree.binaries(*check["live"])
    assert k8snode.audit(root=tree.path, kubernetes_version=release)["checks"]["binaries"]["status"] == "ok"


# ------------------------------------------------------------------ nf_conntrack


@pytest.mark.parametrize(("mode", "wanted"), [("iptables", True), ("ipvs", True), ("nftables", True), ("none", False)])
def test_kubeadms_kube_proxy_needs_nf_conntrack_at_boot(k8snode, tree, mode, wanted):
    """cmd/kube-proxy/app/server_linux.go sets up conntrack in every mode and exits when
    /proc/sys/net/netfilter/nf_conntrack_max is missing (kubernetes/kops#17968)."""
    tree.debian(12).fresh_node()
    modules = k8snode.requirements(root=tree.path, kube_proxy_mode=mode)["modules"]
    assert ("nf_conntrack" in modules) is wanted
    if wanted and mode != "ipvs":
        assert modules["nf_conntrack"]["source"] == "kube_proxy:conntrack"
        assert "kops#17968" in modules["nf_conntrack"]["why"]


def test_a_user_who_drops_nf_conntrack_is_heard(k8snode, tree):
    tree.debian(12).fresh_node()
    resolved = k8snode.requirements(root=tree.path, pillar={"modules": {"nf_conntrack": False}})
    assert "nf_conntrack" not in resolved["modules"]
    assert resolved["dropped_modules"] == ["nf_conntrack"]


def test_a_prepared_kubeadm_node_loads_and_persists_nf_conntrack(k8snode, tree):
    tree.debian(12).fresh_node()
    ret = k8snode._prepare(root=tree.path)
    assert ret["result"] is True, ret["comment"]
    assert ["modprobe", "--", "nf_conntrack"] in tree.argvs("modprobe")
    assert "nf_conntrack" in tree.read("etc/modules-load.d/k8snode.conf").splitlines()
    assert k8snode.audit(root=tree.path)["checks"]["module:nf_conntrack"]["status"] == "ok"


@pytest.mark.parametrize(
    ("kernel", "status"), [("6.1.0-21-amd64", "warn"), ("6.3.0-1", "ok"), ("6.12.0-1-amd64", "ok")]
)
def test_user_namespaces_warn_below_63_only_when_asked_for(k8snode, make_tree, kernel, status):
    """kubernetes.io/docs/concepts/workloads/pods/user-namespaces: Linux 6.3 or later (tmpfs idmap mounts)."""
    tree = make_tree("n", release=kernel)
    tree.debian(12).fresh_node()
    k8snode.__salt__ = {"cmd.run_all": tree.run_all}  # this tree plays the kernel for prepare's modprobe
    assert k8snode._prepare(root=tree.path)["result"] is True
    check = k8snode.audit(root=tree.path, extras=["user_namespaces"])["checks"]["kernel_version"]
    assert check["status"] == status
    assert k8snode.audit(root=tree.path, extras=["user_namespaces"])["ready"] is True
    assert "kernel_version" not in k8snode.audit(root=tree.path, kubernetes_version="1.35")["checks"]


def test_the_container_runtime_from_docker_s_package_comes_first(k8snode, tree):
    """containerd.io (Docker's) is what runs where both are installed (dpkg's status, read once)."""
    tree.debian(12).fresh_node()
    tree.dpkg_installed(**{"containerd": "1.6.20~ds1-1", "containerd.io": "2.0.5-1"})
    check = k8snode.audit(root=tree.path, kubernetes_version="1.35")["checks"]["container_runtime"]
    assert (check["status"], check["live"]) == ("ok", "2.0.5-1")
    assert "/var/lib/dpkg/status: containerd.io 2.0.5-1" in check["detail"]
