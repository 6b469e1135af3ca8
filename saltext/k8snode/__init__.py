"""
k8snode as an installed Salt extension (``pip install .`` / ``salt-pip install .``).

Salt finds the ``salt.loader`` entry point ``saltext.k8snode = saltext.k8snode``
and loads the ``modules``, ``states``, ``runners`` and ``output`` directories of
this package. setup.py maps them to the repository's ``_modules``, ``_states``,
``_runners`` and ``_output``: the same files serve ``saltutil.sync_all`` from the
file server and the installed extension.
"""

__version__ = "0.2.0"
