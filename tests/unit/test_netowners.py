"""
Network managers that take the plugin's interfaces, routes or rules. The files are the
projects' own, with their source:

* Calico's docs, "Configure NetworkManager" (docs.tigera.io/calico/latest/operations/
  troubleshoot/troubleshooting): /etc/NetworkManager/conf.d/calico.conf.
* RKE2's docs, Known issues, "NetworkManager" (rancher/rke2#786): rke2-canal.conf.
* Debian 12's network-manager package: /etc/NetworkManager/NetworkManager.conf.
* Debian 12's systemd package: /etc/systemd/networkd.conf, every setting commented out
  (networkd.conf(5): ManageForeignRoutes= and ManageForeignRoutingPolicyRules= default yes).
* Cilium's docs, System requirements, "Systemd-based distributions": the networkd.conf
  drop-in with both settings off (cilium/cilium#18706).
* projectcalico/calico#2471: a catch-all ``Name=*`` .network file.
"""

import os
import time

import pytest

CALICO_NM = (
    "[keyfile]\n"
    "unmanaged-devices=interface-name:cali*;interface-name:tunl*;interface-name:vxlan.calico;"
    "interface-name:vxlan-v6.calico;interface-name:wireguard.cali;interface-name:wg-v6.cali\n"
)
RKE2_CANAL_NM = "[keyfile]\nunmanaged-devices=interface-name:cali*;interface-name:flannel*\n"
DEBIAN_NM = "[main]\nplugins=ifupdown,keyfile\n\n[ifupdown]\nmanaged=false\n"
DEBIAN_NETWORKD_CONF = (
    "#  This file is part of systemd.\n[Network]\n#SpeedMeter=no\n#SpeedMeterIntervalSec=10sec\n"
    "#ManageForeignRoutingPolicyRules=yes\n#ManageForeignRoutes=yes\n#RouteTable=\n"
)
CILIUM_NETWORKD = "[Network]\nManageForeignRoutes=no\nManageForeignRoutingPolicyRules=no\n"
WANTS = "etc/systemd/system/multi-user.target.wants"


def network_manager(tree):
    tree.debian(12).fresh_node()
    tree.write("etc/NetworkManager/NetworkManager.conf", DEBIAN_NM)
    tree.symlink(f"{WANTS}/NetworkManager.service", "/lib/systemd/system/NetworkManager.service")
    return tree


def networkd(tree):
    tree.debian(12).fresh_node()
    tree.write("etc/systemd/networkd.conf", DEBIAN_NETWORKD_CONF)
    tree.write("lib/systemd/systemd-networkd", "")
    tree.symlink(f"{WANTS}/systemd-networkd.service", "/lib/systemd/system/systemd-networkd.service")
    return tree


def checks(k8snode, tree, **kwargs):
    return k8snode.audit(root=tree.path, **kwargs)["checks"]


def test_no_network_manager_no_check(k8snode, tree):
    tree.debian(12).fresh_node()
    found = checks(k8snode, tree)
    assert "network_manager" not in found and "networkd" not in found


def test_network_manager_without_unmanaged_devices_takes_calicos_interfaces(k8snode, tree):
    check = checks(k8snode, network_manager(tree), cni="calico")["network_manager"]
    assert (check["status"], check["required"]) == ("warn", False)
    assert check["managed"] == ["cali1a2b3c4d5e6", "tunl0", "vxlan.calico", "wireguard.cali"]
    assert "unmanaged-devices=interface-name:cali*;interface-name:tunl*" in check["detail"]


def test_calicos_documented_file_leaves_them_alone(k8snode, tree):
    network_manager(tree).write("etc/NetworkManager/conf.d/calico.conf", CALICO_NM)
    check = checks(k8snode, tree, cni="calico")["network_manager"]
    assert check["status"] == "ok", check["detail"]
    assert "/etc/NetworkManager/conf.d/calico.conf:2" in check["detail"]


def test_rke2s_canal_file_does_not_cover_flannels_bridge(k8snode, tree):
    """RKE2's file names cali* and flannel*: flannel's cni0 bridge and the pods' veths stay managed."""
    network_manager(tree).write("etc/NetworkManager/conf.d/rke2-canal.conf", RKE2_CANAL_NM)
    check = checks(k8snode, tree, cni="flannel")["network_manager"]
    assert check["status"] == "warn"
    assert check["managed"] == ["cni0", "veth1a2b3c4d"]


