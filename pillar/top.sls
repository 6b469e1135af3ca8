# How a site assigns a Kubernetes distribution to its nodes: kubeadm for
# every minion, unless a grain (or a minion id pattern) says otherwise.
# A later match overrides an earlier one.
base:
  '*':
    - k8snode.kubeadm
  'k8snode_distribution:rke2':
    - match: grain
    - k8snode.rke2
  'k8snode_distribution:k3s':
    - match: grain
    - k8snode.k3s
  'k8snode_distribution:microk8s':
    - match: grain
    - k8snode.microk8s
  # By minion id:
  # 'edge-*':
  #   - k8snode.k3s
