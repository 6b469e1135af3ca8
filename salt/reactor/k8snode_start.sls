{#- A minion that starts (which includes a new minion whose key was just
    accepted) gets its highstate: a new host becomes a prepared node with no
    manual step. The highstate syncs _modules and _states itself
    (autoload_dynamic_modules), so k8snode.prepared is there on first run.
    Wired by salt/reactor/master.conf. #}
k8snode highstate for a starting minion:
  local.state.apply:
    - tgt: {{ data['id'] | yaml_dquote }}
