#!/usr/bin/env python3
"""Build the k8snode minion images from Debian's packages and PyPI (no registry).

For each release:

1. ``mmdebstrap --variant=minbase --include=... <release> - | docker import - k8snode-base:<release>-<hash>``:
   Debian's own packages, the root tree streamed as a tar straight into docker;
2. ``docker build --network host`` of ``images/minion.Dockerfile`` on top of that
   base: Salt from PyPI in a venv at ``/opt/salt``, ``python`` and ``salt-*`` on PATH.

mmdebstrap, not debootstrap: it downloads with apt, in parallel, and writes a tar to
stdout (no tree on disk to pack and delete).  Measured side by side on this machine,
one release at a time: bookworm 18 s against debootstrap's 39 s, trixie 20 s against
43 s.  The compiler Salt's timelib needs is in the base for the same reason: one apt
run for everything instead of an ``apt-get update`` and a second install in the
Dockerfile.

The final tag is ``k8snode-minion:<release>-<hash>``, where the hash covers every input
(Dockerfile text, this file's text, the release, the Salt version, the base packages,
the pip constraints).  An image whose tag already exists is never rebuilt.

Usage::

    python images/build.py [release ...]     # prints "release tag" lines
    python images/build.py --write-constraints   # re-pin images/constraints/*.txt
    python images/build.py --prune               # also remove outdated k8snode images

From Python (tests, demo)::

    from images.build import ensure_images   # or load this file by path
    tags = ensure_images()                   # {"bullseye": "k8snode-minion:bullseye-...", ...}
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = REPO_ROOT / "images"
# K8SNODE_IMAGE_CACHE and K8SNODE_IMAGE_PREFIX put a build into throw-away names (a cold
# build measured beside the images other checkouts use right now); the hashes ignore them.
CACHE_DIR = Path(os.environ.get("K8SNODE_IMAGE_CACHE") or REPO_ROOT / ".cache")
IMAGE_PREFIX = os.environ.get("K8SNODE_IMAGE_PREFIX") or "k8snode"
# Images live in the one docker engine, shared by every checkout on the machine:
# so is the lock that serialises their builds.
LOCK_FILE = Path(tempfile.gettempdir()) / "k8snode-images.lock"
LOG_DIR = CACHE_DIR / "logs"
DOCKERFILE = IMAGES_DIR / "minion.Dockerfile"
CONSTRAINTS_DIR = IMAGES_DIR / "constraints"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

MIRROR = "http://deb.debian.org/debian"
VARIANT = "minbase"
# gcc, libc6-dev, python3-dev: Salt's dependency timelib has no wheel for these Pythons
# and builds from source in the Dockerfile's pip install.
BASE_PACKAGES = (
    "python3",
    "python3-venv",
    "procps",
    "kmod",
    "iproute2",
    "ca-certificates",
    "gcc",
    "libc6-dev",
    "python3-dev",
)
BASE_BUILDER = "mmdebstrap"
# /bin, /lib, /lib64 and /sbin as links into /usr on every release, as debootstrap made
# them: mmdebstrap merges bookworm and trixie but leaves bullseye unmerged (and its
# merged-usr hook fails there), and the sysctl oracles clean /usr/lib/sysctl.d expecting
# /lib/sysctl.d to be the same directory.  The recipe is mmdebstrap's manual's own.
MERGE_USR = 'for d in bin sbin lib lib64; do ln -s usr/$d "$1/$d"; mkdir -p "$1/usr/$d"; done'
SETUP_HOOKS: dict[str, tuple[str, ...]] = {"bullseye": (MERGE_USR,)}

# release -> Salt version installed from PyPI.  bullseye ships Python 3.9: Salt 3008 needs
# a newer Python, so it gets the newest 3006 LTS release that installs there.
RELEASES: dict[str, str] = {
    "bullseye": "3006.29",
    "bookworm": "3008.4",
    "trixie": "3008.4",
}

BASE_REPO = f"{IMAGE_PREFIX}-base"
MINION_REPO = f"{IMAGE_PREFIX}-minion"
LABEL = "k8snode.image=1"
HASH_LEN = 12


class ImageBuildError(RuntimeError):
    """An image could not be built (docker, mmdebstrap or pip failed)."""


def _log(msg: str) -> None:
    # One write per line: releases build in threads, and print() writes the text and
    # its newline separately, so two lines could run together.
    sys.stderr.write(f"[images] {msg}\n")
    sys.stderr.flush()


def _sha(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()[:HASH_LEN]


def _constraints_text(release: str) -> str:
    path = CONSTRAINTS_DIR / f"{release}.txt"
    return path.read_text() if path.exists() else ""


def base_hash(release: str) -> str:
    hooks = "\n".join(SETUP_HOOKS.get(release, ()))
    return _sha("base-v2", BASE_BUILDER, hooks, release, MIRROR, VARIANT, ",".join(BASE_PACKAGES))


def base_tag(release: str) -> str:
    return f"{BASE_REPO}:{release}-{base_hash(release)}"


def minion_tag(release: str) -> str:
    return f"{MINION_REPO}:{release}-{minion_hash(release)}"


def minion_hash(release: str) -> str:
    if release not in RELEASES:
        raise ValueError(f"unknown release {release!r}; known: {', '.join(RELEASES)}")
    return _sha(
        "minion-v1",
        base_hash(release),
        DOCKERFILE.read_bytes(),
        Path(__file__).read_bytes(),
        release,
        RELEASES[release],
        ",".join(BASE_PACKAGES),
        _constraints_text(release),
    )


def _run(argv: list[str], log_name: str, **kwargs) -> None:
    """Run ``argv``, its output going to .cache/logs/<log_name>; raise on failure."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / log_name
    shown = log_path.relative_to(REPO_ROOT) if log_path.is_relative_to(REPO_ROOT) else log_path
    _log(f"$ {' '.join(argv)}  (log: {shown})")
    with open(log_path, "ab") as log:
        log.write(f"\n$ {' '.join(argv)}\n".encode())
        log.flush()
        try:
            proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False, **kwargs)
        except FileNotFoundError as exc:
            raise ImageBuildError(f"{argv[0]} not found: run `make setup` (scripts/bootstrap.sh)") from exc
    if proc.returncode != 0:
        raise _failure(f"command failed with exit code {proc.returncode}: {' '.join(argv)}", log_path)


