# RKE2 modprobes overlay and br_netfilter and sets forwarding when it starts,
# but persists nothing: k8snode makes the same settings hold from boot on.
# For the RKE2 CIS profile add the kubelet's protected kernel defaults:
#   extras: [protect_kernel_defaults]
k8snode:
  distribution: rke2
