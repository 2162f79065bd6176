//! A vkey: the layers wired together. The USB/IP server drives a [`KeySession`] (one
//! per import = one power-up), which runs CTAPHID and hands CBOR requests to the
//! authenticator core on its own thread, so that a request waiting for the user never
//! stalls the USB/IP connection (keepalives, CANCEL and unlinks go on).
//!
//! This module and `cli` are the edge: they may import every layer.

use std::sync::{Arc, mpsc};
use std::time::Instant;

use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::ctap::{Authenticator, RequestContext, RequestHandle};
use crate::ctaphid::{self, CtapHid, Event, KeepaliveStatus, RequestKind, TxnId};
use crate::usbip::{DeviceIdentity, ExportedDevice, HidFunction, HidReport};

/// The pid.codes vendor ID for open-source hardware, with its test product ID: a real,
/// registered VID:PID pair that belongs to no commercial key.
pub const VENDOR_ID: u16 = 0x1209;
pub const PRODUCT_ID: u16 = 0x0001;

/// A request for the authenticator thread.
enum Job {
    /// A new USB session: volatile state (tokens, reset window) starts over.
    PowerUp,
    Cbor {
        data: Vec<u8>,
        ctx: RequestContext,
        reply: Reply,
    },
}

struct Reply {
    txn: TxnId,
    tx: mpsc::Sender<(TxnId, Vec<u8>)>,
    notify: Arc<Notify>,
}

/// A virtual security key: identity plus the thread that owns its authenticator.
pub struct Key {
    identity: DeviceIdentity,
    jobs: mpsc::Sender<Job>,
}

impl Key {
    /// Starts the authenticator thread. It blocks on its queue when idle (no polling).
    pub fn new(mut auth: Authenticator) -> std::io::Result<Key> {
        let identity = DeviceIdentity {
            vendor_id: VENDOR_ID,
            product_id: PRODUCT_ID,
            device_release: device_release(),
            manufacturer: "vkey".into(),
            product: "vkey virtual FIDO2 security key".into(),
            serial: auth.store().serial().to_string(),
        };
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("vkey-ctap".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    match job {
                        Job::PowerUp => auth.power_up(),
                        Job::Cbor { data, ctx, reply } => {
                            let started = Instant::now();
                            let resp = auth.process(&data, &ctx);
                            debug!(
                                "ctap cmd {:#04x} -> status {:#04x} in {:?}",
                                data.first().copied().unwrap_or(0),
                                resp[0],
                                started.elapsed()
                            );
                            // The session may be gone (host disconnected); then nobody waits.
                            if reply.tx.send((reply.txn, resp)).is_ok() {
                                reply.notify.notify_one();
                            }
                        }
                    }
                }
            })?;
        Ok(Key { identity, jobs })
    }
}

/// bcdDevice from the crate version: 0xJJMN for J.M.N.
fn device_release() -> u16 {
    let (major, minor, patch) = crate::version();
    u16::from(major) << 8 | u16::from(minor & 0xf) << 4 | u16::from(patch & 0xf)
}

impl ExportedDevice for Key {
    fn identity(&self) -> DeviceIdentity {
        self.identity.clone()
    }

    fn attach(&self) -> (Box<dyn HidFunction>, Arc<Notify>) {
        let _ = self.jobs.send(Job::PowerUp);
        let notify = Arc::new(Notify::new());
        let (tx, rx) = mpsc::channel();
        let hid = CtapHid::new(ctaphid::Config {
            cbor: true,
            msg: false,
            wink: true,
            version: crate::version(),
        });
        let session = KeySession {
            hid,
            jobs: self.jobs.clone(),
            responses: rx,
            response_tx: tx,
            notify: notify.clone(),
            current: None,
        };
        (Box::new(session), notify)
    }
}

/// One USB session of a [`Key`].
pub struct KeySession {
    hid: CtapHid,
    jobs: mpsc::Sender<Job>,
    responses: mpsc::Receiver<(TxnId, Vec<u8>)>,
    response_tx: mpsc::Sender<(TxnId, Vec<u8>)>,
    notify: Arc<Notify>,
    /// The request in progress: CTAPHID_CANCEL, resync and disconnect cancel it, and
    /// its UPNEEDED state decides the KEEPALIVE status.
    current: Option<(TxnId, RequestHandle)>,
}

impl KeySession {
    fn drain_events(&mut self) {
        while let Some(ev) = self.hid.poll_event() {
            match ev {
                Event::Request {
                    txn,
                    kind: RequestKind::Cbor,
                    data,
                    ..
                } => {
                    let (ctx, handle) = RequestContext::new();
                    self.current = Some((txn, handle));
                    let reply = Reply {
                        txn,
                        tx: self.response_tx.clone(),
                        notify: self.notify.clone(),
                    };
                    if self.jobs.send(Job::Cbor { data, ctx, reply }).is_err() {
                        warn!("authenticator thread is gone");
                        self.hid
                            .respond(txn, &[crate::ctap::StatusCode::Other.byte()]);
                    }
                }
                Event::Request {
                    txn,
                    kind: RequestKind::Msg,
                    ..
                } => {
                    // CTAP1/U2F is not implemented yet (NMSG is advertised, so CTAPHID
                    // never dispatches MSG); answer SW_INS_NOT_SUPPORTED regardless.
                    self.hid.respond(txn, &[0x6d, 0x00]);
                }
                Event::Cancel { txn } | Event::Abort { txn } => {
                    if let Some((t, h)) = &self.current
                        && *t == txn
                    {
                        h.cancel();
                    }
                }
                Event::Wink => info!("wink"),
            }
        }
    }
}

impl HidFunction for KeySession {
    fn out_report(&mut self, report: &[u8], now: Instant) {
        self.hid.handle_report(report, now);
        self.drain_events();
    }

    fn poll_in_report(&mut self) -> Option<HidReport> {
        self.hid.poll_report()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.hid.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        let up_needed = self.current.as_ref().is_some_and(|(_, h)| h.up_needed());
        self.hid.set_keepalive_status(if up_needed {
            KeepaliveStatus::UpNeeded
        } else {
            KeepaliveStatus::Processing
        });
        self.hid.handle_timeout(now);
    }

    fn handle_wakeup(&mut self, _now: Instant) {
        while let Ok((txn, resp)) = self.responses.try_recv() {
            if self.current.as_ref().is_some_and(|(t, _)| *t == txn) {
                self.current = None;
            }
            self.hid.respond(txn, &resp);
        }
    }
}

impl Drop for KeySession {
    fn drop(&mut self) {
        // The host is gone: a request still waiting for the user must stop waiting.
        if let Some((_, h)) = &self.current {
            h.cancel();
        }
    }
}
