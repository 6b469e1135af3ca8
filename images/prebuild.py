#!/usr/bin/env python3
"""Build every image the integration tests need: the minion images, then side by side
the images derived from them (images/derived.py) and the VM images.

The VM images start as soon as their minion images exist, not after the derived ones:
the real-node tier waits for them and is the longer of ``make test``'s two sessions
(scripts/run_tests.py), while the container tests that need a derived image come after
the unit and functional layers.

``make test`` starts this in the background as soon as the Docker engine is up
(``scripts/bootstrap.sh --images-in-background``; tests/support/background_images.py),
so that a cold machine builds its images while the unit and functional layers run. The integration fixtures ask for the same images and wait
on the builds' file locks, so nothing is built twice; when this fails, they build or
fail with their own error.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from images import build, derived, vm_build  # noqa: E402 (needs the repository on sys.path)


def main() -> int:
    if build.main([]):
        return 1
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="prebuild") as pool:
        codes = [future.result() for future in [pool.submit(vm_build.main, []), pool.submit(derived.main, [])]]
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
