//! A vkey: the layers wired together. The USB/IP server drives a [`KeySession`] (one
//! per import = one power-up), which runs CTAPHID and hands CBOR requests to the
//! authenticator core on its own thread, so that a request waiting for the user never
//! stalls the USB/IP connection (keepalives, CANCEL and unlinks go on).
//!
//! This module and `cli` are the edge: they may import every layer.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, broadcast, oneshot, watch};
use tracing::{debug, info, warn};

use crate::ctap::trace::{self, TraceRequest, TraceResponse};
use crate::ctap::{
    Authenticator, BuiltInUv, Event as CtapEvent, EventSink, KeyStatus, PendingTouch, Presence,
    RequestContext, RequestHandle, ResponseOverrides,
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

/// A request for the authenticator thread.
enum Job {
    /// A new USB session: volatile state (tokens, reset window) starts over.
    PowerUp,
    /// A CTAP2 message (CTAPHID_CBOR) or a CTAP1/U2F APDU (CTAPHID_MSG).
    Request {
        kind: RequestKind,
        data: Vec<u8>,
        ctx: RequestContext,
        reply: Reply,
    },
    /// A control-interface operation, serialised with CTAP requests.
    Control(ControlJob),
}

struct Reply {
    txn: TxnId,
    tx: mpsc::Sender<(TxnId, Vec<u8>)>,
    notify: Arc<Notify>,
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

/// A virtual security key: identity plus the thread that owns its authenticator.
pub struct Key {
    identity: DeviceIdentity,
    jobs: mpsc::Sender<Job>,
    shared: Arc<KeyShared>,
    /// CTAP1/U2F is on: CTAPHID serves CTAPHID_MSG (else INIT says NMSG).
    u2f: bool,
}

impl Key {
    /// Starts the authenticator thread. It blocks on its queue when idle (no polling).
    /// `auth`'s config must carry `shared`'s presence, UV, overrides and event sink.
    pub fn new(mut auth: Authenticator, shared: Arc<KeyShared>) -> std::io::Result<Key> {
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
        let (jobs, rx) = mpsc::channel::<Job>();
        let sh = shared.clone();
        std::thread::Builder::new()
            .name(format!("vkey-ctap-{}", shared.bus_id))
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    match job {
                        Job::PowerUp => auth.power_up(),
                        Job::Request {
                            kind,
                            data,
                            ctx,
                            reply,
                        } => {
                            let resp = match kind {
                                RequestKind::Cbor => run_cbor(&mut auth, &sh, &data, &ctx),
                                RequestKind::Msg => run_u2f(&mut auth, &sh, &data),
                            };
                            // The session may be gone (host disconnected); then nobody waits.
                            if reply.tx.send((reply.txn, resp)).is_ok() {
                                reply.notify.notify_one();
                            }
                            continue;
                        }
                        Job::Control(f) => f(&mut auth),
                    }
                    sh.set_status(auth.status());
                }
            })?;
        Ok(Key {
            identity,
            jobs,
            shared,
            u2f,
        })
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
        self.jobs.send(Job::Control(job)).map_err(|_| Busy::Gone)?;
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
            let _ = self.jobs.send(Job::PowerUp);
        }
        info!("{}: replug", self.shared.bus_id);
        attached
    }
}

/// Runs a CTAP2 message (CTAPHID_CBOR) on the authenticator thread, traced when someone
/// watches.
fn run_cbor(
    auth: &mut Authenticator,
    sh: &KeyShared,
    data: &[u8],
    ctx: &RequestContext,
) -> Vec<u8> {
    let started = Instant::now();
    let command = data.first().copied().unwrap_or(0);
    let traced = sh.tracing();
    if traced {
        sh.emit(KeyEventKind::Request(trace::request(data)));
    }
    let resp = auth.process(data, ctx);
    debug!(
        "ctap cmd {command:#04x} -> status {:#04x} in {:?}",
        resp[0],
        started.elapsed()
    );
    if traced {
        sh.emit(KeyEventKind::Response(trace::response(command, &resp)));
    }
    // Before the response goes out: a control client that reads the status after it
    // sees what the command did.
    if changes_status(command) {
        sh.set_status(auth.status());
    }
    resp
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
        let _ = self.jobs.send(Job::PowerUp);
        self.shared.attached.store(true, Ordering::Release);
        self.shared.emit(KeyEventKind::Attached);
        let notify = Arc::new(Notify::new());
        let (tx, rx) = mpsc::channel();
        let hid = CtapHid::new(ctaphid::Config {
            cbor: true,
            msg: self.u2f,
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
            shared: self.shared.clone(),
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
    shared: Arc<KeyShared>,
}

impl KeySession {
    fn drain_events(&mut self) {
        while let Some(ev) = self.hid.poll_event() {
            match ev {
                Event::Request {
                    txn, kind, data, ..
                } => {
                    // CTAPHID passes MSG on only with U2F on (else NMSG, INVALID_CMD).
                    let (ctx, handle) = RequestContext::new();
                    self.current = Some((txn, handle));
                    let reply = Reply {
                        txn,
                        tx: self.response_tx.clone(),
                        notify: self.notify.clone(),
                    };
                    let job = Job::Request {
                        kind,
                        data,
                        ctx,
                        reply,
                    };
                    if self.jobs.send(job).is_err() {
                        warn!("authenticator thread is gone");
                        let failed = match kind {
                            RequestKind::Cbor => vec![crate::ctap::StatusCode::Other.byte()],
                            // SW_UNKNOWN: no precise diagnosis (ISO 7816-4).
                            RequestKind::Msg => vec![0x6f, 0x00],
                        };
                        self.hid.respond(txn, &failed);
                    }
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
        self.shared.attached.store(false, Ordering::Release);
        self.shared.emit(KeyEventKind::Detached);
    }
}