def test_a_later_file_replaces_the_list_and_plus_equals_appends(k8snode, tree):
    network_manager(tree).write("etc/NetworkManager/conf.d/10-calico.conf", CALICO_NM)
    tree.write("etc/NetworkManager/conf.d/20-other.conf", "[keyfile]\nunmanaged-devices=mac:00:11:22:33:44:55\n")
    assert checks(k8snode, tree, cni="calico")["network_manager"]["status"] == "warn"
    tree.write("etc/NetworkManager/conf.d/20-other.conf", "[keyfile]\nunmanaged-devices+=mac:00:11:22:33:44:55\n")
    assert checks(k8snode, tree, cni="calico")["network_manager"]["status"] == "ok"


def test_a_device_section_with_managed_0_counts(k8snode, tree):
    """NetworkManager.conf(5), [device*] sections: match-device= with managed=0."""
    network_manager(tree).write(
        "etc/NetworkManager/conf.d/cilium.conf",
        "[device-cilium]\nmatch-device=interface-name:cilium_*,interface-name:lxc*\nmanaged=0\n",
    )
    assert checks(k8snode, tree, cni="cilium")["network_manager"]["status"] == "ok"


def test_networkd_defaults_remove_foreign_routes_and_rules(k8snode, tree):
    check = checks(k8snode, networkd(tree), cni="cilium")["networkd"]
    assert (check["status"], check["required"]) == ("warn", False)
    assert check["settings"] == {
        "ManageForeignRoutes": {"value": True, "where": "systemd-networkd's default"},
        "ManageForeignRoutingPolicyRules": {"value": True, "where": "systemd-networkd's default"},
    }
    assert "ManageForeignRoutes=yes (systemd-networkd's default): it removes routes" in check["detail"]


def test_ciliums_drop_in_keeps_them(k8snode, tree):
    networkd(tree).write("etc/systemd/networkd.conf.d/cilium.conf", CILIUM_NETWORKD)
    check = checks(k8snode, tree, cni="cilium")["networkd"]
    assert check["status"] == "ok", check["detail"]
    assert check["settings"]["ManageForeignRoutes"]["where"] == "/etc/systemd/networkd.conf.d/cilium.conf:2"


def test_only_one_setting_off_still_warns(k8snode, tree):
    networkd(tree).write("etc/systemd/networkd.conf.d/routes.conf", "[Network]\nManageForeignRoutes=no\n")
    check = checks(k8snode, tree, cni="cilium")["networkd"]
    assert check["status"] == "warn"
    assert "ManageForeignRoutingPolicyRules=yes" in check["detail"]
    assert "ManageForeignRoutes=yes" not in check["detail"]


@pytest.mark.parametrize(
    ("match", "taken"),
    [
        ("[Match]\nName=*\n", "cali1a2b3c4d5e6, tunl0, vxlan.calico, wireguard.cali"),  # calico#2471
        ("[Network]\nDHCP=yes\n", "cali1a2b3c4d5e6, tunl0, vxlan.calico, wireguard.cali"),  # no [Match]: every link
        ("[Match]\nName=en* eth*\n", None),
        ("[Match]\nName=!en*\n", "cali1a2b3c4d5e6, tunl0, vxlan.calico, wireguard.cali"),
        ("[Match]\nName=*\n[Link]\nUnmanaged=yes\n", None),
        ("[Match]\nMACAddress=00:11:22:33:44:55\n", None),
    ],
)
def test_a_network_file_that_takes_the_plugins_interfaces(k8snode, tree, match, taken):
    networkd(tree).write("etc/systemd/networkd.conf.d/cilium.conf", CILIUM_NETWORKD)
    tree.write("etc/systemd/network/99-all.network", match)
    check = checks(k8snode, tree, cni="calico")["networkd"]
    if taken is None:
        assert check["status"] == "ok", check["detail"]
    else:
        assert check["status"] == "warn"
        assert f"/etc/systemd/network/99-all.network matches {taken}" in check["detail"]


