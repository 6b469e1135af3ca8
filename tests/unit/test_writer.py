"""
atomic_write: readers (systemd-sysctl, systemd-modules-load, mount) see the old
file or the new one, never a part; a crash leaves no temporary file that
systemd would read (it reads only ``*.conf``), and the next write cleans up.
"""

import os

import pytest

from _modules.k8snode import writer


@pytest.fixture
def confdir(tmp_path):
    directory = tmp_path / "host" / "etc" / "sysctl.d"
    directory.mkdir(parents=True)
    return directory


def test_writes_content_and_mode(k8snode, confdir):
    target = confdir / "99-k8snode.conf"
    old_umask = os.umask(0o077)
    try:
        writer.atomic_write(str(target), "net.ipv4.ip_forward = 1\n")
    finally:
        os.umask(old_umask)
    assert target.read_text() == "net.ipv4.ip_forward = 1\n"
    assert target.stat().st_mode & 0o777 == 0o644
    writer.atomic_write(str(target), "x\n", mode=0o600)
    assert target.stat().st_mode & 0o777 == 0o600
    assert os.listdir(confdir) == ["99-k8snode.conf"]


def test_creates_missing_directories(k8snode, tmp_path):
    target = tmp_path / "host" / "etc" / "modules-load.d" / "k8snode.conf"
    writer.atomic_write(str(target), "overlay\n")
    assert target.read_text() == "overlay\n"


def test_failure_before_rename_keeps_old_file_and_leaves_no_temp(k8snode, confdir, monkeypatch):
    target = confdir / "99-k8snode.conf"
    target.write_text("old\n")
    seen = []

    def crash(src, dst):
        seen.append(src)
        with open(src) as handle:
            assert handle.read() == "new\n", "the temp file is complete before the rename"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.os, "replace", crash)
    with pytest.raises(OSError, match="No space left"):
        writer.atomic_write(str(target), "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(confdir) == ["99-k8snode.conf"]
    temp = os.path.basename(seen[0])
    assert temp.startswith(".99-k8snode.conf.k8snode-tmp-")
    assert not temp.endswith(".conf")
    assert os.path.dirname(seen[0]) == str(confdir), "same directory, so the rename is atomic"


def test_interrupt_during_write_cleans_up(k8snode, confdir, monkeypatch):
    target = confdir / "99-k8snode.conf"
    target.write_text("old\n")

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        writer.atomic_write(str(target), "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(confdir) == ["99-k8snode.conf"]


def test_stray_temp_of_a_killed_run_is_removed(k8snode, confdir):
    stray = confdir / ".99-k8snode.conf.k8snode-tmp-a1b2c3d4"
    stray.write_text("net.ipv4.ip_forward = 1\n")  # half-written by a run killed before rename
    other = confdir / ".10-user.conf.k8snode-tmp-zzzz"
    other.write_text("not ours to clean now\n")
    writer.atomic_write(str(confdir / "99-k8snode.conf"), "net.ipv4.ip_forward = 1\n")
    assert sorted(os.listdir(confdir)) == [".10-user.conf.k8snode-tmp-zzzz", "99-k8snode.conf"]


def test_temp_names_are_never_read_by_systemd(k8snode, confdir, monkeypatch):
    names = []
    real_replace = os.replace

    def spy(src, dst):
        names.append(os.path.basename(src))
        return real_replace(src, dst)

    monkeypatch.setattr(writer.os, "replace", spy)
    for _ in range(5):
        writer.atomic_write(str(confdir / "99-k8snode.conf"), "x\n")
    assert len(names) == 5
    for name in names:
        assert name.startswith(".99-k8snode.conf" + writer.TEMP_MARK)
        assert not name.endswith(".conf")


def test_prepare_reports_a_failed_write_and_keeps_the_old_file(k8snode, tree, monkeypatch):
    tree.redhat().fresh_node()
    assert k8snode._prepare(root=tree.path)["result"] is True
    old = tree.read("etc/sysctl.d/99-k8snode.conf")
    tree.write("etc/sysctl.d/99-k8snode.conf", old.replace("ip_forward = 1", "ip_forward = 0"))
    edited = tree.read("etc/sysctl.d/99-k8snode.conf")

    def crash(src, dst):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(writer.os, "replace", crash)
    ret = k8snode._prepare(root=tree.path)
    assert ret["result"] is False
    assert "Read-only file system" in ret["failures"]["file:/etc/sysctl.d/99-k8snode.conf"]
    assert tree.read("etc/sysctl.d/99-k8snode.conf") == edited
    assert tree.listdir("etc/sysctl.d") == ["99-k8snode.conf", "99-sysctl.conf"]
