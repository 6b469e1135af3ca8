#!/usr/bin/env python3
"""Images derived from a minion image by one small Dockerfile: Debian packages a test
needs beside Salt (systemd's ``systemd-sysctl`` for the boot-value oracle, on bullseye,
bookworm and trixie; Debian's ``prometheus-node-exporter`` for the drift metrics,
Debian's ``prometheus`` for promtool); and, for salt-ssh (issue 24), an sshd node with no
Salt, FROM the Debian base image, and the salt-ssh client on Salt 3006 and 3008; Debian's
redis-server for hot masters sharing the fleet memory.

The tag is ``k8snode-<name>:<release>-<hash>`` where the hash covers the minion image's
tag (itself a hash of all its inputs) and the Dockerfile's text; an existing tag is
never rebuilt.  ``images/prebuild.py`` builds them in the background right after the
minion images, so that no test waits for an ``apt-get install`` in the middle of the
run; the tests' fixtures ask for the same tags and wait on the same build lock.

Usage::

    python images/derived.py [name ...]      # prints "name tag" lines
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from images import build  # noqa: E402 (needs the repository on sys.path)

#: name -> (Dockerfile in images/, minion release it starts FROM, the build-arg naming that
#: image); the build-arg BASE_IMAGE_NO_SALT starts FROM that release's Debian base image instead.
DERIVED: dict[str, tuple[str, str, str]] = {
    "sysctl-oracle": ("systemd-sysctl.Dockerfile", "bookworm", "BASE_IMAGE"),
    # The same oracle on Debian 11's systemd 247 and Debian 13's 257 (issue 21: by version).
    "sysctl-oracle-bullseye": ("systemd-sysctl.Dockerfile", "bullseye", "BASE_IMAGE"),
    "sysctl-oracle-trixie": ("systemd-sysctl.Dockerfile", "trixie", "BASE_IMAGE"),
    "node-exporter": ("node-exporter.Dockerfile", "bookworm", "MINION_IMAGE"),
    "prometheus": ("prometheus.Dockerfile", "bookworm", "MINION_IMAGE"),
    "ssh-target": ("ssh-target.Dockerfile", "bookworm", "BASE_IMAGE_NO_SALT"),
    "salt-ssh-3006": ("salt-ssh-client.Dockerfile", "bullseye", "MINION_IMAGE"),
    "salt-ssh-3008": ("salt-ssh-client.Dockerfile", "bookworm", "MINION_IMAGE"),
    "redis": ("redis.Dockerfile", "bookworm", "BASE_IMAGE_NO_SALT"),
}


def derived_tag(name: str) -> str:
    dockerfile, release, _ = _spec(name)
    digest = build._sha("derived-v1", name, _from_tag(name), (build.IMAGES_DIR / dockerfile).read_bytes())
    return f"{build.IMAGE_PREFIX}-{name}:{release}-{digest}"


def _from_tag(name: str) -> str:
    _, release, build_arg = _spec(name)
    return build.base_tag(release) if build_arg == "BASE_IMAGE_NO_SALT" else build.minion_tag(release)


def _spec(name: str) -> tuple[str, str, str]:
    if name not in DERIVED:
        raise ValueError(f"unknown derived image {name!r}; known: {', '.join(DERIVED)}")
    return DERIVED[name]


def ensure_derived(name: str) -> str:
    """Build the image ``name`` (and its minion image) unless its tag exists; return the tag."""
    dockerfile, release, build_arg = _spec(name)
    build.ensure_images([release])  # the minion image, and the base image it is built on
    base = _from_tag(name)
    build_arg = build_arg.replace("_NO_SALT", "")
    tag = derived_tag(name)
    if build.image_exists(tag):
        return tag
    with build._build_lock():
        if not build.image_exists(tag):
            started = time.monotonic()
            with open(build.IMAGES_DIR / dockerfile, "rb") as dockerfile_text:
                build._run(
                    [
                        "docker", "build", "--network", "host", "--label", build.LABEL,
                        "--build-arg", f"{build_arg}={base}", "--tag", tag,
                        "-",  # the Dockerfile on stdin, no build context: it copies nothing
                    ],
                    f"build-{name}.log",
                    stdin=dockerfile_text,
                    env=dict(os.environ, DOCKER_BUILDKIT="0"),
                )  # fmt: skip
            build._log(f"{name}: built {tag} in {time.monotonic() - started:.0f}s")
    return tag


def ensure_all(names=None) -> dict[str, str]:
    return {name: ensure_derived(name) for name in (names or DERIVED)}


def main(argv: list[str]) -> int:
    try:
        tags = ensure_all(argv or None)
    except (build.ImageBuildError, ValueError) as exc:
        print(f"images/derived.py: error: {exc}", file=sys.stderr)
        return 1
    for name, tag in tags.items():
        print(f"{name} {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
