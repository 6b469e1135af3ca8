"""
The fleet memory and the heal log in files of one master's cachedir (the default store,
``k8snode_store: files``): ``<cachedir>/k8snode/<kind>/<id>.json``, each written under an
``flock`` of ``<id>.json.lock``. The same methods as the shared store
(``_k8snode_shared.py``), so the runner holds one store and never asks which.

Imported by path by ``_runners/k8snode.py`` (Salt's loader skips ``_`` names).
"""

import contextlib
import fcntl
import json
import os


def read_json(path):
    """The mapping in a JSON file, ``{}`` for none. ``os.open``/``os.read`` rather than a
    file object (no buffer, no decoder, no ``isatty`` per file): a report from memory
    reads one file per minion, and this halves the cost of each (bench/fleet_memory.py)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(descriptor, 65536):
                chunks.append(chunk)
        finally:
            os.close(descriptor)
        found = json.loads(b"".join(chunks))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


@contextlib.contextmanager
def flocked(path):
    """An exclusive ``flock`` on ``path + ".lock"``, the lock every writer of ``path``
    takes. The reactor runs runners in threads of one process and ``salt-run`` in
    others: an ``flock`` on a file of the master's own cachedir (each caller opens it
    anew, so threads exclude each other too) is what every decision relies on.
    :meth:`FileStore.remove` unlinks a lock file while it holds it: a caller that opened
    the unlinked one finds it no longer at ``path`` once it has it, and opens anew."""
    while True:
        lock = open(path + ".lock", "a", encoding="utf-8")  # noqa: SIM115 (closed below or by the with)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(lock.fileno()), os.stat(lock.name)):
                break
        except FileNotFoundError:
            pass
        lock.close()
    with lock:
        yield


@contextlib.contextmanager
def locked_json(path):
    """Read, let the caller change, write back atomically; one writer at a time."""
    with flocked(path):
        data = read_json(path)
        yield data
        temp = f"{path}.tmp-{os.getpid()}"
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True)
        os.replace(temp, path)


class FileStore:
    """``read``, ``read_many``, ``locked``, ``holding``, ``ids``, ``written``, ``remove``
    and ``reachable`` over ``<cachedir>/k8snode/<kind>/``; ids are checked by the caller.
    ``owner(file name)`` is the id a file the writers make belongs to, or None."""

    def __init__(self, cachedir, valid_id, owner):
        self.root = os.path.join(cachedir, "k8snode")
        self.valid_id = valid_id
        self.owner = owner
        # {kind: {id: [file names]}} from the last ids(): what remove() removes besides
        # <id>.json and its lock (a dead writer's .tmp-<pid>), with no scan per removal.
        self._listed = {}

    def directory(self, kind):
        return os.path.join(self.root, kind)

    def path(self, kind, minion, create=False):
        directory = self.directory(kind)
        if create:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        return os.path.join(directory, minion + ".json")

    def reachable(self):
        """Files are always there to be tried (the shared store pings its Redis here)."""

    def read(self, kind, minion):
        return read_json(self.path(kind, minion))

    def read_many(self, kind, minions):
        """One path join and one read each (no directory check per id: a report from
        memory reads ten thousand of them)."""
        directory = self.directory(kind)
        return {minion: read_json(os.path.join(directory, minion + ".json")) for minion in minions}

    @contextlib.contextmanager
    def holding(self, kind, minion):
        with flocked(self.path(kind, minion, create=True)):
            yield

    @contextlib.contextmanager
    def locked(self, kind, minion):
        with locked_json(self.path(kind, minion, create=True)) as record:
            yield record

    def ids(self, kind):
        """The ids with any file in the directory, in one ``scandir`` pass: only names
        the writers make, with a valid id."""
        found = {}
        try:
            with os.scandir(self.directory(kind)) as entries:
                for entry in entries:
                    minion = self.owner(entry.name)
                    if minion and self.valid_id(minion) and entry.is_file(follow_symlinks=False):
                        found.setdefault(minion, []).append(entry.name)
        except FileNotFoundError:
            pass
        self._listed[kind] = found
        return sorted(found)

    def written(self, kind, minion):
        try:
            return os.stat(self.path(kind, minion)).st_mtime
        except FileNotFoundError:
            return 0

    def remove(self, kind, minion):
        """The minion's files in ``kind`` (``<id>.json``, those :meth:`ids` listed, the
        lock file last): call it while :meth:`holding` the lock (see :func:`flocked`)."""
        path = self.path(kind, minion)
        listed = {os.path.join(self.directory(kind), name) for name in self._listed.get(kind, {}).get(minion, [])}
        for leftover in sorted(({path} | listed) - {path + ".lock"}) + [path + ".lock"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
