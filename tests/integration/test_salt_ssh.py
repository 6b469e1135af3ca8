"""salt-ssh against real sshd nodes, from Salt 3006 LTS and Salt 3008 (issue 24).

The nodes run Debian's openssh-server and python3 and no Salt; salt-ssh runs in a
container of its own (a minion image plus openssh-client). Two deliveries, each on both
Salt majors:

* the file-server layout the README gives (``file_roots``: ``salt/`` and the repository
  root, plus ``module_dirs`` for the master's half): salt-ssh ships the ``*.py`` files at
  the top of ``_modules`` (``mod_data``, salt/client/ssh/__init__.py), so the execution
  module travels as its one-file bundle, ``_modules/k8snode_agentless.py``;
* the extension pip-installed on the salt-ssh machine: Salt 3008's thin carries it.
  Salt 3006.29's ``mod_data`` skips every module directory whose path starts with Salt's
  own (``site-packages/salt`` is a prefix of ``site-packages/saltext``), so there the
  modules reach a node only from the master's ``extension_modules``: the README's one
  copy command, shown here to be needed and to be enough.

Pillar: salt-ssh compiles a node's pillar on the master for wrapper functions and states
only; ``_wrapper/k8snode.py`` passes the pillar ``k8snode`` to the module. The pillar here
(cgroup v1 allowed, as for every container node) turns the ``cgroup`` check from fail to
warn: the tests see it arrive.

The two majors run side by side (each its own client and node): a salt-ssh call is one
process on each side, waiting on the other much of the time.
"""

import concurrent.futures

import pytest

from images import derived
from tests.support import harness, salt_ssh
from tests.support.salt_ssh import SaltSshClient

CLIENTS = {"3006": "salt-ssh-3006", "3008": "salt-ssh-3008"}
OWNED = ("/etc/modules-load.d/k8snode.conf", "/etc/sysctl.d/99-k8snode.conf")
STATE = "k8snode_|-k8snode prepared_|-k8snode prepared_|-prepared"
ABSENT = "k8snode_|-k8snode absent_|-k8snode absent_|-absent"
#: Where Salt's Python finds the installed extension, and the master's extension_modules.
SALTEXT = "/opt/salt/lib/python{}/site-packages/saltext/k8snode"
EXTMODS = "/var/cache/salt/master/extmods"


@pytest.fixture(scope="module")
def ssh_images(docker_client):
    return derived.ensure_all(["ssh-target", *CLIENTS.values()])


@pytest.fixture
def salt_ssh_pair(docker_client, test_network, ssh_images):
    """``make(major) -> (client, node)``: a salt-ssh machine of that Salt major and one sshd node."""
    started = []

    def make(major):
        node = salt_ssh.start(
            docker_client, ssh_images["ssh-target"], test_network.name, "ssh-node", cap_add=salt_ssh.CAP_ADD
        )
        started.append(node)
        client = salt_ssh.start(docker_client, ssh_images[CLIENTS[major]], test_network.name, f"salt-ssh-{major}")
        started.append(client)
        return SaltSshClient(client, test_network.name, {"node1": node}), node

    yield make
    for container in started:
        container.remove(force=True)


def owned_files(node):
    return [path for path in OWNED if salt_ssh.run(node, "test", "-e", path)[0] == 0]


def audit_of(ssh, *argv):
    code, out = ssh.salt_ssh("node1", "k8snode.audit", *argv)
    audit = out["node1"]
    assert isinstance(audit, dict) and "checks" in audit, (code, out)
    return audit


def on_both_majors(check, salt_ssh_pair, *args):
    """``check(ssh, node, major, *args)`` for Salt 3006 and 3008 at once; a failure names its major."""
    pairs = {major: salt_ssh_pair(major) for major in sorted(CLIENTS)}
    with concurrent.futures.ThreadPoolExecutor(len(pairs)) as pool:
        futures = {major: pool.submit(check, *pair, major, *args) for major, pair in pairs.items()}
    for major, future in futures.items():
        error = future.exception()
        if error is not None:
            raise AssertionError(f"Salt {major}: {error}") from error


