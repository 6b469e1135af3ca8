"""
The kubelet that will run on this node, read from files only: its release (dpkg's
status, the k3s / RKE2 / MicroK8s install trees) and its settings (the configuration
file and the flags each distribution writes). Nothing is run; everything takes ``root``.
"""

import os
import re
import shlex

import yaml

from . import host
from .releases import KUBELET_SETTINGS

_RELEASE = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?")

#: Where each distribution keeps its kubelet's settings, in the order the kubelet
#: applies them (a later file wins): the configuration file, its drop-in directory
#: (``--config-dir``, KEP-3983), then flags, which override both.
SETTINGS_FILES = {
    "kubeadm": (
        ("config", "var/lib/kubelet/config.yaml"),
        ("config_dir", "var/lib/kubelet/config.conf.d"),
        ("env", "var/lib/kubelet/kubeadm-flags.env"),
        # The kubeadm drop-in passes $KUBELET_EXTRA_ARGS from one of these last.
        ("env", "etc/default/kubelet"),
        ("env", "etc/sysconfig/kubelet"),
    ),
    "k3s": (
        ("config_dir", "var/lib/rancher/k3s/agent/etc/kubelet.conf.d"),
        ("rancher", "etc/rancher/k3s/config.yaml"),
        ("rancher_dir", "etc/rancher/k3s/config.yaml.d"),
    ),
    "rke2": (
        ("config_dir", "var/lib/rancher/rke2/agent/etc/kubelet.conf.d"),
        ("rancher", "etc/rancher/rke2/config.yaml"),
        ("rancher_dir", "etc/rancher/rke2/config.yaml.d"),
    ),
    "microk8s": (("args", "var/snap/microk8s/current/args/kubelet"),),
}
#: The file names a drop-in directory holds, by kind.
_DIRECTORY_SUFFIXES = {"config_dir": (".conf",), "rancher_dir": (".yaml", ".yml")}


def release_of(version):
    """``"1.35"`` of a version string (``1.35.2-1.1``, ``v1.35.0+k3s1``), or None."""
    found = _RELEASE.match(str(version or "").strip())
    return f"{found.group(1)}.{found.group(2)}" if found else None


def _rke2_data_release(root):
    """RKE2 unpacks each release into /var/lib/rancher/rke2/data/<version>-<hash>."""
    directory = host.path(root, "var/lib/rancher/rke2/data")
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return None
    found = [name for name in names if release_of(name)]
    if not found:
        return None
    newest = max(found, key=lambda name: tuple(int(part) for part in release_of(name).split(".")))
    return newest, f"{host.display(root, directory)}/{newest}"


def _snap_version(root, snap):
    path = host.path(root, f"snap/{snap}/current/meta/snap.yaml")
    text = host.read_text(path)
    found = re.search(r"^version:\s*['\"]?([^'\"\s]+)", text or "", re.MULTILINE)
    return (found.group(1), f"{host.display(root, path)}: version {found.group(1)}") if found else None


def installed_releases(root):
    """Every Kubernetes release installed here that files say: ``[{"distribution",
    "version", "release", "evidence"}]`` (dpkg's kubelet package for kubeadm, RKE2's data
    directory, MicroK8s' snap metadata)."""
    finds = (
        ("kubeadm", host.dpkg_installed_version(root, "kubelet")),
        ("rke2", _rke2_data_release(root)),
        ("microk8s", _snap_version(root, "microk8s")),
    )
    return [
        {"distribution": distribution, "version": found[0], "release": release_of(found[0]), "evidence": found[1]}
        for distribution, found in finds
        if found and release_of(found[0])
    ]


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------

_FLAG_TO_SETTING = {spec["flag"]: name for name, spec in KUBELET_SETTINGS.items() if spec["flag"]}


def _typed(name, raw):
    """A setting's value as the kubelet reads it: booleans from ``true``/``false``
    text (Go's strconv.ParseBool), strings as they are; None when unreadable."""
    if KUBELET_SETTINGS[name]["type"] is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip()
        if text in ("1", "t", "T", "true", "TRUE", "True"):
            return True
        if text in ("0", "f", "F", "false", "FALSE", "False"):
            return False
        return None
    return raw if isinstance(raw, str) else None


def _from_config(document):
    """Settings from a KubeletConfiguration document (a mapping)."""
    found = {}
    for name, spec in KUBELET_SETTINGS.items():
        value = document
        for part in spec["field"].split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            found[name] = (value, spec["field"])
    return found


