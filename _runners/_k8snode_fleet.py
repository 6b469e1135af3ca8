"""
The runner's pure half: the fleet report's aggregation, the fleet memory's records, and
the heal decisions. Nothing here reads a dunder, a file or Salt: the runner (``k8snode.py``
beside it) passes in what it read, so the unit tests call these directly.

Salt's loader skips a module whose name starts with ``_`` (no ``salt-run`` function comes
from here); ``saltutil.sync_runners`` and ``pip install`` ship it beside the runner, which
imports it by path.
"""

import collections
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

NO_ANSWER = "no answer"
READY = "ready"
NOT_READY = "not ready"
ERROR = "error"
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


def silent_detail(known, claim):
    parts = [f"last known: {known['status']}, {known['age_seconds']} s ago ({known['source']})"] if known else []
    if claim:
        parts.append(f"{BEACON_CLAIM} (unconfirmed): {claim['status']}, {claim['age_seconds']} s ago")
    return "no answer, " + "; ".join(parts)


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


def set_last_known(remembered, entry, when, source):
    previous = remembered.get("last_known") or {}
    if previous.get("time", 0) <= when:
        remembered["last_known"] = {
            "status": entry["status"],
            "failing": sorted(entry["failing"]),
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


def gate(history, now):
    """``(key, reason)`` when the minion's heal log alone stops an event, else None; pure.

    Needs no pillar: a claim another runner holds (until it expires), a confirmation the
    minion did not answer within a cooldown (it could not be healed either; a forger
    cannot make a minion silent), and the cooldown and "gave up" of the settings the
    last decision used (``history["limits"]``).
    """
    if (history.get("claim") or {}).get("until", 0) > now:
        return "under_way", "a heal of this minion is under way"
    limits = history.get("limits")
    if "silent" in history and now - history["silent"] < (limits or {}).get("cooldown", HEAL_COOLDOWN):
        return "silent", "the minion did not answer moments ago"
    if not limits:
        return None
    heals = history.get("heals", [])
    if heals and now - heals[-1] < limits["cooldown"]:
        return "cooldown", "a heal ran moments ago"
    if "gave_up" in history and history["gave_up"] > now - limits["window"]:
        return "gave_up_already", "gave up already"
    return None


def heal_decision(kind, data, settings, history, now):
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


def record_claim(remembered, kind, data, now):
    """Record one beacon event in a minion's memory as a claim: ``last_claim`` (from a
    summary, or from the ``ready`` of a change event) and, for a change, a drift event."""
    claim = remembered.get("last_claim") or remembered.get("last_known") or {}
    failing = data.get("failing") or []
    if kind != "summary":
        events = remembered.setdefault("drift_events", [])
        events.append([now, kind, data.get("new_status")])
        del events[:-MEMORY_EVENTS]
        failing = set(claim.get("failing", [])) - {kind}
        failing |= {kind} if data.get("new_status") == "fail" else set()
    if isinstance(data.get("ready"), bool):
        status = READY if data["ready"] else NOT_READY
        remembered["last_claim"] = {"status": status, "failing": sorted(failing), "time": now, "source": BEACON_CLAIM}
