"""
The fleet memory and the heal log in Redis through Salt's cache, shared by hot masters
(issue 24).

With two or more hot masters every master receives the beacon events of every minion
(each master connection of a minion runs its own beacons) and runs the drift reactor:
with a memory of its own per master, each heals on its own, counts its own heal limit,
and reports what it alone saw. With ``k8snode_store: redis`` in every master's config,
the runners keep both in Redis instead, through Salt's cache API and its ``redis``
driver (``salt.cache.Cache(opts, driver="redis")``, connection opts ``cache.redis.*``):
bank ``k8snode/fleet`` and ``k8snode/heal``, key the minion id.

Why the redis driver, and not whatever the master's ``cache`` is: Salt's cache API has no
compare-and-set, and the runners' decisions are read, decide, write (the heal claim, the
heal limit, a drift event counted once). What this relies on: every read-decide-write
holds a lock in that same Redis, taken with ``SET key token NX PX`` and released only by
its holder (redis-py's ``Lock``); on one Redis server that is atomic. The lock expires
after ``LOCK_TTL`` seconds if its holder dies. A localfs cache is not shared; consul,
etcd or mysql would need a claim of their own.

Why not the master's own ``cache`` setting (which the site may also point at Redis):
k8snode needs none of Salt's minion data there, and with Salt's cache in a Redis that
stops, every ``salt-run`` and reactor runner waits about a minute in Salt's own reads
before any of k8snode's code runs (measured). Here a Redis that cannot be reached is an
error within seconds (:class:`SharedStoreError`): the runner fails, and never heals
without its log.

Imported by path by ``_runners/k8snode.py`` (Salt's loader skips ``_`` names).
"""

import contextlib

#: Seconds a lock outlives a holder that died; a read-decide-write takes milliseconds.
LOCK_TTL = 30
#: Seconds to wait for a lock another master holds before giving up with an error.
LOCK_WAIT = 10
#: Seconds to wait for Redis to answer at all (a stopped server is an error, not a hang).
SOCKET_TIMEOUT = 5
KINDS = ("fleet", "heal")
#: The master opts that say which Redis (Salt's redis cache driver reads the same ones).
CONNECTION_OPTS = (
    "cache.redis.host",
    "cache.redis.port",
    "cache.redis.db",
    "cache.redis.unix_socket_path",
    "cache.redis.password",
    "cache.redis.cluster_mode",
)


class SharedStoreError(RuntimeError):
    """The shared fleet memory cannot be used: misconfigured, or unreachable."""


def bank(kind):
    if kind not in KINDS:
        raise ValueError(f"k8snode: no shared memory kind {kind!r}: {', '.join(KINDS)}")
    return f"k8snode/{kind}"


class SharedStore:
    """The file store's methods (``_k8snode_files.FileStore``) over Salt's cache: ``read``,
    ``read_many``, ``locked`` (a read-modify-write under the lock), ``holding``, ``ids``,
    ``written``, ``remove`` and ``reachable``."""

    def __init__(self, opts):
        if opts.get("cache.redis.cluster_mode"):
            raise SharedStoreError("k8snode_store: redis: Redis cluster mode is not supported (one server's SET NX)")
        # Only with k8snode_store: redis (redis-py is Salt's redis cache driver's dependency too).
        import redis  # noqa: PLC0415
        import redis.backoff  # noqa: PLC0415
        import redis.retry  # noqa: PLC0415
        import salt.cache  # noqa: PLC0415
        import salt.exceptions  # noqa: PLC0415

        self._errors = (redis.exceptions.RedisError, OSError, salt.exceptions.SaltCacheError)
        self.where = _describe(opts)
        # Cache, not salt.cache.factory: with memcache_expire_seconds set, factory adds a
        # per-process memory layer, and one master would read its own stale copy.
        self.cache = salt.cache.Cache(opts, driver="redis")
        self.redis = redis.Redis(
            host=opts.get("cache.redis.host", "localhost"),
            port=opts.get("cache.redis.port", 6379),
            unix_socket_path=opts.get("cache.redis.unix_socket_path"),
            db=opts.get("cache.redis.db", "0"),
            password=opts.get("cache.redis.password") or None,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            # No retries with back-off (redis-py's default): a runner on a stopped Redis
            # fails at once with the reason.
            retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        )

    @contextlib.contextmanager
    def _reaching(self, what):
        try:
            yield
        except self._errors as exc:
            raise SharedStoreError(f"k8snode: the shared fleet memory ({self.where}) cannot {what}: {exc}") from exc

    def reachable(self):
        """One PING on k8snode's own client first: Salt's redis cache driver connects with
        no timeout and redis-py's retries, so a stopped Redis would cost each call a
        minute (measured: 53 s for one report) before the same error."""
        with self._reaching("be reached"):
            self.redis.ping()

    def _fetch(self, kind, minion):
        with self._reaching(f"be read for {minion}"):
            found = self.cache.fetch(bank(kind), minion)
        return found if isinstance(found, dict) else {}

    def read(self, kind, minion):
        self.reachable()
        return self._fetch(kind, minion)

    def read_many(self, kind, minions):
        self.reachable()
        return {minion: self._fetch(kind, minion) for minion in minions}

    @contextlib.contextmanager
    def holding(self, kind, minion):
        """The lock on one minion's record: one holder at a time across every master."""
        lock = self.redis.lock(f"k8snode:lock:{bank(kind)}:{minion}", timeout=LOCK_TTL, blocking_timeout=LOCK_WAIT)
        with self._reaching(f"lock {minion}"):
            acquired = lock.acquire()
        if not acquired:
            raise SharedStoreError(
                f"k8snode: {minion}'s {kind} record is locked by another master for over {LOCK_WAIT} s"
            )
        try:
            yield
        finally:
            with contextlib.suppress(*self._errors):
                lock.release()

    @contextlib.contextmanager
    def locked(self, kind, minion):
        """The minion's record, read under its lock and written back when the block ends
        without an exception."""
        with self.holding(kind, minion):
            record = self._fetch(kind, minion)
            yield record
            with self._reaching(f"be written for {minion}"):
                self.cache.store(bank(kind), minion, record)

    def ids(self, kind):
        self.reachable()
        with self._reaching("be listed"):
            return list(self.cache.list(bank(kind)))

    def written(self, kind, minion):
        with self._reaching(f"say when {minion} was written"):
            return self.cache.updated(bank(kind), minion) or 0

    def remove(self, kind, minion):
        with self._reaching(f"forget {minion}"):
            self.cache.flush(bank(kind), minion)


def _describe(opts):
    if opts.get("cache.redis.unix_socket_path"):
        return f"Redis at {opts['cache.redis.unix_socket_path']}"
    return f"Redis at {opts.get('cache.redis.host', 'localhost')}:{opts.get('cache.redis.port', 6379)}"
