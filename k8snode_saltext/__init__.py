"""
k8snode as an installed Salt extension.

Salt finds the ``salt.loader`` entry point ``k8snode = k8snode_saltext`` and
loads the ``modules``, ``states``, ``runners`` and ``output`` sub-directories
of this package. setup.py maps them to the repository's ``_modules``,
``_states``, ``_runners`` and ``_output``: the same files serve
``saltutil.sync_all`` from the file server and ``pip install .``.
"""
