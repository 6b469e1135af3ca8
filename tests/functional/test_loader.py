"""k8snode through Salt's real loader: what `salt-call` and the state system see."""

import inspect

import pytest
import salt.output
import yaml

from _runners import k8snode as runner
from tests.functional.conftest import REPO

READ_ONLY = {
    "audit",
    "requirements",
    "module_status",
    "sysctl_status",
    "swap_status",
    "effective_boot_sysctls",
    "boot_modules",
    "kernel_facts",
    "metrics",
}
CHANGING = {"prepare", "revert", "write_metrics"}


def test_sys_list_functions_shows_exactly_the_public_api(loaders):
    listed = loaders.modules.sys.list_functions("k8snode")
    assert sorted(listed) == sorted(f"k8snode.{name}" for name in READ_ONLY | CHANGING)
    assert "k8snode.prepared" in loaders.states
    assert "k8snode.absent" in loaders.states


def test_the_module_says_which_functions_are_read_only():
    """The package's own lists match the public set: a new function must be classified."""
    from _modules import k8snode

    assert set(k8snode.READ_ONLY_FUNCTIONS) == READ_ONLY
    assert set(k8snode.CHANGING_FUNCTIONS) == CHANGING


def _read_only_acl():
    config = yaml.safe_load((REPO / "docs" / "master.d" / "k8snode-read-only.conf").read_text())
    return config["publisher_acl"]["auditor"]


def test_the_read_only_grant_allows_the_audit_and_nothing_that_writes(loaders, minion_opts):
    """Salt's own ACL check (the one the master runs for publisher_acl and external_auth)
    with the documented read-only grant: every read-only function passes; prepare,
    revert, states, commands and names that merely start like a read-only one do not."""
    import salt.utils.minions

    check = salt.utils.minions.CkMinions(minion_opts)
    acl = _read_only_acl()
    for name in READ_ONLY:
        assert check.auth_check(acl, f"k8snode.{name}", [], "*"), name
    refused = [f"k8snode.{name}" for name in CHANGING] + [
        "state.apply",
        "state.sls",
        "state.single",
        "cmd.run",
        "saltutil.sync_all",
        "file.write",
        "k8snode.audit_and_fix",
        "k8snodeXaudit",
        "sys.list_functions",
    ]
    for fun in refused:
        assert not check.auth_check(acl, fun, [], "*"), fun
    # Everything the loader exposes under k8snode that is not read-only is refused.
    for fun in loaders.modules.sys.list_functions("k8snode"):
        assert check.auth_check(acl, fun, [], "*") is (fun.split(".", 1)[1] in READ_ONLY), fun


def test_every_public_function_documents_a_cli_example(loaders):
    undocumented = [
        name
        for name in loaders.modules
        if name.startswith("k8snode.") and "CLI Example:" not in (loaders.modules[name].__doc__ or "")
    ]
    assert undocumented == []
    public = [obj for name, obj in inspect.getmembers(runner, inspect.isfunction) if not name.startswith("_")]
    assert public, "the runner has public functions"
    assert all("CLI Example:" in (func.__doc__ or "") for func in public)


def test_pillar_settings_reach_the_requirements_with_their_source(minion_opts):
    from saltfactories.utils.functional import Loaders

    minion_opts["pillar"] = {
        "k8snode": {"distribution": "k3s", "sysctls": {"vm.max_map_count": {"value": 262144, "compare": "min"}}}
    }
    resolved = Loaders(minion_opts).modules.k8snode.requirements()
    assert resolved["distribution"] == "k3s"
    assert "nf_conntrack" in resolved["modules"]
    assert resolved["sysctls"]["vm.max_map_count"] == {
        "value": "262144",
        "compare": "min",
        "required": True,
        "needs_module": None,
        "source": "pillar",
    }
    assert resolved["sysctls"]["net.ipv4.ip_forward"]["source"] == "distribution:k3s"


def test_arguments_override_the_pillar(minion_opts):
    from saltfactories.utils.functional import Loaders

    minion_opts["pillar"] = {"k8snode": {"distribution": "k3s"}}
    resolved = Loaders(minion_opts).modules.k8snode.requirements(distribution="microk8s")
    assert resolved["distribution"] == "microk8s"
    assert resolved["sysctls"]["fs.aio-max-nr"]["compare"] == "min"


@pytest.mark.parametrize(
    ("pillar", "named"),
    [
        ({"distribution": "openshift"}, "openshift"),
        ({"modules": {"overlay; touch /x": {}}}, "overlay; touch /x"),
        ({"sysctls": {"../../etc/shadow": 1}}, "../../etc/shadow"),
        ({"sysctls": {"net.ipv4.ip_forward": "yes"}}, "yes"),
        ({"sysctls": ["net.ipv4.ip_forward"]}, "net.ipv4.ip_forward"),
    ],
)
def test_the_state_fails_on_bad_pillar_naming_the_value(minion_opts, pillar, named):
    from saltfactories.utils.functional import Loaders

    minion_opts["pillar"] = {"k8snode": pillar}
    ret = Loaders(minion_opts).states.k8snode.prepared(name="node")
    assert ret.result is False
    assert named in ret.comment
    assert ret.changes == {}


