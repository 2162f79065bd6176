//! `vkey bench`: a native USB/IP host that measures any USB/IP FIDO key (vkey, other
//! software keys) the way Linux's usbhid drives it, alternating requests between keys in
//! one run (same machine load) or driving them concurrently.
//!
//! An edge module like `cli/`: it uses the USB/IP wire format, the CTAPHID packet
//! helpers and the PIN protocol code as a *client*; it never reaches into a server.
//!
//! - [`host`]: USB/IP import, enumeration, one interrupt-IN URB always outstanding;
//! - [`hid`]: CTAPHID channels and framing over it;
//! - [`ctap2`], [`client_pin`]: requests and independent checks of the responses;
//! - [`target`]: one key under measurement; [`report`]: statistics, table and JSON;
//! - [`procfs`]: the server process's CPU time; [`spawn`]: local vkey processes.

pub mod client_pin;
pub mod ctap2;
pub mod hid;
pub mod host;
pub mod ops;
pub mod procfs;
pub mod report;
pub mod spawn;
pub mod target;

use std::sync::Barrier;
use std::time::{Duration, Instant};

pub use ops::{Kind, Op};
pub use report::Report;
pub use target::{Samples, Settings, Target, TargetSpec};

/// One `--op` with its count (or the run's default).
#[derive(Clone, Copy, Debug)]
pub struct OpPlan {
    pub op: Op,
    pub count: u64,
}

/// Everything a run needs besides the targets.
pub struct Plan {
    pub ops: Vec<OpPlan>,
    pub warmup: u64,
    /// Per operation: stop after this long even if the count is not reached.
    pub duration: Option<Duration>,
    /// Verify signatures on every Nth operation (1 = all); structure always.
    pub verify_every: u64,
    pub concurrent: bool,
    /// With `concurrent`: run each operation on the first 1, 2, …, N targets.
    pub sweep: bool,
    /// With `concurrent`: run each size this many times (the report gives medians).
    pub repeat: u32,
    /// A line on standard error after each operation.
    pub progress: bool,
}

/// One operation on one target, as measured.
pub struct OpResult {
    pub op: Op,
    pub target: usize,
    pub samples: Samples,
    pub wall: Duration,
}

/// Concurrent throughput of one operation on `targets` keys.
pub struct Throughput {
    pub op: Op,
    pub targets: usize,
    pub ok: u64,
    pub wall: Duration,
    /// CPU time of the servers (those with a known process) and of this process.
    pub server_cpu_ns: Option<u64>,
    pub client_cpu_ns: Option<u64>,
}

/// Runs the plan against connected targets.
pub fn run(targets: &mut [Target], plan: &Plan, s: &Settings) -> Report {
    let mut results = Vec::new();
    let mut throughput = Vec::new();
    for p in &plan.ops {
        let started = Instant::now();
        for t in targets.iter_mut() {
            if let Err(f) = t.prepare(p.op, s) {
                let mut samples = Samples::default();
                samples.errors.insert(f.key, 1);
                samples.error_examples.push(f.message);
                results.push(OpResult {
                    op: p.op,
                    target: t.index,
                    samples,
                    wall: Duration::ZERO,
                });
            }
        }
        let ready = |t: &Target, results: &[OpResult]| {
            !results.iter().any(|r| r.op == p.op && r.target == t.index)
        };
        let ready_idx: Vec<usize> = targets
            .iter()
            .filter(|t| ready(t, &results))
            .map(|t| t.index)
            .collect();
        if plan.concurrent {
            let sizes: Vec<usize> = if plan.sweep {
                (1..=ready_idx.len()).collect()
            } else {
                vec![ready_idx.len()]
            };
            // Repeats cycle through the sizes, so a burst of outside load hits one
            // repeat of each size rather than all repeats of one size.
            let rounds = plan.repeat.max(1);
            for (round, k) in (0..rounds).flat_map(|r| sizes.iter().map(move |&k| (r, k))) {
                let chosen: Vec<&mut Target> = targets
                    .iter_mut()
                    .filter(|t| ready_idx.iter().take(k).any(|&i| i == t.index))
                    .collect();
                let (rs, wall, client_cpu_ns) = run_concurrent(chosen, *p, plan, s);
                let server_cpu_ns = rs
                    .iter()
                    .map(|r| {
                        r.samples
                            .cpu_known
                            .then_some(r.samples.cpu_op_ns + r.samples.cpu_token_ns)
                    })
                    .sum::<Option<u64>>();
                throughput.push(Throughput {
                    op: p.op,
                    targets: k,
                    ok: rs.iter().map(|r| r.samples.latencies_ns.len() as u64).sum(),
                    wall,
                    server_cpu_ns,
                    client_cpu_ns,
                });
                // The per-target figures of the last widest run are the ones reported.
                if k == ready_idx.len() && round + 1 == rounds {
                    results.extend(rs);
                }
            }
        } else {
            let chosen: Vec<&mut Target> = targets
                .iter_mut()
                .filter(|t| ready_idx.contains(&t.index))
                .collect();
            results.extend(run_alternating(chosen, *p, plan, s));
        }
        if plan.progress {
            eprintln!("{}: {:.1} s", p.op, started.elapsed().as_secs_f64());
        }
    }
    Report::new(targets, plan, s, results, throughput)
}

