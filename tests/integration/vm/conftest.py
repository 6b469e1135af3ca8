"""Real nodes: Debian VMs (QEMU) as minions of the session master; see tests/support/vm.py.

Fixtures:

* ``vm_images`` (session) -- ``{release: VmImage}`` (images/vm_build.py), built if
  missing; the session FAILS without QEMU or an image.
* ``vm_session_dir`` (session) -- ``$TMPDIR/k8snode-vm-*`` owned by this process; stale
  ones (owner dead) are removed first, their QEMU killed by PID.
* ``vm_extension`` (session) -- the extension's modules as a tar (tests/support/vm.py
  ``extension_disk``) that every node unpacks into its minion's cache at boot: what the
  node's first call finds, as on a node image baked with the extension.
* ``vm_link`` (session) -- how a VM reaches the session master (QEMU user-mode network,
  guestfwd to the master's address and ports) and how tests talk to its minion.
* ``fresh_vm`` (function) -- ``fresh_vm()``: a booted, never-prepared node of the release
  the test's marker names (``@pytest.mark.real_node(release="trixie")``; bookworm when
  it names none): a qcow2 overlay of the image, with the k8snode extension on a second,
  read-only disk (``vm_extension``); killed (by PID) after the test, its minion key
  deleted.  On failure the test report gets the
  tail of its serial console.
* ``vm_pair`` (function) -- ``vm_pair()``: two booted, never-prepared nodes of the
  marker's release (``real_node(nodes=2)``), started side by side, each with a second NIC
  on one private Ethernet link between the two (QEMU's socket backend over UDP on
  127.0.0.1, tests/support/vm.py ``L2Link``); nothing is started ahead for such a test.
* ``vm_nodes_ahead`` (session) -- one node started ahead: once a test has its node (or
  where a test marked ``real_node(start_next="by_test")`` calls ``start_next_vm()``),
  QEMU starts the node the next real-node test will ask for, so that its boot (20 to
  30 s of TCG, mostly one core of two) runs while this test mostly waits on Salt.  Each
  node still boots once from its own fresh overlay; only the start moves earlier.

There is no "golden" disk (a node booted once per session for its key and sync_all,
then powered off, every fresh node an overlay on it): it asserted nothing, and with at
most two nodes per release it cost more than it saved (measured: golden boot 46.6 s +
sync_all 26.9 s + poweroff 4.9 s = 78.5 s, against one more sync_all of 26.9 s).

The machine-wide suite lock is held through ``salt_master`` -> ``docker_client``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil

import pytest

from tests.support import harness, vm

log = logging.getLogger(__name__)

VM_NODES = pytest.StashKey[list]()
VM_LOG_DIR = harness.REPO_ROOT / ".cache" / "logs" / "vm-console"
DEFAULT_RELEASE = "bookworm"
# K8SNODE_VM_AHEAD=0: start each node only when its test asks (to measure what starting
# ahead saves: lifecycle + power cut 242 s without, 205 s with, one after the other).
START_AHEAD = os.environ.get("K8SNODE_VM_AHEAD", "1") != "0"


@pytest.fixture(scope="session")
def vm_images(docker_client):
    problem = None
    try:
        vm.check_qemu()
        return vm.ensure_vm_images()
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing
        problem = f"Real-node VMs need QEMU and the VM images: {exc}"
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def vm_session_dir(vm_images):
    removed = vm.remove_stale_vms()
    if removed:
        log.warning("Removed stale VM leftovers: %s", removed)
    path = vm.make_session_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def vm_extension(vm_session_dir):
    return vm.extension_disk(vm_session_dir / "extension.tar")


@pytest.fixture(scope="session")
def vm_link(salt_master, salt_factories, local_client):
    """The VM's plumbing (pings, guest commands, reboots) goes through the master with the
    in-process ``local_client``.  What the tests examine (state.apply, k8snode.audit) goes
    through the salt CLI, as a user would."""
    listener = salt_factories.event_listener

    def salt(target, fun, *args, timeout=harness.SALT_TIMEOUT, **kwargs):
        if isinstance(target, str):
            returns = local_client.cmd(target, fun, arg=list(args), kwarg=kwargs, timeout=timeout)
            return (0, returns[target]) if target in returns else (1, None)
        # Several minions, one publish: they work side by side.
        returns = local_client.cmd(target, fun, arg=list(args), kwarg=kwargs, timeout=timeout, tgt_type="list")
        return (0 if set(target) <= set(returns) else 1), returns

    def wait_started(minion_id, since, timeout):
        pattern = (salt_master.id, f"salt/minion/{minion_id}/start")
        return listener.wait_for_events([pattern], timeout=timeout, after_time=since).found_all_events

    config = salt_master.config
    return vm.MasterLink(
        host=config["interface"],
        ret_port=int(config["ret_port"]),
        publish_port=int(config["publish_port"]),
        salt=salt,
        wait_started=wait_started,
    )


def _forget_key(salt_master, minion_id):
    # Or later `salt '*'` calls would wait for a minion that is powered off.
    if salt_master.is_running():
        salt_master.salt_key_cli().run("--delete", minion_id, "--yes")


def _release_of(item) -> str | None:
    """The release a real-node test's node runs (its ``real_node`` marker), or None."""
    marker = item.get_closest_marker("real_node")
    if marker is None:
        return None
    return marker.kwargs.get("release", DEFAULT_RELEASE)