def _failure(message: str, log_path: Path) -> ImageBuildError:
    """``message`` and the last 40 lines of the log that tells why."""
    tail = log_path.read_text(errors="replace").splitlines()[-40:]
    return ImageBuildError(f"{message}\n--- last lines of {log_path} ---\n" + "\n".join(tail))


def image_exists(tag: str) -> bool:
    try:
        proc = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ImageBuildError("the docker client is not installed: run `make setup`") from exc
    return proc.returncode == 0


def check_docker() -> None:
    try:
        proc = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ImageBuildError("the docker client is not installed: run `make setup`") from exc
    if proc.returncode != 0:
        raise ImageBuildError(
            "the Docker engine is not reachable (`docker info` failed): run `make setup`\n" + proc.stderr.strip()
        )


@contextlib.contextmanager
def _build_lock():
    with open(LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _import_base(release: str) -> str:
    """``mmdebstrap ... | docker import``: the release's base image (reused if it exists)."""
    tag = base_tag(release)
    if image_exists(tag):
        _log(f"{release}: base image {tag} exists")
        return tag
    if shutil.which(BASE_BUILDER) is None:
        raise ImageBuildError(f"{BASE_BUILDER} is not installed: run `make setup`")
    bootstrap_argv = [
        BASE_BUILDER,
        f"--variant={VARIANT}",
        "--include=" + ",".join(BASE_PACKAGES),
        *(f"--setup-hook={hook}" for hook in SETUP_HOOKS.get(release, ())),
        release,
        "-",  # the tree as a tar on stdout
        MIRROR,
    ]
    import_argv = [
        "docker",
        "import",
        "--change",
        f"LABEL {LABEL}",
        "--change",
        f"LABEL k8snode.release={release}",
        "-",
        tag,
    ]
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{BASE_BUILDER}-{release}.log"
    _log(f"$ {' '.join(bootstrap_argv)} | {' '.join(import_argv)}  (log: {log_path})")
    started = time.monotonic()
    with open(log_path, "ab") as log:
        bootstrap = subprocess.Popen(bootstrap_argv, stdout=subprocess.PIPE, stderr=log)
        try:
            imported = subprocess.run(import_argv, stdin=bootstrap.stdout, stdout=log, stderr=log, check=False)
        finally:
            assert bootstrap.stdout is not None
            bootstrap.stdout.close()
            bootstrap_rc = bootstrap.wait()
    if bootstrap_rc != 0 or imported.returncode != 0:
        # docker import may have made an image of a tar cut short: never leave that tag.
        subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True, check=False)
        raise _failure(
            f"{release}: {BASE_BUILDER} ({bootstrap_rc}) | docker import ({imported.returncode}) failed", log_path
        )
    _log(f"{release}: base image {tag} in {time.monotonic() - started:.0f}s")
    return tag


