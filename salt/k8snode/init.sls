{#- Make this host a correct Kubernetes node for the distribution in pillar
    k8snode:distribution (kubeadm when unset), and keep it so across reboots.
    It runs first in a highstate (order: 1) so that the container runtime and
    kubelet states that follow find overlay, br_netfilter and forwarding ready;
    they can also `require: [{k8snode: k8snode prepared}]`. #}
k8snode prepared:
  k8snode.prepared:
    - order: 1
