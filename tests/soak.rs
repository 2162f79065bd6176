//! Soak: many concurrent hostile USB/IP peers (random bytes, torn headers, slow writers,
//! importers that never read their replies, garbage after import, device lists nobody
//! reads) for a bounded time, while a well-behaved host keeps registering and signing
//! over its own import. The good host never sees an error or a stall past its timeout,
//! the server never panics, and its memory (VmRSS) and file descriptors stay flat:
//! measured from /proc and printed, asserted with generous bounds (no timing checks).
//!
//!   cargo test --release --test soak -- --ignored --nocapture     (tests/run-all does this)
//!   VKEY_SOAK_SECS=600 cargo test --release --test soak -- --ignored --nocapture
//!
//! The server is this test binary re-run as a child process (`soak_server_process`)
//! exporting two keys: 1-1 for the good host, 1-2 for hostile importers, so that
//! hostile peers can reach the URB phase while the good host keeps its own import.

mod support;

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ciborium::Value;
use rand::{Rng, RngExt, SeedableRng};
use support::cbor::{int, make_credential, member, request, text};
use support::ctaphid::{init_with, message, try_call};
use support::process::drain;
use support::usbip::{new_key, op_header};
use vkey::usbip::client::{Client, setup_bytes};
use vkey::usbip::protocol::{DIR_IN, DIR_OUT};
use vkey::usbip::{ExportedDevice, Server};

/// How long the good host must not wait for one reply.
const GOOD_TIMEOUT: Duration = Duration::from_secs(20);
const HOSTILE_THREADS: usize = 24;
/// Hostile peers that got the 1-2 import (and so reached the URB phase).
static HOSTILE_IMPORTS: AtomicU64 = AtomicU64::new(0);

/// The child: a USB/IP server with two ephemeral keys, until its stdin closes.
#[test]
#[ignore = "run by `soak` as its server process"]
fn soak_server_process() {
    if std::env::var_os("VKEY_SOAK_CHILD").is_none() {
        return;
    }
    vkey::usbip::server::raise_nofile_limit();
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let key = |bus: &str| -> Arc<dyn ExportedDevice> { Arc::new(new_key(bus)) };
        let server = Server::bind(
            "127.0.0.1:0".parse().unwrap(),
            vec![("1-1".into(), key("1-1")), ("1-2".into(), key("1-2"))],
        )
        .await
        .unwrap();
        println!("SOAK_ADDR {}", server.local_addr().unwrap());
        server.run().await;
    });
}

struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl ServerProcess {
    fn start() -> ServerProcess {
        let log = std::env::temp_dir().join(format!("vkey-soak-{}.log", std::process::id()));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "soak_server_process", "--ignored", "--nocapture"])
            .env("VKEY_SOAK_CHILD", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let addr = loop {
            let mut l = String::new();
            assert!(
                out.read_line(&mut l).unwrap() > 0,
                "server exited; log {}",
                log.display()
            );
            if let Some(a) = l.trim().strip_prefix("SOAK_ADDR ") {
                break a.parse().unwrap();
            }
        };
        drain(out);
        ServerProcess { child, addr, log }
    }

    fn status(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn rss_kib(&self) -> u64 {
        self.status("VmRSS:")
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the good host -------------------------------------------------------------

/// One CTAP request, its response (keepalives skipped). Any failure is an error string.
fn ctap(c: &mut Client, cid: u32, req: &[u8]) -> Result<Vec<u8>, String> {
    try_call(c, cid, 0x10, req)
}

/// Registers a credential and signs with it once; returns the number of CTAP ops.
fn register_and_sign(c: &mut Client, cid: u32, n: u64) -> Result<(), String> {
    let mc = make_credential("soak.example", &n.to_be_bytes(), false);
    let resp = ctap(c, cid, &mc)?;
    if resp.first() != Some(&0) {
        return Err(format!("makeCredential status {:?}", resp.first()));
    }
    let v: Value = ciborium::from_reader(&resp[1..]).map_err(|e| e.to_string())?;
    let auth_data = member(&v, &int(2))
        .and_then(Value::as_bytes)
        .ok_or("no authData")?;
    // rpIdHash 32, flags 1, counter 4, AAGUID 16, credential ID length 2, ID.
    let id_len = u16::from_be_bytes([auth_data[53], auth_data[54]]) as usize;
    let cred_id = auth_data[55..55 + id_len].to_vec();
    let ga = request(
        0x02,
        vec![
            (int(1), text("soak.example")),
            (int(2), Value::Bytes(vec![2; 32])),
            (
                int(3),
                Value::Array(vec![Value::Map(vec![
                    (text("id"), Value::Bytes(cred_id)),
                    (text("type"), text("public-key")),
                ])]),
            ),
        ],
    );
    let resp = ctap(c, cid, &ga)?;
    if resp.first() != Some(&0) {
        return Err(format!("getAssertion status {:?}", resp.first()));
    }
    Ok(())
}

struct GoodReport {
    rounds: u64,
    errors: Vec<String>,
    slowest: Duration,
}

fn good_host(addr: SocketAddr, stop: Arc<AtomicBool>) -> GoodReport {
    let mut errors = Vec::new();
    let mut c = Client::import(addr, "1-1").expect("the good host imports 1-1");
    c.stream().set_read_timeout(Some(GOOD_TIMEOUT)).unwrap();
    c.stream().set_write_timeout(Some(GOOD_TIMEOUT)).unwrap();
    c.enumerate().expect("enumeration");
    let cid = init_with(&mut c, b"goodhost");
    let (mut rounds, mut slowest) = (0u64, Duration::ZERO);
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        if let Err(e) = register_and_sign(&mut c, cid, rounds) {
            errors.push(format!("round {rounds}: {e}"));
            break; // the connection state is unknown after an error
        }
        slowest = slowest.max(t.elapsed());
        rounds += 1;
    }
    GoodReport {
        rounds,
        errors,
        slowest,
    }
}

// ---- hostile peers ---------------------------------------------------------------

fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(15))).ok()?;
    Some(s)
}

