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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, broadcast, oneshot, watch};
use tracing::{debug, info, warn};

use crate::ctap::trace::{self, TraceRequest, TraceResponse};
use crate::ctap::{
    Authenticator, BuiltInUv, Event as CtapEvent, EventSink, KeyStatus, PendingTouch, Presence,
    RequestContext, RequestHandle, ResponseOverrides, StatusCode,
};
use crate::ctaphid::{self, CtapHid, Event, KeepaliveStatus, RequestKind, TxnId};
use crate::usbip::{DeviceIdentity, ExportedDevice, HidFunction, HidReport};

/// The pid.codes vendor ID for open-source hardware, with its test product ID: a real,
/// registered VID:PID pair that belongs to no commercial key.
pub const VENDOR_ID: u16 = 0x1209;
pub const PRODUCT_ID: u16 = 0x0001;

/// Events buffered per key for slow subscribers; one that falls further behind loses
/// the oldest and is told how many (it never blocks the key).
pub const EVENT_BUFFER: usize = 1024;

/// What a key tells its observers (the control interface's event stream, `--trace`).
#[derive(Clone, Debug)]
pub enum KeyEventKind {
    /// From the CTAP core: credentials made, used, changed, deleted; presence asked.
    Ctap(CtapEvent),
    /// A host imported the key (a power-up).
    Attached,
    /// The host's connection ended (detach, or a replug).
    Detached,
    /// A CTAP request, decoded, secrets redacted.
    Request(TraceRequest),
    /// Its response.
    Response(TraceResponse),
}

#[derive(Clone, Debug)]
pub struct KeyEvent {
    pub bus_id: Arc<str>,
    pub time: SystemTime,
    pub kind: KeyEventKind,
}

/// A key's state that the control interface reads and changes without the
/// authenticator thread: presence, the UV result, the override bits, whether a host is
/// attached, the event channel, the last status snapshot.
pub struct KeyShared {
    bus_id: Arc<str>,
    pub presence: Presence,
    /// Built-in UV (`--uv`), whose result is a switch.
    pub uv: Option<BuiltInUv>,
    pub overrides: ResponseOverrides,
    events: broadcast::Sender<KeyEvent>,
    attached: AtomicBool,
    unplug: watch::Sender<u64>,
    status: Mutex<Option<KeyStatus>>,
}

impl KeyShared {
    pub fn new(
        bus_id: &str,
        presence: Presence,
        uv: Option<BuiltInUv>,
        overrides: ResponseOverrides,
    ) -> Arc<KeyShared> {
        Arc::new(KeyShared {
            bus_id: bus_id.into(),
            presence,
            uv,
            overrides,
            events: broadcast::channel(EVENT_BUFFER).0,
            attached: AtomicBool::new(false),
            unplug: watch::channel(0).0,
            status: Mutex::new(None),
        })
    }

    /// The shared state of a key built with `config`: its presence, UV and override
    /// switches, and its events (the config's event sink is pointed here).
    pub fn for_config(bus_id: &str, config: &mut crate::ctap::Config) -> Arc<KeyShared> {
        let shared = KeyShared::new(
            bus_id,
            config.presence.clone(),
            config.uv.clone(),
            config.overrides.clone(),
        );
        config.events = shared.event_sink();
        shared
    }

    pub fn bus_id(&self) -> &str {
        &self.bus_id
    }

    /// The sink for the CTAP core's events (goes into its `Config`).
    pub fn event_sink(self: &Arc<Self>) -> Arc<dyn EventSink> {
        Arc::new(Sink(self.clone()))
    }

    /// A new subscriber to this key's events.
    pub fn subscribe(&self) -> broadcast::Receiver<KeyEvent> {
        self.events.subscribe()
    }

    fn emit(&self, kind: KeyEventKind) {
        // No subscriber is fine: nobody watches.
        let _ = self.events.send(KeyEvent {
            bus_id: self.bus_id.clone(),
            time: SystemTime::now(),
            kind,
        });
    }

    fn tracing(&self) -> bool {
        self.events.receiver_count() > 0
    }

