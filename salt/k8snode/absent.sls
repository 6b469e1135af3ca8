{#- Remove what k8snode.prepared persisted (its modules-load.d and sysctl.d
    files, the fstab swap lines it commented out). Loaded modules and live
    sysctl values are left alone. #}
{%- from 'k8snode/synced.jinja' import k8snode_synced, not_synced_state with context %}
{%- if not k8snode_synced %}
{{ not_synced_state() }}
{%- else %}
k8snode absent:
  k8snode.absent: []
{%- endif %}