/// Imports 1-2 over a socket with a tiny receive buffer (so that not reading fills
/// it soon); `None` if refused (another hostile importer has it).
fn hostile_import(addr: SocketAddr) -> Option<Client> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    sock.set_recv_buffer_size(4096).ok()?;
    sock.connect_timeout(&addr.into(), Duration::from_secs(2))
        .ok()?;
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(15))).ok()?;
    let c = Client::import_over(s, "1-2").ok()?;
    HOSTILE_IMPORTS.fetch_add(1, Ordering::Relaxed);
    Some(c)
}

/// One hostile connection of the given kind; returns once it is over.
fn hostile(addr: SocketAddr, kind: usize, rng: &mut rand::rngs::StdRng, stop: &AtomicBool) {
    match kind {
        // Random bytes, then wait for the server to close.
        0 => {
            let Some(mut s) = connect(addr) else { return };
            let mut junk = vec![0u8; rng.random_range(1..4000)];
            rng.fill_bytes(&mut junk);
            let _ = s.write_all(&junk);
            let _ = s.read(&mut [0u8; 512]);
        }
        // A torn OP header, then silence until the handshake timeout.
        1 => {
            let Some(mut s) = connect(addr) else { return };
            let _ = s.write_all(&op_header(0x8003)[..rng.random_range(1..8)]);
            let _ = s.read(&mut [0u8; 64]);
        }
        // A slow writer: the import request one byte at a time.
        2 => {
            let Some(mut s) = connect(addr) else { return };
            let mut req = op_header(0x8003);
            req.extend_from_slice(b"1-2");
            req.resize(40, 0);
            for b in req {
                if stop.load(Ordering::Relaxed) || s.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            let _ = s.read(&mut [0u8; 64]);
        }
        // An importer that submits IN URBs, PINGs and descriptor requests and never
        // reads a reply: the server's writes stall until it ends the session.
        3 => {
            let Some(mut c) = hostile_import(addr) else {
                return;
            };
            let ping = message(0xffff_ffff, 0x06, b"nonce123");
            let setup = setup_bytes(0x80, 6, 0x0200, 0, 255);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                let ok = c.submit(1, DIR_IN, [0; 8], 64, &[]).is_ok()
                    && c.submit(1, DIR_OUT, [0; 8], 64, &ping[0]).is_ok()
                    && c.submit(0, DIR_IN, setup, 255, &[]).is_ok();
                if !ok {
                    return; // the server closed it (or our write timed out)
                }
            }
        }
        // Garbage after a successful import.
        4 => {
            let Some(mut c) = hostile_import(addr) else {
                return;
            };
            let mut junk = vec![0u8; rng.random_range(1..2000)];
            rng.fill_bytes(&mut junk);
            let _ = c.stream().write_all(&junk);
            let _ = c.stream().read(&mut [0u8; 512]);
        }
        // A device list nobody reads, and an import of a bus id that does not exist.
        _ => {
            let Some(mut s) = connect(addr) else { return };
            let _ = s.write_all(&op_header(0x8005));
            if let Some(mut s) = connect(addr) {
                let mut req = op_header(0x8003);
                req.resize(40, 0x41);
                let _ = s.write_all(&req);
                let _ = s.read(&mut [0u8; 64]);
            }
            drop(s);
        }
    }
}

