"""
Fleet readiness: which hosts are correct Kubernetes nodes, and why not.

.. code-block:: bash

    salt-run k8snode.report                 # every minion
    salt-run k8snode.report tgt='G@roles:kubernetes-node' tgt_type=compound
    salt-run k8snode.report --out=json      # the same data for scripts

``salt-run`` exits non-zero when any targeted host is not ready or did not
answer.

With the ``k8snode`` beacon on, the drift reactor (``salt/reactor/k8snode_drift.sls``)
calls :func:`remember` and :func:`heal` for every beacon event: the report then shows
the last known state of a host that does not answer, and counts drift events per
host; ``heal`` re-applies ``k8snode`` on a drifted minion when its pillar allows it.
"""

import atexit
import collections
import contextlib
import fcntl
import gc
import json
import logging
import os
import re
import sys
import time

import salt.client
import salt.utils.event
import salt.utils.minions

log = logging.getLogger(__name__)

__virtualname__ = "k8snode"

#: Seconds of drift events the report counts by default.
DRIFT_WINDOW = 86400
#: Self-heal: at most HEAL_LIMIT state runs per minion within HEAL_WINDOW seconds,
#: and none within HEAL_COOLDOWN seconds of the previous one (one drift often
#: changes several checks at once: one state run repairs them all).
HEAL_LIMIT = 3
HEAL_WINDOW = 3600
HEAL_COOLDOWN = 30
#: Drift events kept per minion (the oldest go first).
MEMORY_EVENTS = 1000
_MINION_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,252}$")

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


def _last_known(remembered, now):
    known = remembered.get("last_known")
    if not known:
        return None
    age = max(0, int(now - known["time"]))
    return dict(known, age_seconds=age)


def _summarize(answers, expected, memory=None, now=None, window=DRIFT_WINDOW):
    """
    Build the fleet report from the minions' audit answers (``{id: answer}``)
    and the ids that were targeted. Hosts that did not answer are listed, never
    dropped; with ``memory`` (``{id: remembered}``, see :func:`remember`) they carry
    their last known state and its age, and every host its drift events within
    ``window`` seconds.
    """
    memory = memory or {}
    now = time.time() if now is None else now
    hosts = {minion: _host_entry(answer) for minion, answer in answers.items()}
    for minion in set(expected) - set(answers):
        hosts[minion] = {"status": NO_ANSWER, "failing": {}, "lost_at_reboot": []}
        known = _last_known(memory.get(minion, {}), now)
        if known:
            hosts[minion]["last_known"] = known
            hosts[minion]["detail"] = f"no answer, last known: {known['status']}, {known['age_seconds']} s ago"
    since = now - window
    for minion, host in hosts.items():
        host["drift_events"] = sum(1 for stamp in memory.get(minion, {}).get("drift_events", ()) if stamp[0] >= since)
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


