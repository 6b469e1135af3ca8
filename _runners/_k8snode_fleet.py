"""
The runner's pure half: the fleet report's aggregation (live and from memory), its
batches, the fleet memory's records and which of them to forget, and the heal decisions.
Nothing here reads a dunder, a file or Salt: the runner (``k8snode.py`` beside it) passes
in what it read, so the unit tests call these directly.

Salt's loader skips a module whose name starts with ``_`` (no ``salt-run`` function comes
from here); ``saltutil.sync_runners`` and ``pip install`` ship it beside the runner, which
imports it by path.
"""

import collections
import re
import time

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
#: A minion's fleet memory and heal log not written for this many seconds are removed
#: after a report (master opt ``k8snode_memory_max_age``; 0: never by age). Thirty days:
#: far longer than any heal window, short enough that a host gone for a month reads
#: ``unknown`` in a report from memory rather than a state of last month.
MEMORY_MAX_AGE = 30 * 86400

NO_ANSWER = "no answer"
READY = "ready"
NOT_READY = "not ready"
ERROR = "error"
#: A report from memory: no audit return from the host is remembered.
UNKNOWN = "unknown"
LIVE_STATUSES = (READY, NOT_READY, NO_ANSWER, ERROR)
MEMORY_STATUSES = (READY, NOT_READY, UNKNOWN)
#: Where a remembered state came from (``source``).
AUDIT_RETURN = "audit return"
CONFIRMED = "confirmed"
BEACON_CLAIM = "beacon claim"


def host_entry(answer):
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


def aged(state, now):
    return dict(state, age_seconds=max(0, int(now - state["time"]))) if state else None


def known_and_claimed(remembered, now):
    """``(last_known, last_claim)`` with their ages: the state the minion itself returned,
    and the newest beacon claim if it is newer (memory written before 0.3 said
    ``source: beacon`` for a claim and ``report`` for an audit return)."""
    known, claim = remembered.get("last_known"), remembered.get("last_claim")
    if known and known.get("source") == "beacon":
        known, claim = None, claim or dict(known, source=BEACON_CLAIM)
    if known and known.get("source") == "report":
        known = dict(known, source=AUDIT_RETURN)
    if claim and known and claim["time"] <= known["time"]:
        claim = None
    return aged(known, now), aged(claim, now)


def memory_detail(known, claim):
    """What the memory says of a host, in words: its last known state and a newer claim."""
    parts = [f"last known: {known['status']}, {known['age_seconds']} s ago ({known['source']})"] if known else []
    if claim:
        parts.append(f"{BEACON_CLAIM} (unconfirmed): {claim['status']}, {claim['age_seconds']} s ago")
    return "; ".join(parts)


def silent_detail(known, claim):
    return "no answer, " + memory_detail(known, claim)


def summarize(answers, expected, memory=None, now=None, window=DRIFT_WINDOW):
    """
    Build the fleet report from the minions' audit answers (``{id: answer}``)
    and the ids that were targeted. Hosts that did not answer are listed, never
    dropped; with ``memory`` (``{id: remembered}``, see :func:`remember`) they carry
    their last known state and its age (and a newer, unconfirmed beacon claim, kept
    apart), and every host its drift events within ``window`` seconds.
    """
    memory = memory or {}
    now = time.time() if now is None else now
    hosts = {minion: host_entry(answer) for minion, answer in answers.items()}
    for minion in set(expected) - set(answers):
        hosts[minion] = {"status": NO_ANSWER, "failing": {}, "lost_at_reboot": []}
        known, claim = known_and_claimed(memory.get(minion, {}), now)
        hosts[minion].update({key: value for key, value in (("last_known", known), ("last_claim", claim)) if value})
        if known or claim:
            hosts[minion]["detail"] = silent_detail(known, claim)
    return tally(hosts, LIVE_STATUSES, memory, now, window, from_memory=False)


