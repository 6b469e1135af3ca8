#!/usr/bin/env bash
# Prepare this machine for the k8snode tests and demo; idempotent, safe to re-run.
#
#  - the Docker engine (Debian's docker.io), mmdebstrap and QEMU (qemu-system-x86,
#    qemu-utils: the real-node VMs), installed when missing;
#  - dockerd started in the background when `docker info` fails (log: .cache/dockerd.log);
#  - .venv with requirements/test.txt, reinstalled only when that file changes.
#
# With --images-in-background (`make test`): as soon as the engine is up, start
# images/prebuild.py (stdlib only: the machine's python3) in its own session, so that a
# cold machine builds its images while the venv installs and the unit and functional
# layers run; its PID goes to .cache/images-background.pid and tests/conftest.py takes
# it over (and stops it if the session ends first).
set -euo pipefail

IMAGES_IN_BACKGROUND=0
for arg in "$@"; do
    case "$arg" in
        --images-in-background) IMAGES_IN_BACKGROUND=1 ;;
        *) printf '[bootstrap] ERROR: unknown argument %s (accepted: --images-in-background)\n' "$arg" >&2; exit 2 ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT=$(pwd)
CACHE_DIR="$REPO_ROOT/.cache"
VENV="$REPO_ROOT/.venv"
REQUIREMENTS="$REPO_ROOT/requirements/test.txt"
STAMP="$VENV/.requirements.sha256"

say() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot install packages or start dockerd"
    SUDO=(sudo)
fi

mkdir -p "$CACHE_DIR"

# --- system packages -------------------------------------------------------------
packages=()
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    packages+=(docker.io)
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
    packages+=(mmdebstrap)
fi
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    packages+=(qemu-system-x86)
fi
if ! command -v qemu-img >/dev/null 2>&1; then
    packages+=(qemu-utils)
fi
if [ "${#packages[@]}" -gt 0 ]; then
    say "installing ${packages[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q >/dev/null
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null
else
    say "docker, mmdebstrap and qemu present"
fi

# --- the Docker engine -------------------------------------------------------------
if docker info >/dev/null 2>&1; then
    say "docker engine is up"
else
    say "starting dockerd (log: .cache/dockerd.log)"
    # setsid + nohup: the engine must outlive this script and make.
    "${SUDO[@]}" setsid nohup dockerd >>"$CACHE_DIR/dockerd.log" 2>&1 </dev/null &
    dockerd_pid=$!
    for _ in $(seq 1 60); do
        if docker info >/dev/null 2>&1; then
            break
        fi
        if ! kill -0 "$dockerd_pid" 2>/dev/null && ! pgrep -x dockerd >/dev/null 2>&1; then
            break  # dockerd exited: no point in waiting
        fi
        sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
        tail -n 20 "$CACHE_DIR/dockerd.log" >&2 || true
        die "dockerd did not answer \`docker info\` (see .cache/dockerd.log)"
    fi
    say "docker engine is up"
fi

# --- the images, in the background -------------------------------------------------
if [ "$IMAGES_IN_BACKGROUND" = 1 ]; then
    PID_FILE="$CACHE_DIR/images-background.pid"
    old=$(cat "$PID_FILE" 2>/dev/null || true)
    if [ -n "$old" ] && grep -q prebuild.py "/proc/$old/cmdline" 2>/dev/null; then
        say "images are already building in the background (pid $old)"
    else
        mkdir -p "$CACHE_DIR/logs"
        setsid python3 images/prebuild.py >"$CACHE_DIR/logs/images-background.log" 2>&1 </dev/null &
        echo $! >"$PID_FILE"
        say "building the images in the background (pid $!, log: .cache/logs/images-background.log)"
    fi
fi

# --- the test venv -------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "creating .venv ($(python3 --version 2>&1))"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
fi
want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
    say "installing requirements/test.txt into .venv (log: .cache/pip-install.log)"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -r "$REQUIREMENTS" \
        >"$CACHE_DIR/pip-install.log" 2>&1; then
        grep -v 'is ignored: it is neither a file nor a directory' "$CACHE_DIR/pip-install.log" \
            | tail -n 30 >&2 || true
        die "pip install -r requirements/test.txt failed"
    fi
    printf '%s\n' "$want" >"$STAMP"
else
    say ".venv is up to date"
fi
say "ready"
