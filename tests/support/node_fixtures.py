"""Fixtures for tests that prepare the minion containers; imported by tests/integration/conftest.py."""

import pytest

from tests.support import nodes


@pytest.fixture(autouse=True)
def host_kernel_guard():
    """No test leaves the machine's own vm.*, fs.* or kernel.* sysctls changed."""
    guard = nodes.HostKernelGuard(nodes.host_global_keys())
    yield guard
    guard.restore()


@pytest.fixture(scope="session")
def pristine_net_values(minions):
    """The net.* values each container had when it started."""
    return {release: nodes.pristine_values(minion) for release, minion in minions.items()}


@pytest.fixture
def fresh_nodes(local_client, minions, pristine_net_values):
    """The three minions, each returned to what it was when it started."""
    nodes.reset_nodes(local_client, minions, pristine_net_values)
    return minions