    /// Changes on every replug.
    pub fn replugs(&self) -> watch::Receiver<u64> {
        self.unplug.subscribe()
    }

    /// Whether a host has the key imported now.
    pub fn attached(&self) -> bool {
        self.attached.load(Ordering::Acquire)
    }

    /// The key's state as of the last request it finished.
    pub fn status(&self) -> Option<KeyStatus> {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_status(&self, s: KeyStatus) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
    }
}

struct Sink(Arc<KeyShared>);

impl EventSink for Sink {
    fn emit(&self, event: CtapEvent) {
        self.0.emit(KeyEventKind::Ctap(event));
    }
}

type ControlJob = Box<dyn FnOnce(&mut Authenticator) + Send>;

/// A request for the authenticator thread: a CTAP2 message (CTAPHID_CBOR) or a
/// CTAP1/U2F APDU (CTAPHID_MSG).
struct Job {
    kind: RequestKind,
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
    /// A new USB session began: volatile state starts over before the next request.
    power_up: bool,
    /// Control-interface operations (local and trusted), in order, before the next
    /// request: "after the CTAP request in progress".
    control: VecDeque<ControlJob>,
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

    /// Queues a control operation; `false` if the thread is gone.
    fn control(&self, job: ControlJob) -> bool {
        let mut slot = self.lock();
        if slot.shutdown {
            return false;
        }
        slot.control.push_back(job);
        drop(slot);
        self.wake.notify_one();
        true
    }

    fn power_up(&self) {
        self.lock().power_up = true;
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
            self.end(old.reply, not_run(old.kind), false);
        }
    }

    fn end(&self, reply: Reply, resp: Vec<u8>, ran: bool) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        if ran { &self.run } else { &self.dropped }.fetch_add(1, Ordering::Relaxed);
        reply.send(resp);
    }

    /// The authenticator thread: sleeps on the slot when idle (no polling).
    fn serve(&self, mut auth: Authenticator, shared: &KeyShared) {
        loop {
            let (power_up, control, job) = {
                let mut slot = self.lock();
                while !slot.power_up
                    && slot.control.is_empty()
                    && slot.job.is_none()
                    && !slot.shutdown
                {
                    slot = self.wake.wait(slot).unwrap_or_else(|e| e.into_inner());
                }
                if slot.shutdown {
                    return;
                }
                (
                    std::mem::take(&mut slot.power_up),
                    std::mem::take(&mut slot.control),
                    slot.job.take(),
                )
            };
            if power_up {
                auth.power_up();
                shared.set_status(auth.status());
            }
            for f in control {
                f(&mut auth);
                shared.set_status(auth.status());
            }
            let Some(job) = job else { continue };
            if job.cancelled.load(Ordering::Acquire) {
                // Abandoned before its turn (§11.2.9.1.5: a cancelled request answers
                // KEEPALIVE_CANCEL; an aborted one's answer is dropped by CTAPHID).
                self.end(job.reply, not_run(job.kind), false);
                continue;
            }
            let resp = match job.kind {
                RequestKind::Cbor => run_cbor(&mut auth, shared, &job.data, &job.ctx),
                RequestKind::Msg => run_u2f(&mut auth, shared, &job.data),
            };
            self.end(job.reply, resp, true);
        }
    }
}

/// The answer of a request dropped before it ran. A CBOR one was cancelled or aborted:
/// KEEPALIVE_CANCEL (§11.2.9.1.5). A U2F one is never cancelled (it does not wait for
/// the user), only aborted or left by its session, so its answer reaches no host; it
/// says SW_UNKNOWN all the same.
fn not_run(kind: RequestKind) -> Vec<u8> {
    match kind {
        RequestKind::Cbor => vec![StatusCode::KeepaliveCancel.byte()],
        RequestKind::Msg => vec![0x6f, 0x00],
    }
}

