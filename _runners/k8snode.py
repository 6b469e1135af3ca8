"""
Fleet readiness: which hosts are correct Kubernetes nodes, and why not.

.. code-block:: bash

    salt-run k8snode.report                 # every minion
    salt-run k8snode.report tgt='G@roles:kubernetes-node' tgt_type=compound
    salt-run k8snode.report --out=json      # the same data for scripts
    salt-run k8snode.report batch=500       # the same report, 500 minions per publish
    salt-run k8snode.report from_memory=True   # no publish: the fleet memory, with ages
    salt-run k8snode.report ssh=True        # the roster's hosts, over salt-ssh

``salt-run`` exits non-zero when any targeted host is not ready or did not
answer.

With the ``k8snode`` beacon on, the drift reactor (``salt/reactor/k8snode_drift.sls``)
calls :func:`drift` for every beacon event (:func:`remember`, then :func:`heal`): the report then shows
the last known state of a host that does not answer, and counts drift events per
host; ``heal`` re-applies ``k8snode`` on a drifted minion when its pillar allows it.

What the master trusts: Salt checks who sends a beacon event's load, but fires its
events with the tags and data the sender chose (``_minion_event`` in
``salt.daemons.masterapi``, Salt 3006 and 3008), so any accepted minion can send
``salt/beacon/<another id>/k8snode/...``. An event is therefore a *claim*: it is kept
as ``last_claim`` and counted, never as the host's ``last_known`` state. That state,
and every heal, rest on what the named minion itself returned through Salt's
authenticated return channel (the master decrypts a return with that minion's own
session key and refuses a load whose ``id`` is not the sender's, in
``salt.channel.server``): a report's ``k8snode.audit`` answers (``source: audit
return``), or the fresh ``k8snode.audit`` :func:`heal` asks of the named minion before
it acts (``source: confirmed``).
"""

import atexit
import collections
import contextlib
import datetime
import gc
import importlib.util
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

_MINION_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,252}$")


def _load_helper(file_name):
    """A helper beside this file (``_k8snode_fleet.py``, the runner's pure half;
    ``_k8snode_files.py`` and ``_k8snode_shared.py``, the two stores of the fleet memory),
    imported by path under a private name
    each time this module is loaded (a re-sync is never served stale). Salt's loader
    skips them (their names start with ``_``); ``saltutil.sync_runners``, ``runner_dirs``
    and ``pip install`` all put them beside this file."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), file_name)
    spec = importlib.util.spec_from_file_location(f"_k8snode_runner{file_name[len('_k8snode') : -len('.py')]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_fleet = _load_helper("_k8snode_fleet.py")
_files = _load_helper("_k8snode_files.py")
_shared = _load_helper("_k8snode_shared.py")


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
    if (tgt, tgt_type) == ("*", "glob"):
        every = _every_accepted_id()
        if every is not None:
            return every
    return _salts_expansion(tgt, tgt_type)


def _salts_expansion(tgt, tgt_type):
    """The target as Salt expands it (``CkMinions``): the minions it names, answering or not."""
    found = salt.utils.minions.CkMinions(__opts__).check_minions(tgt, tgt_type)
    return set(found.get("minions", [])) | set(found.get("missing", []))


def _every_accepted_id():
    """What Salt expands ``'*'`` to with its default key store (``localfs_key``): the
    files of ``<pki_dir>/minions`` but dotfiles, read with one ``scandir``; None with
    another ``keys.cache_driver`` or an unreadable directory (Salt then expands it).
    Salt's own expansion validates each id with four ``realpath`` calls: 0.56 to 0.76 s
    of the 1 s a 10,000-minion report from memory took (bench/fleet_memory.py).
    tests/unit/test_report_targets.py holds it to Salt's ``CkMinions`` on one directory."""
    if (__opts__.get("keys.cache_driver") or "localfs_key") != "localfs_key":
        return None
    pki = __opts__["cluster_pki_dir"] if __opts__.get("cluster_id") else __opts__["pki_dir"]
    try:
        with os.scandir(os.path.join(pki, "minions")) as entries:
            return {
                entry.name
                for entry in entries
                if not entry.name.startswith(".") and "\\" not in entry.name and entry.is_file()
            }
    except OSError:
        return None


