{#- The k8snode drift beacon, from pillar k8snode:drift (see pillar/pillar.example):
    beacon: true switches it on, false off. Included by k8snode/init.sls only
    when the pillar sets k8snode:drift:beacon. disable_during_state_run keeps a
    state run (a heal's included) from reporting its own changes half-way. #}
{%- set drift = salt['pillar.get']('k8snode:drift', {}) %}
{%- if drift.get('beacon') %}
k8snode drift beacon:
  beacon.present:
    - name: k8snode
    - save: true
    - interval: {{ drift.get('interval', 10) | int }}
    - disable_during_state_run: true
    - summary_interval: {{ drift.get('summary_interval', 600) | int }}
    - metrics: {{ drift.get('metrics', false) | yaml }}
{%- else %}
k8snode drift beacon:
  beacon.absent:
    - name: k8snode
    - save: true
{%- endif %}
