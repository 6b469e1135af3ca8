"""
The drift reactor's work for large fleets, as a master engine: ``k8snode`` beacon
events gathered for a moment and handed to the runner :func:`k8snode.drift_events
<k8snode.drift_events>` together.

Salt's reactor costs each event a reaction render (for a ``salt://`` SLS, a new file
client: 83 % of the reactor's main thread in a storm, measured with py-spy) and a
runner job; its runner calls wait in ``reactor_worker_threads`` (10) with a queue of
``reactor_worker_hwm`` (10,000) that drops the rest. A fleet-wide drift of 1,000
silent minions x 3 checks, twice, took longer than 5 minutes to drain that way
(bench/storm.py). Here one process reads the events; each batch costs the runner one
``k8snode.audit`` publish to all the minions it names and one wait, and nothing is
dropped: the events wait in this process while a batch runs.

Master configuration (instead of the ``salt/beacon/*/k8snode/*`` reactor line of
``salt/reactor/master.conf``; see the README, "Continuous readiness")::

    engines:
      - k8snode_drift:
          batch_seconds: 1     # gather events this long after the first of a batch
          max_batch: 5000      # or until this many
          timeout: 300         # each heal's state.apply
          heal_workers: 10     # heals at once

Counts: ``salt-run k8snode.heal_stats`` (the same as the reactor's).
"""

import logging
import queue
import threading
import time

import salt.loader
import salt.utils.event

log = logging.getLogger(__name__)

__virtualname__ = "k8snode_drift"

TAG_PREFIX = "salt/beacon/"
TAG_PART = "/k8snode/"


def __virtual__():
    return __virtualname__


def is_k8snode_event(tag):
    """Whether ``tag`` is a k8snode beacon event's (``salt/beacon/<id>/k8snode/<check>``)."""
    return isinstance(tag, str) and tag.startswith(TAG_PREFIX) and TAG_PART in tag


def next_batch(events, batch_seconds, max_batch, stop=None):
    """The next batch from the queue ``events``: everything that comes within
    ``batch_seconds`` of its first event, at most ``max_batch``; empty when ``stop`` is
    set before any came."""
    batch = []
    while not batch:
        try:
            batch.append(events.get(timeout=1))
        except queue.Empty:
            if stop is not None and stop.is_set():
                return batch
    deadline = time.monotonic() + batch_seconds
    while len(batch) < max_batch:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            batch.append(events.get(timeout=left))
        except queue.Empty:
            break
    return batch


def _read_bus(opts, events, stop):
    """Put every k8snode beacon event of the master's bus on ``events`` (this thread
    only reads: a batch that waits on a confirmation never holds the bus up)."""
    try:
        with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True) as bus:
            while not stop.is_set():
                event = bus.get_event(wait=1, full=True, tag=TAG_PREFIX)
                if event and is_k8snode_event(event.get("tag")):
                    events.put([event["tag"], event["data"]])
    except Exception:  # noqa: BLE001 - said, then the engine ends and Salt starts it again
        log.exception("k8snode_drift engine: reading the event bus failed")


def _positive(name, value, kind):
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise ValueError(f"k8snode_drift engine: {name}: invalid {value!r}: a number > 0")
    return value


def start(batch_seconds=1.0, max_batch=5000, timeout=300, heal_workers=10):
    """The engine's loop (Salt calls it in the engine's own process)."""
    _positive("batch_seconds", batch_seconds, (int, float))
    _positive("max_batch", max_batch, int)
    _positive("timeout", timeout, (int, float))
    _positive("heal_workers", heal_workers, int)
    runners = salt.loader.runner(__opts__, utils=salt.loader.utils(__opts__))
    drift_events = runners["k8snode.drift_events"]
    events, stop = queue.Queue(), threading.Event()
    reader = threading.Thread(target=_read_bus, args=(__opts__, events, stop), name="k8snode-drift-bus", daemon=True)
    reader.start()
    log.info("k8snode_drift engine: started (batches of up to %s events, %s s)", max_batch, batch_seconds)
    try:
        while reader.is_alive():
            batch = next_batch(events, batch_seconds, max_batch, stop)
            if not batch:
                continue
            started = time.monotonic()
            try:
                summary = drift_events(events=batch, timeout=timeout, heal_workers=heal_workers)
            except Exception:  # noqa: BLE001 - one bad batch must not stop the engine
                log.exception("k8snode_drift engine: a batch of %d events failed", len(batch))
                continue
            log.info(
                "k8snode_drift engine: %d events, %d confirmations, %s in %.1f s (%d waiting)",
                len(batch),
                summary["confirmations"],
                summary["outcomes"],
                time.monotonic() - started,
                events.qsize(),
            )
            for error in summary["errors"]:
                log.warning("k8snode_drift engine: event refused: %s", error)
    finally:
        stop.set()
    log.error("k8snode_drift engine: the event bus reader stopped")
