# The machine salt-ssh runs from (issue 24): a k8snode minion image (Salt 3006 LTS on
# bullseye, Salt 3008 on bookworm) plus Debian's openssh-client, which salt-ssh calls.
# Nothing runs in it but the test's salt-ssh and salt-run commands.
ARG MINION_IMAGE
FROM ${MINION_IMAGE}

RUN set -e; \
    apt-get update; \
    apt-get install -y --no-install-recommends openssh-client; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    ssh -V; \
    salt-ssh --version

CMD ["sleep", "infinity"]
