"""The fleet: highstate on new minions (reactor), the report runner, and the installed extension."""

import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from tests.support import nodes
from tests.support.harness import REPO_ROOT, salt_cmd

GHOST = "k8snode-ghost"


def test_a_minion_started_after_the_master_is_prepared_with_no_manual_step(start_master, start_minion):
    # The master configuration snippet users copy, as it is.
    reactor_config = yaml.safe_load((REPO_ROOT / "salt" / "reactor" / "master.conf").read_text())
    master = start_master(overrides=reactor_config)
    minion = start_minion("bookworm", master=master, minion_id="k8snode-late-node", sync=False)

    deadline = time.monotonic() + 240
    report = None
    while time.monotonic() < deadline:
        result = salt_cmd(master, "k8snode.audit", tgt=minion.id, timeout=60)
        if isinstance(result.data, dict) and result.data.get("ready"):
            report = result.data
            break
        time.sleep(2)
    assert report is not None, f"{minion.id} was not prepared by the reactor: {result}"
    # Nobody here called state.apply or saltutil.sync_all: the reactor's highstate did both.
    assert nodes.read_file(minion, "/etc/sysctl.d/99-k8snode.conf").startswith("# Managed by Salt")


@pytest.fixture
def ghost_minion(salt_master, minions):
    """An accepted key whose minion never answers, like a host that is down."""
    keys = Path(salt_master.config["pki_dir"]) / "minions"
    ghost = keys / GHOST
    ghost.write_bytes((keys / minions["bookworm"].id).read_bytes())
    yield GHOST
    ghost.unlink()


# The report waits this long for the ghost: the live minions answer in about a second.
REPORT_TIMEOUT = 5


def _apply_to_all(master, minions):
    """state.apply k8snode on every minion in one publish, each one's states all true."""
    ids = [minion.id for minion in minions.values()]
    result = salt_cmd(master, "state.apply", "k8snode", tgt=",".join(ids), tgt_type="list")
    assert result.returncode == 0 and sorted(result.data) == sorted(ids), result
    for minion_id, states in result.data.items():
        assert all(state["result"] is True for state in states.values()), (minion_id, states)


