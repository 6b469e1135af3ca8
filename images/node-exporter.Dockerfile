# A k8snode minion image plus Debian's prometheus-node-exporter, for the drift tests:
# node_exporter runs inside the minion container and serves k8snode.prom from the
# textfile directory the minion writes (/var/lib/prometheus/node-exporter).
#
# Built by tests/integration/test_drift.py (`docker build --network host`), FROM the
# minion image images/build.py made; no registry involved.
ARG MINION_IMAGE
FROM ${MINION_IMAGE}

# No init in a container: keep the package's maintainer scripts from starting services.
RUN set -e; \
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
    chmod 0755 /usr/sbin/policy-rc.d; \
    apt-get update; \
    apt-get install -y --no-install-recommends prometheus-node-exporter; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d; \
    test -d /var/lib/prometheus/node-exporter; \
    prometheus-node-exporter --version