def remembered_host(remembered, now):
    """One host of a report from memory: the state the minion itself last returned (an
    audit return or a confirmation) as its status, ``unknown`` without one; a newer
    beacon claim is shown apart (``last_claim``) and never decides the status."""
    known, claim = known_and_claimed(remembered, now)
    if known:
        details = known.get("failing_detail") or {}
        failing = {name: details.get(name, "failing (no detail remembered)") for name in known["failing"]}
        host = {"status": known["status"], "failing": failing, "lost_at_reboot": known.get("lost_at_reboot", [])}
        host["detail"] = memory_detail(known, claim)
    else:
        host = {"status": UNKNOWN, "failing": {}, "lost_at_reboot": []}
        host["detail"] = "unknown: no audit return from this host remembered"
        if claim:
            host["detail"] += "; " + memory_detail(None, claim)
    host.update({key: value for key, value in (("last_known", known), ("last_claim", claim)) if value})
    return host


def summarize_memory(expected, memory, now=None, window=DRIFT_WINDOW):
    """
    The fleet report from the master's fleet memory alone (``{id: remembered}``), for
    the ids that were targeted: each host as :func:`remembered_host` says, counted,
    its failures ranked and the exit code set by the live report's rules (0 only when
    every host is ``ready``: an ``unknown`` host is not).
    """
    now = time.time() if now is None else now
    hosts = {minion: remembered_host(memory.get(minion) or {}, now) for minion in expected}
    return tally(hosts, MEMORY_STATUSES, memory, now, window, from_memory=True)


def tally(hosts, statuses, memory, now, window, from_memory):
    """The report around its hosts: drift events within ``window``, counts per status,
    the most common failures, and the exit code (0 only when every host is ready)."""
    since = now - window
    for minion, host in hosts.items():
        host["drift_events"] = sum(1 for stamp in memory.get(minion, {}).get("drift_events", ()) if stamp[0] >= since)
    counts = collections.Counter(host["status"] for host in hosts.values())
    failures = collections.Counter(name for host in hosts.values() for name in host["failing"])
    all_ready = bool(hosts) and counts[READY] == len(hosts)
    return {
        "ready": all_ready,
        "retcode": 0 if all_ready else 1,
        "from_memory": from_memory,
        "counts": {status: counts[status] for status in statuses},
        "common_failures": [
            [name, count] for name, count in sorted(failures.items(), key=lambda item: (-item[1], item[0]))
        ],
        "hosts": dict(sorted(hosts.items())),
    }


def set_last_known(remembered, entry, when, source):
    previous = remembered.get("last_known") or {}
    if previous.get("time", 0) <= when:
        remembered["last_known"] = {
            "status": entry["status"],
            "failing": sorted(entry["failing"]),
            # Kept for a report from memory, which has no fresh answer to take them from.
            "failing_detail": dict(entry["failing"]),
            "lost_at_reboot": list(entry.get("lost_at_reboot", [])),
            "time": when,
            "source": source,
        }


def drift_settings(pillar):
    drift = ((pillar or {}).get("k8snode") or {}).get("drift") or {}
    return drift if isinstance(drift, dict) else {}


def positive(settings, key, default):
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"k8snode: pillar k8snode:drift:{key}: invalid {value!r}: a number > 0")
    return value


#: What stops an event while another runner holds the minion's claim: ``(key, reason)``.
UNDER_WAY = ("under_way", "a heal of this minion is under way")