def _salt_run(master, *args):
    """salt-run exactly as a person types it, text output and exit code."""
    salt_run_script = Path(sys.executable).with_name("salt-run")
    return subprocess.run(
        [str(salt_run_script), "-c", str(master.config_dir), "--no-color", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_report_lists_silent_hosts_and_sets_the_exit_code(salt_master, fresh_nodes, ghost_minion):
    ids = sorted([minion.id for minion in fresh_nodes.values()] + [ghost_minion])

    as_json = salt_master.salt_run_cli(timeout=180).run("k8snode.report", "tgt=k8snode-*", f"timeout={REPORT_TIMEOUT}")
    assert as_json.returncode != 0
    report = as_json.data
    assert sorted(report["hosts"]) == ids
    assert report["hosts"][ghost_minion]["status"] == "no answer"
    assert report["counts"] == {"ready": 0, "not ready": 3, "no answer": 1, "error": 0}
    assert report["common_failures"][0][1] == 3
    # The same fleet from the master's memory, nothing published: what each minion just
    # returned, and the ghost, never heard from, unknown.
    cached = salt_master.salt_run_cli(timeout=60).run("k8snode.report", "tgt=k8snode-*", "from_memory=True")
    assert cached.returncode != 0 and cached.data["from_memory"] is True, cached
    statuses = {minion: host["status"] for minion, host in report["hosts"].items()}
    assert {minion: host["status"] for minion, host in cached.data["hosts"].items()} == dict(
        statuses, **{ghost_minion: "unknown"}
    )

    _apply_to_all(salt_master, fresh_nodes)

    table = _salt_run(salt_master, "k8snode.report", "tgt=k8snode-*", f"timeout={REPORT_TIMEOUT}")
    assert table.returncode != 0, table
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["HOST", "STATUS", "FAILING", "CHECKS"], table.stdout
    for minion in fresh_nodes.values():
        assert any(line.split()[:2] == [minion.id, "ready"] for line in lines), table.stdout
    assert any(line.split()[:3] == [ghost_minion, "no", "answer"] for line in lines), table.stdout
    assert "fleet: 3 ready, 1 no answer" in table.stdout
    # Salt 3008.4's salt-run leaves its Runner and MasterMinion open; the report closes them at exit.
    assert "unclosed" not in table.stdout + table.stderr, table.stderr


def test_the_report_exits_zero_when_every_host_is_ready(salt_master, fresh_nodes):
    _apply_to_all(salt_master, fresh_nodes)
    result = salt_master.salt_run_cli(timeout=180).run("k8snode.report", "tgt=k8snode-*", f"timeout={REPORT_TIMEOUT}")
    assert result.returncode == 0, result
    assert result.data["counts"]["ready"] == 3


def _copy_into(docker_client, minion, path: Path, dest_dir: str):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(str(path), arcname=path.name)
    docker_client.containers.get(minion.name).put_archive(dest_dir, archive.getvalue())


BEACON_PROBE = """\
import json, salt.config, salt.loader
import salt.pillar
opts = salt.config.minion_config("/tmp/plain/conf/minion")
opts["grains"] = salt.loader.grains(opts)
opts["pillar"] = salt.pillar.get_pillar(opts, opts["grains"], opts["id"]).compile_pillar()
beacons = salt.loader.beacons(opts, salt.loader.minion_mods(opts))
config = [{"interval": 10}, {"summary_interval": 600}]
print(json.dumps({
    "file": beacons["k8snode.beacon"].func.__code__.co_filename,
    "valid": list(beacons["k8snode.validate"](config)),
    "events": beacons["k8snode.beacon"](config),
}))
"""


@pytest.mark.parametrize("release", ["bullseye", "trixie"])
def test_pip_installed_extension_works_with_no_sync(docker_client, fresh_nodes, extension_wheel, release):
    minion = fresh_nodes[release]
    _copy_into(docker_client, minion, extension_wheel, "/tmp")
    nodes.sh(minion, f"python -m pip install --no-deps --no-index --quiet /tmp/{extension_wheel.name}")
    try:
        # A salt-call with its own config and cache: nothing was ever synced there. Its local
        # pillar says what this machine's cgroup v1 containers need (pillar/k8snode/cgroup_v1.sls).
        nodes.sh(
            minion,
            "mkdir -p /tmp/plain/conf /tmp/plain/pillar; "
            "printf 'file_client: local\\nroot_dir: /tmp/plain\\npillar_roots: {base: [/tmp/plain/pillar]}\\n' "
            "> /tmp/plain/conf/minion; "
            "printf 'base:\\n  \"*\": [cgroup_v1]\\n' > /tmp/plain/pillar/top.sls; "
            "printf 'k8snode:\\n  kubelet:\\n    fail_cgroup_v1: false\\n' > /tmp/plain/pillar/cgroup_v1.sls",
        )
        out = nodes.sh(minion, "salt-call -c /tmp/plain/conf --local --out=json k8snode.audit")
        report = yaml.safe_load(out)["local"]
        assert report["checks"]["module:overlay"]["status"] == "ok"
        assert nodes.sh(minion, "find /tmp/plain -name 'k8snode*'").strip() == ""

        out = nodes.sh(
            minion, "salt-call -c /tmp/plain/conf --local --out=json state.single k8snode.prepared name=node"
        )
        (state,) = yaml.safe_load(out)["local"].values()
        assert state["result"] is True, state
        out = nodes.sh(minion, "salt-call -c /tmp/plain/conf --local --out=json k8snode.audit")
        assert yaml.safe_load(out)["local"]["ready"] is True
        text = nodes.sh(minion, "salt-call -c /tmp/plain/conf --local --out=k8snode --no-color k8snode.audit")
        assert "local: READY (kubeadm 1." in text
        # The drift beacon ships in the same package: Salt's beacon loader finds it,
        # and its first poll is a summary saying the node is ready.
        nodes.sh(minion, f"cat > /tmp/plain/beacon.py <<'EOF'\n{BEACON_PROBE}EOF")
        polled = json.loads(nodes.sh(minion, "python /tmp/plain/beacon.py"))
        assert polled["file"].endswith("saltext/k8snode/beacons/k8snode.py"), polled
        assert polled["valid"] == [True, "valid"], polled
        assert [event["tag"] for event in polled["events"]] == ["summary"], polled
        assert polled["events"][0]["ready"] is True, polled
    finally:
        nodes.sh(minion, "python -m pip uninstall --yes --quiet saltext-k8snode; rm -rf /tmp/plain /tmp/*.whl")
