"""salt-ssh's two ends in containers on the test network (issue 24): nodes with Debian's
openssh-server and python3 and no Salt (images/ssh-target.Dockerfile), and the machine
salt-ssh runs from, a minion image with openssh-client (Salt 3006 on bullseye, 3008 on
bookworm; images/salt-ssh-client.Dockerfile). Every command goes through ``docker exec``
as an argv list; the only shell is the one each sshd starts for salt-ssh's own shim.
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile

from tests.support import harness
from tests.support.harness import tar_of

CAP_ADD = ["NET_ADMIN", "SYS_ADMIN"]
#: The file-server layout the README gives: the extension's directories at one file root,
#: salt/ (the SLS) at another.
LAYOUT = ("_modules", "_states", "_runners", "_output", "_beacons", "_wrapper", "salt")
#: A node in a container runs on this machine's cgroup v1 (pillar/k8snode/cgroup_v1.sls).
PILLAR = {
    "top.sls": 'base:\n  "*": [cgroup_v1]\n',
    "cgroup_v1.sls": "k8snode:\n  kubelet:\n    fail_cgroup_v1: false\n",
}


def repo_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name in LAYOUT:
            tar.add(
                str(harness.REPO_ROOT / name),
                arcname=f"repo/{name}",
                filter=lambda info: None if "__pycache__" in info.name else info,
            )
    return out.getvalue()


def start(client, image: str, network: str, prefix: str, cap_add=()):
    container = client.containers.run(
        image,
        name=f"k8snode-{prefix}-{secrets.token_hex(3)}",
        network=network,
        cap_add=list(cap_add),
        labels=harness.owner_labels(),
        detach=True,
    )
    container.reload()
    return container


def address(container, network: str) -> str:
    return container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


def run(container, *argv: str) -> tuple[int, str, str]:
    result = container.exec_run(list(argv), demux=True)
    stdout, stderr = result.output
    return result.exit_code, (stdout or b"").decode(), (stderr or b"").decode()


class SaltSshClient:
    """The salt-ssh side: a key pair, a roster of ``nodes`` (id -> container), the pillar,
    and a master config with ``file_roots``; :meth:`salt_ssh` and :meth:`salt_run`."""

    def __init__(self, container, network: str, nodes: dict):
        self.container = container
        code, _, err = run(container, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/root/.ssh/id_ed25519")
        assert code == 0, err
        _, public_key, _ = run(container, "cat", "/root/.ssh/id_ed25519.pub")
        roster = ""
        for node_id, node in nodes.items():
            node.put_archive("/root/.ssh", tar_of({"authorized_keys": public_key}, mode=0o600))
            roster += f"{node_id}:\n  host: {address(node, network)}\n  user: root\n  priv: /root/.ssh/id_ed25519\n"
        container.put_archive("/srv", repo_tar())
        container.put_archive("/srv", tar_of({f"pillar/{name}": text for name, text in PILLAR.items()}))
        container.put_archive("/etc/salt", tar_of({"roster": roster}))

    def configure(self, file_roots: list[str], **more) -> None:
        """The master config salt-ssh and salt-run read (JSON is YAML)."""
        config = {
            "file_roots": {"base": file_roots},
            "pillar_roots": {"base": ["/srv/pillar"]},
            # Fresh containers: their host keys are new to this client.
            "ignore_host_keys": True,
            **more,
        }
        self.container.put_archive("/etc/salt", tar_of({"master": json.dumps(config)}))

    def salt_ssh(self, target: str, *argv: str) -> tuple[int, dict]:
        code, out, err = run(self.container, "salt-ssh", "--out=json", "--static", target, *argv)
        try:
            return code, json.loads(out)
        except ValueError:
            raise AssertionError(f"salt-ssh {' '.join(argv)}: exit {code}, not JSON:\n{out}\n{err}") from None

    def salt_run(self, *argv: str) -> tuple[int, dict, str]:
        code, out, err = run(self.container, "salt-run", "--out=json", *argv)
        try:
            return code, json.loads(out), err
        except ValueError:
            raise AssertionError(f"salt-run {' '.join(argv)}: exit {code}, not JSON:\n{out}\n{err}") from None