def _build_minion(release: str, tag: str) -> None:
    base = _import_base(release)
    if not CA_BUNDLE.exists():
        raise ImageBuildError(f"{CA_BUNDLE} is missing: pip in the image build needs it")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"k8snode-image-{release}-") as ctx:
        ctx_path = Path(ctx)
        shutil.copyfile(DOCKERFILE, ctx_path / "Dockerfile")
        shutil.copyfile(CA_BUNDLE, ctx_path / "ca-certificates.crt")
        (ctx_path / "constraints.txt").write_text(_constraints_text(release))
        env = dict(os.environ, DOCKER_BUILDKIT="0")
        _run(
            [
                "docker",
                "build",
                "--force-rm",
                "--network",
                "host",
                "--label",
                LABEL,
                "--build-arg",
                f"BASE_IMAGE={base}",
                "--build-arg",
                f"RELEASE={release}",
                "--build-arg",
                f"SALT_VERSION={RELEASES[release]}",
                "--tag",
                tag,
                str(ctx_path),
            ],
            f"build-{release}.log",
            env=env,
        )
    _verify(release, tag)
    _log(f"{release}: built {tag} in {time.monotonic() - started:.0f}s")


def prune(releases=None) -> None:
    """Remove k8snode images whose tag is not the current one (``--prune``; opt-in).

    Not automatic: another checkout on the machine (an older build.py) may be using
    an older tag right now.  Images used by a container are kept by docker anyway.
    """
    wanted = list(RELEASES) if not releases else list(releases)
    keep = {minion_tag(r) for r in RELEASES} | {base_tag(r) for r in RELEASES}
    proc = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"label={LABEL}"],
        capture_output=True,
        text=True,
        check=False,
    )
    for tag in proc.stdout.split():
        repo, _, rest = tag.partition(":")
        release = rest.rsplit("-", 1)[0]
        if repo in (MINION_REPO, BASE_REPO) and release in wanted and tag not in keep:
            result = subprocess.run(["docker", "image", "rm", tag], capture_output=True, text=True, check=False)
            _log(f"removed {tag}" if result.returncode == 0 else f"kept {tag}: {result.stderr.strip()}")
    subprocess.run(
        ["docker", "image", "prune", "--force", "--filter", f"label={LABEL}"],
        capture_output=True,
        check=False,
    )


def _verify(release: str, tag: str) -> None:
    """Check that the image's `python` imports the expected Salt."""
    probe = "import salt.version, sys; print(salt.version.__version__, sys.version.split()[0])"
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", tag, "python", "-c", probe],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or proc.stdout.split()[:1] != [RELEASES[release]]:
        raise ImageBuildError(f"{tag}: salt probe failed: {proc.stdout}{proc.stderr}")
    _log(f"{release}: salt {proc.stdout.strip()} (salt, python)")


def build_jobs() -> int:
    """How many releases build at once: ``K8SNODE_IMAGE_JOBS``, else 3 (all of them).

    A release's build is mostly waiting (mmdebstrap on the network and dpkg, pip on
    PyPI). With two at a time, a cold run on 2 cores built bullseye and bookworm side by
    side in 150 s and then trixie alone in 94 s: the third release's wait is what the
    pool of two left on the critical path."""
    raw = os.environ.get("K8SNODE_IMAGE_JOBS") or "3"
    jobs = int(raw) if raw.isdigit() else 0
    if jobs < 1:
        raise ValueError(f"K8SNODE_IMAGE_JOBS={raw!r}: expected a whole number, 1 or more")
    return jobs


