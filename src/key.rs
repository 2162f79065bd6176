//! A vkey: the layers wired together. The USB/IP server drives a [`KeySession`] (one
//! per import = one power-up), which runs CTAPHID and hands CBOR requests to the
//! authenticator core on its own thread, so that a request waiting for the user never
//! stalls the USB/IP connection (keepalives, CANCEL and unlinks go on).
//!
//! One request in flight per key: the authenticator thread works on one request and
//! holds at most one more (a single slot, not a queue). CTAPHID INIT resync and CANCEL
//! end a transaction on the wire at once, but the thread cannot be interrupted, so a
//! session hands it the next request only when the previous one has ended, and a
//! request abandoned before its turn never runs. A host looping {request; INIT} thus
//! makes the key hold two requests at most, and a later import waits for one at most.
//!
//! This module and `cli` are the edge: they may import every layer.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::Instant;

use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::ctap::{Authenticator, RequestContext, RequestHandle, StatusCode};
use crate::ctaphid::{self, CtapHid, Event, KeepaliveStatus, RequestKind, TxnId};
use crate::usbip::{DeviceIdentity, ExportedDevice, HidFunction, HidReport};

/// The pid.codes vendor ID for open-source hardware, with its test product ID: a real,
/// registered VID:PID pair that belongs to no commercial key.
pub const VENDOR_ID: u16 = 0x1209;
pub const PRODUCT_ID: u16 = 0x0001;

/// A CTAP request for the authenticator thread.
struct Job {
    data: Vec<u8>,
    ctx: RequestContext,
    /// Set by the session when the transaction ends on the wire (CANCEL, INIT resync,
    /// disconnect): a job not yet started is then dropped instead of run.
    cancelled: Arc<AtomicBool>,
    reply: Reply,
}

/// Where a job's end is reported: always exactly once, run or dropped, so that the
/// session knows the thread is free for its next request.
struct Reply {
    txn: TxnId,
    tx: mpsc::Sender<(TxnId, Vec<u8>)>,
    notify: Arc<Notify>,
}

impl Reply {
    fn send(self, resp: Vec<u8>) {
        // The session may be gone (host disconnected); then nobody waits.
        if self.tx.send((self.txn, resp)).is_ok() {
            self.notify.notify_one();
        }
    }
}

/// What the authenticator thread has to do next: never more than one request.
#[derive(Default)]
struct Slot {
    /// A new USB session began at this instant: volatile state starts over before the
    /// next request.
    power_up: Option<Instant>,
    job: Option<Job>,
    shutdown: bool,
}

/// The state shared by a [`Key`], its sessions and its authenticator thread.
#[derive(Default)]
struct Worker {
    slot: Mutex<Slot>,
    wake: Condvar,
    queued: AtomicUsize,
    max_queued: AtomicUsize,
    run: AtomicU64,
    dropped: AtomicU64,
}

