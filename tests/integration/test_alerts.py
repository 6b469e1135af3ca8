"""k8snode's Prometheus alerting rules (prometheus/k8snode-alerts.yaml), checked and
unit-tested by the real promtool: Debian's ``prometheus`` package in a container
(images/prometheus.Dockerfile, built by images/derived.py). The rules and their tests
travel into the container as a tar on stdin; nothing is mounted, nothing is fetched.

``promtool test rules`` runs k8snode-alerts.test.yaml: each alert pending (not yet
firing), firing with its labels and annotations, and resolved, on series written by hand.
"""

import subprocess

import pytest

from tests.support.harness import REPO_ROOT, tar_of

RULES_DIR = REPO_ROOT / "prometheus"
RULES, RULE_TESTS = "k8snode-alerts.yaml", "k8snode-alerts.test.yaml"
ALERTS = ("K8snodeNotReady", "K8snodeReadinessLostAtNextBoot", "K8snodeMetricsStale", "K8snodeKeepsDrifting")


@pytest.fixture(scope="module")
def prometheus_image(docker_client):
    """The bookworm minion image plus Debian's prometheus (images/derived.py)."""
    from images import derived

    return derived.ensure_derived("prometheus")


def promtool(image, *args, directory=RULES_DIR):
    """``promtool ARGS`` in /rules of a throw-away container holding the rules and their
    tests from ``directory``."""
    archive = tar_of({name: (directory / name).read_text() for name in (RULES, RULE_TESTS)})
    script = 'mkdir /rules && cd /rules && tar -x && exec promtool "$@"'
    return subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "none", image, "sh", "-c", script, "promtool", *args],
        input=archive,
        capture_output=True,
        timeout=120,
        check=False,  # the callers assert on the exit code and print the output
    )


def test_promtool_checks_the_rules(prometheus_image):
    done = promtool(prometheus_image, "check", "rules", RULES)
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, out
    assert f"SUCCESS: {len(ALERTS)} rules found" in out, out


def test_promtool_unit_tests_fire_and_resolve_each_alert(prometheus_image):
    tested = (RULES_DIR / RULE_TESTS).read_text()
    for alert in ALERTS:
        assert f"alertname: {alert}" in tested, f"{alert} has no promtool test"
    done = promtool(prometheus_image, "test", "rules", RULE_TESTS)
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, out
    assert "SUCCESS" in out, out


def test_a_broken_expectation_fails(prometheus_image, tmp_path):
    """The harness itself: promtool reports a wrong expectation as a failure."""
    broken = (RULES_DIR / RULE_TESTS).read_text().replace("is not ready to be a Kubernetes node", "is fine", 1)
    (tmp_path / RULE_TESTS).write_text(broken)
    (tmp_path / RULES).write_text((RULES_DIR / RULES).read_text())
    done = promtool(prometheus_image, "test", "rules", RULE_TESTS, directory=tmp_path)
    assert done.returncode != 0
    assert "K8snodeNotReady" in (done.stdout.decode() + done.stderr.decode())