def report(
    tgt="*",
    tgt_type="glob",
    timeout=None,
    window=_fleet.DRIFT_WINDOW,
    from_memory=False,
    batch=None,
    memory_max_age=None,
    ssh=False,
    **audit_kwargs,
):
    """
    Audit the targeted minions and report, per host, ready / not ready / no
    answer with the failing checks, and the most common failures across the
    fleet. Any host not ready or not answering makes ``salt-run`` exit 1.

    A host that does not answer carries ``last_known`` (``status``, ``failing``,
    ``time``, ``age_seconds``, ``source``: ``audit return``, an earlier report's
    answer, or ``confirmed``, the fresh audit a heal asked of it), and ``last_claim``
    when a beacon event (``source: beacon claim``, not confirmed: any minion can send
    one naming another) is newer; every host ``drift_events``: the beacon's claimed
    status changes within ``window``.

    After the report, the fleet memory and heal log of every id without an accepted
    key are removed, and those not written for ``memory_max_age`` seconds.

    tgt, tgt_type
        Any Salt target (``glob``, ``list``, ``grain``, ``compound``, ...).
    timeout
        Seconds to wait for answers (default: the master's ``timeout``), per batch.
    window
        Seconds of drift events to count (default 86400, one day).
    from_memory
        ``True``: publish nothing; answer from the master's fleet memory. Each
        targeted host's status is its ``last_known`` state (what it last returned to
        a report or a heal's confirmation, with ``age_seconds`` and ``source``), or
        ``unknown`` when none is remembered; a newer beacon claim is shown apart
        (``last_claim``), never as the status. Counts, common failures and exit code
        follow the live report's rules (``unknown`` is not ready); ``from_memory`` is
        true in the result.
    batch
        Publish ``k8snode.audit`` to the expected minions this many at a time
        (``tgt_type=list``, one batch after the other) instead of in one publish; the
        result is the same report.
    memory_max_age
        Seconds after which a minion's unwritten memory is removed (default: the master
        opt ``k8snode_memory_max_age``, else 2592000, thirty days); 0: never by age.
    ssh
        ``True``: audit the hosts of the salt-ssh roster that ``tgt`` matches, over
        salt-ssh (the master's ``roster`` and ``roster_file`` opts, as ``salt-ssh`` reads
        them), instead of publishing to minions. The same report and exit code; the fleet
        memory (the beacons' world) is neither read nor written.
    audit_kwargs
        Passed to ``k8snode.audit`` (e.g. ``distribution=k3s``); not with ``from_memory``.

    CLI Example:

    .. code-block:: bash

        salt-run k8snode.report
        salt-run k8snode.report tgt='web*,db*' tgt_type=list --out=json
        salt-run k8snode.report from_memory=True
        salt-run k8snode.report batch=500
        salt-run k8snode.report ssh=True tgt='node*'
    """
    audit_kwargs = {key: value for key, value in audit_kwargs.items() if not key.startswith("__")}
    batch = _fleet.report_batch(from_memory, batch, audit_kwargs)
    _close_at_exit_of_the_cli()
    if _fleet.report_over_ssh(ssh, from_memory, batch):
        return _ssh_report(tgt, tgt_type, window, audit_kwargs)
    if memory_max_age is None:
        max_age = _fleet.memory_max_age(
            __opts__.get("k8snode_memory_max_age", _fleet.MEMORY_MAX_AGE), "the master opt k8snode_memory_max_age"
        )
    else:
        max_age = _fleet.memory_max_age(memory_max_age, "memory_max_age")
    # Before anything is published or expanded: a stopped Redis is named at once.
    _memory().reachable()
    expected = _expected_minions(tgt, tgt_type)
    answers = {} if from_memory else _audit_answers(tgt, tgt_type, expected, batch, timeout, audit_kwargs)
    now = time.time()
    for minion, answer in answers.items():
        entry = _fleet.host_entry(answer)
        if entry["status"] in (_fleet.READY, _fleet.NOT_READY):
            _update_memory(
                minion, lambda remembered, e=entry: _fleet.set_last_known(remembered, e, now, _fleet.AUDIT_RETURN)
            )
    _forget_memory(now, max_age)
    with _cyclic_gc_paused():
        memory = _read_memories(expected | set(answers))
        if from_memory:
            data = _fleet.summarize_memory(expected, memory, now, float(window))
        else:
            data = _fleet.summarize(answers, expected, memory, now, float(window))
    __context__["retcode"] = data["retcode"]
    if __opts__.get("output"):
        return data
    return {"outputter": "k8snode", "data": data}


