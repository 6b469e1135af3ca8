"""
Swap now (``/proc/swaps``) and at the next boot: ``/etc/fstab`` lines, enabled
systemd ``.swap`` units, zram-generator, and a masked ``swap.target`` that
keeps all of them off.
"""

import os

from . import host

# Only enabled units start at boot: the ones linked from these .wants directories.
_SWAP_WANTS_DIRS = ("etc/systemd/system/swap.target.wants", "etc/systemd/system/local-fs.target.wants")


def fstab_swap_lines(text):
    """Return (line indexes, devices) of the fstab swap entries activated at boot."""
    indexes, devices = [], []
    for index, line in enumerate(text.splitlines()):
        fields = line.split()
        noauto = len(fields) >= 4 and "noauto" in fields[3].split(",")
        if len(fields) >= 3 and not fields[0].startswith("#") and fields[2] == "swap" and not noauto:
            indexes.append(index)
            devices.append(fields[0])
    return indexes, devices


def swap_status(root):
    """``{"active": [devices], "at_boot": [where each comes back from]}``."""
    active = []
    for line in (host.read_text(host.path(root, "proc/swaps")) or "").splitlines()[1:]:
        if line.split():
            active.append(line.split()[0])
    fstab = host.read_text(host.path(root, "etc/fstab")) or ""
    at_boot = [f"/etc/fstab: {device}" for device in fstab_swap_lines(fstab)[1]]
    for directory in _SWAP_WANTS_DIRS:
        try:
            names = sorted(os.listdir(host.path(root, directory)))
        except OSError:
            continue
        for name in names:
            unit = os.path.join(host.path(root, directory), name)
            if name.endswith(".swap") and not host.is_masked(unit):
                at_boot.append(f"/{directory}/{name}")
    if os.path.exists(host.path(root, "etc/systemd/zram-generator.conf")):
        at_boot.append("/etc/systemd/zram-generator.conf")
    if host.is_masked(host.path(root, "etc/systemd/system/swap.target")):
        # kubespray's way: with swap.target masked, systemd activates no swap at boot.
        at_boot = []
    return {"active": active, "at_boot": sorted(set(at_boot))}
