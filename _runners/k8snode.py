"""
Fleet readiness: which hosts are correct Kubernetes nodes, and why not.

.. code-block:: bash

    salt-run k8snode.report                 # every minion
    salt-run k8snode.report tgt='G@roles:kubernetes-node' tgt_type=compound
    salt-run k8snode.report --out=json      # the same data for scripts

``salt-run`` exits non-zero when any targeted host is not ready or did not
answer.
"""

import atexit
import collections
import gc
import os
import sys

import salt.client
import salt.utils.minions

__virtualname__ = "k8snode"

NO_ANSWER = "no answer"
READY = "ready"
NOT_READY = "not ready"
ERROR = "error"


def __virtual__():
    return __virtualname__


def _close_at_exit_of_the_cli():
    # Only in the short-lived salt-run process, once: a long-running master that runs
    # the report (reactor, API) owns its clients and must not have them closed.
    if not os.path.basename(sys.argv[0]).startswith("salt-run") or _CLI_CLIENTS:
        return
    import salt.runner

    # Hold salt-run's Runner until exit: the CLI drops its last reference while it
    # unwinds the SystemExit that carries the exit code, before atexit would run.
    # type(), not isinstance(): the heap holds weak proxies, and isinstance() on a dead one raises.
    _CLI_CLIENTS.extend(obj for obj in gc.get_objects() if issubclass(type(obj), salt.runner.Runner))
    atexit.register(_close_the_cli_clients)


_CLI_CLIENTS = []


def _close_the_cli_clients():
    """
    Destroy the Runner (and its MasterMinion) that ``salt-run`` leaves open.

    Salt 3008.4's ``salt-run`` never destroys its Runner, and a MasterMinion's
    ``__del__`` warns even after ``destroy()`` (destroy leaves ``{}`` where
    ``__del__`` looks for ``None``): every ``salt-run`` call, ``test.arg``
    included, ends with "unclosed Runner ... unclosed MasterMinion" printed at
    the user. At exit, after the report has been printed, close them the way
    their finalizers would, so the finalizers find nothing left to warn about.
    """
    for runner in _CLI_CLIENTS:
        minion = getattr(runner, "_mminion", None)
        runner.destroy()
        if minion is not None:
            minion.destroy()
            minion.returners = minion.functions = minion.utils = None
    _CLI_CLIENTS.clear()


def _expected_minions(tgt, tgt_type):
    found = salt.utils.minions.CkMinions(__opts__).check_minions(tgt, tgt_type)
    return set(found.get("minions", [])) | set(found.get("missing", []))


def _host_entry(answer):
    """Classify one minion's answer to k8snode.audit."""
    audit = answer.get("ret") if isinstance(answer, dict) else answer
    if not isinstance(audit, dict) or "checks" not in audit:
        return {"status": ERROR, "failing": {}, "lost_at_reboot": [], "error": str(audit)}
    failing = {name: audit["checks"][name]["detail"] for name in audit.get("failing", [])}
    return {
        "status": READY if audit["ready"] else NOT_READY,
        "distribution": audit.get("distribution"),
        "os": audit.get("os"),
        "failing": failing,
        "lost_at_reboot": audit.get("lost_at_reboot", []),
        "summary": audit.get("summary", {}),
    }


def _summarize(answers, expected):
    """
    Build the fleet report from the minions' audit answers (``{id: answer}``)
    and the ids that were targeted. Hosts that did not answer are listed, never
    dropped.
    """
    hosts = {minion: _host_entry(answer) for minion, answer in answers.items()}
    for minion in set(expected) - set(answers):
        hosts[minion] = {"status": NO_ANSWER, "failing": {}, "lost_at_reboot": []}
    counts = collections.Counter(host["status"] for host in hosts.values())
    failures = collections.Counter(name for host in hosts.values() for name in host["failing"])
    all_ready = bool(hosts) and counts[READY] == len(hosts)
    return {
        "ready": all_ready,
        "retcode": 0 if all_ready else 1,
        "counts": {status: counts[status] for status in (READY, NOT_READY, NO_ANSWER, ERROR)},
        "common_failures": [
            [name, count] for name, count in sorted(failures.items(), key=lambda item: (-item[1], item[0]))
        ],
        "hosts": dict(sorted(hosts.items())),
    }


def report(tgt="*", tgt_type="glob", timeout=None, **audit_kwargs):
    """
    Audit the targeted minions and report, per host, ready / not ready / no
    answer with the failing checks, and the most common failures across the
    fleet. Any host not ready or not answering makes ``salt-run`` exit 1.

    tgt, tgt_type
        Any Salt target (``glob``, ``list``, ``grain``, ``compound``, ...).
    timeout
        Seconds to wait for answers (default: the master's ``timeout``).
    audit_kwargs
        Passed to ``k8snode.audit`` (e.g. ``distribution=k3s``).

    CLI Example:

    .. code-block:: bash

        salt-run k8snode.report
        salt-run k8snode.report tgt='web*,db*' tgt_type=list --out=json
    """
    audit_kwargs = {key: value for key, value in audit_kwargs.items() if not key.startswith("__")}
    _close_at_exit_of_the_cli()
    expected = _expected_minions(tgt, tgt_type)
    answers = {}
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        for answer in client.cmd_iter(
            tgt,
            "k8snode.audit",
            kwarg=audit_kwargs,
            tgt_type=tgt_type,
            timeout=timeout or __opts__.get("timeout", 5),
        ):
            answers.update(answer)
    data = _summarize(answers, expected)
    __context__["retcode"] = data["retcode"]
    if __opts__.get("output"):
        return data
    return {"outputter": "k8snode", "data": data}