def test_prepare_writes_the_drop_ins_when_the_pillar_asks_and_revert_removes_them(k8snode, tree):
    networkd(tree).modular(available=("overlay", "br_netfilter", "nf_conntrack", "vxlan"))
    tree.write("etc/NetworkManager/NetworkManager.conf", DEBIAN_NM)
    nm_drop_in = "etc/NetworkManager/conf.d/90-k8snode-unmanaged.conf"
    assert k8snode._prepare(root=tree.path, cni="flannel")["result"] is True
    assert not tree.exists(nm_drop_in)
    ret = k8snode._prepare(root=tree.path, cni="flannel", unmanage_plugin_interfaces=True)
    assert ret["result"] is True, ret
    assert tree.read("etc/systemd/networkd.conf.d/90-k8snode-foreign.conf").endswith(CILIUM_NETWORKD)
    assert tree.read(nm_drop_in).endswith(
        "[keyfile]\nunmanaged-devices=interface-name:flannel*;interface-name:cni0;interface-name:veth*\n"
    )
    assert checks(k8snode, tree, cni="flannel")["networkd"]["status"] == "ok"
    k8snode._revert(root=tree.path, cni="flannel")
    assert not tree.exists("etc/systemd/networkd.conf.d/90-k8snode-foreign.conf")
    assert not tree.exists(nm_drop_in)


def test_prepare_never_overwrites_a_drop_in_that_is_not_ours(k8snode, tree):
    networkd(tree).write("etc/systemd/networkd.conf.d/90-k8snode-foreign.conf", "[Network]\n# mine\n")
    ret = k8snode._prepare(root=tree.path, unmanage_plugin_interfaces=True)
    assert ret["result"] is False
    assert tree.read("etc/systemd/networkd.conf.d/90-k8snode-foreign.conf") == "[Network]\n# mine\n"


def test_a_bad_pillar_value_names_itself(k8snode, tree):
    tree.debian(12).fresh_node()
    with pytest.raises(Exception, match="unmanage_plugin_interfaces.*'yes'.*true or false"):
        k8snode.audit(root=tree.path, unmanage_plugin_interfaces="yes")


def _networkd_process(tree, btime):
    """proc(5): /proc/stat's btime; /proc/PID/stat's field 22 is starttime in clock ticks."""
    tree.write("proc/stat", f"cpu  1 2 3 4\nbtime {btime}\n")
    tree.write("proc/321/comm", "systemd-network\n")
    fields = ["S", "1"] + ["0"] * 17 + ["250"]  # fields 3..22
    tree.write("proc/321/stat", "321 (systemd-network) " + " ".join(fields) + " 0 0\n")


def test_a_drop_in_newer_than_the_running_networkd_is_pending(k8snode, tree):
    networkd(tree).write("etc/systemd/networkd.conf.d/cilium.conf", CILIUM_NETWORKD)
    os.utime(tree.p("etc/systemd/networkd.conf"), (1_000_000, 1_000_000))  # as old as the system
    _networkd_process(tree, btime=1_000_000)  # started long before the drop-in was written
    check = checks(k8snode, tree, cni="cilium")["networkd"]
    assert (check["status"], check["pending"]) == ("warn", ["/etc/systemd/networkd.conf.d/cilium.conf"])
    assert "applies them at its next start" in check["detail"]
    _networkd_process(tree, btime=int(time.time()) + 60)  # started after it
    assert checks(k8snode, tree, cni="cilium")["networkd"]["status"] == "ok"


def test_the_service_cgroup_names_networkds_process_without_a_walk_of_proc(k8snode, tree):
    """systemd lists a service's processes in its cgroup: read there, /proc is not walked
    (a process named like networkd outside the service does not count)."""
    networkd(tree).write("etc/systemd/networkd.conf.d/cilium.conf", CILIUM_NETWORKD)
    os.utime(tree.p("etc/systemd/networkd.conf"), (1_000_000, 1_000_000))
    _networkd_process(tree, btime=1_000_000)  # pid 321, not in the service: started before the drop-in
    assert checks(k8snode, tree, cni="cilium")["networkd"]["status"] == "warn"  # found by the walk of /proc
    ticks = (int(time.time()) + 60 - 1_000_000) * os.sysconf("SC_CLK_TCK")  # pid 654: started after it
    tree.write("proc/654/stat", "654 (systemd-network) " + " ".join(["S", "1"] + ["0"] * 17 + [str(ticks)]) + "\n")
    tree.write("sys/fs/cgroup/system.slice/systemd-networkd.service/cgroup.procs", "654\n")
    assert checks(k8snode, tree, cni="cilium")["networkd"]["status"] == "ok"
