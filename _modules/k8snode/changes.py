"""
Changing the host, for the ``k8snode.prepared`` and ``k8snode.absent`` states:
load modules, set sysctls, write the files k8snode owns, turn swap off, and
undo what was persisted. Change only what differs; collect per-item changes
and failures; one failing item does not stop the others.

Commands (``modprobe``, ``swapoff``) go through the ``run`` callable the API
passes in (Salt's ``cmd.run_all`` with ``python_shell=False``): argv lists,
never a shell.
"""

import contextlib
import errno
import os
import posixpath

from . import host, kernel, netowners, swap, sysctl_boot, tables, writer
from .checks import meets


class _Outcome:
    """Collects per-item changes and failures of one prepare or revert run."""

    def __init__(self, test):
        self.test = test
        self.changes = {}
        self.failures = {}
        self.notes = []

    def change(self, item, old, new):
        self.changes[item] = {"old": old, "new": new}

    def fail(self, item, reason):
        self.failures[item] = reason

    def result(self, done_comment):
        if self.failures:
            result = False
            comment = "Failed: " + "; ".join(f"{item}: {reason}" for item, reason in sorted(self.failures.items()))
        elif self.test and self.changes:
            result, comment = None, f"{len(self.changes)} change(s) would be made"
        else:
            result, comment = True, (f"{len(self.changes)} change(s) made" if self.changes else done_comment)
        if self.notes:
            comment += ". " + " ".join(self.notes)
        return {"result": result, "changes": self.changes, "comment": comment, "failures": self.failures}


def _write_managed(outcome, root, path, content):
    """Write a file of ours when it differs; never touch a file that is not ours."""
    full = host.path(root, path)
    old = host.read_text(full)
    if old == content:
        return True
    if old is not None and not writer.is_ours(old):
        outcome.fail(
            f"file:{path}",
            "exists and was not written by k8snode: refusing to overwrite it; choose another name in files:",
        )
        return False
    note = "restored (it was edited by hand)" if old is not None else "created"
    outcome.change(f"file:{path}", old, content)
    if old is not None:
        outcome.notes.append(f"{path} {note}.")
    if outcome.test:
        return True
    try:
        writer.atomic_write(full, content)
    except OSError as exc:
        outcome.fail(f"file:{path}", f"cannot write: {exc.strerror or exc}")
        return False
    return True


def _unloadable(outcome, name, requirement, reason):
    if requirement["required"]:
        outcome.fail(f"module:{name}", reason)
    else:
        outcome.notes.append(f"optional module {name}: {reason}.")


def _load_modules(outcome, resolved, facts, root, run):
    """Load what is missing; return {requirement name: module name now present}. What
    modprobe.d forbids is not run; what it blacklists loads now but not at boot (kmod's
    deny-list stops systemd-modules-load): both fail, naming the line."""
    present = {}
    rules = kernel.modprobe_rules(root)
    for name, requirement in resolved["modules"].items():
        chosen, state, evidence = kernel.resolve_module(requirement["alternatives"], facts, root)
        install = rules["install"].get(chosen)
        if state != "builtin" and chosen in rules["blacklist"]:
            _unloadable(
                outcome,
                name,
                requirement,
                f"{chosen} is blacklisted ({rules['blacklist'][chosen]}): systemd-modules-load will skip it at "
                "every boot; remove that line (k8snode does not edit modprobe.d)",
            )
        if state in ("loaded", "builtin"):
            present[name] = chosen
            continue
        if state == "available" and install and install["loads_nothing"]:
            _unloadable(
                outcome,
                name,
                requirement,
                f"modprobe.d replaces loading {chosen} with `{install['command']}` ({install['where']}): "
                "nothing loads it; remove that line (k8snode does not edit modprobe.d)",
            )
            continue
        candidates = [chosen] if state == "available" else requirement["alternatives"]
        if outcome.test:
            if state == "available":
                outcome.change(f"module:{name}", "not loaded", f"{chosen} loaded")
                present[name] = chosen
            elif requirement["required"]:
                outcome.fail(f"module:{name}", f"would fail: {evidence}")
            continue
        errors = []
        for candidate in candidates:
            done = run(["modprobe", "--", candidate])
            if done["retcode"] == 0:
                outcome.change(f"module:{name}", "not loaded", f"{candidate} loaded")
                present[name] = candidate
                break
            errors.append(
                f"modprobe {candidate}: {(done.get('stderr') or '').strip() or 'exit ' + str(done['retcode'])}"
            )
        else:
            hint = resolved["hints"].get(name)
            reason = f"{evidence}; " + "; ".join(errors) + (f" ({hint})" if hint else "")
            if kernel.modules_disabled(root):
                reason = f"kernel.modules_disabled is 1: no module loads until the next boot; {reason}"
            if requirement["required"]:
                outcome.fail(f"module:{name}", reason)
            else:
                outcome.notes.append(f"optional module {name} unavailable: {reason}.")
    return present


