"""
Fake host trees for the unit tests of ``_modules/k8snode.py``.

A :class:`FakeTree` is a directory under pytest's ``tmp_path`` laid out like
``/`` of a Linux host: ``proc``, ``sys``, ``lib/modules/<release>``, ``etc``...
Every function of the module that reads the host takes ``root=``, so the tests
run the real code on these trees and never touch the machine they run on.

The tree also plays the kernel for the commands prepare runs: :meth:`run_all`
stands in for ``cmd.run_all``. ``modprobe`` of a module listed in
``modules.dep`` adds it to ``/proc/modules`` and creates what the real module
creates (``/proc/sys/net/bridge/*`` for br_netfilter, ``overlay`` in
``/proc/filesystems``...); ``swapoff`` removes the device from ``/proc/swaps``.
"""

import gzip
import os
from pathlib import Path

DEFAULT_RELEASE = "6.1.0-21-amd64"

#: What a freshly booted kernel shows under /proc/sys before anything is tuned
#: (upstream defaults).
KERNEL_DEFAULTS = {
    "net.ipv4.ip_forward": "0",
    "net.ipv4.conf.all.forwarding": "0",
    "net.ipv6.conf.all.forwarding": "0",
    "net.ipv6.conf.default.forwarding": "0",
    "fs.inotify.max_user_instances": "128",
    "fs.inotify.max_user_watches": "8192",
    "fs.aio-max-nr": "65536",
    "vm.overcommit_memory": "0",
    "vm.panic_on_oom": "0",
    "vm.max_map_count": "65530",
    "kernel.panic": "0",
    "kernel.panic_on_oops": "0",
    "kernel.keys.root_maxkeys": "1000000",
    "kernel.keys.root_maxbytes": "25000000",
}

#: Files and directories a loaded module creates (its capability).
MODULE_EFFECTS = {
    "br_netfilter": {
        # The kernel's defaults when br_netfilter comes up in the initial netns.
        "proc/sys/net/bridge/bridge-nf-call-iptables": "1\n",
        "proc/sys/net/bridge/bridge-nf-call-ip6tables": "1\n",
        "proc/sys/net/bridge/bridge-nf-call-arptables": "1\n",
    },
    "nf_conntrack": {"proc/sys/net/netfilter/nf_conntrack_max": "262144\n"},
    "ip_vs": {"proc/net/ip_vs": "IP Virtual Server version 1.2.1 (size=4096)\n"},
}

MODULE_PATHS = {
    "overlay": "kernel/fs/overlayfs/overlay.ko",
    "br_netfilter": "kernel/net/bridge/br_netfilter.ko",
    "bridge": "kernel/net/bridge/bridge.ko",
    "nf_conntrack": "kernel/net/netfilter/nf_conntrack.ko",
    "nf_conntrack_ipv4": "kernel/net/ipv4/netfilter/nf_conntrack_ipv4.ko",
}

#: kubeadm's system verification list, all =y: a kernel that passes it.
GOOD_KERNEL_CONFIG = {
    option: "y"
    for option in (
        "NAMESPACES",
        "NET_NS",
        "PID_NS",
        "IPC_NS",
        "UTS_NS",
        "CGROUPS",
        "CGROUP_CPUACCT",
        "CGROUP_DEVICE",
        "CGROUP_FREEZER",
        "CGROUP_PIDS",
        "CGROUP_SCHED",
        "CPUSETS",
        "MEMCG",
        "INET",
        "EXT4_FS",
        "PROC_FS",
        "NETFILTER_XT_TARGET_REDIRECT",
        "NETFILTER_XT_MATCH_COMMENT",
        "FAIR_GROUP_SCHED",
    )
}


def proc_sys_path(key):
    """``net.ipv4.ip_forward`` -> ``proc/sys/net/ipv4/ip_forward`` (dotted keys only)."""
    return "proc/sys/" + key.replace(".", "/")


def module_path(name):
    return MODULE_PATHS.get(name, f"kernel/extra/{name}.ko")