def run_per_release(build_one, releases, jobs=None) -> dict:
    """``build_one(release)`` for each release, ``jobs`` (:func:`build_jobs`) at a time;
    returns ``{release: result}``.

    Output stays readable: every command of a release logs to its own file
    (``.cache/logs/*-<release>.log``) and every ``[images]`` line names its release.
    With one job, the first failure stops the rest (as before).  With more, a failure
    cancels the builds not started yet, lets the running ones finish (nothing is left
    half-built in docker), and one ImageBuildError names each failed release with its
    own error (the tail of its log)."""
    releases = list(releases)
    jobs = build_jobs() if jobs is None else jobs
    if jobs == 1 or len(releases) <= 1:
        return {release: build_one(release) for release in releases}
    results, errors = {}, {}
    with ThreadPoolExecutor(max_workers=min(jobs, len(releases)), thread_name_prefix="image-build") as pool:
        futures = {pool.submit(build_one, release): release for release in releases}
        for future in as_completed(futures):
            release = futures[future]
            if future.cancelled():
                continue
            error = future.exception()
            if error is None:
                results[release] = future.result()
                continue
            errors[release] = error
            for pending in futures:
                pending.cancel()
    if errors:
        not_started = [release for release in releases if release not in results and release not in errors]
        text = "\n\n".join(f"=== {release}: {type(exc).__name__}: {exc}" for release, exc in errors.items())
        if not_started:
            text += f"\n\nnot started: {', '.join(not_started)}"
        raise ImageBuildError(f"{len(errors)} of {len(releases)} build(s) failed\n{text}") from next(
            iter(errors.values())
        )
    return {release: results[release] for release in releases}


def ensure_images(releases=None) -> dict[str, str]:
    """Make sure the minion image of each release exists; return {release: tag}.

    Builds only what is missing, :func:`build_jobs` releases at a time.  Raises
    ImageBuildError when docker is unreachable or a build fails.
    """
    wanted = list(RELEASES) if not releases else list(releases)
    unknown = [r for r in wanted if r not in RELEASES]
    if unknown:
        raise ValueError(f"unknown release(s) {unknown}; known: {', '.join(RELEASES)}")
    check_docker()
    tags = {release: minion_tag(release) for release in wanted}
    missing = [r for r in wanted if not image_exists(tags[r])]
    if missing:
        with _build_lock():
            missing = [r for r in missing if not image_exists(tags[r])]  # built meanwhile by another process

            def build_one(release):
                _log(f"{release}: building {tags[release]} (salt {RELEASES[release]})")
                _build_minion(release, tags[release])

            run_per_release(build_one, missing)
    return tags


def write_constraints(releases=None) -> None:
    """Rewrite images/constraints/<release>.txt from the pip freeze of the current images.

    The constraints pin everything Salt pulls in, so a rebuild installs the same set.
    Salt itself is left out: RELEASES pins it.  Changing a constraints file changes the
    image tag, so the next ensure_images() rebuilds with it.
    """
    tags = ensure_images(releases)
    CONSTRAINTS_DIR.mkdir(parents=True, exist_ok=True)
    skip = ("pip==", "setuptools==", "wheel==", "pkg-resources==", "pkg_resources==", "salt==")
    for release, tag in tags.items():
        proc = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", tag, "/opt/salt/bin/pip", "freeze", "--all"],
            capture_output=True,
            text=True,
            check=True,
        )
        pins = [line for line in proc.stdout.splitlines() if line and not line.lower().startswith(skip)]
        header = (
            f"# pip freeze of /opt/salt in the {release} image (salt {RELEASES[release]}), without\n"
            "# salt itself; regenerate with `python images/build.py --write-constraints`.\n"
        )
        (CONSTRAINTS_DIR / f"{release}.txt").write_text(header + "\n".join(pins) + "\n")
        _log(f"{release}: wrote {len(pins)} pins to images/constraints/{release}.txt")


def cli_main(argv: list[str], prog: str, ensure, prune_images, actions=None) -> int:
    """The command line of images/build.py and images/vm_build.py:
    ``[release ...] [--prune] [--action ...]``.

    Runs each ``actions`` flag given (``{flag: callable(releases)}``), then
    ``ensure(releases)`` (``{release: what was built or found}``), then
    ``prune_images(releases)`` with ``--prune``; prints one ``release what`` line each.
    Returns 1 with the error on stderr when a build fails or a release is unknown.
    """
    actions = dict(actions or {})
    flags = {"--prune", *actions}
    releases = [arg for arg in argv if arg not in flags] or None
    try:
        for flag, action in actions.items():
            if flag in argv:
                action(releases)
        results = ensure(releases)
        if "--prune" in argv:
            prune_images(releases)
    except (ImageBuildError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    for release, result in results.items():
        print(f"{release} {result}")
    return 0


def main(argv: list[str]) -> int:
    return cli_main(argv, "images/build.py", ensure_images, prune, {"--write-constraints": write_constraints})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