def _render(lines):
    return writer.MANAGED_HEADER + "".join(line + "\n" for line in lines)


def _desired_sysctls(resolved, root, own_boot_values):
    """Values for our sysctl file: floors keep the highest of the value we wrote,
    the live value and what the other files set at boot, never lower them."""
    others = sysctl_boot.effective_boot_sysctls(
        root, resolved["boot"]["reads_etc_sysctl_conf"], replace={resolved["files"]["sysctl"]["path"]: None}
    )
    desired = {}
    for key, requirement in resolved["sysctls"].items():
        value = requirement["value"]
        if _is_pattern(key):
            # One line for every match: the table's value (each match is checked on its own).
            desired[key] = value
            continue
        if requirement["compare"] == "one_of":
            value = _accepted_value_in_place(key, requirement, root, own_boot_values, others)
        if requirement["compare"] == "min":
            other = sysctl_boot.boot_assignment(sysctl_boot.sysctl_path(key), others)
            candidates = (
                own_boot_values.get(sysctl_boot.sysctl_path(key)),
                sysctl_boot.read_live(root, key),
                other and other["value"],
            )
            higher = [int(found) for found in candidates if sysctl_boot.value_satisfies(found, value, "min")]
            if higher:
                value = str(max(higher))
        desired[key] = value
    return desired


def _is_pattern(key):
    return sysctl_boot.is_glob(sysctl_boot.sysctl_path(key))


def _write_live(outcome, item, proc, value):
    """Write one /proc/sys file; a failure is recorded against ``item``."""
    try:
        with open(proc, "w", encoding="ascii") as handle:
            handle.write(value)
    except OSError as exc:
        reason = (
            "/proc/sys is read-only here" if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else exc.strerror
        )
        outcome.fail(item, f"cannot set {value}: {reason}")
        return False
    return True


def _set_pattern(outcome, key, requirement, root, value):
    """Set every key the pattern matches now; the pattern is persisted either way
    (interfaces that appear later get it from systemd-sysctl at boot or from udev)."""
    pattern = sysctl_boot.sysctl_path(key)
    old, new = {}, {}
    for match in host.sysctl_keys_matching(root, pattern):
        live = sysctl_boot.read_live(root, match)
        if meets(live, requirement):
            continue
        shown = sysctl_boot.dotted_key(match)
        if outcome.test or _write_live(outcome, f"sysctl:{shown}", host.path(root, "proc/sys/" + match), value):
            old[shown], new[shown] = live, value
    if new:
        outcome.change(f"sysctl:{key}", old, new)


def _accepted_value_in_place(key, requirement, root, own_boot_values, others):
    """For ``compare: one_of``: keep an accepted value already there (ours, live, then
    another file's), so that a node set to 0 is not moved to 1; else the table's value."""
    path_key = sysctl_boot.sysctl_path(key)
    other = sysctl_boot.boot_assignment(path_key, others)
    for found in (own_boot_values.get(path_key), sysctl_boot.read_live(root, key), other and other["value"]):
        if found is not None and meets(found, requirement):
            return " ".join(found.split())
    return requirement["value"]


