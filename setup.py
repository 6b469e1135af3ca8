"""Install k8snode as a Salt extension: ``pip install .`` (or ``salt-pip install .``).

Named as the salt-extension template names extensions: the import package
``saltext.k8snode`` (``saltext`` is a namespace shared by all extensions), the
distribution ``saltext-k8snode``, and the ``salt.loader`` entry point
``saltext.k8snode = saltext.k8snode``.
"""

import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
# One source of truth: the installed loader directories are the same files
# that saltutil.sync_all serves from _modules, _states, _runners and _output (and
# salt-ssh's _wrapper).
LOADER_DIRS = {
    "modules": "_modules",
    "states": "_states",
    "runners": "_runners",
    "output": "_output",
    "beacons": "_beacons",
    "engines": "_engines",
    # salt-ssh's wrapper: the master loads it from the entry point like the others.
    "wrapper": "_wrapper",
}
PACKAGE = "saltext.k8snode"
# The execution module is itself a package (its API and pure submodules).
SUBPACKAGES = {"modules.k8snode": "_modules/k8snode"}


def _version():
    text = (HERE / "saltext" / "k8snode" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE).group(1)


setup(
    name="saltext-k8snode",
    version=_version(),
    description="Prepare and audit Linux hosts as Kubernetes nodes (kubeadm, RKE2, K3s, MicroK8s) with Salt",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    keywords=["salt-extension"],
    python_requires=">=3.9",
    packages=[PACKAGE] + [f"{PACKAGE}.{kind}" for kind in LOADER_DIRS] + [f"{PACKAGE}.{name}" for name in SUBPACKAGES],
    package_dir={
        PACKAGE: "saltext/k8snode",
        **{f"{PACKAGE}.{kind}": path for kind, path in LOADER_DIRS.items()},
        **{f"{PACKAGE}.{name}": path for name, path in SUBPACKAGES.items()},
    },
    entry_points={"salt.loader": [f"{PACKAGE} = {PACKAGE}"]},
    classifiers=["Framework :: Salt", "Operating System :: POSIX :: Linux", "Programming Language :: Python :: 3"],
)
