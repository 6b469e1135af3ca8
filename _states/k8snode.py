"""
Make hosts correct Kubernetes nodes, and keep them so across reboots.

The states are thin: the ``k8snode`` execution module resolves the
requirements, compares them with the host and changes only the difference.

.. code-block:: yaml

    kubernetes node prepared:
      k8snode.prepared:
        - distribution: kubeadm   # default: pillar k8snode:distribution, else kubeadm
        - extras: [ipvs]
        - sysctls:
            vm.max_map_count: {value: 262144, compare: min}
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "k8snode"


def __virtual__():
    if "k8snode.prepare" in __salt__:
        return __virtualname__
    return False, "k8snode: the k8snode execution module is not available (run saltutil.sync_all)"


def _settings(distribution, extras, modules, sysctls, swap, files):
    given = {"distribution": distribution, "extras": extras, "modules": modules, "sysctls": sysctls}
    given.update(swap=swap, files=files)
    return {key: value for key, value in given.items() if value is not None}


def _run(function, name, **kwargs):
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        outcome = __salt__[function](test=__opts__["test"], pillar=__pillar__.get("k8snode"), **kwargs)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = str(exc)
        return ret
    ret.update(result=outcome["result"], changes=outcome["changes"], comment=outcome["comment"])
    return ret


def prepared(name, distribution=None, extras=None, modules=None, sysctls=None, swap=None, files=None):
    """
    Make the host a correct node for its Kubernetes distribution: kernel modules
    loaded and listed for boot, sysctls set and persisted where they win at
    boot, swap handled. Settings come from the pillar ``k8snode``; arguments
    given here override it. ``changes`` is keyed by item (``module:overlay``,
    ``sysctl:net.ipv4.ip_forward``, ``file:/etc/sysctl.d/99-k8snode.conf``).

    name
        A label for the state.
    distribution
        ``kubeadm``, ``rke2``, ``k3s`` or ``microk8s``.
    extras, modules, sysctls, swap, files
        As the pillar keys of the same names (see ``pillar/pillar.example``).
    """
    settings = _settings(distribution, extras, modules, sysctls, swap, files)
    return _run("k8snode.prepare", name, **settings)


def absent(name, files=None):
    """
    Remove what ``k8snode.prepared`` persisted: its modules-load.d and sysctl.d
    files and the fstab swap lines it commented out. Loaded modules and live
    sysctl values stay as they are: unloading br_netfilter on a live node
    breaks its pod network.

    name
        A label for the state.
    files
        The file names, when ``prepared`` was given other ones than the pillar's.
    """
    return _run("k8snode.revert", name, **_settings(None, None, None, None, None, files))
