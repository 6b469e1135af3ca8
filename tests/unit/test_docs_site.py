"""The documentation site (docs/, ``make docs``) documents exactly the extension's API.

Read from the sources, without building the site: each Salt module has its reference
page (``automodule`` with ``:members:``, in its kind's index), nothing else is documented
as API, autodoc's ``:members:`` lists exactly the functions Salt's loader exposes, and
every check the audit makes has its entry on the checks page. ``make docs`` also checks
the built reference against the loader's functions (docs/_ext/k8snode_docs.py).
"""

import ast
import importlib
import inspect
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.unit.faketree import GOOD_KERNEL_CONFIG

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PACKAGE = "saltext.k8snode"
AUTODOC = re.compile(r"^\.\. auto(?:module|function|data|class|attribute)::\s*(\S+)((?:\n[ \t]+:.*)*)", re.MULTILINE)
CHECK_ENTRY = re.compile(r"^``([a-z_]+)(?::<[a-z]+>)?``\s*$", re.MULTILINE)


def _site_extension():
    """docs/_ext/k8snode_docs.py: the site's own readers (one reader for both)."""
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        return importlib.import_module("k8snode_docs")
    finally:
        sys.path.remove(str(DOCS / "_ext"))


def _loader_dirs():
    """setup.py's LOADER_DIRS."""
    return _site_extension().loader_dirs()


def _salt_modules():
    """``[(kind, name, repository directory)]``: each module file or package Salt loads."""
    found = []
    for kind, directory in _loader_dirs().items():
        for path in sorted((REPO / directory).iterdir()):
            if path.name.startswith(("_", ".")):
                continue
            if path.suffix == ".py" and not _site_extension().is_generated(path):
                found.append((kind, path.stem, directory))
            elif (path / "__init__.py").is_file():
                found.append((kind, path.name, directory))
    return found


SALT_MODULES = _salt_modules()
BY_MODULE = [pytest.param(*module, id=f"{module[0]}.{module[1]}") for module in SALT_MODULES]


def _documented(docs=DOCS):
    """``{target: [(page, options)]}`` of every autodoc directive in the site's sources."""
    found = {}
    for path in docs.rglob("*.rst"):
        if "_build" in path.relative_to(docs).parts:
            continue
        for target, options in AUTODOC.findall(path.read_text()):
            found.setdefault(target, []).append((path.relative_to(docs).as_posix(), options))
    return found


def reference_page_problems(docs, kind, name):
    """What keeps the reference from listing the Salt module ``kind``/``name`` in full."""
    import_path = f"{PACKAGE}.{kind}.{name}"
    page = f"ref/{kind}/{import_path}.rst"
    documented = _documented(docs).get(import_path, [])
    if [where for where, _ in documented] != [page]:
        return [f"{import_path} is documented by {[where for where, _ in documented]}, not by docs/{page} alone"]
    problems = []
    options = documented[0][1]
    if not re.search(r"^\s+:members:\s*$", options, re.MULTILINE):
        problems.append(f"docs/{page}: automodule without a bare :members:")
    for option in (":exclude-members:", ":private-members:", ":imported-members:"):
        if option in options:
            problems.append(f"docs/{page}: {option} changes which functions are listed")
    index = docs / "ref" / kind / "index.rst"
    text = index.read_text() if index.is_file() else ""
    listed = text.split(".. autosummary::", 1)[1] if ".. autosummary::" in text else ""
    if f".. currentmodule:: {PACKAGE}.{kind}" not in text or not re.search(
        rf"^\s+{re.escape(name)}\s*$", listed, re.MULTILINE
    ):
        problems.append(f"docs/ref/{kind}/index.rst does not list {name} under {PACKAGE}.{kind}")
    if f"ref/{kind}/index" not in (docs / "index.rst").read_text():
        problems.append(f"docs/index.rst has no ref/{kind}/index in its toctree")
    return problems


def test_the_extension_has_salt_modules_of_each_kind():
    assert {kind for kind, _, _ in SALT_MODULES} == set(_loader_dirs())


@pytest.mark.parametrize(("kind", "name", "directory"), BY_MODULE)
def test_each_salt_module_has_its_reference_page(kind, name, directory):
    assert reference_page_problems(DOCS, kind, name) == []


def test_nothing_but_the_salt_modules_is_documented_as_api():
    """The package's submodules (checks, tables, ...) are private helpers, not API."""
    wanted = {f"{PACKAGE}.{kind}.{name}" for kind, name, _ in SALT_MODULES}
    assert set(_documented()) == wanted


