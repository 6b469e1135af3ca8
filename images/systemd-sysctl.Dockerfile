# The oracle for the sysctl.d model: Debian 12's real systemd-sysctl (systemd 252)
# on top of the bookworm minion image. systemd is installed, never started: the
# differential test runs /lib/systemd/systemd-sysctl on generated trees inside
# `unshare -n` (tests/support/sysctl_oracle.py builds and drives it).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive

RUN set -e; \
    apt-get update; \
    apt-get install -y --no-install-recommends systemd util-linux; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    /lib/systemd/systemd-sysctl --version | head -1 > /etc/k8snode/systemd-version

LABEL k8snode.image="1" k8snode.oracle="systemd-sysctl"

# /proc/sys stays read-only: the driver makes /proc/sys/net alone writable (kernel.*,
# vm.* and fs.* are not per namespace and must never be written).
CMD ["sleep", "infinity"]