class FakeTree:
    """A fake ``/`` under ``root``; see the module docstring."""

    def __init__(self, root, release=DEFAULT_RELEASE):
        self.root = Path(root)
        self.release = release
        self.root.mkdir(parents=True, exist_ok=True)
        self.calls = []
        self.modprobe_fails = {}
        self.write("proc/sys/kernel/osrelease", release + "\n")

    # ------------------------------------------------------------------ files

    @property
    def path(self):
        """The root as a string, to pass as ``root=``."""
        return str(self.root)

    def p(self, relative):
        return self.root / relative.lstrip("/")

    def write(self, relative, content, mode=None):
        path = self.p(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            # newline="" keeps CRLF and friends exactly as given.
            with open(path, "w", encoding="utf-8", newline="") as handle:
                handle.write(content)
        if mode is not None:
            os.chmod(path, mode)
        return path

    def read(self, relative):
        path = self.p(relative)
        return path.read_text(encoding="utf-8") if path.exists() else None

    def exists(self, relative):
        return os.path.lexists(self.p(relative))

    def mode(self, relative):
        return self.p(relative).stat().st_mode & 0o777

    def symlink(self, relative, target):
        """A symbolic link; keep targets relative (or /dev/null) so they resolve inside the tree."""
        path = self.p(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(path):
            path.unlink()
        os.symlink(target, path)
        return path

    def remove(self, relative):
        path = self.p(relative)
        if os.path.lexists(path):
            path.unlink()

    def listdir(self, relative):
        path = self.p(relative)
        return sorted(os.listdir(path)) if path.is_dir() else []

    def snapshot(self):
        """Every file, link and directory of the tree with its content, mode and target."""
        state = {}
        for directory, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                full = os.path.join(directory, name)
                relative = os.path.relpath(full, self.root)
                if os.path.islink(full):
                    state[relative] = ("link", os.readlink(full))
                elif os.path.isdir(full):
                    state[relative] = ("dir", os.stat(full).st_mode & 0o7777)
                else:
                    with open(full, "rb") as handle:
                        state[relative] = ("file", handle.read(), os.stat(full).st_mode & 0o7777)
        return state

    # ------------------------------------------------------------ OS identity

    def os_release(self, **fields):
        lines = [f'{key}="{value}"' for key, value in fields.items()]
        self.write("etc/os-release", "\n".join(lines) + "\n")
        return self

    def debian(self, version=12, sysctl_link=True, sysctl_conf=None, etc_modules=""):
        """Debian: /etc/modules (linked from modules-load.d) and, up to 12, the 99-sysctl.conf link."""
        self.os_release(
            PRETTY_NAME=f"Debian GNU/Linux {version}",
            NAME="Debian GNU/Linux",
            VERSION_ID=str(version),
            ID="debian",
        )
        self.write("etc/modules", "# /etc/modules: kernel modules to load at boot time.\n" + etc_modules)
        self.symlink("etc/modules-load.d/modules.conf", "../modules")
        if sysctl_conf is not None:
            self.write("etc/sysctl.conf", sysctl_conf)
        if sysctl_link:
            self.symlink("etc/sysctl.d/99-sysctl.conf", "../sysctl.conf")
        self.write("run/systemd/system/.keep", "")
        self.systemd({11: 247, 12: 252, 13: 257}.get(int(version), 257))
        return self

    def systemd(self, version, triplet="x86_64-linux-gnu"):
        """systemd ``version`` as Debian installs it: libsystemd-shared-NNN.so, what
        sysctl_systemd reads the version from."""
        self.write(f"usr/lib/{triplet}/systemd/libsystemd-shared-{version}.so", b"\x7fELF")
        return self

    def ubuntu(self, version="24.04", sysctl_conf="#net.ipv4.ip_forward=1\n"):
        self.os_release(NAME="Ubuntu", VERSION_ID=version, ID="ubuntu", ID_LIKE="debian")
        self.write("etc/modules", "")
        self.symlink("etc/modules-load.d/modules.conf", "../modules")
        self.write("etc/sysctl.conf", sysctl_conf)
        self.symlink("etc/sysctl.d/99-sysctl.conf", "../sysctl.conf")
        self.write("run/systemd/system/.keep", "")
        self.systemd({"22.04": 249, "24.04": 255}.get(version, 255))
        return self

    def redhat(self, os_id="rocky", version="9.4", sysctl_conf="# System default settings live in /usr/lib/sysctl.d\n"):
        """RHEL family: /etc/sysctl.conf linked as 99-sysctl.conf, no /etc/modules."""
        self.os_release(NAME=os_id, VERSION_ID=version, ID=os_id, ID_LIKE="rhel centos fedora")
        self.write("etc/sysctl.conf", sysctl_conf)
        self.symlink("etc/sysctl.d/99-sysctl.conf", "../sysctl.conf")
        self.write("run/systemd/system/.keep", "")
        self.systemd(239 if version.startswith("8") else 252)
        return self

    def suse(self, os_id="opensuse-leap", version="15.6"):
        """openSUSE/SLES: ID_LIKE="suse opensuse"; newer releases ship no /etc/sysctl.conf."""
        self.os_release(NAME="openSUSE Leap", VERSION_ID=version, ID=os_id, ID_LIKE="suse opensuse")
        self.write("run/systemd/system/.keep", "")
        self.systemd(254)
        return self

    # ----------------------------------------------------------------- kernel

    def modular(self, loaded=(), available=(), builtin=()):
        """A kernel with module support: /proc/modules lists ``loaded``; modules.dep lists
        ``loaded`` + ``available``; modules.builtin lists ``builtin``."""
        self.write("proc/modules", "")
        for name in loaded:
            self.load(name)
        moddir = f"lib/modules/{self.release}"
        dep = "".join(f"{module_path(name)}:\n" for name in sorted(set(loaded) | set(available)))
        self.write(moddir + "/modules.dep", dep)
        self.write(moddir + "/modules.builtin", "".join(f"{module_path(name)}\n" for name in builtin))
        self.filesystems()
        return self

    def monolithic(self, builtin=(), config=None):
        """A kernel without module support: no /proc/modules at all."""
        self.remove("proc/modules")
        moddir = f"lib/modules/{self.release}"
        self.write(moddir + "/modules.builtin", "".join(f"{module_path(name)}\n" for name in builtin))
        if config is not None:
            self.kernel_config(config)
        self.filesystems()
        return self

    def modules_dep(self):
        text = self.read(f"lib/modules/{self.release}/modules.dep") or ""
        return {line.split(":")[0].rsplit("/", 1)[-1].split(".ko")[0] for line in text.splitlines() if line}

    def loaded(self):
        text = self.read("proc/modules")
        return [line.split()[0] for line in (text or "").splitlines() if line.split()]

    def load(self, name):
        """What the kernel does when ``name`` loads (a bare /proc/modules line: no dependencies)."""
        if name not in self.loaded():
            size = 16384 + 64 * len(self.loaded())
            line = f"{name} {size} 0 - Live 0xffffffffc0{len(self.loaded()):06x}\n"
            self.write("proc/modules", (self.read("proc/modules") or "") + line)
        self.write(f"sys/module/{name}/initstate", "live\n")
        for relative, content in MODULE_EFFECTS.get(name, {}).items():
            if not self.exists(relative):
                self.write(relative, content)
        if name == "overlay":
            self.filesystems("overlay")
        return self

    def filesystems(self, *extra):
        names = ["sysfs", "tmpfs", "proc", "cgroup2", "devpts", "mqueue"]
        current = self.read("proc/filesystems") or ""
        have = [line.split()[-1] for line in current.splitlines() if line.split()]
        lines = current.splitlines(keepends=True) if current else [f"nodev\t{name}\n" for name in names]
        for name in extra:
            if name not in have:
                lines.append(f"nodev\t{name}\n")
        self.write("proc/filesystems", "".join(lines))
        return self

    def sys_module(self, name, initstate=False):
        """/sys/module/<name>: a built-in module with parameters has no initstate."""
        self.write(f"sys/module/{name}/parameters/.keep", "")
        if initstate:
            self.write(f"sys/module/{name}/initstate", "live\n")
        return self

    def kernel_config(self, options, where="proc/config.gz"):
        text = "#\n# Automatically generated file; DO NOT EDIT.\n#\n"
        for option, value in options.items():
            text += f"CONFIG_{option}={value}\n" if value != "n" else f"# CONFIG_{option} is not set\n"
        if where.endswith(".gz"):
            self.write(where, gzip.compress(text.encode()))
        else:
            self.write(where, text)
        return self

    # ---------------------------------------------------------------- sysctls

    def kernel_defaults(self, overrides=None):
        """Write the upstream defaults of the usual keys under /proc/sys (``overrides``: {key: value})."""
        for key, value in {**KERNEL_DEFAULTS, **(overrides or {})}.items():
            self.sysctl(key, value)
        return self

    def sysctl(self, key, value):
        """Set a live value: ``net.ipv4.ip_forward`` or a /proc/sys relative path with slashes."""
        relative = "proc/sys/" + key if "/" in key else proc_sys_path(key)
        self.write(relative, f"{value}\n")
        return self

    def live(self, key):
        relative = "proc/sys/" + key if "/" in key else proc_sys_path(key)
        text = self.read(relative)
        return None if text is None else " ".join(text.split())

    def sysctl_d(self, name, text, directory="etc/sysctl.d"):
        self.write(f"{directory}/{name}", text)
        return self

    def modules_load(self, name, modules, directory="etc/modules-load.d"):
        self.write(f"{directory}/{name}", "".join(f"{module}\n" for module in modules))
        return self

    # ------------------------------------------------------------------- swap

    def swaps(self, *devices):
        lines = ["Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"]
        lines += [f"{device}\tpartition\t1048572\t\t0\t\t-2\n" for device in devices]
        self.write("proc/swaps", "".join(lines))
        return self

    def fstab(self, text):
        self.write("etc/fstab", text, mode=0o644)
        return self

    def cgroup_controllers(self, names=("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")):
        """cgroup v2's root ``cgroup.controllers`` (Debian 12's kernel lists these)."""
        self.write("sys/fs/cgroup/cgroup.controllers", " ".join(names) + "\n")
        return self

    def dpkg_installed(self, **versions):
        """dpkg's status file with each ``package=version`` installed (``-`` for ``_`` in names)."""
        stanzas = [
            f"Package: {name.replace('_', '-')}\nStatus: install ok installed\nVersion: {version}\n"
            for name, version in versions.items()
        ]
        self.write("var/lib/dpkg/status", "\n".join(stanzas))
        return self

    def binaries(self, *names, directory="usr/bin"):
        """Executables in PATH (empty scripts: nothing runs them)."""
        for name in names:
            self.write(f"{directory}/{name}", "#!/bin/sh\n", mode=0o755)
        return self

    def mounts(self, cgroup="cgroup2"):
        fs = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"
        if cgroup == "v1":
            # cgroup v1: a tmpfs at /sys/fs/cgroup with one mount per controller.
            fs = "tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0\n"
            fs += "cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0\n"
        self.write("proc/mounts", "proc /proc proc rw 0 0\n/dev/vda1 / ext4 rw,relatime 0 0\n" + fs)
        return self

    # ----------------------------------------------- the kernel, for commands

    def run_all(self, argv, python_shell=None, ignore_retcode=None, **kwargs):
        """Stand-in for ``cmd.run_all``: records the call and acts on the tree."""
        self.calls.append({"argv": argv, "python_shell": python_shell, "kwargs": kwargs})
        if not isinstance(argv, list):
            return {"retcode": 127, "stdout": "", "stderr": f"fake: argv must be a list, got {argv!r}"}
        if argv[:2] == ["modprobe", "--"] and len(argv) == 3:
            name = argv[2].replace("-", "_")  # modprobe treats '-' and '_' alike
            if name in self.modprobe_fails:
                return {"retcode": 1, "stdout": "", "stderr": self.modprobe_fails[name]}
            if (self.read("proc/sys/kernel/modules_disabled") or "0").strip() == "1" and name not in self.loaded():
                # The kernel refuses init_module: modprobe says so.
                return {
                    "retcode": 1,
                    "stdout": "",
                    "stderr": f"modprobe: ERROR: could not insert '{name}': Operation not permitted",
                }
            if name in self.loaded():
                return {"retcode": 0, "stdout": "", "stderr": ""}
            if name not in self.modules_dep():
                return {
                    "retcode": 1,
                    "stdout": "",
                    "stderr": f"modprobe: FATAL: Module {name} not found in directory /lib/modules/{self.release}",
                }
            self.load(name)
            return {"retcode": 0, "stdout": "", "stderr": ""}
        if argv[:2] == ["swapoff", "--"] and len(argv) == 3:
            text = self.read("proc/swaps") or ""
            lines = text.splitlines(keepends=True)
            kept = lines[:1] + [line for line in lines[1:] if line.split()[:1] != [argv[2]]]
            self.write("proc/swaps", "".join(kept))
            return {"retcode": 0, "stdout": "", "stderr": ""}
        return {"retcode": 127, "stdout": "", "stderr": f"fake: unexpected command {argv!r}"}

    def argvs(self, program=None):
        return [call["argv"] for call in self.calls if program is None or call["argv"][:1] == [program]]

    # ------------------------------------------------------------- scenarios

    def fresh_node(self, modules=("overlay", "br_netfilter", "nf_conntrack")):
        """A just-installed modular host: modules available, none loaded, defaults live."""
        self.modular(available=modules)
        self.kernel_defaults()
        self.kernel_config(GOOD_KERNEL_CONFIG)
        self.mounts()
        self.swaps()
        self.fstab("UUID=0a1b / ext4 errors=remount-ro 0 1\n")
        return self

    def prepared_kubeadm(self):
        """A host already prepared by hand the way kubeadm's install docs say."""
        self.modular(loaded=("overlay", "br_netfilter", "nf_conntrack"))
        self.kernel_defaults({"net.ipv4.ip_forward": "1"})
        # nf_conntrack: kube-proxy writes nf_conntrack_max at start (kubernetes/kops#17968).
        self.modules_load("k8s.conf", ["overlay", "br_netfilter", "nf_conntrack"])
        self.sysctl_d(
            "k8s.conf",
            "net.bridge.bridge-nf-call-iptables  = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n"
            "net.ipv4.ip_forward                 = 1\n",
        )
        self.kernel_config(GOOD_KERNEL_CONFIG)
        self.mounts()
        self.swaps()
        self.fstab("UUID=0a1b / ext4 errors=remount-ro 0 1\n")
        return self
