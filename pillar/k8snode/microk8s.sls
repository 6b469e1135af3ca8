# MicroK8s raises the inotify and aio limits only when lower (floors) and
# loads br_netfilter / nf_conntrack when their sysctls are missing.
k8snode:
  distribution: microk8s
