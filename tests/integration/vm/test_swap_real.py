"""Swap on a real node: a swap file in /etc/fstab and one as a systemd .swap unit.

k8snode's kubeadm profile turns swap off now (swapoff) and for the next boot by
commenting out the fstab lines; a swap unit it does not touch: that item fails and asks
for the unit to be masked or removed (``_swap_off`` in the execution module).  The test
does what an operator told so would do, and then proves both with real boots.
"""

import pytest

from tests.support.vm_checks import apply, audit, read_files, swaps

pytestmark = pytest.mark.real_node

FSTAB_SWAP = "/swapfstab"
UNIT_SWAP = "/swapunit"
UNIT = "swapunit.swap"
UNIT_LINK = f"/etc/systemd/system/swap.target.wants/{UNIT}"

SETUP = f"""
for f in {FSTAB_SWAP} {UNIT_SWAP}; do
    dd if=/dev/zero of=$f bs=1M count=16 status=none; chmod 600 $f; mkswap $f >/dev/null
done
echo '{FSTAB_SWAP} none swap sw 0 0' >> /etc/fstab
printf '[Unit]\\nDescription=k8snode test: swap as a unit\\n[Swap]\\nWhat={UNIT_SWAP}\\n[Install]\\nWantedBy=swap.target\\n' \\
    > /etc/systemd/system/{UNIT}
systemctl daemon-reload
systemctl enable {UNIT} 2>/dev/null
sync
"""


def test_swap_off_for_real_and_absent_brings_fstab_swap_back(salt_master, fresh_vm):
    node = fresh_vm("bookworm")
    node.sh(SETUP)
    node.reboot()
    # systemd activated both at boot (in a "container" it leaves fstab swap alone).
    assert sorted(swaps(node)) == [FSTAB_SWAP, UNIT_SWAP]
    check = audit(salt_master, node)["checks"]["swap"]
    assert check["status"] == "fail"
    assert check["boot"] == [f"/etc/fstab: {FSTAB_SWAP}", UNIT_LINK], check

    code, state = apply(salt_master, node)
    assert code != 0 and state["result"] is False, state
    assert {f"swap:{FSTAB_SWAP}", f"swap:{UNIT_SWAP}", "file:/etc/fstab"} <= set(state["changes"]), state
    assert f"swap: swap comes back at boot from {UNIT_LINK}: mask or remove it" in state["comment"], state
    assert swaps(node) == []
    files = read_files(node, "/etc/fstab", "/etc/fstab.k8snode.bak")
    assert f"#k8snode-swap-off# {FSTAB_SWAP} none swap sw 0 0" in files["/etc/fstab"].splitlines()
    assert f"{FSTAB_SWAP} none swap sw 0 0" in files["/etc/fstab.k8snode.bak"].splitlines()

    # What the failure asks for: the unit no longer starts at boot.
    node.sh(f"systemctl disable {UNIT} 2>/dev/null")
    code, state = apply(salt_master, node)
    assert code == 0 and state["result"] is True, state
    report = audit(salt_master, node)
    assert report["ready"] is True, report["failing"]
    assert (report["checks"]["swap"]["live"], report["checks"]["swap"]["boot"]) == ([], [])

    node.reboot()
    assert swaps(node) == []
    assert audit(salt_master, node)["ready"] is True

    code, state = apply(salt_master, node, "k8snode.absent")
    assert code == 0 and state["result"] is True, state
    predicted = audit(salt_master, node)["checks"]["swap"]
    assert predicted["boot"] == [f"/etc/fstab: {FSTAB_SWAP}"], predicted

    node.reboot()
    assert swaps(node) == [FSTAB_SWAP]
