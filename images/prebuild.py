#!/usr/bin/env python3
"""Build every image the integration tests need: the minion images, the images derived
from them (images/derived.py), then the VM images.

``make test`` starts this in the background when the session collected integration
tests (``tests/conftest.py``), so that a cold machine builds its images while the unit
and functional layers run. The integration fixtures ask for the same images and wait
on the builds' file locks, so nothing is built twice; when this fails, they build or
fail with their own error.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from images import build, derived, vm_build  # noqa: E402 (needs the repository on sys.path)


def main() -> int:
    return build.main([]) or derived.main([]) or vm_build.main([])


if __name__ == "__main__":
    sys.exit(main())