def _from_flags(arguments):
    """Settings from kubelet flags (``--fail-swap-on=false``, ``fail-swap-on=false``
    as k3s' ``kubelet-arg``); a bare boolean flag means true. ``--config`` is returned
    as the ``config`` key."""
    found = {}
    for argument in arguments:
        flag, has_value, value = str(argument).lstrip("-").partition("=")
        if flag == "config" and has_value:
            found["config"] = (value, "--config")
        elif flag in _FLAG_TO_SETTING:
            found[_FLAG_TO_SETTING[flag]] = (value if has_value else "true", f"--{flag}")
    return found


def _env_arguments(text):
    """The words of every ``KUBELET_*ARGS=`` line of an environment file: systemd
    removes the quotes of the assignment, and the unit's unquoted ``$KUBELET_KUBEADM_ARGS``
    splits the value at whitespace (parsed here, never run)."""
    words = []
    for line in (text or "").splitlines():
        key, _, value = line.strip().partition("=")
        if key.startswith("KUBELET_") and key.endswith("ARGS"):
            try:
                value = " ".join(shlex.split(value))
            except ValueError:
                value = value.strip("'\"")
            words.extend(value.split())
    return words


def _rancher_arguments(document):
    """``kubelet-arg`` (and ``kubelet-arg+``) of a k3s / RKE2 config.yaml: a list or one string."""
    words = []
    for key in ("kubelet-arg", "kubelet-arg+"):
        value = document.get(key) if isinstance(document, dict) else None
        if isinstance(value, str):
            words.append(value)
        elif isinstance(value, list):
            words.extend(str(item) for item in value)
    return words


def _load_yaml(text, shown, problems):
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        problems.append(f"{shown} is not valid YAML ({str(error).splitlines()[0]}): its settings were not read")
        return None
    if document is not None and not isinstance(document, dict):
        problems.append(f"{shown} is not a mapping: its settings were not read")
        return None
    return document or {}


def _files_of(root, kind, relative):
    """``[(kind, path)]``: the file itself, or a drop-in directory's files in name order."""
    if kind not in _DIRECTORY_SUFFIXES:
        return [(kind, host.path(root, relative))]
    directory = host.path(root, relative)
    try:
        names = sorted(name for name in os.listdir(directory) if name.endswith(_DIRECTORY_SUFFIXES[kind]))
    except OSError:
        return []
    return [(kind.removesuffix("_dir"), os.path.join(directory, name)) for name in names]


def _accepted(found, shown, problems):
    """``{setting: {"value", "source"}}`` of what a file says; a value the kubelet would
    not accept is a problem, not a setting."""
    settings = {}
    for name, (raw, where) in found.items():
        value = _typed(name, raw)
        accepted = KUBELET_SETTINGS[name].get("accepted")
        if value is None or (accepted and value not in accepted):
            problems.append(f"{shown}: {where} is {raw!r}, which the kubelet does not accept")
            continue
        settings[name] = {"value": value, "source": f"{shown}: {where}"}
    return settings


def _read_file(root, kind, full_path, problems, files):
    """The settings one file gives; a ``--config`` file it names comes first (flags
    override the configuration file)."""
    text = host.read_text(full_path)
    if text is None:
        return {}
    shown = host.display(root, full_path)
    files.append(shown)
    if kind in ("config", "rancher"):
        document = _load_yaml(text, shown, problems)
        if document is None:
            return {}
        if kind == "config":
            return _accepted(_from_config(document), shown, problems)
        found = _from_flags(_rancher_arguments(document))
    elif kind == "env":
        found = _from_flags(_env_arguments(text))
    else:  # MicroK8s' args file: one flag a line
        found = _from_flags(line.strip() for line in text.splitlines() if line.strip().startswith("--"))
    config = found.pop("config", (None, None))[0]
    settings = _accepted(found, shown, problems)
    if config:
        return {**_read_file(root, "config", host.path(root, config), problems, files), **settings}
    return settings


def node_settings(root, distribution):
    """
    The kubelet settings this node's own files give, for ``distribution``:
    ``{"settings": {name: {"value", "source"}}, "files": [files read], "problems": [...]}``.
    ``source`` names the file and the field or flag (``/var/lib/kubelet/config.yaml:
    failCgroupV1``); a later file wins, as in the kubelet (flags over the config file).
    """
    settings, files, problems = {}, [], []
    for kind, relative in SETTINGS_FILES.get(distribution, ()):
        for file_kind, full_path in _files_of(root, kind, relative):
            settings.update(_read_file(root, file_kind, full_path, problems, files))
    return {"settings": settings, "files": files, "problems": problems}