def _set_sysctls(outcome, resolved, root, desired, loading=()):
    """Set live values; return the keys the kernel has (the ones to persist).

    ``loading``: modules that test mode would have loaded (their keys don't exist yet)."""
    existing = []
    for key, value in desired.items():
        requirement = resolved["sysctls"][key]
        if _is_pattern(key):
            existing.append(key)
            _set_pattern(outcome, key, requirement, root, value)
            continue
        proc = host.path(root, "proc/sys/" + sysctl_boot.sysctl_path(key))
        live = sysctl_boot.read_live(root, key)
        if live is None:
            needed = requirement.get("needs_module")
            if needed and needed in loading:
                # test=True: the key appears once the module loads; the real run sets and persists it.
                existing.append(key)
                outcome.change(f"sysctl:{key}", None, value)
                continue
            reason = f"{key} does not exist in this kernel" + (f" ({needed} is not loaded)" if needed else "")
            if requirement["required"]:
                outcome.fail(f"sysctl:{key}", reason)
            else:
                outcome.notes.append(f"optional {reason}.")
            continue
        existing.append(key)
        if meets(live, requirement):
            continue
        outcome.change(f"sysctl:{key}", live, value)
        if outcome.test:
            continue
        if not _write_live(outcome, f"sysctl:{key}", proc, value):
            del outcome.changes[f"sysctl:{key}"]
    return existing


def _persisted_sysctls(outcome, resolved, root, existing, desired):
    """``{key: value}`` for our sysctl file. Where procps' ``sysctl --system`` applies
    sysctl.d at boot and does not expand globs (procps < 4.0, no systemd), a pattern
    on a per-interface key is persisted as the ``conf.default`` key that every
    interface created after boot copies (set live too), with a note; a pattern on
    another key fails, since nothing this host runs at boot could apply it."""
    from . import sysctl_procps

    persisted = {key: desired[key] for key in existing if not _is_pattern(key)}
    patterns = [key for key in existing if _is_pattern(key)]
    if not patterns or host.sysctl_applier(root)["applier"] != sysctl_boot.PROCPS:
        return {**persisted, **{key: desired[key] for key in patterns}}
    procps = sysctl_procps.procps_version(root)
    if procps["expands_globs"]:
        return {**persisted, **{key: desired[key] for key in patterns}}
    for key in patterns:
        value = desired[key]
        path_key = sysctl_boot.sysctl_path(key)
        parent = sysctl_boot.inherited_from(sysctl_boot.new_match(path_key))
        without = f"procps {procps['version']} here ({procps['evidence']}) does not expand globs in sysctl.d (4.0 does)"
        if parent is None:
            outcome.fail(f"sysctl:{key}", f"{without}, and {key} is not a per-interface key: list its keys one by one")
            continue
        default_key = sysctl_boot.dotted_key(parent)
        if persisted.setdefault(default_key, value) != value:
            outcome.fail(
                f"sysctl:{key}",
                f"{without}; it would need {default_key} = {value}, but {persisted[default_key]} is required there",
            )
            continue
        outcome.notes.append(
            f"{without}: {key} = {value} is persisted as {default_key} = {value}, which every interface "
            "created after boot copies (those the pattern does not match too)."
        )
        live = sysctl_boot.read_live(root, default_key)
        if live is not None and not sysctl_boot.value_satisfies(live, value):
            outcome.change(f"sysctl:{default_key}", live, value)
            if not outcome.test and not _write_live(
                outcome, f"sysctl:{default_key}", host.path(root, "proc/sys/" + parent), value
            ):
                del outcome.changes[f"sysctl:{default_key}"]
    return persisted