/// Runs a CTAP2 message (CTAPHID_CBOR): traced (when someone listens) and the status
/// snapshot refreshed before the response goes out, so a control client that reads the
/// status after it sees what the command did.
fn run_cbor(
    auth: &mut Authenticator,
    shared: &KeyShared,
    data: &[u8],
    ctx: &RequestContext,
) -> Vec<u8> {
    let started = Instant::now();
    let command = data.first().copied().unwrap_or(0);
    let traced = shared.tracing();
    if traced {
        shared.emit(KeyEventKind::Request(trace::request(data)));
    }
    let resp = auth.process(data, ctx);
    debug!(
        "ctap cmd {command:#04x} -> status {:#04x} in {:?}",
        resp.first().copied().unwrap_or(0),
        started.elapsed()
    );
    if traced {
        shared.emit(KeyEventKind::Response(trace::response(command, &resp)));
    }
    if changes_status(command) {
        shared.set_status(auth.status());
    }
    resp
}

/// Why a control operation did not run; nothing changed.
#[derive(Debug)]
pub enum Busy {
    /// A CTAP request waits for the user's touch (approve or deny it first).
    WaitsForUser(PendingTouch),
    /// The authenticator did not get to it in time.
    Timeout,
    /// The authenticator thread is gone.
    Gone,
}

/// How long a control operation waits behind CTAP requests that do not wait for the
/// user (a `delay:` presence, a slow store) before it is given up.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

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
    shared: Arc<KeyShared>,
    /// CTAP1/U2F is on: CTAPHID serves CTAPHID_MSG (else INIT says NMSG).
    u2f: bool,
}

impl Key {
    /// Starts the authenticator thread. It blocks on its slot when idle (no polling).
    /// `auth`'s config must carry `shared`'s presence, UV, overrides and event sink.
    pub fn new(auth: Authenticator, shared: Arc<KeyShared>) -> std::io::Result<Key> {
        let identity = DeviceIdentity {
            vendor_id: VENDOR_ID,
            product_id: PRODUCT_ID,
            device_release: device_release(),
            manufacturer: "vkey".into(),
            product: "vkey virtual FIDO2 security key".into(),
            serial: auth.store().serial().to_string(),
        };
        shared.set_status(auth.status());
        let u2f = auth.u2f_enabled();
        let worker = Arc::new(Worker::default());
        let (w, sh) = (worker.clone(), shared.clone());
        std::thread::Builder::new()
            .name(format!("vkey-ctap-{}", shared.bus_id))
            .spawn(move || w.serve(auth, &sh))?;
        Ok(Key {
            identity,
            worker,
            shared,
            u2f,
        })
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

    pub fn shared(&self) -> &Arc<KeyShared> {
        &self.shared
    }

    /// Runs `f` on the authenticator thread, after the CTAP request in progress. If
    /// that request waits for the user, gives up at once ([`Busy::WaitsForUser`]): a
    /// control client never hangs behind a touch. A job given up never runs.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Authenticator) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        const QUEUED: u8 = 0;
        const RUNNING: u8 = 1;
        const ABANDONED: u8 = 2;
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (tx, mut rx) = oneshot::channel();
        let st = state.clone();
        let shared = self.shared.clone();
        let job: ControlJob = Box::new(move |auth| {
            if st
                .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let result = f(auth);
                // The status a client reads next already shows what this job did.
                shared.set_status(auth.status());
                let _ = tx.send(result);
            }
        });
        if !self.worker.control(job) {
            return Err(Busy::Gone);
        }
        let deadline = tokio::time::Instant::now() + CONTROL_TIMEOUT;
        loop {
            let give_up = tokio::select! {
                r = &mut rx => return r.map_err(|_| Busy::Gone),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    match self.shared.presence.blocking() {
                        Some(p) => Some(Busy::WaitsForUser(p)),
                        None if tokio::time::Instant::now() >= deadline => Some(Busy::Timeout),
                        None => None,
                    }
                }
            };
            if let Some(why) = give_up {
                if state
                    .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Err(why);
                }
                // Already running: control jobs never wait for the user, so it ends soon.
                return (&mut rx).await.map_err(|_| Busy::Gone);
            }
        }
    }

    /// A power cycle, as when the key is pulled out and plugged back: an attached
    /// host loses its connection (the next import is a power-up); without a host the
    /// key powers up now. Returns whether a host was attached.
    pub fn replug(&self) -> bool {
        let attached = self.shared.attached();
        self.shared.unplug.send_modify(|g| *g = g.wrapping_add(1));
        if !attached {
            self.worker.power_up();
        }
        info!("{}: replug", self.shared.bus_id);
        attached
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.worker.lock().shutdown = true;
        self.worker.wake.notify_one();
    }
}