def _ssh_report(tgt, tgt_type, window, audit_kwargs):
    """:func:`report` over salt-ssh: the roster's matching hosts are the expected ones, and
    each answer is what ``k8snode.audit`` returned on the host (shipped there as the
    one-file bundle, ``_modules/k8snode_agentless.py``, or in Salt 3008's thin)."""
    import salt.client.ssh.client
    import salt.roster

    roster = salt.roster.Roster(__opts__, __opts__.get("roster", "flat"))
    expected = set(roster.targets(tgt, tgt_type))
    answers = {}
    if expected:
        client = salt.client.ssh.client.SSHClient(mopts=__opts__, disable_custom_roster=True)
        # SSHClient.cmd_iter, keeping hold of the SSH run: its event client is closed only
        # by SSH.run(), not by run_iter() (Salt 3006 and 3008), and would be left open.
        ssh = client._prep_ssh(tgt, "k8snode.audit", kwarg=audit_kwargs, tgt_type=tgt_type)
        try:
            for answer in ssh.run_iter():
                answers.update({host: _fleet.ssh_answer(data) for host, data in answer.items()})
        finally:
            if getattr(ssh, "event", None) is not None:
                ssh.event.destroy()
    data = _fleet.summarize(answers, expected, {}, time.time(), float(window))
    __context__["retcode"] = data["retcode"]
    if __opts__.get("output"):
        return data
    return {"outputter": "k8snode", "data": data}


