"""
Watch a Kubernetes node for drift: fire an event when a k8snode check changes.

Between two ``state.apply`` runs a node drifts: a network restart drops
``ip_forward``, an OS update brings ``rp_filter = 2``, a vendor file dropped in
sysctl.d wins at the next boot. This beacon compares, on every poll, the live
values and a fingerprint of the boot configuration with the previous poll, and
runs the audit again only when one of them changed. It fires one event per
check whose status changed, never one per poll:

- tag ``salt/beacon/<id>/k8snode/<check>`` (e.g. ``.../k8snode/sysctl:net.ipv4.ip_forward``),
  data ``check``, ``old_status``, ``new_status``, ``live``, ``boot``, ``boot_file``
  (the file that wins at boot), ``managed_file``, ``detail``, ``fixable``, ``ready``;
- tag ``salt/beacon/<id>/k8snode/summary`` every ``summary_interval`` seconds (and
  after each beacon refresh): ``ready``, ``failing``, ``lost_at_reboot``, ``summary``.

Its memory (the last statuses) lives in the minion's cachedir, so a beacon
refresh (every ``state.apply`` triggers one) or a minion restart does not fire
again. It starts no process.

.. code-block:: yaml

    beacons:
      k8snode:
        - interval: 10                  # minion loops (seconds) between polls
        - disable_during_state_run: True
        - summary_interval: 600         # seconds between summary events
        - metrics: True                 # rewrite k8snode.prom for node_exporter on change

The state tree switches it on when pillar ``k8snode:drift:beacon`` is true
(``salt/k8snode/drift.sls``).
"""

import importlib
import importlib.util
import logging
import os
import sys
import time

log = logging.getLogger(__name__)

__virtualname__ = "k8snode"

#: Settings of this beacon besides Salt's own (interval, disable_during_state_run, ...).
DEFAULTS = {"summary_interval": 600, "metrics": False}
_SALT_SETTINGS = {"interval", "disable_during_state_run", "enabled", "run_once", "beacon_module", "_beacon_name"}
_CONTEXT_KEY = "k8snode.drift"
# The package's pure code, imported under a private name (see _library).
_LIBRARY_NAME = "_k8snode_beacon_library"


def _library_path():
    """Where the execution module package sits beside this file.

    Synced from the file server: ``<extmods>/beacons/k8snode.py`` beside
    ``<extmods>/modules/k8snode/``. Installed: ``saltext/k8snode/beacons/k8snode.py``
    beside ``saltext/k8snode/modules/k8snode/``. In the repository: ``_beacons``
    beside ``_modules``. The same relative place each way.
    """
    base = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for candidate in (os.path.join(base, "modules", "k8snode"), os.path.join(base, "_modules", "k8snode")):
        if os.path.isfile(os.path.join(candidate, "__init__.py")):
            return candidate
    return None


def _library():
    """The package's pure submodules, imported directly (no ``__salt__`` round trip per
    poll). Imported again whenever this beacon module is loaded (a sync or a beacon
    refresh reloads it), so a re-synced package is never served stale."""
    path = _library_path()
    if path is None:
        raise ImportError("k8snode beacon: the k8snode execution module package is not beside it (sync _modules)")
    for name in [name for name in sys.modules if name == _LIBRARY_NAME or name.startswith(_LIBRARY_NAME + ".")]:
        del sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        _LIBRARY_NAME, os.path.join(path, "__init__.py"), submodule_search_locations=[path]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules[_LIBRARY_NAME] = package
    spec.loader.exec_module(package)
    return {name: importlib.import_module(f"{_LIBRARY_NAME}.{name}") for name in ("checks", "drift", "prometheus")}


_LIB = None
_LIB_ERROR = None


def __virtual__():
    global _LIB, _LIB_ERROR  # noqa: PLW0603 - one import per load of this module
    try:
        _LIB = _library()
    except ImportError as exc:
        _LIB_ERROR = str(exc)
        return False, _LIB_ERROR
    return __virtualname__


def _settings(config):
    """The beacon's list of dicts as one dict, Salt's own keys left out."""
    merged = {}
    for item in config if isinstance(config, list) else []:
        if isinstance(item, dict):
            merged.update(item)
    return {key: value for key, value in merged.items() if key not in _SALT_SETTINGS}


def validate(config):
    """Cheap (it runs on every loop): the shape of the configuration only."""
    if not isinstance(config, list):
        return False, "k8snode beacon: the configuration must be a list of dicts, e.g. [{interval: 10}]"
    settings = _settings(config)
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        return False, f"k8snode beacon: unknown setting(s) {unknown}; accepted: {sorted(DEFAULTS)} and Salt's own"
    interval = settings.get("summary_interval", DEFAULTS["summary_interval"])
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
        return False, f"k8snode beacon: invalid summary_interval {interval!r}: a number of seconds > 0"
    if not isinstance(settings.get("metrics", False), bool):
        return False, f"k8snode beacon: invalid metrics {settings['metrics']!r}: true or false"
    return True, "valid"


def _start(settings):
    """What a poll needs, computed once per beacon load: the resolved requirements
    (through the API, which alone knows grains and pillar) and the watch."""
    resolved = __salt__["k8snode.requirements"]()
    cachedir = __opts__["cachedir"]
    return {
        "resolved": resolved,
        "watch": _LIB["drift"].Watch("/", sorted(resolved["sysctls"])),
        "statuses": _LIB["drift"].load_memory(cachedir).get("statuses", {}),
        "cachedir": cachedir,
        "seen": None,
        "summary_due": 0.0,
        "metrics_directory": _textfile_directory() if settings["metrics"] else None,
    }


def _textfile_directory():
    """As the API's write_metrics: minion config, then pillar k8snode:drift, then the default."""
    return _LIB["prometheus"].configured_directory(__opts__, (__opts__.get("pillar") or {}).get("k8snode"))


def beacon(config):
    """One poll: nothing to do unless what the audit reads changed, or a summary is due."""
    settings = dict(DEFAULTS, **_settings(config))
    state = __context__.get(_CONTEXT_KEY)
    if state is None:
        state = __context__[_CONTEXT_KEY] = _start(settings)
    watch = state["watch"]
    seen = (watch.live(), watch.boot())
    now = time.monotonic()
    summary_due = now >= state["summary_due"]
    if seen == state["seen"] and not summary_due:
        return []
    state["seen"] = seen
    drift = _LIB["drift"]
    timestamp = time.time()
    audit = _LIB["checks"].audit(state["resolved"], "/")
    events = drift.changed_checks(state["statuses"], audit, state["resolved"])
    statuses = drift.statuses(audit)
    if statuses != state["statuses"]:
        drift.save_memory(state["cachedir"], statuses, timestamp)
        state["statuses"] = statuses
    if summary_due:
        state["summary_due"] = now + settings["summary_interval"]
        events.append(drift.summary_event(audit, timestamp))
    if state["metrics_directory"]:
        _write_metrics(state, audit, timestamp)
    return events


def _write_metrics(state, audit, timestamp):
    prometheus = _LIB["prometheus"]
    try:
        prometheus.write(prometheus.render(audit, state["resolved"], timestamp), state["metrics_directory"])
    except Exception as exc:  # noqa: BLE001 - metrics must never stop drift events
        log.warning("k8snode beacon: metrics not written: %s", exc)
