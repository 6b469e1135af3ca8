"""Integration layer: a real salt-master on the host, minions in Debian containers.

Fixtures (see tests/support/harness.py for the helpers they use):

* ``docker_client`` (session) -- docker SDK client; the session FAILS if docker is down.
* ``minion_images`` (session) -- ``{release: tag}``, built by images/build.py if missing.
* ``test_network`` (session) -- ``TestNetwork(name, gateway, subnet)``, a bridge network
  created for this session and removed at its end.
* ``master_config_overrides`` (session) -- ``{}``; override it (in a conftest) to add master
  config such as ``reactor`` to the session master.
* ``salt_master`` (session) -- the started master, listening on the network's gateway.
* ``local_client`` (session) -- an in-process ``salt.client.LocalClient`` of ``salt_master``
  for the harness's own plumbing (resets, pings, reboots): no ``salt`` CLI start (about
  1 to 2 s) per call.  What a test examines goes through the ``salt`` CLI, as a user's.
* ``minions`` (session) -- ``{release: minion}`` for bullseye, bookworm, trixie, started
  and synced (``saltutil.sync_all`` through the master).
* ``minion_bullseye`` / ``minion_bookworm`` / ``minion_trixie`` (session).
* ``start_master`` (function) -- ``start_master(overrides=None, master_id=None)`` starts
  one more master with the same base config plus ``overrides``; stopped after the test.
* ``start_minion`` (function) -- ``start_minion(release, master=None, minion_id=None,
  overrides=None, sync=True)`` starts one more container minion (against ``salt_master``
  unless ``master`` is given); removed after the test.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from saltfactories.daemons.container import SaltMinion as ContainerSaltMinion

from _modules import k8snode as k8snode_api
from tests.support import harness
from tests.support.harness import CAP_ADD, RELEASES, REPO_ROOT, minion_id, salt_run
from tests.support.node_fixtures import fresh_nodes, host_kernel_guard, pristine_net_values  # noqa: F401 (fixtures)

log = logging.getLogger(__name__)

MASTER_START_TIMEOUT = 120
MINION_START_TIMEOUT = 120


def pytest_configure(config):
    # Turn SIGTERM into KeyboardInterrupt so that fixture teardown (containers, the
    # network) runs when the run is killed; stale leftovers are removed next time anyway.
    def _sigterm(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    with contextlib.suppress(ValueError):  # not in the main thread
        signal.signal(signal.SIGTERM, _sigterm)


# --------------------------------------------------------------------------------------
# Docker
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def suite_lock():
    """One container or VM suite at a time on this machine (2 cores): a second one waits."""
    with harness.machine_suite_lock():
        yield


@pytest.fixture(scope="session")
def docker_client(suite_lock):
    import docker

    problem = None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing
        problem = f"Docker is not reachable ({exc}). Run `make setup` (scripts/bootstrap.sh)."
    if problem:  # fail (never skip), outside the except block: no chained traceback
        pytest.fail(problem, pytrace=False)
    yield client
    client.close()


@pytest.fixture(scope="session")
def minion_images(docker_client) -> dict[str, str]:
    problem = None
    try:
        return harness.ensure_images(RELEASES)
    except Exception as exc:  # noqa: BLE001
        problem = f"Could not build the minion images: {exc}"
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def test_network(docker_client):
    # Leftovers of sessions that died without teardown (their creator is gone);
    # objects of a concurrently running session are left alone.
    removed = harness.remove_stale(docker_client) + harness.remove_stale_salt_dirs()
    if removed:
        log.warning("Removed stale test objects: %s", removed)
    network = harness.create_network(docker_client)
    log.info("Test network %s: subnet %s, gateway %s", network.name, network.subnet, network.gateway)
    try:
        yield network
    finally:
        harness.remove_network(docker_client, network.name)


# --------------------------------------------------------------------------------------
# Salt
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def _salt_root_dir():
    path = harness.make_salt_root_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def salt_factories_config(test_network, _salt_root_dir):
    return {"log_server_host": test_network.gateway, "root_dir": _salt_root_dir}


@pytest.fixture(scope="session")
def extension_root(_salt_root_dir) -> Path:
    """A file root holding symlinks _modules, _states, _runners, _output -> the repo's."""
    return harness.make_extension_root(_salt_root_dir / "extensions")


