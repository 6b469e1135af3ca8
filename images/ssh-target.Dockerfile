# A node reached over SSH only (salt-ssh, issue 24): Debian's openssh-server and python3,
# and no Salt at all (salt-ssh brings its own, the "thin", on every call).
#
# Built FROM the Debian base image images/build.py imports (mmdebstrap, no registry).
# /proc/sys is remounted read-write, as on the minion containers, so that state.apply can
# set the node's net.* sysctls (per network namespace: the machine's own are untouched).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

RUN set -e; \
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
    chmod 0755 /usr/sbin/policy-rc.d; \
    apt-get update; \
    apt-get install -y --no-install-recommends openssh-server; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d; \
    mkdir -p /run/sshd /root/.ssh; \
    chmod 0700 /root/.ssh; \
    test -f /etc/ssh/ssh_host_ed25519_key; \
    ! python3 -c 'import salt' 2>/dev/null

CMD ["sh", "-c", "mount -o remount,rw /proc/sys; mkdir -p /run/sshd; exec /usr/sbin/sshd -D -e"]
