"""
Prepare and audit Linux hosts as Kubernetes nodes (kubeadm, RKE2, K3s, MicroK8s).

This file is the execution module's API: the public functions, their
documentation, and the only code that touches Salt's dunders (``__salt__``,
``__grains__``, ``__pillar__``). The logic lives in the package's pure
submodules, imported lazily (the loader puts this package in ``sys.modules``
only after running this file): see ``docs/ARCHITECTURE.md``.

Read-only functions, safe to grant to a role that may only look at nodes
(``publisher_acl`` / external auth; see the README): ``audit``,
``requirements``, ``kernel_facts``, ``boot_modules``, ``effective_boot_sysctls``,
``module_status``, ``sysctl_status``, ``swap_status``, ``metrics``. They read
``/proc``, ``/sys`` and ``/etc`` (or a ``root`` tree) and start no process.

Functions that change the host: ``prepare`` and ``revert`` (what the
``k8snode.prepared`` and ``k8snode.absent`` states call), and ``write_metrics``.
They write only the files k8snode owns, under ``/etc`` (and ``k8snode.prom`` in
node_exporter's textfile directory), and take no path of the caller's choice
but ``files:``, which must be a ``.conf`` name in modules-load.d or sysctl.d.
"""

__virtualname__ = "k8snode"

#: The public functions that change nothing (for a read-only grant).
READ_ONLY_FUNCTIONS = (
    "audit",
    "requirements",
    "kernel_facts",
    "boot_modules",
    "effective_boot_sysctls",
    "module_status",
    "sysctl_status",
    "swap_status",
    "metrics",
)
#: The public functions that change the host.
CHANGING_FUNCTIONS = ("prepare", "revert", "write_metrics")


def __virtual__():
    if __grains__.get("kernel", "Linux") != "Linux":
        return False, "k8snode: Kubernetes nodes are Linux hosts"
    return __virtualname__


# --------------------------------------------------------------------------
# What the pure submodules need from Salt, passed in explicitly
# --------------------------------------------------------------------------


def _identity(root):
    """The host's OS: from the grains for the running host, from the tree's
    os-release file for any other ``root``. ``source`` says which."""
    from . import host

    if root == "/" and __grains__.get("os_family"):
        try:
            major = int(str(__grains__.get("osmajorrelease") or 0).split(".")[0])
        except ValueError:
            major = 0
        os_id = str(__grains__.get("os", "")).lower()
        return {"os_family": __grains__["os_family"], "os": os_id, "major": major, "source": "grains"}
    return host.os_identity(root)


def _pillar_settings():
    return (__pillar__ or {}).get("k8snode") or {}


#: Pillar ``k8snode`` keys about watching the node (the beacon, self-heal, metrics),
#: not about what the node needs: kept out of the requirements' resolution.
DRIFT_KEY = "drift"


def _requirement_settings(pillar):
    if isinstance(pillar, dict) and DRIFT_KEY in pillar:
        return {key: value for key, value in pillar.items() if key != DRIFT_KEY}
    return pillar


def _clean(kwargs):
    """Drop the ``__pub_*`` keywords Salt adds to a published call."""
    return {key: value for key, value in kwargs.items() if not key.startswith("__")}


def _node_reader(root):
    """What ``root``'s files say of the Kubernetes installed there, per distribution."""
    from . import kubelet

    def read_node(distribution):
        return {"installed": kubelet.installed_releases(root), **kubelet.node_settings(root, distribution)}

    return read_node


def _resolve(distribution, root, pillar, overrides):
    from .resolve import resolve

    if pillar is None:
        pillar = _pillar_settings()
    return resolve(distribution, _requirement_settings(pillar), _clean(overrides), _identity(root), _node_reader(root))


def _os_boot(root):
    """How this OS boots (``reads_etc_sysctl_conf``, ``etc_modules``), from the tables alone
    (no pillar, and none of the node's Kubernetes files: they do not change how it boots)."""
    from .resolve import resolve

    return resolve(None, {}, {}, _identity(root))["boot"]


def _refuse_root(overrides):
    """The changing functions act on the running host only: a ``root`` would make them
    write (and run modprobe/swapoff for) a tree of the caller's choice."""
    if "root" in overrides:
        from .validate import invalid

        raise invalid(
            "arguments", "setting", "root", "prepare and revert change the running host only (root= is read-only)"
        )


def _run(argv):
    return __salt__["cmd.run_all"](argv, python_shell=False, ignore_retcode=True)