def test_the_five_calls_from_the_file_server_layout(salt_ssh_pair):
    on_both_majors(five_calls, salt_ssh_pair)


def test_the_installed_extension(salt_ssh_pair, extension_wheel):
    on_both_majors(installed_extension, salt_ssh_pair, extension_wheel)


def five_calls(ssh, node, major):
    ssh.configure(["/srv/repo/salt", "/srv/repo"], module_dirs=["/srv/repo"])

    # 1. The audit: a fresh node is not ready, for named reasons; the pillar arrived.
    audit = audit_of(ssh)
    assert audit["ready"] is False
    assert "sysctl:net.ipv4.ip_forward" in audit["failing"]
    assert audit["checks"]["cgroup"]["status"] == "warn", audit["checks"]["cgroup"]

    # 2. test=True: the changes are predicted, nothing is written.
    code, out = ssh.salt_ssh("node1", "state.apply", "k8snode", "test=True")
    state = out["node1"][STATE]
    assert state["result"] is None and set(state["changes"]) == {f"file:{path}" for path in OWNED}, state
    assert owned_files(node) == []

    # 3. The apply writes the node's files and sets it live.
    code, out = ssh.salt_ssh("node1", "state.apply", "k8snode")
    assert code == 0 and out["node1"][STATE]["result"] is True, out
    assert owned_files(node) == list(OWNED)
    assert salt_ssh.run(node, "cat", "/proc/sys/net/ipv4/ip_forward")[1].strip() == "1"

    # 4. The fleet report over the roster: the same report and exit code as for minions.
    code, report, err = ssh.salt_run("k8snode.report", "ssh=True")
    assert code == 0, (report, err)
    assert report["counts"] == {"ready": 1, "not ready": 0, "no answer": 0, "error": 0}
    assert report["hosts"]["node1"]["status"] == "ready"
    # Salt 3008.4's salt-run leaves one event publisher open for any runner (test.arg
    # too); the report closes what it opens (its Runner, MasterMinion and SSH event).
    assert "unclosed Runner" not in err and "unclosed MasterMinion" not in err, err

    # 5. absent removes what the apply wrote.
    code, out = ssh.salt_ssh("node1", "state.apply", "k8snode.absent")
    assert code == 0 and out["node1"][ABSENT]["result"] is True, out
    assert owned_files(node) == []


def installed_extension(ssh, node, major, extension_wheel):
    ssh.container.put_archive("/tmp", harness.tar_of({extension_wheel.name: extension_wheel.read_bytes()}))
    pip = ("/opt/salt/bin/pip", "install", "--no-deps", "--no-index", f"/tmp/{extension_wheel.name}")
    code, _, err = salt_ssh.run(ssh.container, *pip)
    assert code == 0, err
    ssh.configure(["/srv/repo/salt"])  # the SLS only: the modules come from the installed extension

    if major == "3006":
        code, out = ssh.salt_ssh("node1", "k8snode.audit")
        assert "'k8snode.audit' is not available" in str(out), out
        python = salt_ssh.run(ssh.container, "/opt/salt/bin/python", "-c", "import sys; print(sys.version[:3])")[1]
        saltext = SALTEXT.format(python.strip())
        for source, target in (
            (f"{saltext}/modules/k8snode_agentless.py", f"{EXTMODS}/modules/k8snode_agentless.py"),
            (f"{saltext}/states/k8snode.py", f"{EXTMODS}/states/k8snode.py"),
        ):
            code, _, err = salt_ssh.run(ssh.container, "install", "-D", "-m", "0644", source, target)
            assert code == 0, err

    audit = audit_of(ssh)
    assert audit["ready"] is False and audit["checks"]["cgroup"]["status"] == "warn", audit["checks"]["cgroup"]
    code, out = ssh.salt_ssh("node1", "state.apply", "k8snode", "test=True")
    state = out["node1"][STATE]
    assert state["result"] is None and set(state["changes"]) == {f"file:{path}" for path in OWNED}, state
    assert owned_files(node) == []
