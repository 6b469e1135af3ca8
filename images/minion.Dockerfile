# k8snode minion image: a Debian base made by mmdebstrap from Debian's packages (imported
# by images/build.py, no registry involved; it has the compiler Salt's timelib needs)
# plus Salt from PyPI in a venv at /opt/salt.
#
# Built by images/build.py with `docker build --network host`; do not build by hand.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

ARG RELEASE
ARG SALT_VERSION

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# The machine's CA bundle: pip only reaches PyPI through it.
COPY ca-certificates.crt /etc/k8snode/build-ca.crt
COPY constraints.txt /etc/k8snode/constraints.txt

# `python` must be a wrapper, not a symlink: a symlinked venv python does not find
# its venv (pyvenv.cfg) on older Pythons.  The salt-* scripts can be symlinked.
RUN set -e; \
    python3 -m venv /opt/salt; \
    export PIP_CERT=/etc/k8snode/build-ca.crt; \
    /opt/salt/bin/pip install --constraint /etc/k8snode/constraints.txt "salt==${SALT_VERSION}"; \
    for exe in /opt/salt/bin/salt /opt/salt/bin/salt-*; do \
        ln -sf "$exe" "/usr/local/bin/$(basename "$exe")"; \
    done; \
    printf '#!/bin/sh\nexec /opt/salt/bin/python "$@"\n' > /usr/local/bin/python; \
    chmod 0755 /usr/local/bin/python; \
    mkdir -p /etc/salt /var/cache/salt /var/log/salt /var/run/salt; \
    test "$(python -c 'import salt.version; print(salt.version.__version__)')" = "${SALT_VERSION}"; \
    echo "${RELEASE} salt ${SALT_VERSION}" > /etc/k8snode/image-release

LABEL k8snode.image="1" \
      k8snode.release="${RELEASE}" \
      k8snode.salt-version="${SALT_VERSION}"

# /proc/sys is read-only in a container; with CAP_SYS_ADMIN it can be remounted rw.
CMD ["sh", "-c", "mount -o remount,rw /proc/sys; exec sleep infinity"]
