"""
Fixtures of the unit layer: the execution module (the package ``_modules/k8snode``)
with its Salt dunders set, and fake host trees (see ``faketree.py``).

Safety: every path the module reads or writes goes through ``host.path``, which
is guarded for the whole session so that any root outside pytest's temporary
directory fails the test at once; ``cmd.run_all`` is a fake acting on the fake
tree. No test runs modprobe, swapoff or sysctl on the machine running the tests.
"""

import os
import sys

import pytest


def _tolerate_salt_import_hook():
    """Salt 3008 puts a ``NaclImporter`` without ``find_spec`` first in sys.meta_path;
    pytest's ``--import-mode=importlib`` calls ``find_spec`` on every hook and fails
    to collect. Give it a ``find_spec`` that declines: the unit tests never import nacl."""
    for importer in sys.meta_path:
        cls = type(importer)
        if cls.__name__ == "NaclImporter" and not hasattr(cls, "find_spec"):
            cls.find_spec = lambda self, name, path=None, target=None: None


_tolerate_salt_import_hook()

from _modules import k8snode as k8snode_api  # noqa: E402
from _modules.k8snode import host  # noqa: E402
from tests.unit.faketree import FakeTree  # noqa: E402


def _no_command(argv, **kwargs):
    raise AssertionError(f"unexpected command in a unit test: {argv!r}")


@pytest.fixture(scope="package", autouse=True)
def _guard_the_host(tmp_path_factory):
    """For the unit tests (this package), undone after them: no root outside pytest's
    temp dir, no commands, no grains. The integration layer runs later in the same
    session and uses real roots."""
    base = os.path.realpath(str(tmp_path_factory.getbasetemp()))
    real_path = host.path

    def guarded_path(root, relative):
        real_root = os.path.realpath(str(root))
        if real_root != base and not real_root.startswith(base + os.sep):
            raise AssertionError(f"unit test tried to use the real host: root={root!r}")
        return real_path(root, relative)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(host, "path", guarded_path)
        patch.setattr(k8snode_api, "__grains__", {}, raising=False)
        patch.setattr(k8snode_api, "__pillar__", {}, raising=False)
        patch.setattr(k8snode_api, "__salt__", {"cmd.run_all": _no_command}, raising=False)
        yield


@pytest.fixture
def make_tree(tmp_path):
    """Factory: ``make_tree("name")`` -> a new FakeTree under tmp_path."""

    def make(name="host", **kwargs):
        return FakeTree(tmp_path / name, **kwargs)

    return make


@pytest.fixture
def tree(make_tree):
    """The default fake host of a test."""
    return make_tree("host")


@pytest.fixture
def k8snode(tree, monkeypatch):
    """The execution module, with ``cmd.run_all`` playing the kernel of ``tree``. A test
    may set ``k8snode.__grains__`` / ``__pillar__``: they are reset after it."""
    monkeypatch.setattr(k8snode_api, "__salt__", {"cmd.run_all": tree.run_all})
    monkeypatch.setattr(k8snode_api, "__grains__", {})
    monkeypatch.setattr(k8snode_api, "__pillar__", {})
    return k8snode_api


@pytest.fixture(scope="module")
def pure_base(tmp_path_factory):
    """A directory for trees made inside hypothesis tests (which dislike function fixtures)."""
    return tmp_path_factory.mktemp("pure")


@pytest.fixture
def master_cache(tmp_path, monkeypatch):
    """A master's cachedir, and its pki_dir with node1's accepted key, as the runner's opts."""
    from _runners import k8snode as runner

    (tmp_path / "pki" / "minions").mkdir(parents=True)
    (tmp_path / "pki" / "minions" / "node1").write_text("a public key")
    opts = {"cachedir": str(tmp_path), "pki_dir": str(tmp_path / "pki"), "timeout": 5}
    monkeypatch.setattr(runner, "__opts__", opts, raising=False)
    return tmp_path
