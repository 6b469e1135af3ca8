"""
One check of the audit, as data: ``status`` (``ok``, ``fail``, ``warn``), ``required``,
``expected``, ``live``, ``boot``, ``detail`` and whatever else the check carries. The one
shape :mod:`.checks` and :mod:`.release_checks` build, and the outputter, the runner and
the beacon read.
"""


def check(status, required, expected, live, boot, detail, **extra):
    """A check; a ``fail`` that is not required is a ``warn`` (it never blocks ``ready``)."""
    if status == "fail" and not required:
        status = "warn"
    return {
        "status": status,
        "required": required,
        "expected": expected,
        "live": live,
        "boot": boot,
        "detail": detail,
        **extra,
    }
