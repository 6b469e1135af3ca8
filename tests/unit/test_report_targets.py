"""The report's expansion of ``'*'`` (``_every_accepted_id``, one ``scandir`` of the accepted
keys) against Salt's own ``CkMinions`` on the same key directory: the real thing decides."""

import pytest

from _runners import k8snode as runner
from tests.support.fake_master import master_opts_under

IDS = ("node1", "node-2.example.com", "a@b", "with space", "nœud", "UPPER_case", "x" * 200)


@pytest.fixture
def opts(tmp_path, monkeypatch):
    opts = master_opts_under(tmp_path)
    keys = tmp_path / "pki_dir" / "minions"
    for minion in IDS:
        (keys / minion).write_text("a public key")
    (keys / ".key_cache").write_text("not a key")  # what key_cache: sched leaves
    (keys / "a-directory").mkdir()
    (keys / "back\\slash").write_text("a public key")
    monkeypatch.setattr(runner, "__opts__", opts, raising=False)
    return opts


def test_star_is_what_salt_expands_it_to(opts):
    expected = runner._salts_expansion("*", "glob")
    assert set(IDS) <= expected  # the keys themselves, as Salt lists them
    assert runner._every_accepted_id() == expected
    assert runner._expected_minions("*", "glob") == expected


def test_another_key_store_or_target_is_left_to_salt(opts, monkeypatch):
    assert runner._expected_minions("node*", "glob") == {"node1", "node-2.example.com"}
    monkeypatch.setitem(opts, "keys.cache_driver", "redis_key")
    assert runner._every_accepted_id() is None
    assert runner._expected_minions("*", "glob") == runner._salts_expansion("*", "glob")
