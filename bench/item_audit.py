"""Items 1 and 4: what the audit costs on a minion, and how it scales with sysctl.d files."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.common import (
    BENCH_SRV,
    SRV,
    TARGETS,
    BenchError,
    exec_checked,
    median,
    ms,
    say,
    spread,
)


def run_audit(bench, container) -> None:
    say("\n[1] audit cost: salt-call k8snode.audit vs test.ping, and audit() in-process")
    rounds = bench.args.rounds + 6  # cheap, and the difference is small: more samples
    commands = {
        "ping": ["salt-call", "--local", "--out=json", "test.ping"],
        "audit": ["salt-call", "--local", "--out=json", "k8snode.audit"],
    }
    data = bench.time_in_container(container, commands, {"ping": "ping", "audit": "audit"}, rounds)
    bench.report.raw["1_salt_call"] = data
    ping, audit = median(data["samples"]["ping"]), median(data["samples"]["audit"])
    adds = (audit - ping) / ping
    say(f"    test.ping {ms(ping)} ({spread(data['samples']['ping'])}), audit {ms(audit)}")
    bench.report.add(
        "1",
        f"salt-call k8snode.audit (A) vs test.ping (B), {rounds} runs each",
        ms(audit),
        ms(ping),
        f"audit adds {adds * 100:+.1f}% ({(audit - ping) * 1000:+.0f} ms)",
        f"<= +{TARGETS['audit_adds'] * 100:.0f}%",
        adds <= TARGETS["audit_adds"],
    )
    cpu_ping, cpu_audit = median(data["cpu"]["ping"]), median(data["cpu"]["audit"])
    bench.report.add(
        "1",
        "the same pair in CPU time (user+system of salt-call), less sensitive to the machine's other load",
        ms(cpu_audit),
        ms(cpu_ping),
        f"audit adds {(cpu_audit - cpu_ping) / cpu_ping * 100:+.1f}% ({(cpu_audit - cpu_ping) * 1000:+.0f} ms)",
        "(info)",
        None,
    )
    out = exec_checked(
        container,
        ["python", f"{BENCH_SRV}/in_container.py", "audit", f"{SRV}/_modules/k8snode", "300"],
        "in-process audit",
    )
    inproc = json.loads(out)
    bench.report.raw["1_in_process"] = inproc
    say(f"    audit() in-process {inproc['median_ms']:.2f} ms, {inproc['spawned']} processes started")
    bench.report.add(
        "1",
        "audit() in-process, 300 calls: time; processes started",
        f"{inproc['median_ms']:.2f} ms",
        "",
        f"{inproc['spawned']} processes" + (f" ({', '.join(inproc['spawn_events'])})" if inproc["spawned"] else ""),
        "0 processes",
        inproc["spawned"] == TARGETS["spawns"],
    )


def run_scale(bench) -> None:
    say("\n[4] input scale: audit() in-process with 10, 100, 1,000 sysctl.d files")
    from _modules import k8snode as module

    module.__grains__ = {}
    module.__pillar__ = {}
    module.__salt__ = {}
    counts = (10, 100, 1000)
    roots = {n: make_sysctl_tree(bench.tmp / f"tree-{n}", n) for n in counts}
    for root in roots.values():  # warm-up, and a sanity check
        report = module.audit(root=str(root), pillar={})
        if "checks" not in report:
            raise BenchError(f"audit on a fake tree returned {str(report)[:300]}")
    rounds = max(15, bench.args.rounds * 2)
    samples = {n: [] for n in counts}
    for index in range(rounds):
        shift = index % len(counts)
        for n in counts[shift:] + counts[:shift]:
            started = time.perf_counter()
            module.audit(root=str(roots[n]), pillar={})
            samples[n].append(time.perf_counter() - started)
    bench.report.raw["4_scale"] = {str(n): v for n, v in samples.items()}
    med = {n: median(samples[n]) for n in counts}
    for n in counts:
        say(f"    {n:5d} files: {med[n] * 1000:.2f} ms ({spread(samples[n])})")
    cost = med[1000] - med[10]
    per_small = (med[100] - med[10]) / 90 * 1e6
    per_large = (med[1000] - med[100]) / 900 * 1e6
    bench.report.add(
        "4",
        f"audit() with 1,000 sysctl.d files (A) vs 10 (B), in-process, {rounds} runs each",
        f"{med[1000] * 1000:.1f} ms",
        f"{med[10] * 1000:.1f} ms",
        f"+{cost * 1000:.1f} ms",
        f"<= +{TARGETS['scale_ms']:.0f} ms",
        cost * 1000 <= TARGETS["scale_ms"],
    )
    bench.report.add(
        "4",
        "cost per file: 10->100 files (B) and 100->1,000 files (A); equal when linear",
        f"{per_large:.1f} us/file",
        f"{per_small:.1f} us/file",
        f"ratio {per_large / per_small:.2f}" if per_small > 0 else "-",
        "(info) ~1",
        None,
    )


def make_sysctl_tree(root: Path, count: int) -> Path:
    """A fake host tree with ``count`` sysctl.d files spread over the directories
    systemd-sysctl reads, some names masked or shadowed, and Debian's
    99-sysctl.conf -> ../sysctl.conf link; four assignments per file."""
    dirs = ["etc/sysctl.d", "run/sysctl.d", "usr/lib/sysctl.d", "lib/sysctl.d"]
    for directory in dirs:
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (root / "etc/sysctl.conf").write_text("net.ipv4.ip_forward = 1\n")
    (root / "etc/sysctl.d/99-sysctl.conf").symlink_to("../sysctl.conf")
    for index in range(count - 1):
        directory = dirs[index % len(dirs)]
        (root / directory / f"{index:04d}-bench.conf").write_text(
            f"# bench file {index}\n"
            f"net.ipv4.ip_forward = {index % 2}\n"
            f"net.core.somaxconn = {1024 + index}\n"
            f"-net.bridge.bridge-nf-call-iptables = 1\n"
            f"net.ipv4.conf.*.rp_filter = {index % 3}\n"
        )
    return root