def gate(history, now, fired=None):
    """``(key, reason)`` when the minion's heal log alone stops an event, else None; pure.

    Needs no pillar: a claim another runner holds (until it expires), a confirmation the
    minion did not answer within a cooldown (it could not be healed either; a forger
    cannot make a minion silent), and the cooldown and "gave up" of the settings the
    last decision used (``history["limits"]``).

    ``fired``: when the master fired the event (its ``_stamp``, set by the master's event
    bus, not by the sender). The silence and the heal cooldown are measured from then,
    not from ``now``: behind a reactor backlog longer than the cooldown, the second
    event of a storm about a silent minion reaches the runner more than a cooldown after
    the first one's confirmation went unanswered, and would publish to it again (measured
    with bench/storm.py: two confirmations per silent minion). An event fired before the
    silence or the heal is older than what decided them.
    """
    if (history.get("claim") or {}).get("until", 0) > now:
        return UNDER_WAY
    at = now if fired is None else min(now, fired)
    limits = history.get("limits")
    if "silent" in history and at - history["silent"] < (limits or {}).get("cooldown", HEAL_COOLDOWN):
        return "silent", "the minion did not answer moments before this event or since"
    if not limits:
        return None
    heals = history.get("heals", [])
    if heals and at - heals[-1] < limits["cooldown"]:
        return "cooldown", "a heal ran moments before this event or since"
    if "gave_up" in history and history["gave_up"] > now - limits["window"]:
        return "gave_up_already", "gave up already"
    return None


def turned_fail(kind, data):
    """Whether a beacon event says a check turned ``fail``: the only events a heal considers
    (an "ok again" or a summary never heals, so a heal's own changes cannot start another)."""
    return kind != "summary" and data.get("new_status") == "fail"


def heal_decision(kind, data, settings, history, now):
    """What to do with one beacon event: ``(outcome, reason)``; pure, for the tests.

    ``history``: the minion's heal log ``{"heals": [times], "gave_up": time}``.
    Only a check that turned ``fail`` and that a state run can repair is healed, at
    most ``heal_limit`` times per ``heal_window`` seconds; an event that says ``ok``
    (including the one a heal causes) never heals.
    """
    if not turned_fail(kind, data):
        return "ignored", "not a check that turned fail"
    if not settings.get("heal"):
        return "ignored", "pillar k8snode:drift:heal is not true"
    if not data.get("fixable") or not kind.startswith(("sysctl:", "module:")):
        boot_file = data.get("boot_file")
        if boot_file and boot_file != data.get("managed_file"):
            return "not_healed", f"{boot_file} wins at boot: reported, not fought"
        return "not_healed", "a state run cannot repair this check"
    limit = int(positive(settings, "heal_limit", HEAL_LIMIT))
    window = positive(settings, "heal_window", HEAL_WINDOW)
    cooldown = positive(settings, "heal_cooldown", HEAL_COOLDOWN)
    history["limits"] = {"limit": limit, "window": window, "cooldown": cooldown}
    recent = [stamp for stamp in history.get("heals", []) if stamp > now - window]
    history["heals"] = recent
    if recent and now - recent[-1] < cooldown:
        return "ignored", "a heal ran moments ago"
    if len(recent) >= limit:
        if history.get("gave_up", 0) > now - window:
            return "ignored", "gave up already"
        history["gave_up"] = now
        return "gave_up", f"healed {len(recent)} times in {window} s (heal_limit {limit})"
    recent.append(now)
    return "heal", f"heal {len(recent)} of {limit} in {window} s"


def _same_drift(events, kind, new_status):
    """Whether the check's last recorded change already says ``new_status``: the same
    drift reported again. A minion with hot masters runs its beacons once per master
    connection, and each master hears of each change (``salt/minion.py``, one ``Minion``
    per master); the shared memory counts it once. A beacon reports only changes, so a
    single master never sees the same status twice in a row for one check."""
    for _time, check, status in reversed(events):
        if check == kind:
            return status == new_status
    return False


def record_claim(remembered, kind, data, now):
    """Record one beacon event in a minion's memory as a claim: ``last_claim`` (from a
    summary, or from the ``ready`` of a change event) and, for a change, a drift event."""
    claim = remembered.get("last_claim") or remembered.get("last_known") or {}
    failing = data.get("failing") or []
    if kind != "summary":
        events = remembered.setdefault("drift_events", [])
        if not _same_drift(events, kind, data.get("new_status")):
            events.append([now, kind, data.get("new_status")])
            del events[:-MEMORY_EVENTS]
        failing = set(claim.get("failing", [])) - {kind}
        failing |= {kind} if data.get("new_status") == "fail" else set()
    if isinstance(data.get("ready"), bool):
        status = READY if data["ready"] else NOT_READY
        remembered["last_claim"] = {"status": status, "failing": sorted(failing), "time": now, "source": BEACON_CLAIM}


