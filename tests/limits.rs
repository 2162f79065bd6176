//! Bounded resources: what a fast or hostile USB/IP peer can make the key hold.
//! Native clients (src/usbip/client.rs) so that the peer can outrun the key.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ciborium::Value;
use vkey::ctap::{Authenticator, Config};
use vkey::key::Key;
use vkey::store::Store;
use vkey::usbip::client::Client;
use vkey::usbip::protocol::DIR_OUT;
use vkey::usbip::{ExportedDevice, Server};

/// A server with one ephemeral key on a free port, in a background runtime; the key
/// is returned too, for its counters.
fn start() -> (SocketAddr, Arc<Key>) {
    let key = Arc::new(
        Key::new(Authenticator::new(Store::ephemeral(), Config::default()).unwrap()).unwrap(),
    );
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
    for r in message(cid, 0x10, req) {
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
            0x90
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
    const ROUNDS: usize = 3000;
    let (addr, key) = start();
    let mut c = import(addr);
    c.enumerate().unwrap();
    let cid = ctaphid_init(&mut c);
    let req = make_credential(false);
    let first = cbor(&mut c, cid, &req);
    assert_eq!(first[0], 0, "makeCredential works");
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
        batch.extend(message(cid, 0x10, &req));
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
        "{ROUNDS} x {{makeCredential; INIT}} sent in {sent:?}, all reports taken after \
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
