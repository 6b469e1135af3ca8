"""The audit as Prometheus metrics: parsed with Prometheus' own parser, written atomically."""

import os

import pytest
from prometheus_client.parser import text_string_to_metric_families
from salt.exceptions import SaltInvocationError

from _modules.k8snode import prometheus as metrics


def _families(text):
    return {family.name: family for family in text_string_to_metric_families(text)}


def _by_check(family):
    return {sample.labels["check"]: sample.value for sample in family.samples}


def _prepared(tree):
    tree.debian().prepared_kubeadm()
    return tree


def test_metrics_parse_and_say_ready(k8snode, tree):
    _prepared(tree)
    families = _families(k8snode.metrics(root=tree.path))
    assert families["k8snode_ready"].samples[0].value == 1
    assert families["k8snode_ready"].type == "gauge"
    assert _by_check(families["k8snode_check_ok"])["sysctl:net.ipv4.ip_forward"] == 1
    (info,) = families["k8snode_info"].samples
    assert info.value == 1
    assert info.labels["distribution"] == "kubeadm" and info.labels["os"] == "debian-12"
    assert families["k8snode_audit_timestamp_seconds"].samples[0].value > 1.7e9


def test_lost_at_reboot_is_live_ok_and_boot_not_ok(k8snode, tree):
    _prepared(tree)
    tree.sysctl_d("zz-local.conf", "net.ipv4.ip_forward = 0\n")
    families = _families(k8snode.metrics(root=tree.path))
    check = "sysctl:net.ipv4.ip_forward"
    assert _by_check(families["k8snode_check_ok"])[check] == 0
    assert _by_check(families["k8snode_check_live_ok"])[check] == 1
    assert _by_check(families["k8snode_check_boot_ok"])[check] == 0
    assert families["k8snode_ready"].samples[0].value == 0


def test_live_drift_is_live_not_ok_and_boot_ok(k8snode, tree):
    _prepared(tree)
    tree.sysctl("net.ipv4.ip_forward", 0)
    families = _families(k8snode.metrics(root=tree.path))
    check = "sysctl:net.ipv4.ip_forward"
    assert _by_check(families["k8snode_check_live_ok"])[check] == 0
    assert _by_check(families["k8snode_check_boot_ok"])[check] == 1


def test_module_not_persisted_and_swap_sides(k8snode, tree):
    _prepared(tree)
    tree.remove("etc/modules-load.d/k8s.conf")
    tree.swaps("/swapfile")
    families = _families(k8snode.metrics(root=tree.path))
    live, boot = _by_check(families["k8snode_check_live_ok"]), _by_check(families["k8snode_check_boot_ok"])
    assert (live["module:br_netfilter"], boot["module:br_netfilter"]) == (1, 0)
    assert (live["swap"], boot["swap"]) == (0, 1)


@pytest.mark.parametrize("value", ['a"b', "a\\b", "a\nb", "plain"])
def test_label_values_are_escaped_so_the_parser_reads_them_back(value):
    audit = {
        "ready": False,
        "distribution": value,
        "os": "debian-12",
        "os_family": "Debian",
        "kernel": "6.1",
        "checks": {},
    }
    families = _families(metrics.render(audit, {"sysctls": {}}, 1.0))
    assert families["k8snode_info"].samples[0].labels["distribution"] == value


def test_every_family_has_help_and_type(k8snode, tree):
    _prepared(tree)
    text = k8snode.metrics(root=tree.path)
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    helps = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    assert names == helps
    assert all(name.startswith("k8snode_") for name in names)
    samples = [line.split("{")[0].split()[0] for line in text.splitlines() if not line.startswith("#")]
    assert set(samples) <= names


def test_the_directory_comes_from_config_then_pillar_then_the_default():
    assert metrics.configured_directory({}, {}) == "/var/lib/prometheus/node-exporter"
    assert metrics.configured_directory({}, {"drift": {"textfile_directory": "/srv/tf"}}) == "/srv/tf"
    both = metrics.configured_directory(
        {"k8snode_textfile_directory": "/opt/tf"}, {"drift": {"textfile_directory": "/x"}}
    )
    assert both == "/opt/tf"


@pytest.mark.parametrize("bad", ["relative/dir", "/a/../etc", "/a/", 5, "/a\0b"])
def test_a_bad_directory_setting_is_refused_naming_it(bad):
    with pytest.raises(SaltInvocationError, match="textfile_directory"):
        metrics.configured_directory({}, {"drift": {"textfile_directory": bad}})


def test_write_is_atomic_in_place_and_needs_the_directory(tmp_path):
    target = tmp_path / "textfile"
    with pytest.raises(SaltInvocationError, match="existing directory"):
        metrics.write("k8snode_ready 1\n", str(target))
    assert not target.exists()
    target.mkdir()
    path = metrics.write("k8snode_ready 1\n", str(target))
    assert path == str(target / "k8snode.prom")
    assert (target / "k8snode.prom").read_text() == "k8snode_ready 1\n"
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert os.listdir(target) == ["k8snode.prom"]


def test_write_metrics_writes_only_the_configured_file(k8snode, tree, tmp_path, monkeypatch):
    directory = tmp_path / "tf"
    directory.mkdir()
    monkeypatch.setattr(k8snode, "__opts__", {"k8snode_textfile_directory": str(directory)}, raising=False)
    monkeypatch.setattr(k8snode, "_metrics_text", lambda *args: ({"ready": True, "failing": []}, "k8snode_ready 1\n"))
    assert k8snode.write_metrics() == {"path": str(directory / "k8snode.prom"), "ready": True, "failing": []}
    assert (directory / "k8snode.prom").read_text() == "k8snode_ready 1\n"


def test_the_drift_pillar_does_not_disturb_the_requirements(k8snode, tree):
    _prepared(tree)
    k8snode.__pillar__ = {"k8snode": {"distribution": "k3s", "drift": {"beacon": True, "heal": True}}}
    assert k8snode.requirements(root=tree.path)["distribution"] == "k3s"
    assert k8snode.audit(root=tree.path)["distribution"] == "k3s"