def _prepare(distribution=None, test=False, root="/", pillar=None, **overrides):
    """:func:`prepare` on the tree at ``root`` (the unit tests' seam; not public)."""
    from . import changes

    resolved = _resolve(distribution, root, pillar, overrides)
    return changes.prepare(resolved, root, _run, test)


def _revert(test=False, root="/", pillar=None, **overrides):
    """:func:`revert` on the tree at ``root`` (the unit tests' seam; not public)."""
    from . import changes

    # The same settings as prepare are accepted (and checked); only the file names matter here.
    resolved = _resolve(overrides.pop("distribution", None), root, pillar, overrides)
    return changes.revert(resolved, root, test)


# --------------------------------------------------------------------------
# Read-only
# --------------------------------------------------------------------------


def requirements(distribution=None, root="/", pillar=None, **overrides):
    """
    Resolve what this host needs for its Kubernetes distribution, network plugin
    and kube-proxy mode, and say where each value came from. The layers apply in
    this order, a later one winning: the distribution's table, the network plugin
    (``cni:cilium``), the kube-proxy mode (``kube_proxy_mode:nftables``), extras,
    the OS family, the OS release, the pillar ``k8snode``, then the arguments.
    ``os_source`` says where the OS was read (``grains``, or the os-release file
    of ``root``); ``cni`` and ``kube_proxy_mode`` say where they were chosen.
    ``kernel_floors`` (``[{version, source, why}]``), ``mounts`` and
    ``deprecations`` come from the tables only.

    distribution
        ``kubeadm`` (default), ``rke2``, ``k3s`` or ``microk8s``.
    kubernetes_version
        The minor release that will run here (``"1.35"``, ``v1.35.2``); default: the
        installed kubelet (dpkg, RKE2's data directory, the MicroK8s snap), else the
        newest release the rules know, said in ``kubernetes.assumed``. The result's
        ``kubernetes`` says which release and where it came from.
    kubelet
        The kubelet's settings for a node not installed yet: ``{fail_swap_on,
        swap_behavior, fail_cgroup_v1, protect_kernel_defaults, cgroup_driver}``. The
        node's own kubelet files win (``kubelet`` in the result names each source).
    cni
        The network plugin: ``cilium``, ``calico``, ``flannel`` or ``none`` (default).
    kube_proxy_mode
        ``iptables`` (default), ``ipvs`` (deprecated since Kubernetes 1.35),
        ``nftables`` (kernel >= 5.13) or ``none`` (a CNI replaces kube-proxy).
    extras
        List of optional bundles: ``ipv6``, ``protect_kernel_defaults``,
        ``inotify``, ``max_map_count``, ``user_namespaces`` (kernel >= 6.3, a
        warning); ``ipvs`` is an alias of ``kube_proxy_mode=ipvs``.
    modules
        ``{name: {alternatives: [...], required: bool}}``; ``name: false`` drops it.
    sysctls
        ``{key: value}`` or ``{key: {value, compare: exact|min|one_of, accepted,
        required}}`` (``one_of`` accepts any value of ``accepted`` and writes
        ``value`` when none holds); ``key: false`` drops it.
    swap
        ``off`` (no swap now nor at boot), ``warn`` or ``ignore``.
    files
        ``{modules_load: /etc/modules-load.d/NAME.conf, sysctl: /etc/sysctl.d/NAME.conf}``.
    pillar
        The ``k8snode`` settings to use instead of this minion's pillar.
    root
        Directory to read the host from (a chroot, an image). Default ``/``.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.requirements
        salt '*' k8snode.requirements distribution=rke2 extras='[ipvs]'
        salt '*' k8snode.requirements cni=cilium kube_proxy_mode=nftables
        salt '*' k8snode.requirements kubernetes_version=1.35 kubelet='{fail_cgroup_v1: false}'
    """
    return _resolve(distribution, root, pillar, overrides)


