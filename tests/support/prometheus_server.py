"""A real Prometheus (Debian's package, images/prometheus.Dockerfile) in a container on the
test network, scraping the test's own node_exporter, with k8snode's alerting rules
(prometheus/k8snode-alerts.yaml) loaded. The tests read its HTTP API at the container's
address on that network; nothing leaves it.

The rules are the shipped ones with one change: every ``for:`` is shortened to
:data:`SHORT_FOR`, so that pending -> firing takes seconds, not the ten minutes an operator
wants. Expressions, labels and annotations are the shipped text.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.parse
import urllib.request

from tests.support import harness
from tests.support.harness import tar_of

RULES = harness.REPO_ROOT / "prometheus" / "k8snode-alerts.yaml"
SHORT_FOR = "4s"
CONFIG_DIR = "/etc/k8snode-prometheus"


def shortened_rules(text: str | None = None) -> str:
    """The shipped rules with every ``for:`` set to :data:`SHORT_FOR`."""
    text = RULES.read_text() if text is None else text
    shortened, count = re.subn(r"(?m)^(\s+for:\s*)\S+$", rf"\g<1>{SHORT_FOR}", text)
    assert count >= 3, f"expected the rules' for: lines, found {count}"
    return shortened


class Prometheus:
    """A started Prometheus container: :meth:`alerts`, :meth:`query`, :meth:`stop`."""

    def __init__(self, client, image: str, network: str, targets: list[str]):
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [f"{CONFIG_DIR}/k8snode-alerts.yaml"],
            "scrape_configs": [{"job_name": "node", "static_configs": [{"targets": targets}]}],
        }
        self.container = client.containers.create(
            image,
            [
                "prometheus",
                f"--config.file={CONFIG_DIR}/prometheus.yml",
                "--storage.tsdb.path=/tmp/prometheus",
                "--web.listen-address=:9090",
            ],
            name=f"k8snode-prometheus-{secrets.token_hex(3)}",
            network=network,
            labels=harness.owner_labels(),
            detach=True,
        )
        self.container.put_archive(
            "/etc",
            tar_of(
                {
                    "k8snode-prometheus/prometheus.yml": json.dumps(config),
                    "k8snode-prometheus/k8snode-alerts.yaml": shortened_rules(),
                }
            ),
        )
        self.container.start()
        self.container.reload()
        address = self.container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
        self.url = f"http://{address}:9090"
        self._wait_ready()

    def _get(self, path: str, **params) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as response:  # noqa: S310 - own container
            return json.loads(response.read().decode())

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2):  # noqa: S310 - own container
                    return
            except OSError:
                if time.monotonic() > deadline:
                    logs = self.container.logs(tail=30).decode(errors="replace")
                    raise AssertionError(f"Prometheus not ready after {timeout} s:\n{logs}") from None
                time.sleep(0.3)

    def query(self, expr: str) -> list[dict]:
        return self._get("/api/v1/query", query=expr)["data"]["result"]

    def alerts(self, name: str | None = None) -> list[dict]:
        """Active alerts (pending or firing), as /api/v1/alerts lists them."""
        found = self._get("/api/v1/alerts")["data"]["alerts"]
        return [alert for alert in found if name is None or alert["labels"]["alertname"] == name]

    def wait_for(self, what, timeout: float = 60, every: float = 0.25):
        """Poll ``what()`` until it returns something true; return it (fail after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            found = what()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen in {timeout} s: {what.__doc__ or what}")
            time.sleep(every)

    def stop(self) -> None:
        self.container.remove(force=True)
