# k8snode real-node VM image: the minion image's rootfs (same mmdebstrap recipe, same
# Salt in /opt/salt) plus systemd, udev, kmod and Debian's stock cloud kernel, so that
# /boot/vmlinuz-* and /lib/modules/* match.  images/vm_build.py exports the result to a
# tree, strips what says "container", and makes an ext4 disk image of it (mkfs.ext4 -d).
#
# Built by images/vm_build.py with `docker build --network host`; do not build by hand.
ARG MINION_IMAGE
FROM ${MINION_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive

# A small initramfs: only what it takes to mount /dev/vda (virtio) as ext4.
# nftables, iptables, ipvsadm, containerd, runc, containernetworking-plugins and
# busybox-static, iptables-persistent: what proves a module's or a setting's effect on a
# real node (tests/integration/vm):
# nft and ipvsadm make the kernel load nf_tables and ip_vs on demand, containerd's
# overlayfs snapshotter mounts overlay, the CNI bridge plugin wires pods to a bridge,
# netfilter-persistent restores a FORWARD policy at boot (enabled: with no rules file it
# restores nothing). The other units are masked: a fresh node loads none of those modules at boot (Debian's
# containerd.service would `modprobe overlay` before it starts).
COPY initramfs-modules /etc/initramfs-tools/modules
COPY make-pod-image /usr/local/lib/k8snode/make-pod-image
RUN set -e; \
    mkdir -p /etc/initramfs-tools/conf.d; \
    echo MODULES=list > /etc/initramfs-tools/conf.d/k8snode-vm.conf; \
    apt-get update; \
    # iptables-persistent: no rules saved from the build (a fresh node restores nothing).
    printf 'iptables-persistent iptables-persistent/autosave_v4 boolean false\niptables-persistent iptables-persistent/autosave_v6 boolean false\n' \
        | debconf-set-selections; \
    apt-get install -y --no-install-recommends \
        systemd systemd-sysv udev kmod initramfs-tools linux-image-cloud-amd64 \
        nftables iptables ipvsadm containerd runc containernetworking-plugins busybox-static \
        iptables-persistent; \
    test ! -e /etc/iptables/rules.v4 && test ! -e /etc/iptables/rules.v6; \
    # The test pod's image, made here from that busybox: tests import it with ctr.
    python3 /usr/local/lib/k8snode/make-pod-image /bin/busybox /usr/local/lib/k8snode/pod.tar k8snode.test/pod:1; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    ls /boot/vmlinuz-* /boot/initrd.img-*

COPY salt-minion.service k8snode-vm-config.service /etc/systemd/system/
COPY k8snode-vm-config /usr/local/sbin/k8snode-vm-config
COPY minion.conf /etc/salt/minion.d/10-vm.conf
COPY 20-en.network 10-k8snode-link.network /etc/systemd/network/

# Enabled: the minion, its settings from the kernel command line, DHCP on en*.
# Masked: timers, gettys, mounts and jobs that only cost boot time on a throw-away test
# node (none of them loads a module or sets a sysctl the tests look at; `systemd-analyze
# blame` on a node showed each between 0.3 and 1.7 s of a 2-vCPU TCG guest's boot).
RUN set -e; \
    systemctl enable salt-minion.service k8snode-vm-config.service systemd-networkd.service; \
    for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
                fstrim.timer man-db.timer systemd-timesyncd.service getty@tty1.service \
                getty-static.service dpkg-db-backup.timer systemd-tmpfiles-clean.timer \
                systemd-binfmt.service proc-sys-fs-binfmt_misc.automount dev-hugepages.mount \
                dev-mqueue.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
                sys-fs-fuse-connections.mount sys-kernel-config.mount modprobe@configfs.service \
                modprobe@dm_mod.service modprobe@efi_pstore.service modprobe@fuse.service \
                modprobe@loop.service modprobe@drm.service systemd-update-utmp.service \
                systemd-update-utmp-runlevel.service nftables.service ipvsadm.service containerd.service; do \
        ln -sf /dev/null "/etc/systemd/system/$unit"; \
    done; \
    printf '/dev/vda / ext4 rw,errors=remount-ro 0 0\n' > /etc/fstab; \
    echo 'root:k8snode' | chpasswd; \
    rm -f /var/lib/dbus/machine-id; \
    # A machine id in the image: every boot of a test node is a node's ordinary boot, not
    # systemd's first boot (which generates the id and writes /etc/machine-id without an
    # fsync, so a power cut can leave the next boot with another id and journal). Test
    # nodes never share a network, so one id per image is enough.
    printf '6b38736e6f64652d766d2d696d616765\n' > /etc/machine-id; \
    echo 'k8snode-vm' > /etc/k8snode/vm-image