def _check_boot_precedence(outcome, resolved, root, sysctl_file, content, removed=()):
    replace = {sysctl_file: content, **dict.fromkeys(removed)}
    boot = sysctl_boot.effective_boot_sysctls(root, resolved["boot"]["reads_etc_sysctl_conf"], replace=replace)
    for key, requirement in resolved["sysctls"].items():
        if f"sysctl:{key}" in outcome.failures:
            continue
        path_key = sysctl_boot.sysctl_path(key)
        targets = [path_key]
        if _is_pattern(key):
            # Every match now, and a match that appears later (a new interface).
            targets = [*host.sysctl_keys_matching(root, path_key), sysctl_boot.new_match(path_key)]
        for target in targets:
            # A new match copies conf.default when no line reaches it (procps < 4.0).
            winner = (sysctl_boot.interface_boot_assignment if target != path_key else sysctl_boot.boot_assignment)(
                target, boot
            )
            if winner and winner["file"] not in (sysctl_file, None) and not meets(winner["value"], requirement):
                # The winner may be another key (ip_forward and conf.all.forwarding are one
                # variable) or a glob, and a file ordered before ours can win when it is
                # the last to change the value (systemd-sysctl's order); an explicit line
                # beats every glob, ours included.
                via = "" if winner["via"] == target else f" through {winner['via']}"
                which = f" for {sysctl_boot.dotted_key(target)}" if target != path_key else ""
                why = (
                    f"and is applied after {sysctl_file}: "
                    "change that file or choose a sysctl file name that sorts after it (files: sysctl:)"
                )
                if target != path_key and "pattern" not in winner:
                    why = "and an explicit line beats every pattern, ours included: change that file"
                outcome.fail(
                    f"sysctl:{key}",
                    f"{winner['file']} sets {winner['value']}{via}{which} at boot (line {winner['line']}) {why}",
                )
                break


def _ours_elsewhere(resolved, root, what):
    """``[(path, text)]``: files of ours (the header) for ``what`` under another name than
    the one ``files:`` gives now: ``*.conf`` (what systemd reads) in the directory of that
    name and of the default one. A run with other ``files:`` wrote them; they still act at
    boot, and their header promises that k8snode.absent removes them."""
    configured = {entry["path"] for entry in resolved["files"].values()}
    directories = {
        posixpath.dirname(resolved["files"][what]["path"]),
        posixpath.dirname(tables.DEFAULTS["files"][what]),
    }
    found = []
    for directory in sorted(directories):
        try:
            names = sorted(os.listdir(host.path(root, directory)))
        except OSError:
            continue
        for name in names:
            path = posixpath.join(directory, name)
            text = host.read_text(host.path(root, path)) if name.endswith(".conf") and path not in configured else None
            if writer.is_ours(text):
                found.append((path, text))
    return found


def _remove_ours(outcome, root, path, text, why=None):
    """Remove a file of ours (``text``: the caller read it and checked the header), or
    preview it with test=True."""
    full = host.path(root, path)
    outcome.change(f"file:{path}", text, None)
    if why:
        outcome.notes.append(f"{path} removed ({why}).")
    if outcome.test:
        return
    try:
        os.unlink(full)
    except OSError as exc:
        outcome.fail(f"file:{path}", f"cannot remove: {exc.strerror}")


def _swap_off(outcome, resolved, root, run):
    if resolved["swap"]["policy"] != "off":
        return
    found = swap.swap_status(root)
    for device in found["active"]:
        outcome.change(f"swap:{device}", "active", "off")
        if not outcome.test:
            done = run(["swapoff", "--", device])
            if done["retcode"] != 0:
                outcome.fail(f"swap:{device}", f"swapoff failed: {(done.get('stderr') or '').strip()}")
    fstab = host.path(root, "etc/fstab")
    text = host.read_text(fstab)
    indexes, _ = swap.fstab_swap_lines(text or "")
    if indexes:
        lines = text.splitlines(keepends=True)
        for index in indexes:
            lines[index] = writer.FSTAB_MARKER + lines[index]
        new = "".join(lines)
        outcome.change("file:/etc/fstab", text, new)
        if not outcome.test:
            backup = fstab + writer.FSTAB_BACKUP_SUFFIX
            try:
                if not os.path.exists(backup):
                    writer.atomic_write(backup, text, os.stat(fstab).st_mode & 0o777)
                writer.atomic_write(fstab, new, os.stat(fstab).st_mode & 0o777)
            except OSError as exc:
                outcome.fail("file:/etc/fstab", f"cannot write: {exc.strerror or exc}")
    others = [where for where in found["at_boot"] if not where.startswith("/etc/fstab")]
    if others:
        outcome.fail(
            "swap",
            "swap comes back at boot from " + ", ".join(others) + ": mask or remove it (k8snode edits only /etc/fstab)",
        )


