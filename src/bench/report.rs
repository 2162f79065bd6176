//! Statistics of a run, as a Markdown table for people and JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{OpResult, Plan, Settings, Target, Throughput};

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 1e3 * 10.0).round() / 10.0
}

#[derive(Serialize, Clone, Debug)]
pub struct TokenStats {
    pub n: usize,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub server_cpu_us_per_token: Option<f64>,
}

#[derive(Serialize, Clone, Debug)]
pub struct ResultRow {
    pub op: String,
    /// 1-based, as in the targets list.
    pub target: usize,
    pub target_name: String,
    pub attempted: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub error_examples: Vec<String>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub mean_us: Option<f64>,
    pub min_us: Option<f64>,
    pub max_us: Option<f64>,
    /// Back-to-back rate of the timed operation: ok / sum of latencies.
    pub ops_per_s: Option<f64>,
    /// p50 of this target divided by the first target's p50 for the same operation.
    pub p50_ratio_to_first: Option<f64>,
    /// Server process CPU time per operation (tokens excluded), from /proc.
    pub server_cpu_us_per_op: Option<f64>,
    pub token: Option<TokenStats>,
    pub signatures_verified: u64,
    pub attestation: Option<String>,
}

#[derive(Serialize, Clone, Debug)]
pub struct ThroughputRow {
    pub op: String,
    pub targets: usize,
    pub ok: u64,
    pub wall_s: f64,
    /// The median of `runs` repeats (by rate); its wall time, ok count and CPU figures.
    pub aggregate_ops_per_s: f64,
    pub runs: usize,
    pub min_ops_per_s: f64,
    pub max_ops_per_s: f64,
    /// Aggregate throughput over that of one target.
    pub scaling_vs_one: Option<f64>,
    /// CPU time of all the servers per operation (the client's warm-up excluded).
    pub server_cpu_us_per_op: Option<f64>,
    /// CPU time of `vkey bench` itself per operation (all its threads, the whole phase).
    pub client_cpu_us_per_op: Option<f64>,
    /// (server + client CPU time) / wall time: how many cores the run kept busy.
    pub cores_busy: Option<f64>,
}

#[derive(Serialize, Clone, Debug)]
pub struct TargetRow {
    pub index: usize,
    pub name: String,
    pub address: String,
    pub busid: String,
    pub vendor_id: Option<String>,
    pub product_id: Option<String>,
    pub product: Option<String>,
    pub versions: Vec<String>,
    pub aaguid: Option<String>,
    pub pin: String,
    pub server_pid: Option<u32>,
    pub down: Option<String>,
    /// Interrupt-IN URBs the key completed with no data (Linux ignores them; a key that
    /// does this keeps the host and itself busy).
    pub empty_in_completions: u64,
    /// Interrupt-IN URBs completed with an error status.
    pub in_errors: u64,
    /// Reports dropped because 64 were unread (hidraw's ring buffer does the same).
    pub dropped_reports: u64,
}

#[derive(Serialize, Clone, Debug)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub mode: &'static str,
    pub count: BTreeMap<String, u64>,
    pub warmup: u64,
    pub verify_every: u64,
    pub rp_id: String,
    pub targets: Vec<TargetRow>,
    pub results: Vec<ResultRow>,
    pub throughput: Vec<ThroughputRow>,
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

