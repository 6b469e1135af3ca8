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
  # Hosts that stay on cgroup v1 for now: a kubelet >= 1.35 exits there unless it runs
  # with failCgroupV1: false (KEP-5573). Mark them with a grain, then refresh pillar:
  #   salt NODE grains.setval k8snode_cgroup_v1 allowed && salt NODE saltutil.refresh_pillar
  'k8snode_cgroup_v1:allowed':
    - match: grain
    - k8snode.cgroup_v1
