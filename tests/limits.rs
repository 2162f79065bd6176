//! Bounded resources: what a fast or hostile USB/IP peer can make the key hold.
//! Native clients (src/usbip/client.rs) so that the peer can outrun the key.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ciborium::Value;
use vkey::ctap::{Authenticator, Config};
use vkey::key::{Key, KeyShared};
use vkey::store::Store;
use vkey::usbip::client::Client;
use vkey::usbip::protocol::DIR_OUT;
use vkey::usbip::{ExportedDevice, Server};

/// A key on a fresh ephemeral store, exported under `bus`.
fn new_key(bus: &str) -> Key {
    let mut config = Config::default();
    let shared = KeyShared::for_config(bus, &mut config);
    Key::new(
        Authenticator::new(Store::ephemeral(), config).unwrap(),
        shared,
    )
    .unwrap()
}

/// A server with one ephemeral key on a free port, in a background runtime; the key
/// is returned too, for its counters.
fn start() -> (SocketAddr, Arc<Key>) {
    let key = Arc::new(new_key("1-1"));
    let exported: Arc<dyn ExportedDevice> = key.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = Server::bind(
                "127.0.0.1:0".parse().unwrap(),
                vec![("1-1".into(), exported)],
            )
            .await
            .unwrap();
            tx.send(server.local_addr().unwrap()).unwrap();
            server.run().await;
        });
    });
    (rx.recv().unwrap(), key)
}

fn init_report(cid: u32, cmd: u8, bcnt: usize, payload: &[u8]) -> Vec<u8> {
    let mut r = cid.to_be_bytes().to_vec();
    r.push(cmd | 0x80);
    r.extend_from_slice(&(bcnt as u16).to_be_bytes());
    r.extend_from_slice(&payload[..payload.len().min(57)]);
    r.resize(64, 0);
    r
}

/// A CTAPHID message as reports.
fn message(cid: u32, cmd: u8, payload: &[u8]) -> Vec<Vec<u8>> {
    let mut v = vec![init_report(cid, cmd, payload.len(), payload)];
    for (seq, chunk) in payload.get(57..).unwrap_or(&[]).chunks(59).enumerate() {
        let mut r = cid.to_be_bytes().to_vec();
        r.push(seq as u8);
        r.extend_from_slice(chunk);
        r.resize(64, 0);
        v.push(r);
    }
    v
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// makeCredential, ES256, packed attestation: a P-256 key generation and two signatures.
fn make_credential(rk: bool) -> Vec<u8> {
    let mut params = vec![
        (Value::Integer(1.into()), Value::Bytes(vec![7; 32])),
        (
            Value::Integer(2.into()),
            Value::Map(vec![(text("id"), text("example.com"))]),
        ),
        (
            Value::Integer(3.into()),
            Value::Map(vec![(text("id"), Value::Bytes(vec![1; 16]))]),
        ),
        (
            Value::Integer(4.into()),
            Value::Array(vec![Value::Map(vec![
                (text("alg"), Value::Integer((-7).into())),
                (text("type"), text("public-key")),
            ])]),
        ),
    ];
    if rk {
        params.push((
            Value::Integer(7.into()),
            Value::Map(vec![(text("rk"), Value::Bool(true))]),
        ));
    }
    let mut req = vec![0x01];
    ciborium::into_writer(&Value::Map(params), &mut req).unwrap();
    req
}

/// CTAPHID_INIT on the broadcast channel; returns the allocated channel.
fn ctaphid_init(c: &mut Client) -> u32 {
    c.write_report(&init_report(0xffff_ffff, 0x06, 8, b"nonce123"))
        .unwrap();
    let r = c.read_report().unwrap();
    assert_eq!(&r[7..15], b"nonce123");
    u32::from_be_bytes(r[15..19].try_into().unwrap())
}

/// Sends a CTAPHID_CBOR request and reads its response, skipping keepalives.
fn cbor(c: &mut Client, cid: u32, req: &[u8]) -> Vec<u8> {
    call(c, cid, 0x10, req)
}

/// Sends a CTAPHID request (CBOR 0x10, MSG 0x03) and reads its response, skipping
/// keepalives.
fn call(c: &mut Client, cid: u32, cmd: u8, req: &[u8]) -> Vec<u8> {
    for r in message(cid, cmd, req) {
        c.write_report(&r).unwrap();
    }
    let mut r = c.read_report().unwrap();
    while r[4] == 0xbb {
        r = c.read_report().unwrap();
    }
    assert_eq!(
        &r[..5],
        &[
            (cid >> 24) as u8,
            (cid >> 16) as u8,
            (cid >> 8) as u8,
            cid as u8,
            0x80 | cmd
        ],
        "{r:?}"
    );
    let len = u16::from_be_bytes([r[5], r[6]]) as usize;
    let mut msg = r[7..7 + len.min(57)].to_vec();
    while msg.len() < len {
        let r = c.read_report().unwrap();
        msg.extend_from_slice(&r[5..5 + (len - msg.len()).min(59)]);
    }
    msg
}

fn import(addr: SocketAddr) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::import(addr, "1-1") {
            Ok(c) => return c,
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("import: {e}"),
        }
    }
}

/// A loop of {request; INIT resync} as fast as a native host can send it: each INIT
/// ends the transaction on the wire, but the authenticator thread would go on with
/// every request. At most one request runs and one more waits; the ones abandoned
/// before their turn are dropped, and a later import is not stuck behind them.
#[test]
fn request_then_resync_loop_keeps_one_request_in_flight() {
    let req = make_credential(false);
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

const VKEY: &str = env!("CARGO_BIN_EXE_vkey");

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
    use std::io::BufRead;
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
    let mut addr = None;
    for _ in 0..3 {
        let mut l = String::new();
        if out.read_line(&mut l).unwrap() == 0 {
            break;
        }
        if let Some(rest) = l.strip_prefix("listening on ") {
            addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        }
    }
    // Keep draining stdout so that the child never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let addr = addr.unwrap_or_else(|| panic!("no address; log in {}", log.display()));
    Served { child, addr }
}

fn op_header(code: u16) -> Vec<u8> {
    let mut v = 0x0111u16.to_be_bytes().to_vec();
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(&[0; 4]);
    v
}

/// Reads until the server closes the connection, or `deadline`.
fn closed_by_server(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
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
    let dir = std::env::temp_dir().join(format!("vkey-limits-fd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
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
        let resp = cbor(&mut c, cid, &make_credential_for_user(i));
        assert_eq!(
            resp[0], 0,
            "discoverable makeCredential {i} with fds exhausted: status {:#04x}",
            resp[0]
        );
    }
    drop(peers);
    let _ = std::fs::remove_dir_all(&dir);
}

fn make_credential_for_user(user: u8) -> Vec<u8> {
    let params = Value::Map(vec![
        (Value::Integer(1.into()), Value::Bytes(vec![7; 32])),
        (
            Value::Integer(2.into()),
            Value::Map(vec![(text("id"), text("example.com"))]),
        ),
        (
            Value::Integer(3.into()),
            Value::Map(vec![(text("id"), Value::Bytes(vec![user; 16]))]),
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
    let mut req = vec![0x01];
    ciborium::into_writer(&params, &mut req).unwrap();
    req
}
