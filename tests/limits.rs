//! Bounded resources: what a fast or hostile USB/IP peer can make the key hold.
//! Native clients (src/usbip/client.rs) so that the peer can outrun the key.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::cbor::make_credential;
use support::ctaphid::{call, cbor, ctaphid_init, init_report, message};
use support::process::{VKEY, drain, read_lines, temp_path};
use support::usbip::{closed_by_server, import, op_header, start};
use vkey::usbip::client::Client;
use vkey::usbip::protocol::DIR_OUT;

/// A loop of {request; INIT resync} as fast as a native host can send it: each INIT
/// ends the transaction on the wire, but the authenticator thread would go on with
/// every request. At most one request runs and one more waits; the ones abandoned
/// before their turn are dropped, and a later import is not stuck behind them.
#[test]
fn request_then_resync_loop_keeps_one_request_in_flight() {
    // ES256, packed attestation: a P-256 key generation and two signatures.
    let req = make_credential("example.com", &[1; 16], false);
    request_then_resync_loop(0x10, &req, |r| r[0] == 0, "makeCredential");
}

/// The same with CTAP1/U2F's U2F_REGISTER (CTAPHID_MSG): a key generation and two
/// signatures, on the same authenticator thread and through the same slot.
#[test]
fn u2f_request_then_resync_loop_keeps_one_request_in_flight() {
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 64];
    req.extend_from_slice(&[0x11; 64]);
    request_then_resync_loop(0x03, &req, |r| r.ends_with(&[0x90, 0x00]), "U2F_REGISTER");
}

fn request_then_resync_loop(cmd: u8, req: &[u8], ok: fn(&[u8]) -> bool, name: &str) {
    const ROUNDS: usize = 3000;
    let (addr, key) = start();
    let mut c = import(addr);
    c.enumerate().unwrap();
    let cid = ctaphid_init(&mut c);
    let first = call(&mut c, cid, cmd, req);
    assert!(ok(&first), "{name} works: {first:02x?}");
    // Replies (RET_SUBMIT of every OUT report, 48 bytes each) are counted by a thread,
    // so the burst is limited by the server alone.
    let mut replies = c.stream().try_clone().unwrap();
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = received.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = replies.read(&mut buf) {
            if n == 0 {
                break;
            }
            counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let mut batch = Vec::new();
    let mut submitted = 0usize;
    let started = Instant::now();
    for round in 0..ROUNDS {
        batch.extend(message(cid, cmd, req));
        batch.push(init_report(cid, 0x06, 8, b"resync!!"));
        if round % 50 == 49 || round == ROUNDS - 1 {
            for r in batch.drain(..) {
                c.submit(1, DIR_OUT, [0; 8], 64, &r).unwrap();
                submitted += 1;
            }
        }
    }
    let sent = started.elapsed();
    // Every report has been taken by the session once its RET_SUBMIT came back.
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.load(std::sync::atomic::Ordering::Relaxed) < submitted * 48 {
        assert!(Instant::now() < deadline, "the server stopped answering");
        std::thread::sleep(Duration::from_millis(5));
    }
    let taken = started.elapsed();
    let during = key.stats();
    // The host goes away; the next import (a power-up) must be served at once, not
    // after whatever the old session left queued.
    c.stream().shutdown(std::net::Shutdown::Both).unwrap();
    drop(c);
    let t = Instant::now();
    let mut c = import(addr);
    c.enumerate().unwrap();
    let cid = ctaphid_init(&mut c);
    let info = cbor(&mut c, cid, &[0x04]);
    let next_import = t.elapsed();
    assert_eq!(info[0], 0, "getInfo after the burst");
    let after = key.stats();
    println!(
        "{ROUNDS} x {{{name}; INIT}} sent in {sent:?}, all reports taken after \
         {taken:?}; key stats then: {during:?}; the next import answered getInfo after \
         {next_import:?}; stats now: {after:?}"
    );
    // One request runs, one waits its turn: never more.
    assert!(after.max_queued <= 2, "{after:?}");
    assert_eq!(
        after.run + after.dropped,
        ROUNDS as u64 + 2,
        "every request accounted for: {after:?}"
    );
}

/// `vkey serve` in a child process, killed on drop. Its log goes to a file (a pipe
/// nobody reads would block it).
struct Served {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// The highest fd count seen while it settles (accepting what it will): no new
    /// high for half a second, or 10 s at most.
    fn settled_fds(&self) -> usize {
        let mut max = self.fds();
        let (mut same, end) = (0, Instant::now() + Duration::from_secs(10));
        while same < 10 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
            let n = self.fds();
            if n > max {
                (max, same) = (n, 0);
            } else {
                same += 1;
            }
        }
        max
    }
}