def audit(distribution=None, root="/", pillar=None, **overrides):
    """
    Tell whether this host is a correct Kubernetes node for its distribution,
    what is wrong, and what will be lost at the next reboot. Read-only: it reads
    ``/proc``, ``/sys`` and ``/etc`` and changes nothing.

    Takes the same arguments as :func:`requirements`. Returns ``ready`` (true
    only when every required check is ``ok``), ``distribution``, ``cni``,
    ``kube_proxy_mode``, ``os_family``, ``summary`` (counts per status),
    ``kubernetes`` (``version``, ``source``, ``assumed``, ``stale``: the release the
    verdicts are for), ``failing``, ``lost_at_reboot`` and ``checks``: ``{"module:overlay":
    {"status": "ok"|"fail"|"warn", "required", "expected", "live", "boot",
    "detail"}, "sysctl:net.ipv4.ip_forward": ..., "swap": ..., "kernel_config":
    ..., "cgroup": ..., "kubernetes": ...}``; ``cgroup`` and ``swap`` follow the release
    and the kubelet's ``failCgroupV1`` / ``failSwapOn`` (naming the file each came from);
    for kubeadm also ``kernel_version`` / ``kernel_recommended`` (kubeadm's kernel
    validation for the release), ``container_runtime`` (containerd < 2.0) and
    ``binaries`` (kubeadm's preflight). With a network plugin or kube-proxy mode that needs
    them, also ``kernel_version`` (the running kernel against each floor, e.g.
    ``>= 5.13`` for ``kube_proxy_mode:nftables``, naming who requires it),
    ``mount:/sys/fs/bpf`` (Cilium; a warning) and ``deprecated:<source>`` (a
    warning, e.g. kube-proxy's IPVS mode).

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.audit
        salt '*' k8snode.audit distribution=k3s --out=k8snode
        salt '*' k8snode.audit cni=cilium kube_proxy_mode=nftables
        salt '*' k8snode.audit kubernetes_version=1.35
    """
    from . import checks

    return checks.audit(_resolve(distribution, root, pillar, overrides), root)


def kernel_facts(root="/"):
    """
    Read what the running kernel offers: loaded, built-in and available modules,
    its config and filesystems. Reads files only.

    root
        Directory to read the host from. Default ``/``.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.kernel_facts
    """
    from . import kernel

    return kernel.kernel_facts(root)


def boot_modules(root="/", etc_modules=None):
    """
    Return the modules that will be loaded at boot and the files that list them:
    ``{"br_netfilter": ["/etc/modules-load.d/k8snode.conf"], ...}``.

    root
        Directory to read the host from. Default ``/``.
    etc_modules
        Also read this file (Debian's ``/etc/modules``). Default: from the OS data.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.boot_modules
    """
    from . import kernel

    if etc_modules is None:
        etc_modules = _os_boot(root)["etc_modules"]
    return kernel.boot_modules(root, etc_modules)


def effective_boot_sysctls(root="/", reads_etc_sysctl_conf=None):
    """
    Compute the sysctl values that hold after the next boot, the way the host's
    sysctl applier does it. On a systemd host (``/run/systemd/system``)
    ``systemd-sysctl`` reads the sysctl.d directories (``/etc``, ``/run``,
    ``/usr/local/lib``, ``/usr/lib``, ``/lib``): a name in an earlier directory masks
    the same name in a later one, hidden files are skipped, files are read by name;
    an assignment that changes a key's value moves it to the end of the order, a
    ``-key`` line keeps globs off the key, globs (glob(3) with braces) write every
    match that has no line of its own. ``/etc/sysctl.conf`` is read only through a
    sysctl.d link (Debian's ``99-sysctl.conf``). Without systemd, procps'
    ``sysctl --system`` applies the lines in order (hidden files too) and reads
    ``/etc/sysctl.conf`` last; it expands globs only from procps 4.0 on (without
    braces), so the model follows the procps version found on the host (``procps``).
    The kernel then parses each value: see :func:`sysctl_status`.

    root
        Directory to read the host from. Default ``/``.
    reads_etc_sysctl_conf
        For hosts without systemd: ``False`` leaves ``/etc/sysctl.conf`` out.
        Default: from the OS data (read, as ``sysctl --system`` does).

    Returns ``{"files": [...], "values": {path_key: {"value", "file", "line",
    "assignments": [[file, value], ...]}}, "globs": [...], "problems": [...],
    "order": [...], "explicit": [...], "refused": [...], "ignored": [...],
    "exempt_paths": [...], "procps": {"version", "evidence", "expands_globs",
    "assumed"} | None, "applier", "applier_evidence", "ambiguous"}``; keys are /proc/sys paths
    (``net/ipv4/ip_forward``); ``values`` holds the explicit lines (value None for
    ``-key``), ``order`` every write in the order it is made, ``refused`` the lines
    whose value the kernel refuses, ``ignored`` the glob lines procps < 4.0 skips.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.effective_boot_sysctls
    """
    from . import sysctl_boot

    if reads_etc_sysctl_conf is None:
        reads_etc_sysctl_conf = _os_boot(root)["reads_etc_sysctl_conf"]
    return sysctl_boot.effective_boot_sysctls(root, reads_etc_sysctl_conf)