impl Report {
    pub fn new(
        targets: &[Target],
        plan: &Plan,
        s: &Settings,
        results: Vec<OpResult>,
        throughput: Vec<Throughput>,
    ) -> Report {
        let name_of = |i: usize| {
            targets
                .iter()
                .find(|t| t.index == i)
                .map(Target::name)
                .unwrap_or_default()
        };
        let mut rows: Vec<ResultRow> = results.iter().map(|r| row(r, name_of(r.target))).collect();
        let order = |op: &str| plan.ops.iter().position(|p| p.op.name() == op);
        rows.sort_by_key(|r| (order(&r.op), r.target));
        let first = targets.first().map(|t| t.index);
        for i in 0..rows.len() {
            let base = rows
                .iter()
                .find(|b| Some(b.target) == first && b.op == rows[i].op)
                .and_then(|b| b.p50_us);
            rows[i].p50_ratio_to_first = match (rows[i].p50_us, base) {
                (Some(x), Some(b)) if b > 0.0 => Some((x / b * 100.0).round() / 100.0),
                _ => None,
            };
        }
        let throughput = throughput_rows(&throughput);
        Report {
            tool: "vkey bench",
            version: env!("CARGO_PKG_VERSION"),
            mode: if plan.concurrent {
                "concurrent"
            } else {
                "alternating"
            },
            count: plan.ops.iter().map(|p| (p.op.name(), p.count)).collect(),
            warmup: plan.warmup,
            verify_every: plan.verify_every,
            rp_id: s.rp_id.clone(),
            targets: targets.iter().map(target_row).collect(),
            results: rows,
            throughput,
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Markdown: the targets, one table of every op × target, and throughput rows.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "vkey bench {} ({}; {} warm-up per op; signatures verified on every {} op)\n",
            self.version,
            self.mode,
            self.warmup,
            match self.verify_every {
                1 => "".to_string(),
                n => format!("{n}th"),
            }
        );
        for t in &self.targets {
            let _ = writeln!(
                o,
                "[{}] {}: {}/{} {}{}{}, {}{}{}",
                t.index,
                t.name,
                t.address,
                t.busid,
                t.product.as_deref().unwrap_or(""),
                t.versions
                    .is_empty()
                    .then(String::new)
                    .unwrap_or_else(|| format!(" ({})", t.versions.join(","))),
                t.server_pid
                    .map(|p| format!(", pid {p}"))
                    .unwrap_or_default(),
                t.pin,
                t.down
                    .as_ref()
                    .map(|d| format!(", DOWN: {d}"))
                    .unwrap_or_default(),
                match (t.empty_in_completions, t.in_errors, t.dropped_reports) {
                    (0, 0, 0) => String::new(),
                    (e, s, d) => format!(
                        ", IN URBs completed empty: {e}, with an error: {s}; reports dropped: {d}"
                    ),
                }
            );
        }
        let _ = writeln!(
            o,
            "\n| op | key | ok/n | p50 | p99 | ops/s | p50 vs [1] | server CPU/op | errors |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
        let ms = |v: Option<f64>| match v {
            Some(x) if x >= 1000.0 => format!("{:.1} ms", x / 1000.0),
            Some(x) => format!("{x:.0} µs"),
            None => "–".into(),
        };
        for r in &self.results {
            let errors = r
                .errors
                .iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                o,
                "| {} | [{}] {} | {}/{} | {} | {} | {} | {} | {} | {} |",
                r.op,
                r.target,
                r.target_name,
                r.ok,
                r.attempted,
                ms(r.p50_us),
                ms(r.p99_us),
                r.ops_per_s.map_or("–".into(), |x| format!("{x:.0}")),
                r.p50_ratio_to_first
                    .map_or("–".into(), |x| format!("{x:.2}×")),
                ms(r.server_cpu_us_per_op),
                errors
            );
            if let Some(t) = &r.token {
                let _ = writeln!(
                    o,
                    "| {} (token) | [{}] {} | {}/{} | {} | {} | | | {} | |",
                    r.op,
                    r.target,
                    r.target_name,
                    t.n,
                    r.attempted,
                    ms(t.p50_us),
                    ms(t.p99_us),
                    ms(t.server_cpu_us_per_token),
                );
            }
        }
        if !self.throughput.is_empty() {
            let _ = writeln!(
                o,
                "\n| op | keys (concurrent) | ok | wall | aggregate ops/s (median; min–max of runs) | vs 1 key | server CPU/op | client CPU/op | cores busy |"
            );
            let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
            for t in &self.throughput {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {:.2} s | {:.0} ({:.0}–{:.0} of {}) | {} | {} | {} | {} |",
                    t.op,
                    t.targets,
                    t.ok,
                    t.wall_s,
                    t.aggregate_ops_per_s,
                    t.min_ops_per_s,
                    t.max_ops_per_s,
                    t.runs,
                    t.scaling_vs_one.map_or("–".into(), |x| format!("{x:.2}×")),
                    ms(t.server_cpu_us_per_op),
                    ms(t.client_cpu_us_per_op),
                    t.cores_busy.map_or("–".into(), |x| format!("{x:.2}")),
                );
            }
        }
        for r in &self.results {
            for e in &r.error_examples {
                let _ = writeln!(o, "note: {} on [{}]: {e}", r.op, r.target);
            }
        }
        o
    }
}

