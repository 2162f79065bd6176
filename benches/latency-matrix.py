#!/usr/bin/env python3
"""The performance targets of issue 14, measured the same way every time: vkey serve in
four set-ups, driven by `vkey bench` (alternating between them, so that the machine's
load falls on all alike), repeated; the median of each figure over the repeats.

    benches/latency-matrix.py [--repeat 5] [--store-100k DIR] [--json FILE]
                              [--vkey [LABEL=]BIN ...] [--setup NAME ...] [--op OP=N ...]

Set-ups: `ephemeral` (packed attestation, in memory), `att-none` (--attestation none,
in memory), `store-0` (a new persistent store: every acknowledged change fsynced) and,
with --store-100k, `store-100k` (a copy of DIR, a store holding 100 000 credentials,
e.g. target/bench-stores/n100000 that `cargo bench --bench store` makes). Per report
pair = ping-7609 p50 / 129 (129 reports each way). With several --vkey binaries (e.g.
before=/tmp/vkey-before after=target/release/vkey) every set-up runs for each, all in
the same alternating run: a before/after comparison under the same machine load.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = ["ping-64=2000", "ping-7609=60", "getinfo=1000", "mc=300", "mc-rk=200", "ga=500", "ga-rk=300"]


def start(vkey, args, tmp, name):
    ctl = os.path.join(tmp, f"{name}.sock")
    p = subprocess.Popen(
        [vkey, "serve", "--listen", "127.0.0.1:0", "--control", ctl, *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "VKEY_LOG": "warn"})
    for line in p.stdout:
        if line.startswith("listening on "):
            return p, line.split()[2]
    raise SystemExit(f"{name}: vkey serve did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--store-100k")
    ap.add_argument("--json")
    ap.add_argument("--vkey", action="append", help="[LABEL=]BIN (repeatable)")
    ap.add_argument("--setup", action="append", help="only these set-ups")
    ap.add_argument("--op", action="append", help="override the op list")
    a = ap.parse_args()
    vkeys = []
    for v in a.vkey or [os.path.join(ROOT, "target/release/vkey")]:
        label, _, path = v.rpartition("=")
        vkeys.append((label, path))
    bench_bin = vkeys[-1][1]
    tmp = tempfile.mkdtemp(prefix="vkey-matrix-")
    setups = [("ephemeral", ["--ephemeral"]),
              ("att-none", ["--ephemeral", "--attestation", "none"]),
              ("store-0", ["--store", os.path.join(tmp, "store-0")])]
    if a.store_100k:
        copy = os.path.join(tmp, "store-100k")
        shutil.copytree(a.store_100k, copy, ignore=shutil.ignore_patterns("*.sock"))
        setups.append(("store-100k", ["--store", copy, "--max-credentials", "200000"]))
    if a.setup:
        setups = [s for s in setups if s[0] in a.setup]
    procs, targets = [], []
    try:
        for name, args in setups:
            for label, path in vkeys:
                full = f"{label}/{name}" if label else name
                if name == "store-100k" and label:
                    copy = os.path.join(tmp, f"store-100k-{label}")
                    shutil.copytree(a.store_100k, copy, ignore=shutil.ignore_patterns("*.sock"))
                    args = ["--store", copy, "--max-credentials", "200000"]
                elif name == "store-0" and label:
                    args = ["--store", os.path.join(tmp, f"store-0-{label}")]
                p, addr = start(path, args, tmp, full.replace("/", "-"))
                procs.append(p)
                targets += ["--target", f"{full}={addr}/1-1"]
        runs = []
        for i in range(a.repeat):
            cmd = [bench_bin, "bench", *targets, "--warmup", "20", "--json"]
            for op in a.op or OPS:
                cmd += ["--op", op]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            runs.append(json.loads(out))
            print(f"run {i + 1}/{a.repeat} done", file=sys.stderr)
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    rows = {}
    for r in runs:
        for res in r["results"]:
            rows.setdefault((res["op"], res["target_name"]), []).append(res)
    table = []
    print(f"| op | set-up | p50 median (min–max of {a.repeat}) | p99 median | server CPU/op median | errors |")
    print("|---|---|---|---|---|---|")
    for (op, t), rs in rows.items():
        p50s = [x["p50_us"] for x in rs if x["ok"]]
        if not p50s:
            print(f"| {op} | {t} | – | – | – | {rs[0]['errors']} |")
            continue
        p50 = statistics.median(p50s)
        p99 = statistics.median(x["p99_us"] for x in rs if x["ok"])
        cpus = [x["server_cpu_us_per_op"] for x in rs if x["server_cpu_us_per_op"] is not None]
        cpu = statistics.median(cpus) if cpus else None
        errs = sum(sum(x["errors"].values()) for x in rs)
        table.append(dict(op=op, setup=t, p50_us=p50, p50_min=min(p50s), p50_max=max(p50s),
                          p99_us=p99, server_cpu_us=cpu, errors=errs))
        extra = f"; per report pair {p50 / 129:.1f} µs" if op == "ping-7609" else ""
        cpu_s = f"{cpu:.0f} µs" if cpu is not None else "–"
        print(f"| {op} | {t} | {p50:.0f} µs ({min(p50s):.0f}–{max(p50s):.0f}){extra} | "
              f"{p99:.0f} µs | {cpu_s} | {errs or ''} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"repeat": a.repeat, "rows": table, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