def test_the_audit_through_the_loader_keeps_its_contract(loaders):
    report = loaders.modules.k8snode.audit()
    assert set(report) >= {"ready", "distribution", "os_family", "summary", "checks", "failing", "lost_at_reboot"}
    for name, check in report["checks"].items():
        assert check["status"] in ("ok", "fail", "warn"), name
        assert {"required", "expected", "live", "boot", "detail"} <= set(check), name
    assert sum(report["summary"].values()) == len(report["checks"])
    assert report["ready"] == (not [c for c in report["checks"].values() if c["required"] and c["status"] != "ok"])


def _audit(ready):
    return {
        "ready": ready,
        "distribution": "kubeadm",
        "os": "debian-12",
        "kernel": "6.1",
        "summary": {"ok": 1, "fail": 0 if ready else 1, "warn": 0},
        "failing": [] if ready else ["sysctl:net.ipv4.ip_forward"],
        "lost_at_reboot": [],
        "checks": {
            "module:overlay": {"status": "ok", "required": True, "detail": "overlay is built into the kernel"},
            "sysctl:net.ipv4.ip_forward": {
                "status": "ok" if ready else "fail",
                "required": True,
                "detail": "net.ipv4.ip_forward is 0 now, needs 1",
            },
        },
    }


def test_the_outputter_renders_an_audit_for_a_person(minion_opts):
    text = salt.output.out_format({"node-a": _audit(False)}, "k8snode", minion_opts)
    assert "node-a: NOT READY (kubeadm on debian-12" in text
    assert "FAIL sysctl:net.ipv4.ip_forward" in text
    assert "net.ipv4.ip_forward is 0 now, needs 1" in text
    # The release the verdicts are for, and whether it was assumed (no kubelet, no pillar).
    audit = dict(_audit(False), kubernetes={"version": "1.37", "source": "defaults", "assumed": "assumed 1.37: ..."})
    text = salt.output.out_format({"node-a": audit}, "k8snode", minion_opts)
    assert "node-a: NOT READY (kubeadm 1.37 (assumed) on debian-12" in text


def test_the_runner_summary_lists_silent_hosts_and_sets_the_exit_code():
    answers = {
        "a": {"ret": _audit(True), "retcode": 0},
        "b": {"ret": _audit(False), "retcode": 0},
        "c": {"ret": "'k8snode.audit' is not available.", "retcode": 254},
    }
    report = runner._fleet.summarize(answers, {"a", "b", "c", "ghost"})
    assert report["hosts"]["ghost"]["status"] == "no answer"
    assert report["hosts"]["c"]["status"] == "error"
    assert report["counts"] == {"ready": 1, "not ready": 1, "no answer": 1, "error": 1}
    assert report["common_failures"] == [["sysctl:net.ipv4.ip_forward", 1]]
    assert report["retcode"] == 1
    everyone_ready = runner._fleet.summarize({"a": {"ret": _audit(True)}}, {"a"})
    assert everyone_ready["retcode"] == 0
    assert everyone_ready["ready"] is True


def test_the_outputter_renders_the_fleet_report(minion_opts):
    report = runner._fleet.summarize({"a": {"ret": _audit(False)}}, {"a", "ghost"})
    text = salt.output.out_format(report, "k8snode", minion_opts)
    assert "ghost" in text
    assert "no answer" in text
    assert "1 x sysctl:net.ipv4.ip_forward" in text


def test_the_outputter_says_a_report_comes_from_memory(minion_opts):
    known = {"status": "not ready", "failing": ["sysctl:net.ipv4.ip_forward"], "time": 900.0, "source": "confirmed"}
    report = runner._fleet.summarize_memory({"a", "never"}, {"a": {"last_known": known}}, now=1000.0)
    text = salt.output.out_format(report, "k8snode", minion_opts)
    assert "never" in text and "unknown" in text
    assert "fleet: 1 not ready, 1 unknown" in text
    assert "from the fleet memory, nothing published: each host's last audit return, the oldest 100 s ago" in text


@pytest.mark.parametrize("sls", ["k8snode", "k8snode.absent"])
def test_the_state_tree_renders(loaders, sls):
    rendered = loaders.modules.state.show_sls(sls)
    assert isinstance(rendered, dict), rendered
    (state_id,) = rendered
    assert sls.replace("k8snode.", "").replace("k8snode", "prepared") in rendered[state_id]["k8snode"]


@pytest.mark.parametrize(
    "relative",
    [
        "pillar/top.sls",
        "pillar/k8snode/kubeadm.sls",
        "pillar/k8snode/rke2.sls",
        "pillar/k8snode/k3s.sls",
        "pillar/k8snode/microk8s.sls",
        "salt/reactor/k8snode_start.sls",
    ],
)
def test_pillar_and_reactor_files_render(minion_opts, relative):
    import salt.loader
    import salt.template

    renderers = salt.loader.render(minion_opts, {})
    data = salt.template.compile_template(
        str(REPO / relative), renderers, "jinja|yaml", [], [], data={"id": "k8snode-new"}
    )
    assert isinstance(data, dict) and data, relative
    if relative.startswith("pillar/k8snode/"):
        assert data["k8snode"]["distribution"] == relative.rsplit("/", 1)[1].removesuffix(".sls")
    if "reactor" in relative:
        (job,) = data.values()
        assert job["local.state.apply"] == [{"tgt": "k8snode-new"}]
