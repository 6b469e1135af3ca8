# A shared store for hot masters (issue 24): Debian's redis-server, FROM the Debian base
# image images/build.py imports (no Salt, no registry). It listens on the test network
# only (the tests create that network) and keeps nothing on disk.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

RUN set -e; \
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
    chmod 0755 /usr/sbin/policy-rc.d; \
    apt-get update; \
    apt-get install -y --no-install-recommends redis-server; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d; \
    redis-server --version

CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