/// Runs a CTAP1/U2F APDU (CTAPHID_MSG). It never waits for the user and changes nothing
/// the status shows (U2F credentials are not stored).
fn run_u2f(auth: &mut Authenticator, sh: &KeyShared, data: &[u8]) -> Vec<u8> {
    let started = Instant::now();
    let traced = sh.tracing();
    if traced {
        sh.emit(KeyEventKind::Request(trace::u2f_request(data)));
    }
    let resp = auth.process_u2f(data);
    debug!(
        "u2f ins {:#04x} -> sw {:02x?} in {:?}",
        data.get(1).copied().unwrap_or(0),
        resp.get(resp.len().saturating_sub(2)..),
        started.elapsed()
    );
    if traced {
        sh.emit(KeyEventKind::Response(trace::u2f_response(data, &resp)));
    }
    resp
}

/// Whether a command can change what `GET /v1/keys` shows (PIN, retries, credentials).
fn changes_status(command: u8) -> bool {
    use crate::ctap::CommandCode as C;
    ![
        C::GetInfo as u8,
        C::GetNextAssertion as u8,
        C::Selection as u8,
    ]
    .contains(&command)
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

    fn unplug_signal(&self) -> Option<watch::Receiver<u64>> {
        Some(self.shared.unplug.subscribe())
    }

    fn attach(&self) -> (Box<dyn HidFunction>, Arc<Notify>) {
        self.worker.power_up();
        self.shared.attached.store(true, Ordering::Release);
        self.shared.emit(KeyEventKind::Attached);
        let session = KeySession::new(self.worker.clone(), self.shared.clone(), self.u2f);
        let notify = session.notify.clone();
        (Box::new(session), notify)
    }
}

/// The request this session has handed to the authenticator thread.
struct Running {
    txn: TxnId,
    kind: RequestKind,
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
    waiting: Option<Waiting>,
    shared: Arc<KeyShared>,
}

/// A request accepted by CTAPHID, not yet handed to the authenticator thread.
struct Waiting {
    txn: TxnId,
    kind: RequestKind,
    data: Vec<u8>,
}

impl KeySession {
    /// `u2f`: CTAP1/U2F is on, CTAPHID serves CTAPHID_MSG (else INIT says NMSG).
    fn new(worker: Arc<Worker>, shared: Arc<KeyShared>, u2f: bool) -> KeySession {
        let (response_tx, responses) = mpsc::channel();
        KeySession {
            hid: CtapHid::new(ctaphid::Config {
                cbor: true,
                msg: u2f,
                wink: true,
                version: crate::version(),
            }),
            worker,
            responses,
            response_tx,
            notify: Arc::new(Notify::new()),
            running: None,
            waiting: None,
            shared,
        }
    }

