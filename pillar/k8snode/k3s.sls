# K3s loads overlay, br_netfilter and nf_conntrack and sets forwarding at
# runtime only; bridge-nf-call-iptables is often left to the host.
k8snode:
  distribution: k3s
