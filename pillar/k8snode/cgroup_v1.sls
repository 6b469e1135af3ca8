# The kubelet on these hosts runs with failCgroupV1: false (set it in its own
# configuration too: /var/lib/kubelet/config.yaml, or kubelet-arg fail-cgroupv1=false on
# k3s / RKE2). k8snode then reports cgroup v1 as a warning instead of a failure: the
# kubelet starts, and cgroup v1 stays in maintenance mode (KEP-4569) until it is removed.
# Merged with the distribution's pillar (pillar_source_merging_strategy: smart).
k8snode:
  kubelet:
    fail_cgroup_v1: false