@contextlib.contextmanager
def _cyclic_gc_paused():
    """Python's cycle collector off while the report reads and sums the fleet memory.
    Ten thousand parsed memory files are some 150,000 dicts and lists, none in a cycle;
    as they pile up the collector runs again and again over them and over every object
    of the master's process: 40 % of the read's time (bench/fleet_memory.py). Reference
    counting still frees what it always frees; the collector runs again after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _audit_answers(tgt, tgt_type, expected, batch, timeout, audit_kwargs):
    """The minions' answers to ``k8snode.audit``: one publish to the target, or
    ``batch`` expected minions at a time (each a list target, one after the other:
    the master's job and the returns it waits for stay ``batch`` long)."""
    if batch is None:
        publishes = [(tgt, tgt_type)]
    else:
        publishes = [(minions, "list") for minions in _fleet.batches(expected, batch)]
    answers = {}
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        for target, target_type in publishes:
            for answer in client.cmd_iter(
                target,
                "k8snode.audit",
                kwarg=audit_kwargs,
                tgt_type=target_type,
                timeout=timeout or __opts__.get("timeout", 5),
            ):
                answers.update(answer)
    return answers


# --------------------------------------------------------------------------
# Fleet memory and self-heal (called by salt/reactor/k8snode_drift.sls)
# --------------------------------------------------------------------------


def _store_id(minion):
    """The minion id, checked: it names a file, or a key in the shared store."""
    if not isinstance(minion, str) or not _MINION_ID.match(minion):
        raise ValueError(f"k8snode: invalid minion id {minion!r}: letters, digits, '_', '.', '@', '-'")
    return minion


def _valid_id(minion):
    return isinstance(minion, str) and bool(_MINION_ID.match(minion))


# The file store's helpers, also for heal_stats' own file.
_read_json = _files.read_json
_flocked = _files.flocked
_locked_json = _files.locked_json


def _file_store():
    return _files.FileStore(__opts__["cachedir"], _valid_id, _fleet.memory_owner)


def _store(kind, minion):
    """``<cachedir>/k8snode/<kind>/<minion>.json`` (the id checked: it names a file)."""
    return _file_store().path(kind, _store_id(minion), create=True)


#: Where the fleet memory and heal log live: the master's cachedir (one master), or
#: Redis through Salt's cache, shared by hot masters (``_k8snode_shared.py``).
_STORES = ("files", "redis")
#: One shared store per Redis the master opts name: the reactor's worker threads share
#: its connection pool (redis-py's clients are thread-safe) instead of opening one per event.
_SHARED_STORES = {}


def _shared_store():
    """The shared store when the master opt ``k8snode_store`` is ``redis``, else None."""
    mode = __opts__.get("k8snode_store", "files")
    if mode not in _STORES:
        raise ValueError(f"k8snode: the master opt k8snode_store is {mode!r}: one of {', '.join(_STORES)}")
    if mode == "files":
        return None
    where = tuple(__opts__.get(key) for key in _shared.CONNECTION_OPTS)
    if where not in _SHARED_STORES:
        _SHARED_STORES[where] = _shared.SharedStore(__opts__)
    return _SHARED_STORES[where]


def _memory():
    """The store of the fleet memory and heal log (both stores have the same methods)."""
    return _shared_store() or _file_store()


def _record(kind, minion):
    """One minion's fleet memory (``fleet``) or heal log (``heal``), ``{}`` for none."""
    return _memory().read(kind, _store_id(minion))


@contextlib.contextmanager
def _locked_record(kind, minion):
    """Read, let the caller change, write back; one writer at a time (across masters
    with the shared store)."""
    with _memory().locked(kind, _store_id(minion)) as record:
        yield record


def _read_memory(minion):
    return _record("fleet", minion) if _valid_id(minion) else {}


def _read_memories(minions):
    """``{id: remembered}`` for many minions (ten thousand for a report from memory)."""
    return _memory().read_many("fleet", [minion for minion in minions if _valid_id(minion)])


def _update_memory(minion, change):
    with _locked_record("fleet", minion) as remembered:
        change(remembered)


#: The per-minion memory a report keeps clean: the fleet memory and the heal log.
_MINION_MEMORY = ("fleet", "heal")


def _accepted_ids():
    """The ids with an accepted key (the files of ``<pki_dir>/minions``, as
    :func:`_accepted` reads them), or None when that directory cannot be listed or
    is not where the master keeps its keys (another ``keys.cache_driver``): an empty
    answer would remove every minion's memory."""
    driver = __opts__.get("keys.cache_driver") or "localfs_key"
    if driver != "localfs_key":
        log.info("k8snode: keys.cache_driver %s: no memory removed for want of a key", driver)
        return None
    pki = __opts__["cluster_pki_dir"] if __opts__.get("cluster_id") else __opts__["pki_dir"]
    try:
        return set(os.listdir(os.path.join(pki, "minions")))
    except OSError as exc:
        log.warning("k8snode: accepted keys unreadable (%s): no memory removed for want of a key", exc)
        return None


def _forget_memory(now, max_age):
    """
    Remove, from the fleet memory and the heal log only, the records of every id
    :func:`_fleet.memory_to_forget` names: no accepted key, or not written for
    ``max_age`` seconds (None: never by age); each removal decided again under the
    minion's lock (a writer may have come since the listing). Returns the counts per
    reason.
    """
    accepted = _accepted_ids()
    forgotten = collections.Counter()
    if accepted is None and max_age is None:
        return forgotten
    store = _memory()
    for kind in _MINION_MEMORY:
        ids = store.ids(kind)
        # Without an age limit the write time decides nothing: no stat per record.
        written = {minion: now if max_age is None else store.written(kind, minion) for minion in ids}
        for minion in _fleet.memory_to_forget(written, accepted, now, max_age):
            with store.holding(kind, minion):
                still = ({minion} if _accepted(minion) else set()) if accepted is not None else None
                again = {minion: now if max_age is None else store.written(kind, minion)}
                reason = _fleet.memory_to_forget(again, still, now, max_age).get(minion)
                if reason:
                    store.remove(kind, minion)
                    forgotten[f"{kind}: {reason}"] += 1
    if forgotten:
        log.info("k8snode: memory removed: %s", dict(forgotten))
    return forgotten


def _count(counts):
    """Add one runner call's counts to ``<cachedir>/k8snode/heal-stats.json``."""
    directory = os.path.join(__opts__["cachedir"], "k8snode")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with _locked_json(os.path.join(directory, "heal-stats.json")) as stats:
        stats.setdefault("since", time.time())
        totals = stats.setdefault("counts", {})
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value


def heal_stats(reset=False):
    """
    What the drift reactor's runners did on this master, counted since ``since`` (the
    first count, or the last ``reset=True``): ``remember_calls`` and ``heal_calls``
    (one ``remember`` per beacon event the reactor handed over: compare it with the
    events fired to find what Salt's reactor dropped), ``claims_recorded``,
    ``skipped:<why>`` (decided before any pillar or publish: ``not_fail``, ``no_key``
    (no accepted key), ``under_way`` (another runner holds the minion's claim),
    ``silent`` (it did not answer a confirmation within the cooldown), ``cooldown``,
    ``gave_up_already``, ``heal_off`` (from Salt's cached pillar)),
    ``pillar_cache_reads``, ``pillar_compiles``, ``confirmations`` (``k8snode.audit``
    published to the named minion), ``confirmed``, ``not_confirmed``, ``heals``
    (``state.apply`` started), ``not_healed``, ``gave_up``, ``ignored``.

    reset
        Return the counts and start again from zero.

    CLI Example:

    .. code-block:: bash

        salt-run k8snode.heal_stats
        salt-run k8snode.heal_stats reset=True
    """
    path = os.path.join(__opts__["cachedir"], "k8snode", "heal-stats.json")
    if not reset:
        found = _read_json(path)
        return {"since": found.get("since"), "counts": found.get("counts", {})}
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with _locked_json(path) as stats:
        found = dict(stats)
        stats.clear()
        stats["since"] = time.time()
    return {"since": found.get("since"), "counts": found.get("counts", {})}


def _event_minion(tag, data):
    """``salt/beacon/<id>/k8snode/<check>`` -> ``(<id>, <check>)`` (``summary`` for the summary).

    The id in the tag (the minion the event names) and in the data must agree; that
    they do proves nothing (the sender chose both), it only refuses a malformed event.
    """
    if not isinstance(data, dict):
        raise ValueError(f"k8snode: beacon event data must be a mapping, not {data!r}")
    _store_id(data.get("id"))  # the id names files: check it first
    parts = (tag or "").split("/", 4)
    if len(parts) != 5 or parts[:2] != ["salt", "beacon"] or parts[3] != "k8snode":
        raise ValueError(f"k8snode: not a k8snode beacon event tag: {tag!r}")
    if parts[2] != data.get("id"):
        raise ValueError(f"k8snode: beacon event {tag!r} carries id {data.get('id')!r}: the ids must agree")
    return parts[2], parts[4]


def _accepted(minion):
    """Whether the master holds an accepted key for ``minion`` (no memory, no publish
    for an id that names no minion: a forged event may name any)."""
    pki = __opts__["cluster_pki_dir"] if __opts__.get("cluster_id") else __opts__["pki_dir"]
    return os.path.isfile(os.path.join(pki, "minions", minion))


def drift(tag=None, data=None, timeout=300):
    """
    The drift reactor's one call per ``k8snode`` beacon event: :func:`remember` it, then,
    for a check that turned ``fail``, :func:`heal` it. One runner call per event, not
    two: Salt's reactor queues each runner call on ``reactor_worker_threads`` with room
    for ``reactor_worker_hwm`` (10,000) and drops what does not fit; with two calls
    per event a fleet-wide drift of 1,000 minions x 3 checks, twice, dropped 776 of
    them (bench/storm.py). Returns ``{"remember": ..., "heal": ...}`` (``heal`` None
    when the event needs none).

    CLI Example:

    .. code-block:: bash

        salt-run k8snode.drift tag=salt/beacon/node1/k8snode/sysctl:net.ipv4.ip_forward data='{"id": "node1", ...}'
    """
    data = data or {}
    remembered = remember(tag, data)
    wanted = _fleet.turned_fail(remembered["event"], data)
    return {"remember": remembered, "heal": heal(tag, data, timeout) if wanted else None}


def drift_events(events=None, timeout=300, heal_workers=10):
    """
    :func:`drift` for many beacon events at once: what the ``k8snode_drift`` engine
    (``_engines/k8snode_drift.py``) calls with the events it gathered for a moment. Each
    event is remembered; the named minions of those that turned ``fail`` pass the heal's
    cheap gates one by one, and those left are confirmed with **one** ``k8snode.audit``
    publish to all of them (one wait of the master's ``timeout``, where :func:`drift` costs
    a reactor thread that wait per minion). Several events about one minion share its
    confirmation, and are decided in order (the first heal sets the cooldown for the
    rest). Heals (``state.apply``) run side by side, ``heal_workers`` at a time
    (like Salt's ``reactor_worker_threads``). Returns
    ``{"events", "remembered", "confirmations", "outcomes": {outcome: count},
    "errors": [...]}``.

    events
        A list of ``[tag, data]`` pairs, as the master fired them (with their ``_stamp``).

    CLI Example:

    .. code-block:: bash

        salt-run k8snode.drift_events events='[["salt/beacon/node1/k8snode/module:overlay", {"id": "node1", ...}]]'
    """
    if not isinstance(events, (list, tuple)):
        raise ValueError(f"k8snode.drift_events: events must be a list of [tag, data] pairs, not {events!r}")
    if isinstance(heal_workers, bool) or not isinstance(heal_workers, int) or heal_workers < 1:
        raise ValueError(f"k8snode.drift_events: heal_workers must be a whole number, 1 or more, not {heal_workers!r}")
    counts = collections.Counter()
    summary = {
        "events": len(events),
        "remembered": 0,
        "confirmations": 0,
        "outcomes": collections.Counter(),
        "errors": [],
    }
    claims = {}  # minion -> (claim, [(kind, data)]), in the order the events came
    try:
        for event in events:
            try:
                tag, data = event
                remembered = _remember(tag, data, counts)
            except (TypeError, ValueError) as exc:
                summary["errors"].append(str(exc))
                continue
            summary["remembered"] += remembered["recorded"]
            minion, kind = remembered["minion"], remembered["event"]
            if not _fleet.turned_fail(kind, data):
                continue
            if minion in claims:
                claims[minion][1].append((kind, data))
                continue
            counts["heal_calls"] += 1
            claim = _take_claim(minion, kind, data, timeout, counts)
            if "outcome" in claim:
                summary["outcomes"][claim["outcome"]] += 1
            else:
                claims[minion] = (claim, [(kind, data)])
        audits = _confirm_many(list(claims)) if claims else {}
        counts["confirmations"] += len(audits)
        summary["confirmations"] = len(audits)
        for outcomes, decided in _each_side_by_side(
            [(minion, claim, items, audits[minion], timeout) for minion, (claim, items) in claims.items()],
            _decide_confirmed,
            heal_workers,
        ):
            summary["outcomes"].update(outcomes)
            counts.update(decided)
    finally:
        _count(counts)
    summary["outcomes"] = dict(summary["outcomes"])
    return summary


def _decide_confirmed(minion, claim, items, audit, timeout):
    """Each event about ``minion`` with its one confirmation; releases its claim.
    Returns ``(outcomes, counts)`` (its own: it may run in a thread of its own).

    The claim is renewed first: it was taken when the batch began, and a minion queued
    behind ``heal_workers`` heals of up to ``timeout`` each can come after it expired.
    When another runner holds it by then, that runner decides, not this one."""
    outcomes, counts = collections.Counter(), collections.Counter()
    held = _renew_claim(minion, claim["token"], timeout)
    try:
        for index, (kind, data) in enumerate(items):
            if index:
                counts["heal_calls"] += 1
            if not held:
                outcomes[_skip(minion, counts, *_fleet.UNDER_WAY)["outcome"]] += 1
                continue
            if index:
                # What the first events decided (a silence, a heal's cooldown) stops the
                # rest as it stops a later event (the claim is this batch's own).
                history = {key: value for key, value in _record("heal", minion).items() if key != "claim"}
                gate = _fleet.gate(history, time.time(), _fired_at(data))
                if gate:
                    outcomes[_skip(minion, counts, *gate)["outcome"]] += 1
                    continue
            outcomes[_confirmed_heal(minion, kind, data, claim["settings"], timeout, counts, audit)["outcome"]] += 1
    finally:
        if held:
            _release_claim(minion, claim["token"])
    return outcomes, counts


def _each_side_by_side(calls, function, workers):
    """``function(*args)`` for each ``args`` in ``calls``, ``workers`` at a time, each in
    a copy of this thread's context (Salt's loader keeps ``__opts__`` there)."""
    import concurrent.futures
    import contextvars

    if len(calls) <= 1 or workers <= 1:
        return [function(*args) for args in calls]
    with concurrent.futures.ThreadPoolExecutor(max_workers=int(workers)) as pool:
        futures = [pool.submit(contextvars.copy_context().run, function, *args) for args in calls]
        return [future.result() for future in futures]


def remember(tag=None, data=None):
    """
    Record a ``k8snode`` beacon event in the master's fleet memory as what it is, a
    claim: the host's ``last_claim`` (from a summary, or from the ``ready`` of a change
    event; ``source: beacon claim``) and, for a change, a drift event (time, check, new
    status). Never the host's ``last_known`` state, which only the minion's own audit
    returns set (see :func:`report` and :func:`heal`). An id without an accepted key
    is not recorded. Called by :func:`drift`.

    CLI Example:

    .. code-block:: bash

        salt-run k8snode.remember tag=salt/beacon/node1/k8snode/summary data='{"id": "node1", "ready": true, "failing": []}'
    """
    counts = collections.Counter()
    try:
        return _remember(tag, data or {}, counts)
    finally:
        _count(counts)


def _remember(tag, data, counts):
    minion, kind = _event_minion(tag, data)
    counts["remember_calls"] += 1
    if not _accepted(minion):
        counts["skipped:no_key"] += 1
        log.info("k8snode remember: %s has no accepted key: event %s not recorded", minion, kind)
        return {"minion": minion, "event": kind, "recorded": False, "reason": "no accepted key"}
    now = time.time()
    _update_memory(minion, lambda remembered: _fleet.record_claim(remembered, kind, data, now))
    counts["claims_recorded"] += 1
    return {"minion": minion, "event": kind, "recorded": True}


def _cached_pillar(minion):
    """The minion's pillar from Salt's minion data cache, or None where the master has
    none younger than ``pillar_cache_ttl``. With ``minion_data_cache`` on (the master's
    default) Salt 3006 keeps the pillar it last compiled for the minion (at each of the
    minion's pillar refreshes) in bank ``minions/<id>``, key ``data``, beside its grains;
    Salt 3008 keeps it in bank ``pillar``, key ``<id>`` (``PillarCache``; not with
    ``master_async_mworker`` on), as it keeps what :func:`_compile_pillar` compiles."""
    if not __opts__.get("minion_data_cache"):
        return None
    import salt.cache
    import salt.exceptions

    cache = salt.cache.factory(__opts__)
    pillarenv = __opts__.get("pillarenv")
    for bank, key in ((f"minions/{minion}", "data"), ("pillar", f"{minion}:{pillarenv}" if pillarenv else minion)):
        try:
            found = cache.fetch(bank, key)
            pillar = found.get("pillar") if key == "data" and isinstance(found, dict) else found
            updated = cache.updated(bank, key) if isinstance(pillar, dict) and pillar else None
        except salt.exceptions.SaltCacheError as exc:
            log.warning("k8snode heal: Salt's cache of %s unreadable: %s", minion, exc)
            return None
        if updated and time.time() - updated <= __opts__.get("pillar_cache_ttl", 3600):
            return pillar
    return None


def _compile_pillar(minion):
    """The minion's pillar compiled now on the master (with ``minion_data_cache`` on,
    Salt 3007 and later keep it in their cache: the next event reads it there)."""
    import salt.pillar

    _, grains, _ = salt.utils.minions.get_minion_data(minion, __opts__)
    return salt.pillar.get_pillar(__opts__, grains or {}, minion, saltenv=__opts__.get("saltenv")).compile_pillar()


# After the master's timeout, Salt asks a minion that has not returned whether the job
# still runs, and waits gather_job_timeout (10 s by default) for that answer: a silent
# minion held a reactor worker for 15 s per confirmation. A live minion answers that
# question in well under a second.
_CONFIRM_FIND_JOB_TIMEOUT = 2


def _confirm(minion):
    """``k8snode.audit`` published to the named minion alone, with the master's ``timeout``:
    its own fresh return (None without one). The one publish a heal costs."""
    return _confirm_many([minion])[minion]


def _confirm_many(minions):
    """``{minion: its fresh k8snode.audit return, or None}``: one publish to all of them
    (a list target), one wait of the master's ``timeout``."""
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        returned = client.cmd(
            list(minions),
            "k8snode.audit",
            tgt_type="list",
            timeout=__opts__.get("timeout", 5),
            gather_job_timeout=min(_CONFIRM_FIND_JOB_TIMEOUT, __opts__.get("gather_job_timeout", 10)),
            full_return=True,
        )
    audits = {}
    for minion in minions:
        audit = (returned.get(minion) or {}).get("ret") if isinstance(returned, dict) else None
        audits[minion] = audit if isinstance(audit, dict) and isinstance(audit.get("checks"), dict) else None
    return audits


def _apply(minion, timeout):
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        returned = client.cmd([minion], "state.apply", ["k8snode"], tgt_type="list", timeout=timeout, full_return=True)
    ret = (returned.get(minion) or {}).get("ret")
    states = ret if isinstance(ret, dict) else {}
    return bool(states) and all(isinstance(s, dict) and s.get("result") is True for s in states.values())


def _fire(minion, outcome, data):
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False) as bus:
        bus.fire_event(dict(data, id=minion, outcome=outcome), f"k8snode/heal/{minion}/{outcome}")


