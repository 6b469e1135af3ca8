{#- A k8snode beacon event (salt/beacon/<id>/k8snode/<check> or .../summary):
    remember it for the fleet report (as a claim: any minion can send an event
    naming another), and for a check that turned fail, let the heal runner decide
    (pillar k8snode:drift:heal, what a state run can repair, heal_limit per
    heal_window, and the named minion's own fresh audit confirming the failure).
    "ok again" and summary events never heal: a heal's own changes cannot start
    another heal. Counts: salt-run k8snode.heal_stats. Wired by salt/reactor/master.conf. #}
{%- set kind = tag.split('/')[-1] %}
{#- One runner call per event (k8snode.drift remembers, then heals a fail): Salt's
    reactor drops runner calls beyond reactor_worker_hwm. #}
k8snode drift {{ kind }}:
  runner.k8snode.drift:
    - args:
      - tag: {{ tag | yaml_dquote }}
      - data: {{ data | json }}
