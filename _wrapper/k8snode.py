"""
salt-ssh wrapper for the k8snode execution module: the pillar for hosts without a minion.

salt-ssh compiles a host's pillar on the master for its wrapper functions and for states
(``Single.run_wfunc`` and ``state.pkg``, salt/client/ssh), never for a plain execution
module call: ``salt-ssh node k8snode.audit`` would run with an empty ``__pillar__`` and
audit against the defaults, whatever the pillar says the node will run. These functions
run on the master with the host's compiled pillar and call the module on the host with
its ``k8snode`` settings as the ``pillar`` argument, which is exactly what the module
would have read from ``__pillar__`` on a minion. The other functions of the module need
no pillar and go to the host unwrapped.

Loaded by the master's salt-ssh from ``module_dirs`` (the repository root: its
``_wrapper``), on Salt 3006 and 3008 alike, or from the installed extension. Not from
``wrapper_dirs``: salt-ssh loads wrappers a second time with the options it fetched from
the host, where only ``module_dirs`` and ``extension_modules`` come from the master's.
"""

import salt.client.ssh.wrapper

__virtualname__ = "k8snode"


def __virtual__():
    return __virtualname__


def _on_the_host(function, kwargs):
    """Call ``k8snode.<function>`` on the host itself. ``__salt__`` answers the names this
    wrapper defines with the wrapper; a copy of it without wrapper functions sends the
    call to the host (the way salt-ssh's own ``FunctionWrapper`` calls any module)."""
    host_functions = salt.client.ssh.wrapper.FunctionWrapper(
        __salt__.opts,
        wfuncs={},
        mods=__salt__.mods,
        fsclient=__salt__.fsclient,
        minion_opts=__salt__.minion_opts,
        **__salt__.kwargs,
    )
    arguments = {key: value for key, value in kwargs.items() if not key.startswith("__")}
    arguments.setdefault("pillar", __pillar__.get("k8snode") or {})
    return host_functions[f"k8snode.{function}"](**arguments)


def audit(**kwargs):
    """
    ``k8snode.audit`` on the host, with its pillar ``k8snode`` (see the execution module).

    CLI Example:

    .. code-block:: bash

        salt-ssh '*' k8snode.audit
    """
    return _on_the_host("audit", kwargs)


def requirements(**kwargs):
    """
    ``k8snode.requirements`` on the host, with its pillar ``k8snode``.

    CLI Example:

    .. code-block:: bash

        salt-ssh '*' k8snode.requirements
    """
    return _on_the_host("requirements", kwargs)


def metrics(**kwargs):
    """
    ``k8snode.metrics`` on the host, with its pillar ``k8snode``.

    CLI Example:

    .. code-block:: bash

        salt-ssh '*' k8snode.metrics
    """
    return _on_the_host("metrics", kwargs)


def prepare(**kwargs):
    """
    ``k8snode.prepare`` on the host, with its pillar ``k8snode`` (what the
    ``k8snode.prepared`` state calls; ``state.apply k8snode`` is the usual way).

    CLI Example:

    .. code-block:: bash

        salt-ssh '*' k8snode.prepare test=True
    """
    return _on_the_host("prepare", kwargs)


def revert(**kwargs):
    """
    ``k8snode.revert`` on the host, with its pillar ``k8snode`` (what the
    ``k8snode.absent`` state calls).

    CLI Example:

    .. code-block:: bash

        salt-ssh '*' k8snode.revert test=True
    """
    return _on_the_host("revert", kwargs)