#[test]
#[ignore = "a soak of ~40 s: tests/run-all runs it with --ignored"]
fn soak_hostile_peers_and_a_good_host() {
    let secs: u64 = std::env::var("VKEY_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let server = ServerProcess::start();
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let hostile_done = Arc::new(AtomicU64::new(0));

    let good = {
        let stop = stop.clone();
        std::thread::spawn(move || good_host(addr, stop))
    };
    let attackers: Vec<_> = (0..HOSTILE_THREADS)
        .map(|i| {
            let (stop, done) = (stop.clone(), hostile_done.clone());
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    hostile(addr, (i + n) % 6, &mut rng, &stop);
                    done.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();

    // Samples of (seconds, VmRSS KiB, fds), one a second.
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        samples.push((start.elapsed().as_secs(), server.rss_kib(), server.fds()));
    }
    stop.store(true, Ordering::Relaxed);
    let good = good.join().expect("good host thread");
    for a in attackers {
        a.join().unwrap();
    }
    let alive = server.rss_kib() > 0;
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();

    // Warm-up: the first 5 s (allocator arenas, the first sessions) set the baseline.
    let warm = samples
        .iter()
        .filter(|s| s.0 >= 5)
        .cloned()
        .collect::<Vec<_>>();
    let (base_rss, base_fds) = warm.first().map(|s| (s.1, s.2)).unwrap_or((0, 0));
    let max_rss = warm.iter().map(|s| s.1).max().unwrap_or(0);
    let max_fds = warm.iter().map(|s| s.2).max().unwrap_or(0);
    let (last_rss, last_fds) = warm.last().map(|s| (s.1, s.2)).unwrap_or((0, 0));
    println!(
        "soak: {secs} s, {HOSTILE_THREADS} hostile threads, {} hostile connections ({} of them imported 1-2)",
        hostile_done.load(Ordering::Relaxed),
        HOSTILE_IMPORTS.load(Ordering::Relaxed)
    );
    println!(
        "good host: {} register+sign rounds, slowest {:?}, errors {:?}",
        good.rounds, good.slowest, good.errors
    );
    println!("server VmRSS KiB at 5 s / max / last: {base_rss} / {max_rss} / {last_rss}");
    println!("server fds at 5 s / max / last: {base_fds} / {max_fds} / {last_fds}");
    println!(
        "server log: {} lines, {} warnings, {} panics",
        log.lines().count(),
        log.matches(" WARN ").count(),
        log.matches("panicked").count()
    );
    let series: Vec<String> = samples
        .iter()
        .step_by(5)
        .map(|s| format!("{}s:{}K/{}fd", s.0, s.1, s.2))
        .collect();
    println!("samples: {}", series.join(" "));

    assert!(
        alive,
        "the server process died; log {}",
        server.log.display()
    );
    assert!(
        !log.contains("panicked"),
        "the server panicked; log {}",
        server.log.display()
    );
    assert!(
        good.errors.is_empty(),
        "the good host saw errors: {:?}",
        good.errors
    );
    assert!(good.rounds > 0, "the good host made no progress");
    assert!(
        HOSTILE_IMPORTS.load(Ordering::Relaxed) > 1,
        "hostile importers never reached the URB phase"
    );
    // Generous bounds: flat means no growth with the number of connections served.
    assert!(
        max_rss <= base_rss * 2 + 64 * 1024,
        "VmRSS grew from {base_rss} to {max_rss} KiB"
    );
    assert!(
        max_fds <= base_fds.max(8) + vkey::usbip::server::MAX_PENDING_CONNECTIONS + 8,
        "fds grew from {base_fds} to {max_fds}"
    );
}
