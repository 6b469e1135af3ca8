"""salt/k8snode/synced.jinja: before the k8snode modules are synced, the SLS files render one
failing state that names the command to run, for a minion of a master and for a masterless
salt-call (tests/integration/test_first_run.py runs the masterless case on real Salt)."""

from pathlib import Path

import jinja2
import pytest
import yaml

SALT_TREE = Path(__file__).resolve().parents[2] / "salt"


def render(sls, functions, file_client):
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(SALT_TREE)), extensions=["jinja2.ext.do"])
    pillar_get = lambda key, default=None: default  # noqa: E731 - Salt's pillar.get with no pillar
    context = {
        "salt": {**functions, "pillar.get": pillar_get},
        "opts": {"file_client": file_client},
        "grains": {"id": "node1"},
    }
    return yaml.safe_load(environment.get_template(sls).render(**context))


@pytest.mark.parametrize("sls", ["k8snode/init.sls", "k8snode/absent.sls"])
@pytest.mark.parametrize(
    ("file_client", "command"),
    [("remote", "salt node1 saltutil.sync_all"), ("local", "salt-call --local saltutil.sync_all")],
)
def test_not_synced_names_the_one_command(sls, file_client, command):
    (state,) = render(sls, {}, file_client).values()
    (fail,) = state["test.fail_without_changes"][:1]
    assert f"run `{command}`, then apply again" in fail["name"]


@pytest.mark.parametrize(
    ("sls", "state_id"), [("k8snode/init.sls", "k8snode prepared"), ("k8snode/absent.sls", "k8snode absent")]
)
def test_synced_renders_the_state(sls, state_id):
    rendered = render(sls, {"k8snode.prepare": object()}, "remote")
    assert list(rendered) == [state_id]
