//! The store at scale: open time, makeCredential and getAssertion through the CTAP core
//! (plain byte messages, every change fsynced) with 0, 1 000 and 100 000 stored
//! credentials, and the resident memory of `vkey serve` on each store.
//!
//!     cargo bench --bench store
//!
//! The stores are made once (the 100 000 one takes about a minute: one fsync per
//! credential) under target/bench-stores/ and reused. The RP asked for has one
//! credential among the n, as in issue 11 ("an RP with one credential among 100 000").
//! Criterion measures the means; this file also prints p50/p99 and RSS as a Markdown
//! table. Figures, not assertions.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ciborium::Value;
use criterion::{Criterion, criterion_group, criterion_main};

use vkey::ctap::{Authenticator, Config, RequestContext, cbor};
use vkey::store::{Credential, OpenOptions, Store};

const SIZES: [usize; 3] = [0, 1_000, 100_000];
const RP: &str = "bench.example";

fn store_dir(n: usize) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-stores")
        .join(format!("n{n}"))
}

/// A store with `n` discoverable credentials, each of its own RP (not `RP`).
fn prepare(n: usize) -> PathBuf {
    let dir = store_dir(n);
    let ready = dir.join("ready");
    if ready.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let t = Instant::now();
    let mut s = Store::open(&dir, &options()).unwrap();
    for i in 0..n {
        let mut id = vec![0u8; 64];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        s.put_credential(Credential {
            id,
            rp_id: format!("rp-{i}.example.com"),
            rp_name: Some(format!("Relying Party {i}")),
            user_id: format!("user-{i:032}").into_bytes(),
            user_name: Some(format!("user{i}@example.com")),
            user_display_name: Some(format!("User Number {i}")),
            cred_protect: 1,
            discoverable: true,
            private_key: None,
            backup_eligible: None,
            backup_state: None,
            hmac_secret: false,
            large_blob_key: false,
            cred_blob: Vec::new(),
        })
        .unwrap();
    }
    drop(s);
    std::fs::write(&ready, b"").unwrap();
    eprintln!("made {} in {:.1?}", dir.display(), t.elapsed());
    dir
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn make_credential_request(user: &[u8]) -> Vec<u8> {
    let req = Value::Map(vec![
        (Value::Integer(1.into()), Value::Bytes(vec![7; 32])),
        (
            Value::Integer(2.into()),
            Value::Map(vec![(text("id"), text(RP))]),
        ),
        (
            Value::Integer(3.into()),
            Value::Map(vec![
                (text("id"), Value::Bytes(user.to_vec())),
                (text("name"), text("bench user")),
            ]),
        ),
        (
            Value::Integer(4.into()),
            Value::Array(vec![Value::Map(vec![
                (text("alg"), Value::Integer((-7).into())),
                (text("type"), text("public-key")),
            ])]),
        ),
        (
            Value::Integer(7.into()),
            Value::Map(vec![(text("rk"), Value::Bool(true))]),
        ),
    ]);
    let mut v = vec![0x01];
    v.extend(cbor::encode(&req));
    v
}

fn get_assertion_request() -> Vec<u8> {
    let req = Value::Map(vec![
        (Value::Integer(1.into()), text(RP)),
        (Value::Integer(2.into()), Value::Bytes(vec![9; 32])),
    ]);
    let mut v = vec![0x02];
    v.extend(cbor::encode(&req));
    v
}

fn call(a: &mut Authenticator, req: &[u8]) {
    let (ctx, _h) = RequestContext::new();
    let resp = a.process(req, &ctx);
    assert_eq!(resp.first(), Some(&0), "CTAP status {:?}", resp.first());
}

/// Room for the filler credentials and the benchmark's own.
fn options() -> OpenOptions {
    OpenOptions {
        max_credentials: vkey::store::MAX_MAX_CREDENTIALS,
        ..OpenOptions::default()
    }
}

fn open(dir: &Path) -> Authenticator {
    let store = Store::open(dir, &options()).unwrap();
    let mut a = Authenticator::new(store, Config::default()).unwrap();
    // The RP's one credential (same user every time: it replaces itself).
    call(&mut a, &make_credential_request(b"bench-user"));
    a
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.99))
}

fn timed(n: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f();
        v.push(t.elapsed());
    }
    percentiles(v)
}

/// VmRSS of `vkey serve` on `dir` once it listens (KiB).
fn serve_rss_kib(dir: Option<&Path>) -> u64 {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vkey"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    match dir {
        Some(d) => cmd.arg("--store").arg(d),
        None => cmd.arg("--ephemeral"),
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 && !line.starts_with("listening") {
        line.clear();
    }
    std::thread::sleep(Duration::from_millis(300));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn bench(c: &mut Criterion) {
    let mut rows = Vec::new();
    for n in SIZES {
        let dir = prepare(n);
        let mut g = c.benchmark_group(format!("store n={n}"));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(if n >= 100_000 { 8 } else { 3 }));
        g.bench_function("open", |b| {
            b.iter(|| Store::open(&dir, &options()).unwrap())
        });
        let opens: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                drop(Store::open(&dir, &options()).unwrap());
                t.elapsed()
            })
            .collect();
        let (open50, _) = percentiles(opens);
        let mut a = open(&dir);
        let mc = make_credential_request(b"bench-user");
        let ga = get_assertion_request();
        g.bench_function("makeCredential (rk, fsync)", |b| {
            b.iter(|| call(&mut a, &mc))
        });
        g.bench_function("getAssertion (1 of n, fsync)", |b| {
            b.iter(|| call(&mut a, &ga))
        });
        g.finish();
        let (mc50, mc99) = timed(500, || call(&mut a, &mc));
        let (ga50, ga99) = timed(1000, || call(&mut a, &ga));
        drop(a);
        let rss = serve_rss_kib(Some(&dir));
        rows.push(format!(
            "| {n} | {} | {} | {} | {} | {} | {} MiB |",
            ms(open50),
            ms(mc50),
            ms(mc99),
            ms(ga50),
            ms(ga99),
            rss / 1024
        ));
    }
    let idle = serve_rss_kib(None);
    println!();
    println!(
        "| stored credentials | open (p50 of 5) | makeCredential p50 | p99 | getAssertion p50 | p99 | RSS of `vkey serve` |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!("`vkey serve --ephemeral` idle: {} MiB RSS", idle / 1024);
}

criterion_group!(benches, bench);
criterion_main!(benches);
