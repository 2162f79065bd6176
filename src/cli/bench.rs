//! `vkey bench`: measure USB/IP FIDO keys (vkey or any other) as Linux's usbhid drives
//! them. The engine is `crate::bench`; this file is the flags.

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use zeroize::Zeroizing;

use crate::bench::{self, Op, OpPlan, Plan, Settings, Target, TargetSpec};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A key to measure, as [LABEL=]HOST:PORT/BUSID (e.g. trussed=127.0.0.1:3250/1-1).
    /// Repeatable: requests alternate between the keys in one run, and each is compared
    /// with the first.
    #[arg(long, value_name = "[LABEL=]HOST:PORT/BUSID", value_parser = TargetSpec::parse)]
    target: Vec<TargetSpec>,

    /// Start N `vkey serve --ephemeral` processes on free loopback ports and measure
    /// them (they come before any --target, so the first is the reference).
    #[arg(long, value_name = "N", default_value_t = 0)]
    spawn: usize,

    /// An extra argument for the spawned `vkey serve` (repeatable), e.g.
    /// --spawn-arg=--attestation --spawn-arg=none.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    spawn_arg: Vec<String>,

    /// The server process of each key, in order (spawned ones first; 0 = look it up).
    /// For loopback targets the process listening on the port is found through /proc.
    #[arg(long, value_name = "PID")]
    server_pid: Vec<u32>,

    /// An operation to measure, optionally with its own count (repeatable): ping-64,
    /// ping-1k, ping-7609, getinfo, mc, mc-rk, ga, ga-rk, mixed, and mc/mc-rk/ga/ga-rk/
    /// mixed with -pin (a fresh pinUvAuthToken per request); `all` for every one.
    /// Default: all without -pin, plus the -pin ones when --pin is given.
    #[arg(long = "op", value_name = "NAME[=COUNT]")]
    ops: Vec<String>,

    /// Measured operations per op and key (after the warm-up).
    #[arg(long, value_name = "N", default_value_t = 100)]
    count: u64,

    /// Unmeasured operations per op and key first.
    #[arg(long, value_name = "N", default_value_t = 5)]
    warmup: u64,

    /// Stop each op after this many seconds even if --count is not reached.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,

    /// The PIN: set on a key that has none, used on one that has one. Tokens come from
    /// getPinUvAuthTokenUsingPinWithPermissions, PIN/UV protocol 2 (or what the key has).
    /// A wrong PIN stops PIN operations at the first PIN_INVALID. (A test key's PIN:
    /// `ps` shows it; VKEY_BENCH_PIN works too.)
    #[arg(
        long,
        value_name = "PIN",
        env = "VKEY_BENCH_PIN",
        hide_env_values = true
    )]
    pin: Option<String>,

    /// Relying party ID of the credentials made.
    #[arg(long, value_name = "ID", default_value = "bench.vkey.example")]
    rp_id: String,

    /// Credential algorithm: es256 or eddsa.
    #[arg(long, value_name = "ALG", default_value = "es256", value_parser = ["es256", "eddsa"])]
    alg: String,

    /// How long to wait for a reply (ms); keepalives extend it.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    timeout_ms: u64,

    /// How many times a key whose connection broke is re-imported before it is left out.
    #[arg(long, value_name = "N", default_value_t = 1)]
    reconnects: u32,

    /// Verify attestation and assertion signatures on every Nth operation (1 = all);
    /// status and structure are checked on all of them.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    verify_every: u64,

    /// Drive all keys at the same time (one thread each) instead of alternating, and
    /// report the aggregate throughput.
    #[arg(long)]
    concurrent: bool,

    /// With --concurrent: run each op on the first 1, 2, …, N keys (throughput vs N).
    #[arg(long, requires = "concurrent")]
    sweep: bool,

    /// With --concurrent: run each size N times, cycling through the sizes, and report
    /// the median aggregate throughput (and the range).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "concurrent",
          value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,

    /// Print the results as JSON (for scripts) instead of a Markdown table.
    #[arg(long)]
    json: bool,

    /// Also write the JSON results to FILE (the table still goes to standard output).
    #[arg(long, value_name = "FILE")]
    json_file: Option<std::path::PathBuf>,
}

fn parse_ops(args: &BenchArgs) -> anyhow::Result<Vec<OpPlan>> {
    let mut plans = Vec::new();
    let specs: Vec<String> = if args.ops.is_empty() {
        Op::all()
            .into_iter()
            .filter(|o| !o.pin || args.pin.is_some())
            .map(|o| o.name())
            .collect()
    } else {
        args.ops.clone()
    };
    for s in specs {
        let (name, count) = match s.split_once('=') {
            Some((n, c)) => match c.parse::<u64>() {
                Ok(c) if c > 0 => (n.to_string(), c),
                _ => bail!("--op {s}: the count must be a positive integer"),
            },
            None => (s.clone(), args.count),
        };
        let ops = if name == "all" {
            Op::all()
        } else {
            match Op::parse(&name) {
                Some(op) => vec![op],
                None => bail!(
                    "--op {name}: unknown operation (one of: all, {})",
                    Op::names().join(", ")
                ),
            }
        };
        for op in ops {
            if op.pin && args.pin.is_none() {
                bail!("--op {}: a PIN operation needs --pin", op.name());
            }
            plans.push(OpPlan { op, count });
        }
    }
    Ok(plans)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let ops = parse_ops(&args)?;
    if args.spawn == 0 && args.target.is_empty() {
        bail!("nothing to measure: give --target HOST:PORT/BUSID or --spawn N");
    }
    let (_spawned, mut specs) = bench::spawn::spawn_vkeys(args.spawn, &args.spawn_arg)?;
    specs.extend(args.target.iter().cloned());
    if args.server_pid.len() > specs.len() {
        bail!("more --server-pid than keys");
    }
    for (spec, &pid) in specs.iter_mut().zip(&args.server_pid) {
        if pid != 0 {
            spec.pid = Some(pid);
        }
    }
    let settings = Settings {
        rp_id: args.rp_id.clone(),
        alg: if args.alg == "eddsa" { -8 } else { -7 },
        pin: args.pin.clone().map(Zeroizing::new),
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        reconnects: args.reconnects,
    };
    let mut targets: Vec<Target> = specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| Target::connect(spec, i + 1, &settings))
        .collect();
    for t in &targets {
        eprintln!("[{}] {}", t.index, t.describe());
    }
    if targets.iter().all(|t| t.dead.is_some()) {
        bail!("no key could be reached");
    }
    let plan = Plan {
        ops,
        warmup: args.warmup,
        duration: args.duration.map(Duration::from_secs_f64),
        verify_every: args.verify_every,
        concurrent: args.concurrent,
        sweep: args.sweep,
        repeat: args.repeat,
        progress: true,
    };
    let report = bench::run(&mut targets, &plan, &settings);
    if let Some(path) = &args.json_file {
        std::fs::write(path, report.json() + "\n")
            .map_err(|e| anyhow::anyhow!("--json-file {}: {e}", path.display()))?;
    }
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
