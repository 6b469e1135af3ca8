"""
Fixtures of the unit layer: the execution module loaded by path with its Salt
dunders set, and fake host trees (see ``faketree.py``).

Safety: the loaded module's ``_path`` is wrapped so that any read or write of
the host outside pytest's temporary directory fails the test at once, and
``cmd.run_all`` is a fake acting on the fake tree: no test runs modprobe,
swapoff or sysctl on the machine running the tests.
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def _tolerate_salt_import_hook():
    """Salt 3008 puts a ``NaclImporter`` without ``find_spec`` first in sys.meta_path;
    pytest's ``--import-mode=importlib`` calls ``find_spec`` on every hook and fails
    to collect. Give it a ``find_spec`` that declines: the unit tests never import nacl."""
    for importer in sys.meta_path:
        cls = type(importer)
        if cls.__name__ == "NaclImporter" and not hasattr(cls, "find_spec"):
            cls.find_spec = lambda self, name, path=None, target=None: None


_tolerate_salt_import_hook()

from faketree import FakeTree  # noqa: E402

# K8SNODE_MODULE: run the unit layer against another copy of the module (e.g. an older revision).
MODULE_PATH = Path(os.environ.get("K8SNODE_MODULE") or HERE.parents[1] / "_modules" / "k8snode.py")


def load_module(allowed_base, runner=None, pillar=None):
    """Load a fresh ``k8snode`` module object with its dunders set.

    ``allowed_base``: every ``root`` the module reads must live under it.
    """
    spec = importlib.util.spec_from_file_location("k8snode", MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def no_command(argv, **kwargs):
        raise AssertionError(f"unexpected command in a unit test: {argv!r}")

    module.__grains__ = {}
    module.__pillar__ = pillar if pillar is not None else {}
    module.__salt__ = {"cmd.run_all": runner or no_command}

    real_path = module._path
    base = os.path.realpath(str(allowed_base))

    def guarded_path(root, relative):
        real_root = os.path.realpath(str(root))
        if real_root != base and not real_root.startswith(base + os.sep):
            raise AssertionError(f"unit test tried to use the real host: root={root!r}")
        return real_path(root, relative)

    module._path = guarded_path
    return module


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
def k8snode(tmp_path, tree):
    """A fresh module object per test; ``cmd.run_all`` is ``tree.run_all``."""
    return load_module(tmp_path, runner=tree.run_all)


@pytest.fixture(scope="module")
def k8snode_pure(tmp_path_factory):
    """One module object for the pure parsers (for hypothesis, which dislikes function fixtures)."""
    base = tmp_path_factory.mktemp("pure")
    module = load_module(base)
    module.test_base = base
    return module