def prepare(resolved, root, run, test=False):
    """Make the host what ``resolved`` asks for; see the API's ``prepare``."""
    outcome = _Outcome(bool(test))
    with writer.Lock(root) if not test else contextlib.nullcontext():
        facts = kernel.kernel_facts(root)
        present = _load_modules(outcome, resolved, facts, root, run)
        modules_file = resolved["files"]["modules_load"]["path"]
        if _write_managed(outcome, root, modules_file, _render(sorted(set(present.values())))):
            for earlier, text in _ours_elsewhere(resolved, root, "modules_load"):
                _remove_ours(outcome, root, earlier, text, f"k8snode wrote it before; {modules_file} replaces it")

        sysctl_file = resolved["files"]["sysctl"]["path"]
        own = host.read_text(host.path(root, sysctl_file))
        own_values = {}
        if writer.is_ours(own):
            own_values = {
                sysctl_boot.sysctl_path(key): value for _, key, value, _ in sysctl_boot.parse_sysctl_conf(own)[0]
            }
        desired = _desired_sysctls(resolved, root, own_values)
        # test=True loads nothing: preview the keys of the modules it would load.
        loading = {present[name] for name in present if f"module:{name}" in outcome.changes} if test else set()
        existing = _set_sysctls(outcome, resolved, root, desired, loading)
        persisted = _persisted_sysctls(outcome, resolved, root, existing, desired)
        # Pattern lines first: procps' `sysctl --system` applies lines in file order, and
        # an explicit key must beat a glob as it does under systemd-sysctl.
        ordered = sorted(persisted, key=lambda key: (not _is_pattern(key), key))
        content = _render(f"{key} = {persisted[key]}" for key in ordered)
        earlier_files = _ours_elsewhere(resolved, root, "sysctl")
        removed = [path for path, _ in earlier_files]
        _check_boot_precedence(outcome, resolved, root, sysctl_file, content, removed=removed)
        if _write_managed(outcome, root, sysctl_file, content):
            for earlier, text in earlier_files:
                _remove_ours(outcome, root, earlier, text, f"k8snode wrote it before; {sysctl_file} replaces it")

        _swap_off(outcome, resolved, root, run)
        for path, body in netowners.drop_ins(resolved, root).items():
            _write_managed(outcome, root, path, writer.MANAGED_HEADER + body)
    ret = outcome.result(f"{resolved['distribution']} node already prepared")
    ret["distribution"] = resolved["distribution"]
    return ret


def revert(resolved, root, test=False):
    """Remove what :func:`prepare` persisted; see the API's ``revert``."""
    outcome = _Outcome(bool(test))
    with writer.Lock(root) if not test else contextlib.nullcontext():
        paths = [resolved["files"][what]["path"] for what in ("modules_load", "sysctl")]
        for path in paths + list(netowners.DROP_INS):
            text = host.read_text(host.path(root, path))
            if text is None:
                continue
            if not writer.is_ours(text):
                outcome.notes.append(f"{path} was not written by k8snode: left alone.")
                continue
            _remove_ours(outcome, root, path, text)
        for what in ("modules_load", "sysctl"):
            for earlier, earlier_text in _ours_elsewhere(resolved, root, what):
                _remove_ours(outcome, root, earlier, earlier_text, "k8snode wrote it in a run with other files:")
        fstab = host.path(root, "etc/fstab")
        text = host.read_text(fstab)
        if text and writer.FSTAB_MARKER in text:
            restored = "".join(
                line[len(writer.FSTAB_MARKER) :] if line.startswith(writer.FSTAB_MARKER) else line
                for line in text.splitlines(keepends=True)
            )
            outcome.change("file:/etc/fstab", text, restored)
            if not test:
                try:
                    writer.atomic_write(fstab, restored, os.stat(fstab).st_mode & 0o777)
                except OSError as exc:
                    outcome.fail("file:/etc/fstab", f"cannot write: {exc.strerror}")
    outcome.notes.append("Loaded modules and live sysctl values were left as they are.")
    return outcome.result("nothing of k8snode's to remove")