def heal(tag=None, data=None, timeout=300):
    """
    Guarded self-heal for one ``k8snode`` beacon event: re-apply ``k8snode`` on the
    drifted minion with ``state.apply`` (never a command), only when its pillar
    ``k8snode:drift:heal`` is true, only for a check a state run can repair (not a
    file of someone else's that wins at boot, not a module the kernel lacks), at
    most ``heal_limit`` times (default 3) per ``heal_window`` seconds (default 3600)
    per minion, never within ``heal_cooldown`` seconds (default 30) of the last heal.

    The event is a claim (any minion can send one naming another): before it acts,
    the runner publishes ``k8snode.audit`` to the named minion alone and goes on only
    if that fresh return says the check fails (its ``live``, ``boot``, ``boot_file``
    and ``detail`` replace the event's); otherwise it fires
    ``k8snode/heal/<id>/not_confirmed``. Cheap first: what needs no pillar and no
    publish (not a failure, no accepted key, the claim another runner holds on this
    minion, no answer to a confirmation moments ago, the cooldown and "gave up" of the
    last decision) is decided from the heal
    log; then the settings come from Salt's cached pillar, and the pillar is compiled
    only when Salt has none cached, after the minion confirmed. One heal per minion at
    a time: the runner that goes on holds a claim in the minion's heal log (taken
    under the log's lock, expiring after the master's ``timeout`` plus ``timeout``).
    Fires ``k8snode/heal/<id>/applied`` (with the state result),
    ``k8snode/heal/<id>/not_healed`` (with the reason) or, once per window,
    ``k8snode/heal/<id>/gave_up``. Counts: :func:`heal_stats`. Called by :func:`drift`.

    CLI Example:

    .. code-block:: bash

        salt-run k8snode.heal tag=salt/beacon/node1/k8snode/sysctl:net.ipv4.ip_forward data='{"id": "node1", ...}'
    """
    data = data or {}
    minion, kind = _event_minion(tag, data)
    counts = collections.Counter(heal_calls=1)
    try:
        result = _heal(minion, kind, data, timeout, counts)
    finally:
        _count(counts)
    log.info("k8snode heal %s on %s: %s (%s)", result["outcome"], minion, kind, result["reason"])
    return result