def report_batch(from_memory, batch, audit_kwargs):
    """The batch size the report's arguments ask for (None: one publish), all of them
    checked together before anything is published. ``from_memory`` publishes nothing,
    so a batch or arguments for ``k8snode.audit`` with it are a mistake to name, not to
    ignore."""
    if from_memory is not False and from_memory is not True:
        raise ValueError(f"k8snode.report: from_memory: invalid {from_memory!r}: True or False")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0):
        raise ValueError(f"k8snode.report: batch: invalid {batch!r}: a whole number of minions > 0, e.g. batch=500")
    if from_memory and (batch is not None or audit_kwargs):
        given = ["batch"] * (batch is not None) + sorted(audit_kwargs)
        raise ValueError(f"k8snode.report: from_memory=True publishes nothing: {', '.join(given)} cannot apply")
    return batch


def report_over_ssh(ssh, from_memory, batch):
    """Whether the report goes over salt-ssh; the roster is audited in one salt-ssh run,
    and no fleet memory exists for hosts without a minion, so ``batch`` and
    ``from_memory`` with it are mistakes to name."""
    if ssh is not False and ssh is not True:
        raise ValueError(f"k8snode.report: ssh: invalid {ssh!r}: True or False")
    if ssh and (from_memory or batch is not None):
        given = ["from_memory"] * bool(from_memory) + ["batch"] * (batch is not None)
        raise ValueError(
            f"k8snode.report: ssh=True audits the roster in one salt-ssh run: {', '.join(given)} cannot apply"
        )
    return ssh


def ssh_answer(data):
    """One salt-ssh return (``{"return": ..., "retcode": ...}``, salt.client.ssh
    ``run_iter``) in the shape of a minion's return (``{"ret": ...}``)."""
    if isinstance(data, dict) and "return" in data:
        return {"ret": data["return"], "retcode": data.get("retcode")}
    return {"ret": data}


def batches(minions, size):
    """The minions in sorted order, ``size`` at a time: one publish each."""
    ordered = sorted(minions)
    return [ordered[start : start + size] for start in range(0, len(ordered), size)]


def memory_max_age(value, name):
    """Seconds after which unwritten memory is removed, or None for never (0 or False);
    ``name`` says where the value was set, for the error."""
    if value is False or (not isinstance(value, bool) and value == 0):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(
            f"k8snode: {name}: invalid {value!r}: seconds > 0, or 0 to remove only the memory of deleted keys"
        )
    return value


#: ``<id>.json`` and what its writers leave beside it: ``<id>.json.lock`` (the flock),
#: ``<id>.json.tmp-<pid>`` (a write a dead process did not finish).
_MEMORY_FILE = re.compile(r"^(?P<minion>.+)\.json(?:\.lock|\.tmp-\d+)?$")


def memory_owner(name):
    """The minion a file of ``<cachedir>/k8snode/fleet`` or ``heal`` belongs to, or None
    for a name its writers never make (such a file is never removed)."""
    found = _MEMORY_FILE.match(name)
    return found["minion"] if found else None


#: Why a minion's memory is removed.
NO_KEY = "no accepted key"
TOO_OLD = "not written for memory_max_age"


def memory_to_forget(written, accepted, now, max_age):
    """
    Whose memory to remove, and why: ``{id: NO_KEY or TOO_OLD}``.

    written
        ``{id: time its <id>.json was last written}`` (0 when there is none).
    accepted
        The ids with an accepted key, or None when the keys could not be listed (then
        no memory is removed for want of a key).
    max_age
        Seconds (see :func:`memory_max_age`), or None: never by age.
    """
    forget = {}
    for minion, when in written.items():
        if accepted is not None and minion not in accepted:
            forget[minion] = NO_KEY
        elif max_age is not None and now - when > max_age:
            forget[minion] = TOO_OLD
    return forget
