# kubeadm sets nothing itself: overlay and br_netfilter loaded and persisted,
# forwarding and the bridge sysctls set and persisted, and no swap (the
# kubelet's failSwapOn). See pillar.example for every key.
k8snode:
  distribution: kubeadm
