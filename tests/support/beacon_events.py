"""The k8snode beacon's event for a check that turned fail (``drift.changed_checks``), as
the drift reactor receives it: what the trust test forges and the storm benchmark fires."""

MANAGED = "/etc/sysctl.d/99-k8snode.conf"


def turned_fail(minion_id: str, check: str) -> dict:
    """The data of ``salt/beacon/<minion_id>/k8snode/<check>`` for a check that went from ok to fail."""
    return {
        "id": minion_id,
        "check": check,
        "old_status": "ok",
        "new_status": "fail",
        "required": True,
        "live": "0",
        "boot": "1",
        "boot_file": MANAGED,
        "managed_file": MANAGED,
        "detail": f"{check} claimed failing",
        "fixable": True,
        "ready": False,
    }
