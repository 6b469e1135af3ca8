# An example top file: which minions become Kubernetes nodes.
base:
  # By minion id ...
  'k8snode-*':
    - k8snode
  # ... or by a grain a site sets on its nodes.
  'roles:kubernetes-node':
    - match: grain
    - k8snode
