"""The first run, as a newcomer types it (issue 24): the extension's files put on the file
server as the README says, then `state.apply k8snode` on a minion that never synced.

Salt syncs custom modules by itself only for a highstate (salt/state.py ``call_highstate``
-> ``load_dynamic``); ``state.apply <sls>`` only with ``sync_mods=``. Without them Salt's
own error is "'k8snode.prepared' is not available". The SLS checks for the execution
module first (salt/k8snode/synced.jinja) and fails with one state that names the one
command to run; after that command the same apply works. Masterless here (salt-call
--local, as when baking an image), with its own config and cache: nothing was ever synced.
"""

import io
import json
import tarfile

import pytest

from tests.support import nodes
from tests.support.harness import REPO_ROOT, container_exec

#: The file-server layout the README gives: the module directories and salt/k8snode/.
LAYOUT = {
    "_modules": "_modules",
    "_states": "_states",
    "_runners": "_runners",
    "_output": "_output",
    "_beacons": "_beacons",
    "salt/k8snode": "k8snode",
}
CALL = "salt-call -c /tmp/first/conf --local --out=json --retcode-passthrough"


def _file_roots(docker_client, minion):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for source, target in LAYOUT.items():
            tar.add(
                str(REPO_ROOT / source),
                arcname=f"first/srv/{target}",
                filter=lambda info: None if "__pycache__" in info.name else info,
            )
    docker_client.containers.get(minion.name).put_archive("/tmp", archive.getvalue())
    nodes.sh(
        minion,
        "mkdir -p /tmp/first/conf /tmp/first/pillar; "
        "printf 'file_client: local\\nroot_dir: /tmp/first\\nfile_roots: {base: [/tmp/first/srv]}\\n"
        "pillar_roots: {base: [/tmp/first/pillar]}\\n' > /tmp/first/conf/minion; "
        # What this machine's cgroup v1 containers need (pillar/k8snode/cgroup_v1.sls).
        "printf 'base:\\n  \"*\": [cgroup_v1]\\n' > /tmp/first/pillar/top.sls; "
        "printf 'k8snode:\\n  kubelet:\\n    fail_cgroup_v1: false\\n' > /tmp/first/pillar/cgroup_v1.sls",
    )


def _apply(minion, sls="k8snode"):
    code, out = container_exec(minion, "sh", "-c", f"{CALL} state.apply {sls}")
    return code, json.loads(out)["local"]


@pytest.mark.parametrize("release", ["bullseye", "trixie"])  # Salt 3006 LTS and 3008
def test_state_apply_before_any_sync_names_the_one_command_then_works(docker_client, fresh_nodes, release):
    minion = fresh_nodes[release]
    _file_roots(docker_client, minion)
    try:
        for sls in ("k8snode", "k8snode.absent"):
            code, ret = _apply(minion, sls)
            assert code != 0, ret
            (state,) = ret.values()
            assert state["result"] is False, ret
            assert "run `salt-call --local saltutil.sync_all`" in state["name"], state
            assert "is not available" not in json.dumps(ret)
        written = nodes.sh(minion, "find /etc/sysctl.d /etc/modules-load.d -name '*k8snode*' 2>/dev/null || true")
        assert written.strip() == "", written  # nothing was done

        nodes.sh(minion, f"{CALL} saltutil.sync_all")  # the command it named
        code, ret = _apply(minion)
        (state,) = ret.values()
        assert code == 0 and state["result"] is True, ret
        assert state["__id__"] == "k8snode prepared"
    finally:
        nodes.sh(minion, f"{CALL} state.apply k8snode.absent >/dev/null || true; rm -rf /tmp/first")
