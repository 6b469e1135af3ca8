"""
Sphinx extension for k8snode's site: the reference tables come from the code's own data.

``.. k8snode-table:: NAME`` renders one table (or list) built by k8snode_tables.py from
``releases.py``, ``tables.py``, ``resolve.py``, ``prometheus.py`` or
``prometheus/k8snode-alerts.yaml`` at build time, so the site cannot drift from what the
audit uses.

After reading every page, the build checks that the reference documents exactly the
functions Salt's loader exposes for each module (``saltext.k8snode.<kind>.<name>``):
a missing page, a missing or an extra function is a warning, an error under ``-W``.
"""

import ast
import importlib
import inspect
import sys
import types

from docutils.parsers.rst import Directive
from k8snode_tables import PACKAGE, REPO, TABLES
from sphinx.util import logging

log = logging.getLogger(__name__)


def loader_dirs():
    """setup.py's ``LOADER_DIRS``: loader kind (``modules``) -> repository directory (``_modules``)."""
    for node in ast.parse((REPO / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and [target.id for target in node.targets] == ["LOADER_DIRS"]:
            return ast.literal_eval(node.value)
    raise LookupError("setup.py has no LOADER_DIRS")


def map_the_installed_names():
    """Make ``saltext.k8snode.<kind>`` import the repository's ``_<kind>`` directory, as
    setup.py maps them for ``pip install .``: autodoc then imports each Salt module under
    the name the installed extension gives it, from this tree (nothing installed)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    importlib.import_module(PACKAGE)
    for kind, directory in loader_dirs().items():
        name = f"{PACKAGE}.{kind}"
        package = sys.modules.get(name)
        if package is None:
            package = types.ModuleType(name, f"k8snode's {kind} ({directory}/)")
            package.__path__ = [str(REPO / directory)]
            sys.modules[name] = package
        if list(package.__path__) != [str(REPO / directory)]:
            raise ImportError(f"{name} is imported from {list(package.__path__)}, not this tree's {directory}/")


class K8snodeTable(Directive):
    """``.. k8snode-table:: NAME``: one of :data:`TABLES`, built from the code's data."""

    required_arguments = 1

    def run(self):
        name = self.arguments[0]
        if name not in TABLES:
            raise self.error(f"k8snode-table: unknown table {name!r}; one of {', '.join(sorted(TABLES))}")
        return TABLES[name]()


# --------------------------------------------------------------------------
# The reference lists exactly what Salt's loader exposes
# --------------------------------------------------------------------------


def salt_modules():
    """``{import path: module}`` of every Salt module of the extension: each file (or
    package) in a loader directory, under the name the installed extension gives it."""
    found = {}
    for kind, directory in loader_dirs().items():
        for path in sorted((REPO / directory).iterdir()):
            if path.name.startswith(("_", ".")):
                continue
            if path.suffix == ".py":
                name = path.stem
            elif (path / "__init__.py").is_file():
                name = path.name
            else:
                continue
            import_path = f"{PACKAGE}.{kind}.{name}"
            found[import_path] = importlib.import_module(import_path)
    return found


def loader_functions(module):
    """The names Salt's loader exposes: the public functions (of ``__load__`` when the
    module has one), renamed by ``__func_alias__``."""
    aliases = getattr(module, "__func_alias__", {})
    names = getattr(module, "__load__", list(vars(module)))
    return {
        aliases.get(name, name)
        for name in names
        if not name.startswith("_") and inspect.isfunction(getattr(module, name, None))
    }


def _check_reference(app, env):
    documented = {}
    for fullname, entry in env.get_domain("py").objects.items():
        if entry.objtype == "function":
            module, _, function = fullname.rpartition(".")
            documented.setdefault(module, set()).add(function)
    for import_path, module in salt_modules().items():
        if import_path not in env.get_domain("py").modules:
            log.warning("k8snode reference: no page documents the Salt module %s", import_path)
            continue
        expected, listed = loader_functions(module), documented.get(import_path, set())
        if expected != listed:
            log.warning(
                "k8snode reference: %s lists %s, Salt's loader exposes %s (missing %s, extra %s)",
                import_path,
                sorted(listed),
                sorted(expected),
                sorted(expected - listed),
                sorted(listed - expected),
            )


def _only_functions(app, what, name, obj, skip, options):
    """A Salt module's API is its functions: its module-level data is not listed."""
    if what == "module" and not inspect.isfunction(obj):
        return True
    return None


def setup(app):
    map_the_installed_names()
    app.add_directive("k8snode-table", K8snodeTable)
    app.connect("autodoc-skip-member", _only_functions)
    app.connect("env-check-consistency", _check_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
