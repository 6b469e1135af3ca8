"""Install k8snode as a Salt extension: ``pip install .`` (or ``salt-pip install .``)."""

from setuptools import setup

# One source of truth: the installed loader directories are the same files
# that saltutil.sync_all serves from _modules, _states, _runners and _output.
LOADER_DIRS = {"modules": "_modules", "states": "_states", "runners": "_runners", "output": "_output"}

setup(
    name="k8snode",
    version="0.1.0",
    description="Prepare and audit Linux hosts as Kubernetes nodes (kubeadm, RKE2, K3s, MicroK8s) with Salt",
    long_description=open("README.md", encoding="utf-8").read(),  # noqa: SIM115
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=["k8snode_saltext"] + [f"k8snode_saltext.{kind}" for kind in LOADER_DIRS],
    package_dir={
        "k8snode_saltext": "k8snode_saltext",
        **{f"k8snode_saltext.{kind}": path for kind, path in LOADER_DIRS.items()},
    },
    entry_points={"salt.loader": ["k8snode = k8snode_saltext"]},
    classifiers=["Framework :: Salt", "Operating System :: POSIX :: Linux", "Programming Language :: Python :: 3"],
)
