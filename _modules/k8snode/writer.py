"""
How k8snode writes on a node: atomically, recognisably, one run at a time.

These names are a contract with the files already on nodes: the header by
which k8snode recognises its own files, the fstab marker and backup suffix,
the lock path. Changing one orphans what earlier versions wrote.
"""

import contextlib
import fcntl
import os
import tempfile

from salt.exceptions import CommandExecutionError

from . import host

MANAGED_HEADER = (
    "# Managed by Salt (k8snode.prepared): local edits are overwritten; k8snode.absent removes this file.\n"
)
FSTAB_MARKER = "#k8snode-swap-off# "
FSTAB_BACKUP_SUFFIX = ".k8snode.bak"
LOCK_FILE = "run/k8snode.lock"
# In the temporary file's name: never ends in .conf, so systemd never reads one.
TEMP_MARK = ".k8snode-tmp-"


def is_ours(text):
    """Whether a file's text was written by k8snode (it starts with the header)."""
    return text is not None and text.startswith(MANAGED_HEADER)


def _remove_stray_temps(full_path):
    directory, base = os.path.split(full_path)
    prefix = "." + base + TEMP_MARK
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def atomic_write(full_path, content, mode=0o644):
    """
    Write ``content`` so that readers see the old file or the new one, never a
    part, even across a power cut: a temporary file in the same directory, fsync,
    rename, fsync of the directory. Leftovers of an interrupted earlier write are
    removed first.
    """
    directory, base = os.path.split(full_path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    _remove_stray_temps(full_path)
    fd, temp = tempfile.mkstemp(prefix="." + base + TEMP_MARK, dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, full_path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Lock:
    """An exclusive, non-blocking lock so that two runs never interleave their writes."""

    def __init__(self, root):
        self.path = host.path(root, LOCK_FILE)
        self.handle = None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.handle = open(self.path, "a+", encoding="ascii")  # noqa: SIM115
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self.handle.close()
            raise CommandExecutionError(
                f"k8snode: another k8snode run holds the lock {self.path}; try again when it ends"
            ) from exc
        return self

    def __exit__(self, *_):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
