# A k8snode minion image plus Debian's prometheus (its promtool): tests/integration/test_alerts.py
# checks and unit-tests prometheus/k8snode-alerts.yaml with it.
#
# Built by images/derived.py (`docker build --network host`), FROM the minion image
# images/build.py made; no registry involved.
ARG MINION_IMAGE
FROM ${MINION_IMAGE}

# No init in a container: keep the package's maintainer scripts from starting services.
RUN set -e; \
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
    chmod 0755 /usr/sbin/policy-rc.d; \
    apt-get update; \
    apt-get install -y --no-install-recommends prometheus; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d; \
    promtool --version
