{#- Make this host a correct Kubernetes node for the distribution in pillar
    k8snode:distribution (kubeadm when unset), and keep it so across reboots.
    It runs first in a highstate (order: 1) so that the container runtime and
    kubelet states that follow find overlay, br_netfilter and forwarding ready;
    they can also `require: [{k8snode: k8snode prepared}]`.
    With pillar k8snode:drift:beacon set, the drift beacon is switched on (or
    off) too: salt/k8snode/drift.sls. #}
{%- from 'k8snode/synced.jinja' import k8snode_synced, not_synced_state with context %}
{%- if not k8snode_synced %}
{{ not_synced_state() }}
{%- else %}
{%- if salt['pillar.get']('k8snode:drift:beacon', none) is not none %}
include:
  - k8snode.drift
{%- endif %}

k8snode prepared:
  k8snode.prepared:
    - order: 1
{%- endif %}
