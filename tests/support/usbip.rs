//! A USB/IP server with ephemeral keys in this process, and the peer's side of it.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vkey::ctap::{Authenticator, Config};
use vkey::key::{Key, KeyShared};
use vkey::store::Store;
use vkey::usbip::client::Client;
use vkey::usbip::{ExportedDevice, Server};

/// A key on a fresh ephemeral store, exported under `bus`.
pub fn new_key(bus: &str) -> Key {
    new_key_with(bus, Config::default())
}

/// [`new_key`] with `config`.
pub fn new_key_with(bus: &str, mut config: Config) -> Key {
    let shared = KeyShared::for_config(bus, &mut config);
    Key::new(
        Authenticator::new(Store::ephemeral(), config).unwrap(),
        shared,
    )
    .unwrap()
}

/// A server with one ephemeral key exported as 1-1 on a free port, in a background
/// runtime; the key is returned too, for its counters.
pub fn start() -> (SocketAddr, Arc<Key>) {
    start_with(Config::default())
}

/// [`start`] with `config`.
pub fn start_with(config: Config) -> (SocketAddr, Arc<Key>) {
    let key = Arc::new(new_key_with("1-1", config));
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

/// Imports 1-1, again while the server refuses it (a previous session may still be
/// closing), for 30 s at most.
pub fn import(addr: SocketAddr) -> Client {
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

/// A USB/IP OP header (version 1.1.1, `code`, status 0).
pub fn op_header(code: u16) -> Vec<u8> {
    let mut v = 0x0111u16.to_be_bytes().to_vec();
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(&[0; 4]);
    v
}

/// Reads until the server closes the connection (true), or `deadline` (false).
pub fn closed_by_server(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a reply that was already due, then the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}