def module_status(name, root="/", alternatives=None):
    """
    Tell whether a kernel module is loaded, built in, available but not loaded,
    or missing, with the evidence, and which files load it at boot.

    name
        The module, e.g. ``br_netfilter``.
    alternatives
        Names to try in order instead of ``name`` alone (``[nf_conntrack, nf_conntrack_ipv4]``).

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.module_status br_netfilter
    """
    from . import kernel
    from .validate import check_module_name

    check_module_name(name, "arguments")
    alternatives = [check_module_name(alt, "arguments") for alt in (alternatives or [name])]
    facts = kernel.kernel_facts(root)
    chosen, state, evidence = kernel.resolve_module(alternatives, facts, root)
    return {
        "name": chosen,
        "state": state,
        "evidence": evidence,
        "persisted": boot_modules(root).get(chosen, []),
        "module_support": facts["module_support"],
    }


def sysctl_status(key, value=None, compare="exact", root="/"):
    """
    Report one sysctl: its live value, the value that holds after reboot and the
    file and line that set it, and whether both meet ``value``.

    The boot value is what the kernel stores, by the key's proc_handler (a table
    of them, else learnt from the live value): integers are parsed as the kernel
    does (``01`` is 1, ``0x400`` is 1024, ``1 # routing`` is 1, ``+1``, ``"1"`` and
    values out of the handler's range are refused and listed in ``boot_refused``
    with their file and line), bridge-nf-call-* store 1 for any non-zero value,
    the systemd-sysctl version found decides whether ``/lib/sysctl.d`` is read,
    and coupled keys count (``net.ipv4.ip_forward`` and
    ``net.ipv4.conf.all.forwarding`` are one variable: ``boot_via`` names the key
    that was written). ``boot_writes`` lists every write that reaches the key, in
    the order the applier makes them, explicit lines and globs alike
    (``[{"file", "line", "value", "via", "pattern"?, "stored" | "refused"}]``; the
    last one stored is the winner), ``boot_assignments`` every explicit line for the
    key in file order (``[[file, value]]``, lines systemd-sysctl drops included); ``runtime_writers`` the programs installed here
    that write the key after boot, told by their files alone (firewalld,
    NetworkManager, Docker with whether their unit is enabled, systemd-networkd
    ``IPForward=`` lines): ``[{"name", "evidence", "keys", "enabled"?}]``. ``applier`` says which program applies sysctl.d at boot, and
    ``ambiguous`` why that is a guess (or None).

    key
        e.g. ``net.ipv4.ip_forward``.
    value
        The value wanted; without it only the values are reported.
    compare
        ``exact`` or ``min`` (a floor).

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.sysctl_status net.ipv4.ip_forward 1
    """
    import os

    from . import host, sysctl_boot
    from .tables import SYSCTL_COMPARISONS
    from .validate import check_sysctl_key, invalid, normalize_sysctl_value

    check_sysctl_key(key, "arguments")
    if sysctl_boot.is_glob(sysctl_boot.sysctl_path(key)):
        raise invalid("arguments", "sysctl key", key, "a plain key here (k8snode.audit checks pattern keys)")
    if compare not in SYSCTL_COMPARISONS:
        raise invalid("arguments", "compare", compare, "one of " + ", ".join(SYSCTL_COMPARISONS))
    path_key = sysctl_boot.sysctl_path(key)
    boot = effective_boot_sysctls(root)
    winner = sysctl_boot.boot_assignment(path_key, boot)
    status = {
        "key": key,
        "exists": os.path.exists(host.path(root, "proc/sys/" + path_key)),
        "live": sysctl_boot.read_live(root, key),
        "boot": winner["value"] if winner else None,
        "boot_file": winner["file"] if winner else None,
        "boot_line": winner["line"] if winner else None,
        "boot_written": winner["written"] if winner else None,
        "boot_via": winner["via"] if winner else None,
        "boot_refused": winner["refused"] if winner else [],
        "boot_writes": sysctl_boot.boot_writes(path_key, boot),
        # Every explicit line for the key, in file order, superseded ones included.
        "boot_assignments": boot["values"].get(path_key, {}).get("assignments", []),
        "runtime_writers": sysctl_boot.runtime_writers_of(path_key, host.runtime_sysctl_writers(root)),
        "applier": boot["applier"],
        "applier_evidence": boot["applier_evidence"],
        "ambiguous": boot["ambiguous"],
    }
    if value is not None:
        wanted = normalize_sysctl_value(value, "arguments", key)
        status["live_ok"] = sysctl_boot.value_satisfies(status["live"], wanted, compare)
        status["boot_ok"] = sysctl_boot.value_satisfies(status["boot"], wanted, compare)
    return status