/// Starts `vkey serve ARGS --listen 127.0.0.1:0`, optionally with RLIMIT_NOFILE set
/// (soft and hard) to `nofile` before it starts.
fn serve(tag: &str, args: &[&str], nofile: Option<u64>) -> Served {
    use std::os::unix::process::CommandExt;
    let log = std::env::temp_dir().join(format!("vkey-limits-{tag}-{}.log", std::process::id()));
    let mut cmd = std::process::Command::new(VKEY);
    cmd.arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(n) = nofile {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, n, n));
        }
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let lines = read_lines(&mut out, 3, |l| l.starts_with("listening on "));
    drain(out);
    let addr = lines
        .last()
        .and_then(|l| l.strip_prefix("listening on "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no address in {lines:?}; log in {}", log.display()));
    Served { child, addr }
}

/// Connections that never import (silent, a torn OP header, an OP_REQ_IMPORT without
/// its bus id) are capped, and each is closed after the handshake timeout; the key
/// then imports as usual.
#[test]
fn connections_before_import_are_capped_and_timed_out() {
    let server = serve("pending", &["--ephemeral"], None);
    let base = server.fds();
    let mut peers = Vec::new();
    for i in 0..300 {
        let Ok(mut s) = TcpStream::connect(server.addr) else {
            continue;
        };
        match i % 3 {
            0 => {}
            1 => s.write_all(&op_header(0x8003)[..3]).unwrap(),
            _ => s.write_all(&op_header(0x8003)).unwrap(),
        }
        peers.push(s);
    }
    let during = server.settled_fds();
    println!(
        "fds: {base} at rest, {during} with {} idle peers",
        peers.len()
    );
    assert!(during <= base + 64 + 4, "{during} fds for 300 idle peers");
    let deadline = Instant::now() + Duration::from_secs(60);
    let open = peers
        .iter_mut()
        .map(|s| closed_by_server(s, deadline))
        .filter(|closed| !closed)
        .count();
    assert_eq!(open, 0, "idle peers the server never closed");
    drop(peers);
    let mut c = import(server.addr);
    c.enumerate().unwrap();
    let cid = ctaphid_init(&mut c);
    assert_eq!(cbor(&mut c, cid, &[0x04])[0], 0);
}

/// A host that submits requests but stops reading the replies: the server's write
/// cannot progress, and the session ends (freeing the import) instead of hanging.
#[test]
fn a_host_that_stops_reading_loses_its_import() {
    let server = serve("stall", &["--ephemeral"], None);
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.addr.into()).unwrap();
    let mut c = Client::import_over(sock.into(), "1-1").unwrap();
    c.enumerate().unwrap();
    // GET_DESCRIPTOR(configuration) over and over; the replies are never read.
    let setup = vkey::usbip::client::setup_bytes(0x80, 6, 0x0200, 0, 255);
    let stalled = Instant::now();
    let writer = std::thread::spawn(move || {
        let mut sent = 0u64;
        while c.submit(0, 1, setup, 255, &[]).is_ok() {
            sent += 1;
        }
        sent
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut good = loop {
        match Client::import(server.addr, "1-1") {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                assert!(
                    Instant::now() < deadline,
                    "the stalled session kept the import"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let freed = stalled.elapsed();
    let sent = writer.join().unwrap();
    println!("the stalled host sent {sent} requests; its import was freed after {freed:?}");
    good.enumerate().unwrap();
    let cid = ctaphid_init(&mut good);
    assert_eq!(cbor(&mut good, cid, &[0x04])[0], 0);
}

/// Running out of file descriptors must not break the store's writes: with
/// RLIMIT_NOFILE at 64 and far more peers than that, a discoverable makeCredential
/// (which rewrites the store file) still succeeds.
#[test]
fn store_writes_succeed_while_peers_exhaust_connections() {
    let dir = temp_path("limits", "fd");
    let server = serve("fd", &["--store", dir.to_str().unwrap()], Some(64));
    let mut c = import(server.addr);
    c.enumerate().unwrap();
    let cid = ctaphid_init(&mut c);
    let mut peers = Vec::new();
    for _ in 0..200 {
        match TcpStream::connect_timeout(&server.addr, Duration::from_secs(1)) {
            Ok(s) => peers.push(s),
            Err(_) => break, // not accepting any more: the backlog is full
        }
    }
    let fds = server.settled_fds();
    println!(
        "with RLIMIT_NOFILE 64 and {} peers connected: {fds} fds open",
        peers.len()
    );
    for i in 0..3u8 {
        // A different user each time: three credentials, three store writes.
        let resp = cbor(&mut c, cid, &make_credential("example.com", &[i; 16], true));
        assert_eq!(
            resp[0], 0,
            "discoverable makeCredential {i} with fds exhausted: status {:#04x}",
            resp[0]
        );
    }
    drop(peers);
    let _ = std::fs::remove_dir_all(&dir);
}