fn should_verify(i: u64, plan: &Plan) -> bool {
    i.is_multiple_of(plan.verify_every.max(1))
}

/// Round robin: one operation on each target in turn, so every key sees the same
/// machine load over the run.
fn run_alternating(
    mut targets: Vec<&mut Target>,
    p: OpPlan,
    plan: &Plan,
    s: &Settings,
) -> Vec<OpResult> {
    let mut scratch = Samples::default();
    for _ in 0..plan.warmup {
        for t in targets.iter_mut() {
            t.run_one(p.op, s, true, &mut scratch);
        }
    }
    let mut recs: Vec<Samples> = vec![Samples::default(); targets.len()];
    // Start the CPU accounting afresh: set-up and warm-up are not measured.
    for t in targets.iter_mut() {
        t.checkpoint(target::Segment::Idle, None);
    }
    let start = Instant::now();
    for i in 0..p.count {
        if plan.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        // Each round starts at the next key: the key after a slow peer's long request
        // (an idle machine, cold caches) is a different one every round.
        let n = targets.len();
        for k in 0..n {
            let j = (k + i as usize) % n;
            targets[j].run_one(p.op, s, should_verify(i, plan), &mut recs[j]);
        }
    }
    for (t, rec) in targets.iter_mut().zip(recs.iter_mut()) {
        t.checkpoint(target::Segment::Idle, Some(rec));
    }
    let wall = start.elapsed();
    targets
        .iter()
        .zip(recs)
        .map(|(t, samples)| OpResult {
            op: p.op,
            target: t.index,
            samples,
            wall,
        })
        .collect()
}

/// Every target on its own thread, all at once; returns per-target results, the wall
/// time from the common start to the last finish and this process's CPU time in it.
fn run_concurrent(
    targets: Vec<&mut Target>,
    p: OpPlan,
    plan: &Plan,
    s: &Settings,
) -> (Vec<OpResult>, Duration, Option<u64>) {
    let barrier = Barrier::new(targets.len() + 1);
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .into_iter()
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut scratch = Samples::default();
                    for _ in 0..plan.warmup {
                        t.run_one(p.op, s, true, &mut scratch);
                    }
                    let mut rec = Samples::default();
                    t.checkpoint(target::Segment::Idle, None);
                    barrier.wait();
                    let start = Instant::now();
                    let cpu0 = procfs::thread_cpu_ns();
                    for i in 0..p.count {
                        if plan.duration.is_some_and(|d| start.elapsed() >= d) {
                            break;
                        }
                        t.run_one(p.op, s, should_verify(i, plan), &mut rec);
                    }
                    let wall = start.elapsed();
                    let cpu = cpu0
                        .zip(procfs::thread_cpu_ns())
                        .map(|(a, b)| b.saturating_sub(a));
                    t.checkpoint(target::Segment::Idle, Some(&mut rec));
                    (t.index, rec, wall, cpu)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let out: Vec<_> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
        (out, start.elapsed())
    });
    let (out, wall) = results;
    // The client's CPU: each driving thread measures its own (a thread's counters
    // vanish from /proc when it exits).
    let client_cpu_ns = out.iter().map(|o| o.3).sum::<Option<u64>>();
    (
        out.into_iter()
            .map(|(target, samples, wall, _)| OpResult {
                op: p.op,
                target,
                samples,
                wall,
            })
            .collect(),
        wall,
        client_cpu_ns,
    )
}
