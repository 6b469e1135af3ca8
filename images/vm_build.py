#!/usr/bin/env python3
"""Build the k8snode real-node VM images: Debian with systemd and a modular kernel.

For each release (bookworm, trixie):

1. the minion image ``k8snode-minion:<release>-<hash>`` (images/build.py: the same
   mmdebstrap recipe, Salt in /opt/salt) is built or reused;
2. ``docker build --network host`` of ``images/vm.Dockerfile`` FROM it adds systemd,
   udev, kmod, initramfs-tools and Debian's ``linux-image-cloud-amd64`` (kernel and
   /lib/modules match), a salt-minion unit, systemd-networkd DHCP on ``en*``;
3. ``docker create`` + ``docker export | tar -x`` gives a tree; everything that says
   "container" is removed from it (``/.dockerenv``), and it gets a hostname, hosts,
   a machine-id;
4. ``mkfs.ext4 -d TREE disk.img`` (no loop device, no mount) and the kernel and
   initrd copied beside it.

The result is ``.cache/vm/<release>-<hash>/`` (``disk.img``, ``vmlinuz``,
``initrd.img``, ``manifest.json``), where the hash covers every input (the minion
image's tag, which already hashes its own inputs, vm.Dockerfile, the files in
images/vm/ and this file).  A directory that exists is never rebuilt; builds hold a
machine-wide lock.  Tests boot a qcow2 overlay on ``disk.img`` (tests/support/vm.py).

Usage::

    python images/vm_build.py [release ...]     # prints "release directory" lines
    python images/vm_build.py --prune           # also remove outdated .cache/vm dirs
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = REPO_ROOT / "images"
VM_FILES_DIR = IMAGES_DIR / "vm"
DOCKERFILE = IMAGES_DIR / "vm.Dockerfile"
# The cache is shared by every checkout whose .cache is the same directory, and the
# docker engine by every checkout on the machine: one lock for the machine.
LOCK_FILE = Path(tempfile.gettempdir()) / "k8snode-vm-images.lock"

#: Debian releases that get a VM image.
VM_RELEASES = ("bookworm", "trixie")
DISK_HEADROOM = 768 * 1024 * 1024  # free space in the guest (swap files, logs)
MACHINE_ID = "6b38736e6f64652d766d2d7465737473"  # fixed: no "first boot" presets in the guest


def _load_minion_builder():
    name = "k8snode_images_build"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, IMAGES_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


build = _load_minion_builder()
ImageBuildError = build.ImageBuildError
# Under build.py's K8SNODE_IMAGE_CACHE and K8SNODE_IMAGE_PREFIX, as the minion images.
VM_CACHE_DIR = build.CACHE_DIR / "vm"
VM_REPO = f"{build.IMAGE_PREFIX}-vm"


@dataclass(frozen=True)
class VmImage:
    """A built VM image: a raw ext4 disk, the kernel and initrd that boot it."""

    release: str
    directory: Path
    kernel_release: str

    @property
    def disk(self) -> Path:
        return self.directory / "disk.img"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"


def _log(msg: str) -> None:
    sys.stderr.write(f"[vm-images] {msg}\n")  # one write per line: builds run in threads
    sys.stderr.flush()


def vm_hash(release: str) -> str:
    files = []
    for path in sorted(VM_FILES_DIR.iterdir()):
        files += [path.name, path.read_bytes(), oct(path.stat().st_mode & 0o777)]
    return build._sha(
        # The minion image's default tag, whatever K8SNODE_IMAGE_PREFIX says: the same
        # inputs give the same hash (and a throw-away build measures the real thing).
        "vm-v1",
        f"k8snode-minion:{release}-{build.minion_hash(release)}",
        DOCKERFILE.read_bytes(),
        Path(__file__).read_bytes(),
        release,
        *files,
    )


def vm_dir(release: str) -> Path:
    return VM_CACHE_DIR / f"{release}-{vm_hash(release)}"


def vm_tag(release: str) -> str:
    return f"{VM_REPO}:{release}-{vm_hash(release)}"


def _load(directory: Path, release: str) -> VmImage | None:
    manifest = directory / "manifest.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text())
    image = VmImage(release=release, directory=directory, kernel_release=data["kernel_release"])
    if all(path.exists() for path in (image.disk, image.kernel, image.initrd)):
        return image
    return None


@contextlib.contextmanager
def _build_lock():
    with open(LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            _log(f"waiting for another VM image build ({LOCK_FILE})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _docker_build(release: str, minion_tag: str, tag: str) -> None:
    if build.image_exists(tag):
        _log(f"{release}: docker image {tag} exists")
        return
    with tempfile.TemporaryDirectory(prefix=f"k8snode-vm-image-{release}-") as ctx:
        ctx_path = Path(ctx)
        shutil.copyfile(DOCKERFILE, ctx_path / "Dockerfile")
        for path in VM_FILES_DIR.iterdir():
            shutil.copy2(path, ctx_path / path.name)
        build._run(
            [
                "docker",
                "build",
                "--force-rm",
                "--network",
                "host",
                "--label",
                build.LABEL,
                "--build-arg",
                f"MINION_IMAGE={minion_tag}",
                "--tag",
                tag,
                str(ctx_path),
            ],
            f"vm-build-{release}.log",
            env=dict(os.environ, DOCKER_BUILDKIT="0"),
        )


def _export_tree(tag: str, tree: Path) -> None:
    """docker create + docker export | tar -x into ``tree``."""
    created = subprocess.run(["docker", "create", tag, "true"], capture_output=True, text=True, check=False)
    if created.returncode != 0:
        raise ImageBuildError(f"docker create {tag} failed: {created.stderr.strip()}")
    container = created.stdout.strip()
    try:
        tree.mkdir(parents=True)
        export = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
        try:
            untar = subprocess.run(
                ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-x", "-C", str(tree)],
                stdin=export.stdout,
                check=False,
            )
        finally:
            assert export.stdout is not None
            export.stdout.close()
            export_rc = export.wait()
        if export_rc != 0 or untar.returncode != 0:
            raise ImageBuildError(f"docker export ({export_rc}) | tar -x ({untar.returncode}) failed")
    finally:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True, check=False)


def _make_bootable(tree: Path, release: str) -> None:
    """Remove what says "container" (systemd then behaves as in a container: it skips
    fstab swap, for one) and give the tree what docker had bind-mounted over."""
    for leftover in (".dockerenv", "run/.containerenv", "run/systemd/container"):
        with contextlib.suppress(FileNotFoundError):
            (tree / leftover).unlink()
    (tree / "etc/hostname").write_text(f"k8snode-vm-{release}\n")
    (tree / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\tk8snode-vm-{release}\n")
    resolv = tree / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text("")  # no DNS: the guest reaches nothing but the master
    (tree / "etc/machine-id").write_text(MACHINE_ID + "\n")
    leftovers = [str(path.relative_to(tree)) for path in (tree / ".dockerenv", tree / "run/.containerenv")]
    leftovers = [path for path in leftovers if (tree / path).exists()]
    if leftovers:
        raise ImageBuildError(f"container markers left in the tree: {leftovers}")


def _kernel_files(tree: Path) -> tuple[Path, Path, str]:
    kernels = sorted((tree / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise ImageBuildError(f"expected one /boot/vmlinuz-* in the image, found {kernels}")
    release = kernels[0].name[len("vmlinuz-") :]
    initrd = tree / "boot" / f"initrd.img-{release}"
    if not initrd.exists():
        raise ImageBuildError(f"{initrd} is missing")
    if (
        not (tree / "lib/modules" / release / "modules.dep").exists()
        and not (tree / "usr/lib/modules" / release / "modules.dep").exists()
    ):
        raise ImageBuildError(f"/lib/modules/{release} does not match the kernel")
    return kernels[0], initrd, release


def _tree_size(tree: Path) -> int:
    proc = subprocess.run(["du", "-sb", str(tree)], capture_output=True, text=True, check=True)
    return int(proc.stdout.split()[0])


def _build_vm(release: str, minion_tag: str, dest: Path) -> VmImage:
    started = time.monotonic()
    stages = {}  # stage -> seconds, in the manifest: what a cold build spends where
    tag = vm_tag(release)
    _docker_build(release, minion_tag, tag)
    stages["docker build (apt: systemd, kernel, initramfs)"] = round(time.monotonic() - started, 1)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    tree = partial / "tree"
    try:
        mark = time.monotonic()
        _export_tree(tag, tree)
        _make_bootable(tree, release)
        stages["docker export | tar -x"] = round(time.monotonic() - mark, 1)
        mark = time.monotonic()
        kernel, initrd, kernel_release = _kernel_files(tree)
        shutil.copyfile(kernel, partial / "vmlinuz")
        shutil.copyfile(initrd, partial / "initrd.img")
        size = _tree_size(tree) * 5 // 4 + DISK_HEADROOM
        size = (size // (1 << 20) + 1) << 20
        disk = partial / "disk.img"
        with open(disk, "wb") as handle:
            handle.truncate(size)
        build._run(
            ["mkfs.ext4", "-q", "-F", "-L", "k8snode-root", "-E", "root_owner=0:0", "-d", str(tree), str(disk)],
            f"vm-mkfs-{release}.log",
        )
        shutil.rmtree(tree)
        stages["mkfs.ext4 -d"] = round(time.monotonic() - mark, 1)
        seconds = round(time.monotonic() - started, 1)
        manifest = {
            "release": release,
            "kernel_release": kernel_release,
            "minion_image": minion_tag,
            "docker_image": tag,
            "disk_bytes": size,
            "build_seconds": seconds,
            "stage_seconds": stages,
        }
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        partial.rename(dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    # The docker image was only a step: the directory is the cache.
    subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)
    spent = ", ".join(f"{stage} {value:.0f}s" for stage, value in stages.items())
    _log(f"{release}: built {dest} (kernel {kernel_release}) in {seconds:.0f}s: {spent}")
    image = _load(dest, release)
    assert image is not None
    return image


def ensure_vm_images(releases=None) -> dict[str, VmImage]:
    """Make sure the VM image of each release exists; return ``{release: VmImage}``.

    Builds only what is missing, ``build.build_jobs()`` releases at a time.  Raises ImageBuildError when docker is
    unreachable, mkfs.ext4 is missing or a build fails.
    """
    wanted = list(VM_RELEASES) if not releases else list(releases)
    unknown = [release for release in wanted if release not in VM_RELEASES]
    if unknown:
        raise ValueError(f"unknown release(s) {unknown}; known: {', '.join(VM_RELEASES)}")
    images = {}
    missing = []
    for release in wanted:
        image = _load(vm_dir(release), release)
        if image:
            images[release] = image
        else:
            missing.append(release)
    if not missing:
        return images
    if shutil.which("mkfs.ext4") is None and not Path("/sbin/mkfs.ext4").exists():
        raise ImageBuildError("mkfs.ext4 (e2fsprogs) is not installed")
    minion_tags = build.ensure_images(missing)
    with _build_lock():

        def build_one(release):
            directory = vm_dir(release)
            image = _load(directory, release)  # built meanwhile by another process
            if image is None:
                _log(f"{release}: building {directory.name} from {minion_tags[release]}")
                image = _build_vm(release, minion_tags[release], directory)
            return image

        images.update(build.run_per_release(build_one, missing))
    return {release: images[release] for release in wanted}


def prune(releases=None) -> None:
    """Remove .cache/vm/<release>-<hash> dirs of older inputs (``--prune``; opt-in: another
    checkout sharing this .cache may still use them)."""
    wanted = list(VM_RELEASES) if not releases else list(releases)
    with _build_lock():
        for release in wanted:
            keep = vm_dir(release).name
            for path in VM_CACHE_DIR.glob(f"{release}-*"):
                if path.name != keep:
                    shutil.rmtree(path, ignore_errors=True)
                    _log(f"removed {path}")


def main(argv: list[str]) -> int:
    def ensure(releases):
        return {release: image.directory for release, image in ensure_vm_images(releases).items()}

    return build.cli_main(argv, "images/vm_build.py", ensure, prune)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