@pytest.mark.parametrize(("kind", "name", "directory"), BY_MODULE)
def test_autodoc_lists_exactly_what_salt_exposes(kind, name, directory):
    """Salt's loader exposes every public function the module holds (imported ones too,
    renamed by ``__func_alias__``); autodoc's ``:members:`` lists the documented functions
    defined in the module (the docs' extension leaves module data out)."""
    module = importlib.import_module(f"{directory}.{name}")
    for name_changer in ("__func_alias__", "__load__", "__all__"):
        # Salt renames by __func_alias__ and loads only __load__; autodoc follows __all__.
        assert not hasattr(module, name_changer), f"{name_changer}: the loader and autodoc would list other names"
    exposed = {key for key, value in vars(module).items() if not key.startswith("_") and inspect.isfunction(value)}
    listed = {
        key
        for key, value in vars(module).items()
        if not key.startswith("_")
        and inspect.isfunction(value)
        and value.__module__ == module.__name__
        and inspect.getdoc(value)
    }
    assert listed == exposed, f"not on the reference page: {sorted(exposed - listed)}"
    assert exposed, f"{directory}/{name} exposes no function"


def _documented_checks(docs=DOCS):
    return set(CHECK_ENTRY.findall((docs / "topics" / "checks.rst").read_text()))


def _coded_checks():
    """The check names ``checks.audit`` assigns: ``checks[...] = ...`` and the keys of
    its ``optional`` mapping; an f-string key counts by its prefix (``module:{name}``)."""
    tree = ast.parse((REPO / "_modules" / "k8snode" / "checks.py").read_text())
    audit = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "audit")

    def name_of(key):
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return key.value.split(":")[0]
        if isinstance(key, ast.JoinedStr) and isinstance(key.values[0], ast.Constant):
            return key.values[0].value.split(":")[0]
        raise AssertionError(f"checks.audit: a check name this test cannot read: {ast.unparse(key)}")

    names = set()
    for node in ast.walk(audit):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Subscript) and getattr(target.value, "id", None) == "checks":
                    names.add(name_of(target.slice))
                if getattr(target, "id", None) == "optional" and isinstance(node.value, ast.Dict):
                    names.update(name_of(key) for key in node.value.keys)
    return names


def test_every_check_the_audit_codes_is_on_the_checks_page():
    coded = _coded_checks()
    assert {"module", "sysctl", "swap", "cgroup", "forward_policy"} <= coded, coded
    documented = _documented_checks()
    assert not coded - documented, f"docs/topics/checks.rst lacks {sorted(coded - documented)}"
    assert not documented - coded, (
        f"docs/topics/checks.rst documents checks the audit no longer makes: {sorted(documented - coded)}"
    )


def test_every_check_an_audit_returns_is_on_the_checks_page(k8snode, tree):
    """A host that makes the audit return most of its checks (the profile's modules and
    sysctls, the release's checks, kubeadm's, Cilium's mount, a deprecation, a FORWARD
    policy, a container): each name is on the checks page."""
    tree.debian(12).modular(loaded=["overlay"]).kernel_defaults().kernel_config(GOOD_KERNEL_CONFIG)
    tree.mounts("cgroup2").cgroup_controllers().swaps("/dev/vda2").dpkg_installed(containerd="1.6.20~ds1-1")
    tree.binaries("netfilter-persistent", directory="usr/sbin")
    tree.write("etc/iptables/rules.v4", "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\nCOMMIT\n")
    tree.write(".dockerenv", "")
    profile = {"cni": "flannel", "kube_proxy_mode": "ipvs", "kubernetes_version": "1.35", "extras": ["user_namespaces"]}
    audit = k8snode.audit("kubeadm", root=tree.path, **profile)
    returned = {name.split(":")[0] for name in audit["checks"]}
    expected = {"module", "sysctl", "swap", "kernel_config", "cgroup", "kubernetes", "kernel_version"}
    expected |= {"kernel_recommended", "container_runtime", "binaries", "forward_policy", "network_namespace"}
    expected |= {"deprecated"}
    assert expected <= returned, sorted(expected - returned)
    cilium = k8snode.audit("kubeadm", root=tree.path, cni="cilium")
    returned |= {name.split(":")[0] for name in cilium["checks"]}
    assert "mount" in returned
    assert not returned - _documented_checks(), (
        f"docs/topics/checks.rst lacks {sorted(returned - _documented_checks())}"
    )


def test_a_missing_page_option_or_entry_fails(tmp_path):
    """The checks above look where they say: a copy of docs/ without the execution
    module's page, with ``:exclude-members:``, or without an entry on the checks page."""
    copy = tmp_path / "docs"
    shutil.copytree(DOCS, copy, ignore=shutil.ignore_patterns("_build"))
    assert reference_page_problems(copy, "modules", "k8snode") == []
    page = copy / "ref" / "modules" / f"{PACKAGE}.modules.k8snode.rst"
    page.write_text(page.read_text() + "    :exclude-members: prepare\n")
    assert reference_page_problems(copy, "modules", "k8snode") == [
        f"docs/ref/modules/{page.name}: :exclude-members: changes which functions are listed"
    ]
    page.unlink()
    assert reference_page_problems(copy, "modules", "k8snode") == [
        f"{PACKAGE}.modules.k8snode is documented by [], not by docs/ref/modules/{page.name} alone"
    ]
    checks = copy / "topics" / "checks.rst"
    checks.write_text(checks.read_text().replace("``swap``\n", "``swap`` (gone)\n"))
    assert "swap" not in _documented_checks(copy)
    assert "cgroup" in _documented_checks(copy)