def report(tgt="*", tgt_type="glob", timeout=None, window=DRIFT_WINDOW, **audit_kwargs):
    """
    Audit the targeted minions and report, per host, ready / not ready / no
    answer with the failing checks, and the most common failures across the
    fleet. Any host not ready or not answering makes ``salt-run`` exit 1.

    A host that does not answer carries ``last_known`` (``status``, ``failing``,
    ``time``, ``age_seconds``, ``source``: the beacon's events or an earlier report)
    and every host ``drift_events``: the beacon's status changes within ``window``.

    tgt, tgt_type
        Any Salt target (``glob``, ``list``, ``grain``, ``compound``, ...).
    timeout
        Seconds to wait for answers (default: the master's ``timeout``).
    window
        Seconds of drift events to count (default 86400, one day).
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
    now = time.time()
    for minion, answer in answers.items():
        entry = _host_entry(answer)
        if entry["status"] in (READY, NOT_READY):
            _update_memory(minion, lambda remembered, e=entry: _set_last_known(remembered, e, now, "report"))
    memory = {minion: _read_memory(minion) for minion in expected | set(answers)}
    data = _summarize(answers, expected, memory, now, float(window))
    __context__["retcode"] = data["retcode"]
    if __opts__.get("output"):
        return data
    return {"outputter": "k8snode", "data": data}


# --------------------------------------------------------------------------
# Fleet memory and self-heal (called by salt/reactor/k8snode_drift.sls)
# --------------------------------------------------------------------------


def _store(kind, minion):
    """``<cachedir>/k8snode/<kind>/<minion>.json`` (the id checked: it names a file)."""
    if not isinstance(minion, str) or not _MINION_ID.match(minion):
        raise ValueError(f"k8snode: invalid minion id {minion!r}: letters, digits, '_', '.', '@', '-'")
    directory = os.path.join(__opts__["cachedir"], "k8snode", kind)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return os.path.join(directory, minion + ".json")


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as handle:
            found = json.load(handle)
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


@contextlib.contextmanager
def _locked_json(path):
    """Read, let the caller change, write back atomically; one writer at a time
    (the reactor runs runners in parallel threads and processes)."""
    with open(path + ".lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _read_json(path)
        yield data
        temp = f"{path}.tmp-{os.getpid()}"
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True)
        os.replace(temp, path)


def _read_memory(minion):
    try:
        return _read_json(_store("fleet", minion))
    except ValueError:
        return {}


def _update_memory(minion, change):
    with _locked_json(_store("fleet", minion)) as remembered:
        change(remembered)


def _set_last_known(remembered, entry, when, source):
    previous = remembered.get("last_known") or {}
    if previous.get("time", 0) <= when:
        remembered["last_known"] = {
            "status": entry["status"],
            "failing": sorted(entry["failing"]),
            "time": when,
            "source": source,
        }


def _event_kind(tag, data):
    """``salt/beacon/<id>/k8snode/<check>`` -> ``<check>`` (``summary`` for the summary).

    The minion id in the tag and in the data must agree: Salt puts the sending
    minion's id in both, and an event that names two minions is not one to act on.
    """
    parts = (tag or "").split("/", 4)
    if len(parts) != 5 or parts[:2] != ["salt", "beacon"] or parts[3] != "k8snode":
        raise ValueError(f"k8snode: not a k8snode beacon event tag: {tag!r}")
    if parts[2] != data.get("id"):
        raise ValueError(f"k8snode: beacon event {tag!r} carries id {data.get('id')!r}: the ids must agree")
    return parts[4]


def remember(tag=None, data=None):
    """
    Record a ``k8snode`` beacon event in the master's fleet memory: the host's last
    known state (from a summary, or from the ``ready`` of a change event) and, for a
    change, a drift event (time, check, new status). What ``report`` shows for a
    host that does not answer. Called by the drift reactor.

    CLI Example:

    .. code-block:: bash

        salt-run k8snode.remember tag=salt/beacon/node1/k8snode/summary data='{"id": "node1", "ready": true, "failing": []}'
    """
    data = data or {}
    minion = data.get("id")
    _store("fleet", minion)  # the id names files: check it first
    kind = _event_kind(tag, data)
    now = time.time()
    ready = data.get("ready")
    entry = {"status": READY if ready else NOT_READY, "failing": data.get("failing") or []}

    def change(remembered):
        if kind != "summary":
            events = remembered.setdefault("drift_events", [])
            events.append([now, kind, data.get("new_status")])
            del events[:-MEMORY_EVENTS]
            entry["failing"] = (remembered.get("last_known") or {}).get("failing", [])
            if data.get("new_status") == "fail":
                entry["failing"] = sorted(set(entry["failing"]) | {kind})
            else:
                entry["failing"] = [name for name in entry["failing"] if name != kind]
        if isinstance(ready, bool):
            _set_last_known(remembered, entry, now, "beacon")

    _update_memory(minion, change)
    return {"minion": minion, "event": kind}


def _drift_settings(minion):
    """The minion's pillar ``k8snode:drift``, compiled now on the master (a pillar
    change takes effect without waiting for the minion to refresh)."""
    import salt.pillar

    _, grains, _ = salt.utils.minions.get_minion_data(minion, __opts__)
    pillar = salt.pillar.get_pillar(__opts__, grains or {}, minion, saltenv=__opts__.get("saltenv")).compile_pillar()
    drift = (pillar.get("k8snode") or {}).get("drift") or {}
    return drift if isinstance(drift, dict) else {}


def _positive(settings, key, default):
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"k8snode: pillar k8snode:drift:{key}: invalid {value!r}: a number > 0")
    return value


def _fire(minion, outcome, data):
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False) as bus:
        bus.fire_event(dict(data, id=minion, outcome=outcome), f"k8snode/heal/{minion}/{outcome}")


def _heal_decision(kind, data, settings, history, now):
    """What to do with one beacon event: ``(outcome, reason)``; pure, for the tests.

    ``history``: the minion's heal log ``{"heals": [times], "gave_up": time}``.
    Only a check that turned ``fail`` and that a state run can repair is healed, at
    most ``heal_limit`` times per ``heal_window`` seconds; an event that says ``ok``
    (including the one a heal causes) never heals.
    """
    if kind == "summary" or data.get("new_status") != "fail":
        return "ignored", "not a check that turned fail"
    if not settings.get("heal"):
        return "ignored", "pillar k8snode:drift:heal is not true"
    if not data.get("fixable") or not kind.startswith(("sysctl:", "module:")):
        boot_file = data.get("boot_file")
        if boot_file and boot_file != data.get("managed_file"):
            return "not_healed", f"{boot_file} wins at boot: reported, not fought"
        return "not_healed", "a state run cannot repair this check"
    limit = int(_positive(settings, "heal_limit", HEAL_LIMIT))
    window = _positive(settings, "heal_window", HEAL_WINDOW)
    recent = [stamp for stamp in history.get("heals", []) if stamp > now - window]
    history["heals"] = recent
    cooldown = _positive(settings, "heal_cooldown", HEAL_COOLDOWN)
    if recent and now - recent[-1] < cooldown:
        return "ignored", "a heal ran moments ago"
    if len(recent) >= limit:
        if history.get("gave_up", 0) > now - window:
            return "ignored", "gave up already"
        history["gave_up"] = now
        return "gave_up", f"healed {len(recent)} times in {window} s (heal_limit {limit})"
    recent.append(now)
    return "heal", f"heal {len(recent)} of {limit} in {window} s"


def heal(tag=None, data=None, timeout=300):
    """
    Guarded self-heal for one ``k8snode`` beacon event: re-apply ``k8snode`` on the
    drifted minion with ``state.apply`` (never a command), only when its pillar
    ``k8snode:drift:heal`` is true, only for a check a state run can repair (not a
    file of someone else's that wins at boot, not a module the kernel lacks), at
    most ``heal_limit`` times (default 3) per ``heal_window`` seconds (default 3600)
    per minion. Fires ``k8snode/heal/<id>/applied`` (with the state result),
    ``k8snode/heal/<id>/not_healed`` (with the reason) or, once per window,
    ``k8snode/heal/<id>/gave_up``. Called by the drift reactor.

    CLI Example:

    .. code-block:: bash

        salt-run k8snode.heal tag=salt/beacon/node1/k8snode/sysctl:net.ipv4.ip_forward data='{"id": "node1", ...}'
    """
    data = data or {}
    minion = data.get("id")
    _store("heal", minion)  # the id names files: check it first
    kind = _event_kind(tag, data)
    settings = _drift_settings(minion) if data.get("new_status") == "fail" else {}
    with _locked_json(_store("heal", minion)) as history:
        outcome, reason = _heal_decision(kind, data, settings, history, time.time())
    about = {"check": kind, "reason": reason, "boot_file": data.get("boot_file"), "detail": data.get("detail")}
    if outcome in ("not_healed", "gave_up"):
        _fire(minion, outcome, about)
    if outcome != "heal":
        log.info("k8snode heal %s on %s: %s (%s)", outcome, minion, kind, reason)
        return {"minion": minion, "outcome": outcome, "reason": reason}
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        returned = client.cmd(minion, "state.apply", ["k8snode"], timeout=timeout, full_return=True)
    ret = (returned.get(minion) or {}).get("ret")
    states = ret if isinstance(ret, dict) else {}
    result = bool(states) and all(isinstance(s, dict) and s.get("result") is True for s in states.values())
    _fire(minion, "applied", dict(about, result=result))
    return {"minion": minion, "outcome": "applied", "reason": reason, "result": result}