def _next_release(item) -> str | None:
    """The release of the next real-node test of the session after ``item``, if any (None
    when that test starts its own nodes: ``real_node(nodes=2)``)."""
    items = item.session.items
    for later in items[items.index(item) + 1 :]:
        release = _release_of(later)
        if release is not None:
            return None if later.get_closest_marker("real_node").kwargs.get("nodes", 1) > 1 else release
    return None


@pytest.fixture(scope="session")
def vm_nodes_ahead(salt_master, vm_images, vm_session_dir, vm_link, vm_extension):
    """``(ahead, start)``: ``ahead`` is ``{release: [VmNode]}``, nodes whose QEMU started
    before a test asked for them; ``start(release)`` starts one more (a numbered minion id)."""
    ahead: dict[str, list[vm.VmNode]] = {}
    counter = itertools.count(1)

    def start(release, l2=None):
        minion_id = vm.vm_minion_id(release, next(counter))
        node = vm.new_node(vm_session_dir, vm_images[release], vm_link, minion_id, l2=l2, extension=vm_extension)
        node.start()
        return node

    yield ahead, start
    for nodes in ahead.values():  # started for a test that did not run (-x, -k, a failure)
        for node in nodes:
            node.kill()
            _forget_key(salt_master, node.minion_id)


def _start_next(item, vm_nodes_ahead) -> None:
    """Start the node the next real-node test will ask for, unless one waits already."""
    ahead, start = vm_nodes_ahead
    following = _next_release(item) if START_AHEAD else None
    if following is not None and not ahead.get(following):
        ahead.setdefault(following, []).append(start(following))


@pytest.fixture
def start_next_vm(request, vm_nodes_ahead):
    """``start_next_vm()``: start the next real-node test's node now. For a test marked
    ``real_node(start_next="by_test")``, which calls it where it has a long stretch of
    waiting left (its last reboot); other tests' nodes start it as soon as they are up.
    A node started at the beginning of a five-minute test idles for four of them and
    boots while that test reboots (measured: the lifecycle test 262 s alone, 310 s with
    the next node booting and idling beside it)."""
    return lambda: _start_next(request.node, vm_nodes_ahead)


@pytest.fixture
def fresh_vm(request, salt_master, vm_nodes_ahead):
    """Factory: ``fresh_vm()`` -> a booted node (of the marker's release) that was never prepared."""
    ahead, start = vm_nodes_ahead
    release = _release_of(request.node)
    if release is None:
        pytest.fail("fresh_vm is for tests marked @pytest.mark.real_node", pytrace=False)
    by_test = request.node.get_closest_marker("real_node").kwargs.get("start_next") == "by_test"
    started = []
    request.node.stash[VM_NODES] = started

    def _start():
        waiting = ahead.get(release) or []
        node = waiting.pop(0) if waiting else start(release)
        started.append(node)
        try:
            node.wait_booted()
        except vm.VmError as exc:
            pytest.fail(str(exc), pytrace=False)
        if not by_test:
            _start_next(request.node, vm_nodes_ahead)
        return node

    yield _start
    for node in started:
        node.kill()
        _forget_key(salt_master, node.minion_id)


@pytest.fixture
def vm_pair(request, salt_master, vm_nodes_ahead):
    """Factory: ``vm_pair()`` -> ``(a, b)``, two booted, never-prepared nodes on one private
    L2 link (``a`` has the link's first MAC, ``b`` the second)."""
    _ahead, start = vm_nodes_ahead
    release = _release_of(request.node)
    if release is None or request.node.get_closest_marker("real_node").kwargs.get("nodes") != 2:
        pytest.fail("vm_pair is for tests marked @pytest.mark.real_node(nodes=2)", pytrace=False)
    started = []
    request.node.stash[VM_NODES] = started

    def _start():
        links = vm.L2Link.pair(harness.listen_ports("127.0.0.1", 2, udp=True))
        started.extend(start(release, l2=link) for link in links)
        try:
            for node in started:
                node.wait_booted()
        except vm.VmError as exc:
            pytest.fail(str(exc), pytrace=False)
        return tuple(started)

    yield _start
    for node in started:
        node.kill()
        _forget_key(salt_master, node.minion_id)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for node in item.stash.get(VM_NODES, []):
        saved = VM_LOG_DIR / f"{item.name}-{node.directory.name}.log"
        with contextlib.suppress(OSError):
            VM_LOG_DIR.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(node.console_log, saved)
        title = f"serial console of {node.minion_id} (last 150 lines; whole log: {saved})"
        report.sections.append((title, node.console_text(last_lines=150)))


def pytest_terminal_summary(terminalreporter):
    if not vm.TIMINGS:
        return
    terminalreporter.section("real nodes: measured times")
    for what, node, seconds in vm.TIMINGS:
        terminalreporter.write_line(f"{seconds:7.1f}s  {node}: {what}")