def _fired_at(data):
    """When the master fired the event: its ``_stamp`` (ISO 8601, UTC; Salt's event bus
    sets it on every event it fires, over whatever the sender put there), as epoch
    seconds; None when it is missing or unreadable."""
    try:
        stamp = datetime.datetime.fromisoformat(str(data["_stamp"]))
    except (KeyError, ValueError):
        return None
    if stamp.tzinfo is None:  # Salt before 3007 wrote utcnow().isoformat(): naive UTC
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp()


def _skip(minion, counts, key, reason):
    counts[f"skipped:{key}"] += 1
    return {"minion": minion, "outcome": "ignored", "reason": reason}


def _heal(minion, kind, data, timeout, counts):
    claim = _take_claim(minion, kind, data, timeout, counts)
    if "outcome" in claim:
        return claim
    try:
        counts["confirmations"] += 1
        return _confirmed_heal(minion, kind, data, claim["settings"], timeout, counts, _confirm(minion))
    finally:
        _release_claim(minion, claim["token"])


def _take_claim(minion, kind, data, timeout, counts):
    """The cheap gates of a heal (no publish; a pillar only from Salt's cache), then the
    minion's claim: ``{"token", "settings"}`` (settings None: not cached), or the skip
    result when a gate stops the event."""
    if not _fleet.turned_fail(kind, data):
        return _skip(minion, counts, "not_fail", "not a check that turned fail")
    if not _accepted(minion):
        return _skip(minion, counts, "no_key", f"{minion} has no accepted key")
    now = time.time()
    fired = _fired_at(data)
    gate = _fleet.gate(_record("heal", minion), now, fired)
    if gate:
        return _skip(minion, counts, *gate)
    cached = _cached_pillar(minion)
    settings = None if cached is None else _fleet.drift_settings(cached)
    if cached is not None:
        counts["pillar_cache_reads"] += 1
    if settings is not None and not settings.get("heal"):
        return _skip(minion, counts, "heal_off", "pillar k8snode:drift:heal is not true")
    token = os.urandom(8).hex()
    with _locked_record("heal", minion) as history:
        gate = _fleet.gate(history, now, fired)
        if not gate:
            history["claim"] = {"token": token, "until": now + __opts__.get("timeout", 5) + timeout}
    if gate:
        return _skip(minion, counts, *gate)
    return {"token": token, "settings": settings}