/// One row per (op, number of keys): the median run by aggregate rate, with the range.
fn throughput_rows(runs: &[Throughput]) -> Vec<ThroughputRow> {
    let mut keys: Vec<(super::Op, usize)> = Vec::new();
    for t in runs {
        if !keys.contains(&(t.op, t.targets)) {
            keys.push((t.op, t.targets));
        }
    }
    let rate = |t: &Throughput| t.ok as f64 / t.wall.as_secs_f64().max(1e-9);
    let mut rows: Vec<ThroughputRow> = keys
        .iter()
        .filter_map(|&(op, k)| {
            let mut group: Vec<&Throughput> = runs
                .iter()
                .filter(|t| t.op == op && t.targets == k)
                .collect();
            group.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
            let t = *group.get(group.len() / 2)?;
            let per_op = |ns: Option<u64>| ns.filter(|_| t.ok > 0).map(|ns| us(ns / t.ok));
            let busy = t.server_cpu_ns.zip(t.client_cpu_ns).map(|(s, c)| {
                ((s + c) as f64 / 1e9 / t.wall.as_secs_f64().max(1e-9) * 100.0).round() / 100.0
            });
            Some(ThroughputRow {
                op: op.name(),
                targets: k,
                ok: t.ok,
                wall_s: (t.wall.as_secs_f64() * 1000.0).round() / 1000.0,
                aggregate_ops_per_s: rate(t).round(),
                runs: group.len(),
                min_ops_per_s: group.first().map(|g| rate(g).round()).unwrap_or_default(),
                max_ops_per_s: group.last().map(|g| rate(g).round()).unwrap_or_default(),
                scaling_vs_one: None,
                server_cpu_us_per_op: per_op(t.server_cpu_ns),
                client_cpu_us_per_op: per_op(t.client_cpu_ns),
                cores_busy: busy,
            })
        })
        .collect();
    let ones: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r.targets == 1)
        .map(|r| (r.op.clone(), r.aggregate_ops_per_s))
        .collect();
    for r in &mut rows {
        r.scaling_vs_one = ones
            .iter()
            .find(|(op, o)| *op == r.op && *o > 0.0)
            .map(|(_, o)| (r.aggregate_ops_per_s / o * 100.0).round() / 100.0);
    }
    rows
}

fn row(r: &OpResult, name: String) -> ResultRow {
    let s = &r.samples;
    let mut lat = s.latencies_ns.clone();
    lat.sort_unstable();
    let ok = lat.len() as u64;
    let sum: u64 = lat.iter().sum();
    let per = |total: u64, n: u64| (s.cpu_known && n > 0).then(|| us(total / n));
    let token = (!s.tokens_ns.is_empty()).then(|| {
        let mut t = s.tokens_ns.clone();
        t.sort_unstable();
        TokenStats {
            n: t.len(),
            p50_us: percentile(&t, 0.5).map(us),
            p99_us: percentile(&t, 0.99).map(us),
            server_cpu_us_per_token: per(s.cpu_token_ns, t.len() as u64),
        }
    });
    ResultRow {
        op: r.op.name(),
        target: r.target,
        target_name: name,
        attempted: s.attempted,
        ok,
        errors: s.errors.clone(),
        error_examples: s.error_examples.clone(),
        p50_us: percentile(&lat, 0.5).map(us),
        p99_us: percentile(&lat, 0.99).map(us),
        mean_us: (ok > 0).then(|| us(sum / ok)),
        min_us: lat.first().copied().map(us),
        max_us: lat.last().copied().map(us),
        ops_per_s: (sum > 0).then(|| (ok as f64 / (sum as f64 / 1e9)).round()),
        p50_ratio_to_first: None,
        server_cpu_us_per_op: per(s.cpu_op_ns, s.attempted),
        token,
        signatures_verified: s.signatures_verified,
        attestation: s.attestation.clone(),
    }
}

fn target_row(t: &Target) -> TargetRow {
    TargetRow {
        index: t.index,
        name: t.name(),
        address: t.spec.address.clone(),
        busid: t.spec.busid.clone(),
        vendor_id: t.usb.as_ref().map(|u| format!("{:04x}", u.vendor_id)),
        product_id: t.usb.as_ref().map(|u| format!("{:04x}", u.product_id)),
        product: t.usb.as_ref().map(|u| u.product.clone()),
        versions: t
            .info
            .as_ref()
            .map(|i| i.versions.clone())
            .unwrap_or_default(),
        aaguid: t.info.as_ref().map(|i| hex(&i.aaguid)),
        pin: t.pin_description(),
        server_pid: t.spec.pid,
        down: t.dead.clone(),
        empty_in_completions: t.in_counts().empty,
        in_errors: t.in_counts().errors,
        dropped_reports: t.in_counts().dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