impl Worker {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // A panic on the authenticator thread must not take the USB side down with it.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn power_up(&self, at: Instant) {
        self.lock().power_up = Some(at);
        self.wake.notify_one();
    }

    /// Puts `job` in the slot. Its session has no other job with the thread, so a job
    /// already in the slot belongs to a session that is gone (and was cancelled by it):
    /// it is dropped.
    fn submit(&self, job: Job) {
        let q = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_queued.fetch_max(q, Ordering::Relaxed);
        let displaced = self.lock().job.replace(job);
        self.wake.notify_one();
        if let Some(old) = displaced {
            debug!("dropping a request of an ended session");
            self.end(old.reply, vec![StatusCode::KeepaliveCancel.byte()], false);
        }
    }

    fn end(&self, reply: Reply, resp: Vec<u8>, ran: bool) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        if ran { &self.run } else { &self.dropped }.fetch_add(1, Ordering::Relaxed);
        reply.send(resp);
    }

    /// The authenticator thread: sleeps on the slot when idle (no polling).
    fn serve(&self, mut auth: Authenticator) {
        loop {
            let (power_up, job) = {
                let mut slot = self.lock();
                while slot.power_up.is_none() && slot.job.is_none() && !slot.shutdown {
                    slot = self.wake.wait(slot).unwrap_or_else(|e| e.into_inner());
                }
                if slot.shutdown {
                    return;
                }
                (slot.power_up.take(), slot.job.take())
            };
            if let Some(at) = power_up {
                auth.power_up_at(at);
            }
            let Some(job) = job else { continue };
            if job.cancelled.load(Ordering::Acquire) {
                // Abandoned before its turn (§11.2.9.1.5: a cancelled request answers
                // KEEPALIVE_CANCEL; an aborted one's answer is dropped by CTAPHID).
                self.end(job.reply, vec![StatusCode::KeepaliveCancel.byte()], false);
                continue;
            }
            let started = Instant::now();
            let resp = auth.process(&job.data, &job.ctx);
            debug!(
                "ctap cmd {:#04x} -> status {:#04x} in {:?}",
                job.data.first().copied().unwrap_or(0),
                resp.first().copied().unwrap_or(0),
                started.elapsed()
            );
            self.end(job.reply, resp, true);
        }
    }
}

/// A snapshot of [`Key::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyStats {
    /// CTAP requests the authenticator ran.
    pub run: u64,
    /// Requests dropped without running: cancelled or abandoned before their turn.
    pub dropped: u64,
    /// Requests with the authenticator thread now (running or in its slot): at most 2.
    pub queued: usize,
    /// The most there ever were.
    pub max_queued: usize,
}

/// A virtual security key: identity plus the thread that owns its authenticator.
pub struct Key {
    identity: DeviceIdentity,
    worker: Arc<Worker>,
}

impl Key {
    /// Starts the authenticator thread. It blocks on its slot when idle (no polling).
    pub fn new(auth: Authenticator) -> std::io::Result<Key> {
        let identity = DeviceIdentity {
            vendor_id: VENDOR_ID,
            product_id: PRODUCT_ID,
            device_release: device_release(),
            manufacturer: "vkey".into(),
            product: "vkey virtual FIDO2 security key".into(),
            serial: auth.store().serial().to_string(),
        };
        let worker = Arc::new(Worker::default());
        let w = worker.clone();
        std::thread::Builder::new()
            .name("vkey-ctap".into())
            .spawn(move || w.serve(auth))?;
        Ok(Key { identity, worker })
    }

    /// Counters of the authenticator thread (tests and diagnostics).
    pub fn stats(&self) -> KeyStats {
        let w = &self.worker;
        KeyStats {
            run: w.run.load(Ordering::Relaxed),
            dropped: w.dropped.load(Ordering::Relaxed),
            queued: w.queued.load(Ordering::Relaxed),
            max_queued: w.max_queued.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.worker.lock().shutdown = true;
        self.worker.wake.notify_one();
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
        self.worker.power_up(Instant::now());
        let session = KeySession::new(self.worker.clone());
        let notify = session.notify.clone();
        (Box::new(session), notify)
    }
}

/// The request this session has handed to the authenticator thread.
struct Running {
    txn: TxnId,
    handle: RequestHandle,
    cancelled: Arc<AtomicBool>,
}

impl Running {
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.handle.cancel();
    }
}

/// One USB session of a [`Key`].
pub struct KeySession {
    hid: CtapHid,
    worker: Arc<Worker>,
    responses: mpsc::Receiver<(TxnId, Vec<u8>)>,
    response_tx: mpsc::Sender<(TxnId, Vec<u8>)>,
    notify: Arc<Notify>,
    /// The request with the authenticator thread, until the thread reports its end
    /// (also after CTAPHID abandoned it): its UPNEEDED state decides the KEEPALIVE
    /// status, CANCEL / resync / disconnect cancel it.
    running: Option<Running>,
    /// A request CTAPHID accepted while an abandoned one still runs: handed over when
    /// that one ends. One at most (CTAPHID has one transaction at a time).
    waiting: Option<(TxnId, Vec<u8>)>,
}

