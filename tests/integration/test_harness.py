"""Proof that the integration harness is real: a host master driving three containers."""

from __future__ import annotations

import secrets
import textwrap
from pathlib import Path

import pytest

from tests.support.harness import (
    RELEASES,
    container_exec,
    minion_id,
    salt_cmd,
    salt_run,
)

DEBIAN_MAJOR = {"bullseye": "11", "bookworm": "12", "trixie": "13"}


@pytest.mark.parametrize("release", RELEASES)
def test_file_managed_through_master_lands_only_in_target_container(salt_master, minions, release):
    token = secrets.token_hex(8)
    path = f"/etc/k8snode-harness-probe-{token}"
    contents = f"k8snode harness probe {token} for {release}"
    target = minions[release]

    ret = salt_run(
        salt_master,
        "state.single",
        "file.managed",
        f"name={path}",
        f"contents={contents}",
        tgt=target.id,
    )
    (state,) = ret.values()
    assert state["result"] is True
    assert state["changes"], state  # the file was created, not already there

    rc, out = container_exec(target, "cat", path)
    assert rc == 0
    assert out.strip() == contents

    assert not Path(path).exists(), "the state must not have touched the host"
    for other_release, other in minions.items():
        if other_release == release:
            continue
        rc, _ = container_exec(other, "test", "-e", path)
        assert rc == 1, f"{path} must not exist in {other.id}"
    rc, _ = container_exec(target, "rm", "-f", path)
    assert rc == 0


def test_every_minion_answers_ping_through_master(salt_master, minions):
    ids = [m.id for m in minions.values()]
    assert sorted(ids) == sorted(minion_id(r) for r in RELEASES)
    ret = salt_run(salt_master, "test.ping", tgt=ids, tgt_type="list")
    assert ret == {mid: True for mid in ids}


def test_minions_cover_three_debian_releases_and_two_salt_majors(salt_master, minions):
    ids = [m.id for m in minions.values()]
    ret = salt_run(salt_master, "grains.item", "saltversion", "osrelease", "oscodename", tgt=ids, tgt_type="list")
    majors = set()
    for release, minion in minions.items():
        grains = ret[minion.id]
        assert grains["oscodename"] == release
        assert grains["osrelease"].split(".")[0] == DEBIAN_MAJOR[release]
        majors.add(grains["saltversion"].split(".")[0])
        # The container itself agrees (docker exec, not salt).
        rc, out = container_exec(minion, "sh", "-c", ". /etc/os-release; echo $VERSION_CODENAME")
        assert (rc, out.strip()) == (0, release)
    assert ret[minion_id("bullseye")]["saltversion"].startswith("3006.")
    assert ret[minion_id("bookworm")]["saltversion"].startswith("3008.")
    assert {"3006", "3008"} <= majors


def test_unknown_function_is_reported_not_hidden(salt_master, minion_bookworm):
    result = salt_cmd(salt_master, "k8snode_harness.does_not_exist", tgt=minion_bookworm.id)
    assert "is not available" in str(result.data or result.stdout)
    with pytest.raises(AssertionError, match="is not available"):
        salt_run(salt_master, "k8snode_harness.does_not_exist", tgt=minion_bookworm.id)


def test_extra_master_with_custom_config_and_late_minion(
    salt_master, extension_root, start_master, start_minion, tmp_path
):
    # A custom module reachable through a symlinked _modules dir, exactly like the
    # repository's extension root.
    source = tmp_path / "src" / "_modules"
    source.mkdir(parents=True)
    (source / "harness_probe.py").write_text(
        textwrap.dedent(
            """
            def whoami():
                return {"id": __grains__["id"], "codename": __grains__["oscodename"],
                        "master": __opts__["master"]}
            """
        )
    )
    probe_root = tmp_path / "root"
    probe_root.mkdir()
    (probe_root / "_modules").symlink_to(source, target_is_directory=True)
    file_roots = list(salt_master.config["file_roots"]["base"]) + [str(probe_root)]
    assert str(extension_root) in file_roots

    master = start_master({"file_roots": {"base": file_roots}, "k8snode_harness_marker": "extra"})
    assert master.config["k8snode_harness_marker"] == "extra"
    assert master.id != salt_master.id

    # Started after its master, like a node joining later.
    minion = start_minion("trixie", master=master)
    ret = salt_run(master, "harness_probe.whoami", tgt=minion.id)
    assert ret == {"id": minion.id, "codename": "trixie", "master": master.config["interface"]}

    # The session master does not know this minion.
    other = salt_cmd(salt_master, "test.ping", tgt=minion.id, timeout=5)
    assert other.data != True  # noqa: E712 - "no minions matched" or no return, never True


def test_late_minion_on_the_session_master(salt_master, minions, start_minion):
    minion = start_minion("bullseye")
    assert minion.id not in [m.id for m in minions.values()]
    assert salt_run(salt_master, "test.ping", tgt=minion.id) is True
    grains = salt_run(salt_master, "grains.item", "oscodename", "saltversion", tgt=minion.id)
    assert grains["oscodename"] == "bullseye"
    assert grains["saltversion"].startswith("3006.")


def test_glob_targets_only_live_minions(salt_master, minions):
    # Runs after the late-minion tests: their keys were deleted at teardown, so "*"
    # means exactly the session minions and nobody is waited for.
    ret = salt_run(salt_master, "test.ping", tgt="*")
    assert ret == {m.id: True for m in minions.values()}