    fn submit(&mut self, txn: TxnId, kind: RequestKind, data: Vec<u8>) {
        let (ctx, handle) = RequestContext::new();
        let cancelled = Arc::new(AtomicBool::new(false));
        self.running = Some(Running {
            txn,
            kind,
            handle,
            cancelled: cancelled.clone(),
        });
        self.worker.submit(Job {
            kind,
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

    /// Drops the waiting request `txn`, if that is the one waiting and of one of `kinds`.
    fn drop_waiting(&mut self, txn: TxnId, kinds: &[RequestKind]) -> bool {
        if self
            .waiting
            .as_ref()
            .is_some_and(|w| w.txn == txn && kinds.contains(&w.kind))
        {
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
                    txn, kind, data, ..
                } => {
                    // CTAPHID passes MSG on only with U2F on (else NMSG, INVALID_CMD).
                    if self.running.is_none() {
                        self.submit(txn, kind, data);
                    } else if let Some(old) = self.waiting.replace(Waiting { txn, kind, data }) {
                        // Unreachable: CTAPHID starts a new transaction only after the
                        // old one ended, and an aborted waiting one is dropped below.
                        warn!("request {:?} replaced while waiting", old.txn);
                        self.worker.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Event::Cancel { txn } => {
                    // A U2F request never waits for the user (its touch is polled), and
                    // U2F has no "cancelled" answer: it runs and answers as usual.
                    if self.drop_waiting(txn, &[RequestKind::Cbor]) {
                        self.hid.respond(txn, &[StatusCode::KeepaliveCancel.byte()]);
                    } else if let Some(r) = self
                        .running
                        .as_ref()
                        .filter(|r| r.txn == txn && r.kind == RequestKind::Cbor)
                    {
                        r.cancel();
                    }
                }
                Event::Abort { txn } => {
                    if !self.drop_waiting(txn, &[RequestKind::Cbor, RequestKind::Msg])
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
            && let Some(Waiting { txn, kind, data }) = self.waiting.take()
        {
            self.submit(txn, kind, data);
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
        self.shared.attached.store(false, Ordering::Release);
        self.shared.emit(KeyEventKind::Detached);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session whose worker has no thread: the test plays the authenticator thread.
    fn shared() -> Arc<KeyShared> {
        KeyShared::new(
            "1-1",
            Presence::new(crate::ctap::PresenceMode::Auto),
            None,
            ResponseOverrides::default(),
        )
    }

    fn session() -> KeySession {
        KeySession::new(Arc::new(Worker::default()), shared(), true)
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
        let mut old = KeySession::new(worker.clone(), shared(), true);
        let cid = channel(&mut old, now);
        old.out_report(&init_report(cid, 0x10, &[0x04]), now);
        drop(old); // disconnect: its request is cancelled, still in the slot
        let mut new = KeySession::new(worker.clone(), shared(), true);
        let cid = channel(&mut new, now);
        new.out_report(&init_report(cid, 0x10, &[0x06]), now);
        let job = worker.lock().job.take().expect("the new session's request");
        assert_eq!(job.data, [0x06]);
        assert_eq!(worker.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(worker.queued.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn u2f_requests_share_the_one_slot() {
        let mut s = session();
        let now = Instant::now();
        let cid = channel(&mut s, now);
        // A CTAPHID_MSG (U2F_VERSION) goes to the thread as a U2F job.
        s.out_report(&init_report(cid, 0x03, &[0, 0x03, 0, 0]), now);
        let a = take_job(&s).expect("the APDU handed over");
        assert_eq!(a.kind, RequestKind::Msg);
        // CANCEL does not cancel a U2F request (it never waits for the user).
        s.out_report(&init_report(cid, 0x11, &[]), now);
        assert!(!a.cancelled.load(Ordering::Acquire));
        assert!(reports(&mut s).is_empty());
        // Resync aborts it; the next U2F request waits until it has ended.
        s.out_report(&init_report(cid, 0x06, b"resync!!"), now);
        assert!(a.cancelled.load(Ordering::Acquire));
        reports(&mut s);
        s.out_report(&init_report(cid, 0x03, &[0, 0x03, 0, 0]), now);
        assert!(take_job(&s).is_none(), "one request with the thread");
        // CANCEL leaves the waiting U2F request waiting; a CBOR one behind it never
        // comes (CTAPHID: one transaction at a time), so A's end hands it over.
        s.out_report(&init_report(cid, 0x11, &[]), now);
        assert!(reports(&mut s).is_empty());
        s.worker.end(a.reply, vec![0x90, 0x00], true);
        s.handle_wakeup(now);
        assert!(reports(&mut s).is_empty(), "A's answer dropped");
        let b = take_job(&s).expect("B handed over");
        assert_eq!(b.kind, RequestKind::Msg);
        s.worker.end(b.reply, b"U2F_V2\x90\x00".to_vec(), true);
        s.handle_wakeup(now);
        assert_eq!(
            reports(&mut s),
            vec![(cid, 0x83, b"U2F_V2\x90\x00".to_vec())]
        );
        // A U2F request dropped before its turn answers SW_UNKNOWN, never KEEPALIVE_CANCEL.
        assert_eq!(not_run(RequestKind::Msg), [0x6f, 0x00]);
    }
}