@pytest.fixture(scope="session")
def extension_wheel(tmp_path_factory) -> Path:
    """The extension built as a wheel (``pip wheel .``), once per session."""
    directory = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(directory),
            str(REPO_ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = directory.glob("saltext_k8snode-*.whl")
    return built


@pytest.fixture(scope="session")
def master_config_overrides() -> dict:
    """Extra configuration for the session master (e.g. ``{"reactor": [...]}``)."""
    return {}


@pytest.fixture(scope="session")
def salt_master(salt_factories, test_network, extension_root, master_config_overrides):
    factory = salt_factories.salt_master_daemon(
        "k8snode-master",
        overrides=harness.master_config(test_network.gateway, extension_root, master_config_overrides),
        start_timeout=MASTER_START_TIMEOUT,
    )
    with factory.started(start_timeout=MASTER_START_TIMEOUT):
        yield factory


@pytest.fixture(scope="session")
def local_client(salt_master):
    import salt.client

    client = salt.client.LocalClient(mopts=salt_master.config.copy())
    yield client
    client.destroy()


def _container_minion(master, network, image: str, mid: str, overrides=None):
    """Create (not start) a container minion of ``master`` on ``network``."""
    name = f"{mid}-{secrets.token_hex(3)}"
    return master.salt_minion_daemon(
        mid,
        factory_class=ContainerSaltMinion,
        name=name,
        image=image,
        pull_before_start=False,
        container_run_kwargs={
            "network": network.name,
            "cap_add": list(CAP_ADD),
            "hostname": mid,
            "labels": harness.owner_labels(),
        },
        overrides=harness.minion_overrides(network.gateway, overrides),
        start_timeout=MINION_START_TIMEOUT,
        max_start_attempts=2,
    )


def start_side_by_side(factories) -> None:
    """Start container minions at once: each start is a container start, then the
    minion's own start up to its authentication and start event (waiting, mostly)."""
    factories = list(factories)
    with concurrent.futures.ThreadPoolExecutor(len(factories)) as pool:
        for factory, running in zip(factories, pool.map(lambda factory: factory.start(), factories)):
            assert running, f"{factory.id} did not start"


def _sync_all(master, ids) -> dict:
    return salt_run(master, "saltutil.sync_all", tgt=list(ids), tgt_type="list")


@pytest.fixture(scope="session")
def minions(salt_master, test_network, minion_images):
    """``{release: started container minion}``, synced through the master."""
    started = {
        release: _container_minion(salt_master, test_network, minion_images[release], minion_id(release))
        for release in RELEASES
    }
    try:
        start_side_by_side(started.values())
        _sync_all(salt_master, [m.id for m in started.values()])
        yield started
    finally:
        for minion in started.values():
            minion.terminate()


@pytest.fixture(scope="session")
def minion_bullseye(minions):
    return minions["bullseye"]


@pytest.fixture(scope="session")
def minion_bookworm(minions):
    return minions["bookworm"]


@pytest.fixture(scope="session")
def minion_trixie(minions):
    return minions["trixie"]


@pytest.fixture
def start_master(salt_factories, test_network, extension_root):
    """Factory: ``start_master(overrides=None, master_id=None)`` -> a started extra master."""
    created = []

    def _start(overrides=None, master_id=None):
        mid = master_id or f"k8snode-master-{secrets.token_hex(3)}"
        factory = salt_factories.salt_master_daemon(
            mid,
            overrides=harness.master_config(test_network.gateway, extension_root, overrides),
            start_timeout=MASTER_START_TIMEOUT,
        )
        created.append(factory)
        factory.start(start_timeout=MASTER_START_TIMEOUT)
        return factory

    yield _start
    for factory in reversed(created):
        factory.terminate()


@pytest.fixture
def start_minion(salt_master, test_network, minion_images):
    """Factory: ``start_minion(release, master=None, minion_id=None, overrides=None, sync=True)``.

    Starts one more container minion (default master: the session ``salt_master``),
    runs saltutil.sync_all on it through its master when ``sync``, and removes it after
    the test.
    """
    created = []

    def _start(release, master=None, minion_id=None, overrides=None, sync=True):
        master = master or salt_master
        mid = minion_id or f"k8snode-{release}-extra-{secrets.token_hex(3)}"
        minion = _container_minion(master, test_network, minion_images[release], mid, overrides)
        created.append((master, minion))
        minion.start()
        if sync:
            _sync_all(master, [mid])
        return minion

    yield _start
    for master, minion in reversed(created):
        minion.terminate()
        # Forget its key, or later `salt '*'` calls would wait for a minion that is gone.
        if master.is_running():
            master.salt_key_cli().run("--delete", minion.id, "--yes")


@pytest.fixture
def api(monkeypatch):
    """The k8snode API package with empty dunders: the sysctl oracle tests call its
    read-only functions on temporary trees, never through Salt."""
    monkeypatch.setattr(k8snode_api, "__grains__", {}, raising=False)
    monkeypatch.setattr(k8snode_api, "__pillar__", {}, raising=False)
    monkeypatch.setattr(k8snode_api, "__salt__", {}, raising=False)
    return k8snode_api