def _renew_claim(minion, token, timeout):
    """Whether this runner still holds ``minion``'s claim (``token``); if so, it is good
    for another heal from now (expired or not: nobody took it over)."""
    with _locked_record("heal", minion) as history:
        if (history.get("claim") or {}).get("token") != token:
            return False
        history["claim"]["until"] = time.time() + __opts__.get("timeout", 5) + timeout
    return True


def _release_claim(minion, token):
    with _locked_record("heal", minion) as history:
        if (history.get("claim") or {}).get("token") == token:
            del history["claim"]


def _confirmed_heal(minion, kind, data, settings, timeout, counts, audit):
    """The rest of a heal, with the named minion's fresh ``audit`` (None: it did not answer)."""
    check = (audit or {}).get("checks", {}).get(kind)
    if not isinstance(check, dict) or check.get("status") != "fail":
        counts["not_confirmed"] += 1
        if audit is None:
            with _locked_record("heal", minion) as history:
                history["silent"] = time.time()
        said = "did not answer k8snode.audit" if audit is None else f"says {kind} is {(check or {}).get('status')}"
        reason = f"not confirmed: {minion} {said}"
        _fire(minion, "not_confirmed", {"check": kind, "reason": reason})
        return {"minion": minion, "outcome": "not_confirmed", "reason": reason}
    counts["confirmed"] += 1
    now = time.time()
    entry = _fleet.host_entry({"ret": audit})
    _update_memory(minion, lambda remembered: _fleet.set_last_known(remembered, entry, now, _fleet.CONFIRMED))
    facts = dict(data, new_status="fail", **{key: check.get(key) for key in ("live", "boot", "boot_file", "detail")})
    if settings is None:
        counts["pillar_compiles"] += 1
        settings = _fleet.drift_settings(_compile_pillar(minion))
    with _locked_record("heal", minion) as history:
        outcome, reason = _fleet.heal_decision(kind, facts, settings, history, now)
    about = {"check": kind, "reason": reason, "boot_file": facts["boot_file"], "detail": facts["detail"]}
    if outcome != "heal":
        counts[outcome] += 1
        if outcome in ("not_healed", "gave_up"):
            _fire(minion, outcome, about)
        return {"minion": minion, "outcome": outcome, "reason": reason}
    counts["heals"] += 1
    result = _apply(minion, timeout)
    _fire(minion, "applied", dict(about, result=result))
    return {"minion": minion, "outcome": "applied", "reason": reason, "result": result}