impl KeySession {
    fn new(worker: Arc<Worker>) -> KeySession {
        let (response_tx, responses) = mpsc::channel();
        KeySession {
            hid: CtapHid::new(ctaphid::Config {
                cbor: true,
                msg: false,
                wink: true,
                version: crate::version(),
            }),
            worker,
            responses,
            response_tx,
            notify: Arc::new(Notify::new()),
            running: None,
            waiting: None,
        }
    }

    fn submit(&mut self, txn: TxnId, data: Vec<u8>) {
        let (ctx, handle) = RequestContext::new();
        let cancelled = Arc::new(AtomicBool::new(false));
        self.running = Some(Running {
            txn,
            handle,
            cancelled: cancelled.clone(),
        });
        self.worker.submit(Job {
            data,
            ctx,
            cancelled,
            reply: Reply {
                txn,
                tx: self.response_tx.clone(),
                notify: self.notify.clone(),
            },
        });
    }

    /// Drops the waiting request `txn`, if that is the one waiting.
    fn drop_waiting(&mut self, txn: TxnId) -> bool {
        if self.waiting.as_ref().is_some_and(|(t, _)| *t == txn) {
            self.waiting = None;
            self.worker.dropped.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.hid.poll_event() {
            match ev {
                Event::Request {
                    txn,
                    kind: RequestKind::Cbor,
                    data,
                    ..
                } => {
                    if self.running.is_none() {
                        self.submit(txn, data);
                    } else if let Some((old, _)) = self.waiting.replace((txn, data)) {
                        // Unreachable: CTAPHID starts a new transaction only after the
                        // old one ended, and an aborted waiting one is dropped below.
                        warn!("request {old:?} replaced while waiting");
                        self.worker.dropped.fetch_add(1, Ordering::Relaxed);
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
                Event::Cancel { txn } => {
                    if self.drop_waiting(txn) {
                        self.hid.respond(txn, &[StatusCode::KeepaliveCancel.byte()]);
                    } else if let Some(r) = self.running.as_ref().filter(|r| r.txn == txn) {
                        r.cancel();
                    }
                }
                Event::Abort { txn } => {
                    if !self.drop_waiting(txn)
                        && let Some(r) = self.running.as_ref().filter(|r| r.txn == txn)
                    {
                        r.cancel();
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
        let up_needed = self.running.as_ref().is_some_and(|r| r.handle.up_needed());
        self.hid.set_keepalive_status(if up_needed {
            KeepaliveStatus::UpNeeded
        } else {
            KeepaliveStatus::Processing
        });
        self.hid.handle_timeout(now);
    }

    fn handle_wakeup(&mut self, _now: Instant) {
        while let Ok((txn, resp)) = self.responses.try_recv() {
            if self.running.as_ref().is_some_and(|r| r.txn == txn) {
                self.running = None;
            }
            // CTAPHID drops the answer of a transaction it abandoned.
            self.hid.respond(txn, &resp);
        }
        if self.running.is_none()
            && let Some((txn, data)) = self.waiting.take()
        {
            self.submit(txn, data);
        }
    }
}

impl Drop for KeySession {
    fn drop(&mut self) {
        // The host is gone: a request still waiting for the user must stop waiting, and
        // one not yet started never runs.
        if let Some(r) = &self.running {
            r.cancel();
        }
        if self.waiting.take().is_some() {
            self.worker.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session whose worker has no thread: the test plays the authenticator thread.
    fn session() -> KeySession {
        KeySession::new(Arc::new(Worker::default()))
    }

    fn init_report(cid: u32, cmd: u8, payload: &[u8]) -> Vec<u8> {
        let mut r = cid.to_be_bytes().to_vec();
        r.push(cmd | 0x80);
        r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        r.extend_from_slice(payload);
        r.resize(64, 0);
        r
    }

    /// Reports queued for the host, as (cid, cmd, first payload bytes).
    fn reports(s: &mut KeySession) -> Vec<(u32, u8, Vec<u8>)> {
        std::iter::from_fn(|| s.poll_in_report())
            .map(|r| {
                let cid = u32::from_be_bytes([r[0], r[1], r[2], r[3]]);
                let len = usize::from(u16::from_be_bytes([r[5], r[6]])).min(57);
                (cid, r[4], r[7..7 + len].to_vec())
            })
            .collect()
    }

    fn channel(s: &mut KeySession, now: Instant) -> u32 {
        s.out_report(&init_report(u32::MAX, 0x06, b"12345678"), now);
        let r = reports(s);
        u32::from_be_bytes(r[0].2[8..12].try_into().unwrap())
    }

    /// What the authenticator thread does: take the job in the slot.
    fn take_job(s: &KeySession) -> Option<Job> {
        s.worker.lock().job.take()
    }

    #[test]
    fn one_request_with_the_thread_the_next_waits_cancelled_ones_never_run() {
        let mut s = session();
        let now = Instant::now();
        let cid = channel(&mut s, now);
        // Request A goes to the thread, which starts it.
        s.out_report(&init_report(cid, 0x10, &[0x04]), now);
        let a = take_job(&s).expect("A handed over");
        assert_eq!(a.data, [0x04]);
        // INIT resync: A is over on the wire and cancelled, but still runs.
        s.out_report(&init_report(cid, 0x06, b"resync!!"), now);
        assert!(a.cancelled.load(Ordering::Acquire));
        reports(&mut s);
        // B is accepted by CTAPHID but waits in the session: nothing new in the slot.
        s.out_report(&init_report(cid, 0x10, &[0x06]), now);
        assert!(take_job(&s).is_none());
        // CANCEL of the waiting B answers KEEPALIVE_CANCEL at once; B never runs.
        s.out_report(&init_report(cid, 0x11, &[]), now);
        assert_eq!(reports(&mut s), vec![(cid, 0x90, vec![0x2d])]);
        // C, then resync, then D: C is dropped before its turn, D waits.
        s.out_report(&init_report(cid, 0x10, &[0x07]), now);
        s.out_report(&init_report(cid, 0x06, b"resync!!"), now);
        s.out_report(&init_report(cid, 0x10, &[0x08]), now);
        assert!(take_job(&s).is_none());
        reports(&mut s);
        // A ends: its late answer goes nowhere, and D is handed over.
        s.worker.end(a.reply, vec![0x00], true);
        s.handle_wakeup(now);
        assert!(reports(&mut s).is_empty(), "A's answer dropped");
        let d = take_job(&s).expect("D handed over");
        assert_eq!(d.data, [0x08]);
        assert!(!d.cancelled.load(Ordering::Acquire));
        // D's answer reaches the host.
        s.worker.end(d.reply, vec![0x00, 0xa0], true);
        s.handle_wakeup(now);
        assert_eq!(reports(&mut s), vec![(cid, 0x90, vec![0x00, 0xa0])]);
        let w = &s.worker;
        assert_eq!(w.run.load(Ordering::Relaxed), 2); // A and D
        assert_eq!(w.dropped.load(Ordering::Relaxed), 2); // B and C
        assert_eq!(w.max_queued.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_job_left_by_an_ended_session_is_dropped_for_the_next() {
        let worker = Arc::new(Worker::default());
        let now = Instant::now();
        let mut old = KeySession::new(worker.clone());
        let cid = channel(&mut old, now);
        old.out_report(&init_report(cid, 0x10, &[0x04]), now);
        drop(old); // disconnect: its request is cancelled, still in the slot
        let mut new = KeySession::new(worker.clone());
        let cid = channel(&mut new, now);
        new.out_report(&init_report(cid, 0x10, &[0x06]), now);
        let job = worker.lock().job.take().expect("the new session's request");
        assert_eq!(job.data, [0x06]);
        assert_eq!(worker.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(worker.queued.load(Ordering::Relaxed), 1);
    }
}
