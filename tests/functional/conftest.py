"""The real Salt loader, in-process, with k8snode's directories (no daemons, no Docker)."""

import pathlib

import pytest
import salt.config
from saltfactories.utils.functional import Loaders

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def minion_opts(tmp_path):
    opts = salt.config.minion_config(None)
    opts.update(
        id="functional",
        root_dir=str(tmp_path),
        cachedir=str(tmp_path / "cache"),
        pki_dir=str(tmp_path / "pki"),
        sock_dir=str(tmp_path / "sock"),
        extension_modules=str(tmp_path / "extmods"),
        file_client="local",
        # Never touch the machine: every state runs in test mode here.
        test=True,
        module_dirs=[str(REPO / "_modules")],
        states_dirs=[str(REPO / "_states")],
        outputter_dirs=[str(REPO / "_output")],
        file_roots={"base": [str(REPO / "salt")]},
        pillar={},
    )
    return opts


@pytest.fixture
def loaders(minion_opts):
    return Loaders(minion_opts)