def swap_status(root="/"):
    """
    Report active swap (``/proc/swaps``) and swap that comes back at boot
    (``/etc/fstab`` entries, systemd swap units, zram-generator).

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.swap_status
    """
    from . import swap

    return swap.swap_status(root)


def _textfile_directory():
    from . import prometheus

    return prometheus.configured_directory(__opts__, _pillar_settings())


def _metrics_text(root, pillar, distribution, overrides):
    import time

    from . import checks, prometheus

    resolved = _resolve(distribution, root, pillar, overrides)
    audit_time = time.time()
    audit = checks.audit(resolved, root)
    return audit, prometheus.render(audit, resolved, audit_time)


def metrics(distribution=None, root="/", pillar=None, **overrides):
    """
    Return the audit as Prometheus metrics (text exposition format), as
    :func:`write_metrics` would write them for node_exporter's textfile collector.
    Read-only. Takes the same arguments as :func:`audit`.

    Families: ``k8snode_ready``; per check (label ``check="sysctl:net.ipv4.ip_forward"``)
    ``k8snode_check_ok``, ``k8snode_check_live_ok``, ``k8snode_check_boot_ok`` (0 while
    ``live_ok`` is 1: lost at the next reboot), ``k8snode_check_required``;
    ``k8snode_audit_timestamp_seconds``; ``k8snode_info`` (1, labels ``distribution``,
    ``os``, ``os_family``, ``kernel``).

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.metrics
    """
    return _metrics_text(root, pillar, distribution, overrides)[1]


# --------------------------------------------------------------------------
# Changing the host
# --------------------------------------------------------------------------


def write_metrics():
    """
    Audit this host and write the result as ``k8snode.prom`` into node_exporter's
    textfile directory, atomically (a temporary file in the same directory, then a
    rename). The directory is Debian's ``/var/lib/prometheus/node-exporter`` unless the
    minion config ``k8snode_textfile_directory`` or the pillar
    ``k8snode:drift:textfile_directory`` names another one; it must exist. The file
    name is fixed and no argument chooses a path. The ``k8snode`` beacon rewrites the
    file on every change when ``metrics: true``.

    Returns ``{"path", "ready", "failing"}``.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.write_metrics
    """
    from . import prometheus

    directory = _textfile_directory()
    audit, text = _metrics_text("/", None, None, {})
    return {"path": prometheus.write(text, directory), "ready": audit["ready"], "failing": audit["failing"]}


def prepare(distribution=None, test=False, pillar=None, **overrides):
    """
    Make this host a correct node for its Kubernetes distribution and keep it so
    across reboots; change only what differs. Modules first (loaded unless
    already loaded or built in, then listed in the modules-load.d file k8snode
    owns), then sysctls (set live, then written to the sysctl.d file it owns,
    floors never lowered), then swap where the policy is ``off`` (swapoff, and
    fstab swap lines commented out with a marker after a backup). A file of its own
    that a run with other ``files:`` left under another name (beside the new one or
    the default one) is removed once the new one is written: it would still act at
    boot.

    Invalid settings raise before anything is changed. One failing item does not
    stop the others. Takes the arguments of :func:`requirements` but ``root``
    (it changes the running host only), and ``test``.

    Returns ``{"result": True|False|None, "changes": {item: {"old", "new"}},
    "comment": str, "failures": {item: reason}}``.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.prepare test=True
        salt '*' k8snode.prepare distribution=k3s
    """
    _refuse_root(overrides)
    return _prepare(distribution, test, "/", pillar, **overrides)


def revert(test=False, pillar=None, **overrides):
    """
    Undo what :func:`prepare` persisted: remove the modules-load.d and sysctl.d
    files k8snode wrote (the ones ``files:`` names, and any of its own under another
    name beside them or the default ones) and uncomment the fstab swap lines it
    commented out.
    Loaded modules and live sysctl values are left alone: unloading
    br_netfilter on a live node breaks its pod network.

    CLI Example:

    .. code-block:: bash

        salt '*' k8snode.revert test=True
    """
    _refuse_root(overrides)
    return _revert(test, "/", pillar, **overrides)
