{#- Remove what k8snode.prepared persisted (its modules-load.d and sysctl.d
    files, the fstab swap lines it commented out). Loaded modules and live
    sysctl values are left alone. #}
k8snode absent:
  k8snode.absent: []
