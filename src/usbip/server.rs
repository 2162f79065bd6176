//! The USB/IP server: OP_REQ_DEVLIST / OP_REQ_IMPORT, then the URB phase of an
//! imported device (CMD_SUBMIT / RET_SUBMIT, CMD_UNLINK / RET_UNLINK).
//!
//! One task per connection. In the URB phase a reader task parses commands (reading is
//! not cancel-safe, so it must not sit in a `select!`) and the session loop owns all
//! state: endpoint 0, the queue of held interrupt-IN URBs, and the [`HidFunction`].
//! The loop sleeps until a command arrives, the function's worker signals, or the
//! function's own timer is due: an idle key with an IN URB held wakes up zero times.
//!
//! Every resource a peer can make us hold is bounded: connections that have not
//! imported yet (a cap, and a handshake timeout), a host that vanished without FIN
//! (TCP keepalive and TCP_USER_TIMEOUT), a host that stops reading (bounded output, a
//! write timeout), and file descriptors (a reserve the connections never touch, so the
//! store can always write).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{debug, info, warn};

use super::descriptors::{DeviceIdentity, EP_IN, EP_OUT};
use super::device::{Control, ControlOutcome, ExportedDevice, HidFunction};
use super::peer::PeerPolicy;
use super::protocol::*;

/// Held interrupt-IN URBs per session. usbhid keeps one outstanding per open hidraw;
/// a peer that piles up more than this is not a USB host.
const MAX_HELD_IN_URBS: usize = 64;
/// `usbip detach` followed at once by `usbip attach` can bring the new import before we
/// have read the old connection's close. An import of a busy device waits this long
/// for the old session to end before it is refused.
const REIMPORT_GRACE: std::time::Duration = std::time::Duration::from_millis(1000);
/// The speed we report: full speed (USB 1.1 timing, 64-byte packets), what FIDO keys are.
const SPEED_FULL: u32 = 2;

/// Connections that have not imported a device yet (listing, importing, or idle). More
/// are closed as soon as they are accepted. `usbip list` / `attach` need one each,
/// briefly; an imported session holds no slot (there is one per exported device).
pub const MAX_PENDING_CONNECTIONS: usize = 64;
/// File descriptors kept free of connections, for the store (a temporary file and its
/// directory per write, the counter log), the runtime and the accept that refuses.
pub const FD_RESERVE: u64 = 32;
/// A connection must send its whole OP request (header, and bus id for an import)
/// within this; `usbip` sends it at once.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A write that makes no progress for this long (the peer stopped reading) ends the
/// session. A host reads continuously (vhci keeps an IN URB queued).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Replies gathered before they are written: the session stops taking commands
/// beyond this until the peer has read them.
const MAX_BUFFERED_OUTPUT: usize = 64 * 1024;
/// Read buffer per session: a few URBs (48-byte header + up to 64 bytes of report).
const READ_BUFFER: usize = 4096;
/// TCP keepalive: first probe after this much silence, then every
/// [`KEEPALIVE_INTERVAL`]; [`KEEPALIVE_PROBES`] unanswered probes close the connection.
/// A host that vanished without FIN (power loss, cable, VM killed) frees its import
/// within 15 + 3 × 5 = 30 s. A live host's kernel answers the probes itself.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
pub const KEEPALIVE_PROBES: u32 = 3;
/// TCP_USER_TIMEOUT: data unacknowledged this long closes the connection (keepalive
/// covers an idle connection, this one a connection with replies in flight).
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

struct Export {
    busid: String,
    busnum: u32,
    devnum: u32,
    device: Arc<dyn ExportedDevice>,
    attached: AtomicBool,
    /// Fired when a session ends and the device is free again.
    released: Notify,
}

impl Export {
    /// The 312-byte `usbip_usb_device` record of OP_REP_DEVLIST / OP_REP_IMPORT.
    fn record(&self, id: &DeviceIdentity) -> Vec<u8> {
        let mut v = fixed_str(
            &format!(
                "/sys/devices/platform/vkey/usb{}/{}",
                self.busnum, self.busid
            ),
            256,
        );
        v.extend_from_slice(&fixed_str(&self.busid, 32));
        v.extend_from_slice(&self.busnum.to_be_bytes());
        v.extend_from_slice(&self.devnum.to_be_bytes());
        v.extend_from_slice(&SPEED_FULL.to_be_bytes());
        v.extend_from_slice(&id.vendor_id.to_be_bytes());
        v.extend_from_slice(&id.product_id.to_be_bytes());
        v.extend_from_slice(&id.device_release.to_be_bytes());
        // class/subclass/protocol (per interface), bConfigurationValue, bNumConfigurations, bNumInterfaces
        v.extend_from_slice(&[0, 0, 0, 1, 1, 1]);
        v
    }
}

/// Releases the device for the next import when the session ends, however it ends.
struct AttachGuard(Arc<Export>);
impl Drop for AttachGuard {
    fn drop(&mut self) {
        self.0.attached.store(false, Ordering::Release);
        self.0.released.notify_waiters();
    }
}

/// A bound USB/IP server.
pub struct Server {
    listener: TcpListener,
    exports: Arc<Vec<Arc<Export>>>,
    /// Slots for connections that have not imported yet.
    pending: Arc<Semaphore>,
    peers: PeerPolicy,
}

/// The soft RLIMIT_NOFILE of this process (`None` if unlimited or unknown).
pub fn nofile_limit() -> Option<u64> {
    let (soft, _) = rlimit::Resource::NOFILE.get().ok()?;
    (soft != rlimit::INFINITY).then_some(soft)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (many systems start processes at
/// 1024 with a far higher hard limit). Returns the soft limit now in force.
pub fn raise_nofile_limit() -> Option<u64> {
    if let Err(e) = rlimit::increase_nofile_limit(1 << 20) {
        debug!("cannot raise RLIMIT_NOFILE: {e}");
    }
    nofile_limit()
}

/// How many connections may wait for their import: [`MAX_PENDING_CONNECTIONS`], less
/// if the file descriptor limit is low, so that [`FD_RESERVE`] descriptors stay free
/// with every slot and every device's session in use.
fn pending_capacity(nofile: Option<u64>, devices: usize) -> usize {
    let Some(n) = nofile else {
        return MAX_PENDING_CONNECTIONS;
    };
    let room = n.saturating_sub(FD_RESERVE + devices as u64);
    (room.min(MAX_PENDING_CONNECTIONS as u64) as usize).max(1)
}

/// Sets the socket options every connection gets (keepalive, user timeout, no Nagle).
fn configure(stream: &TcpStream) -> std::io::Result<()> {
    // Without TCP_NODELAY, Nagle + delayed ACK add ~40 ms per report pair.
    stream.set_nodelay(true)?;
    let sock = socket2::SockRef::from(stream);
    sock.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES),
    )?;
    sock.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT))
}

/// Writes `buf` whole, or fails once no progress was possible for [`WRITE_TIMEOUT`].
async fn send(wr: &mut OwnedWriteHalf, buf: &[u8]) -> Result<(), WireError> {
    match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(buf)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(WireError::Protocol(format!(
            "the peer stopped reading ({} bytes not taken in {} s)",
            buf.len(),
            WRITE_TIMEOUT.as_secs()
        ))),
    }
}

impl Server {
    /// Binds `addr` and exports `devices` under their bus ids ("1-1", "1-2", …).
    pub async fn bind(
        addr: SocketAddr,
        devices: Vec<(String, Arc<dyn ExportedDevice>)>,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let exports = devices
            .into_iter()
            .enumerate()
            .map(|(i, (busid, device))| {
                let busnum = busid
                    .split('-')
                    .next()
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(1);
                Arc::new(Export {
                    busid,
                    busnum,
                    devnum: i as u32 + 2,
                    device,
                    attached: AtomicBool::new(false),
                    released: Notify::new(),
                })
            })
            .collect::<Vec<_>>();
        let capacity = pending_capacity(nofile_limit(), exports.len());
        debug!(
            "up to {capacity} connections before import; file descriptor limit {:?}",
            nofile_limit()
        );
        Ok(Server {
            listener,
            exports: Arc::new(exports),
            pending: Arc::new(Semaphore::new(capacity)),
            peers: PeerPolicy::RootOrSameUser,
        })
    }

    /// Which local users may connect (default: root and the user vkey runs as).
    pub fn set_peer_policy(&mut self, peers: PeerPolicy) {
        self.peers = peers;
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the process ends. A broken connection never affects the others.
    pub async fn run(self) {
        let mut refused = 0u64;
        let mut last_warning: Option<Instant> = None;
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let Ok(slot) = self.pending.clone().try_acquire_owned() else {
                        // Full: closed at once (the peer sees its connection end).
                        drop(stream);
                        refused += 1;
                        if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                            warn!(%peer, "too many connections waiting for an import: {refused} refused");
                            last_warning = Some(Instant::now());
                            refused = 0;
                        }
                        continue;
                    };
                    if self.peers == PeerPolicy::RootOrSameUser
                        && let Err(why) = check_peer(&stream, peer)
                    {
                        warn!(%peer, "connection refused: {why}");
                        continue;
                    }
                    let exports = self.exports.clone();
                    tokio::spawn(async move {
                        match handle_connection(stream, peer, &exports, slot).await {
                            Ok(()) | Err(WireError::Closed) => debug!(%peer, "connection closed"),
                            Err(e) => warn!(%peer, "closing connection: {e}"),
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// What a connection asks for before the URB phase.
enum Request {
    DevList,
    Import(String),
}

/// Reads the OP request (and an import's bus id) within [`HANDSHAKE_TIMEOUT`].
async fn read_request(rd: &mut tokio::net::tcp::OwnedReadHalf) -> Result<Request, WireError> {
    let read = async {
        let op = read_op_header(rd).await?;
        match op.code {
            OP_REQ_DEVLIST => Ok(Request::DevList),
            OP_REQ_IMPORT => {
                let mut b = [0u8; 32];
                rd.read_exact(&mut b).await.map_err(|_| WireError::Closed)?;
                Ok(Request::Import(parse_fixed_str(&b)))
            }
            other => Err(WireError::Protocol(format!(
                "unknown operation {other:#06x} (version {:#06x})",
                op.version
            ))),
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(WireError::Protocol(format!(
                "no complete request within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            )))
        })
}

/// Accepts a local peer only if its socket belongs to root or to our own user. A peer
/// on another machine (only possible with `--allow-remote`, which warns that USB/IP has
/// no authentication) has no socket here to look up.
fn check_peer(stream: &TcpStream, peer: SocketAddr) -> Result<(), String> {
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    let own = super::peer::own_uid();
    match super::peer::peer_uid(peer, local) {
        None if !peer.ip().is_loopback() && !local.ip().is_loopback() => Ok(()),
        Some(uid) if uid == 0 || Some(uid) == own => Ok(()),
        Some(uid) => Err(format!(
            "its socket belongs to uid {uid}, not to root or to vkey's user{} (vkey serve --allow-any-user lifts this)",
            own.map(|u| format!(" (uid {u})")).unwrap_or_default()
        )),
        None => Err(
            "the owner of its socket is unknown (not in /proc/net/tcp); vkey serve --allow-any-user lifts this".into(),
        ),
    }
}

async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    exports: &[Arc<Export>],
    slot: OwnedSemaphorePermit,
) -> Result<(), WireError> {
    configure(&stream)?;
    let (mut rd, mut wr) = stream.into_split();
    match read_request(&mut rd).await? {
        Request::DevList => {
            let mut v = op_header(OP_REP_DEVLIST, 0);
            v.extend_from_slice(&(exports.len() as u32).to_be_bytes());
            for e in exports {
                v.extend_from_slice(&e.record(&e.device.identity()));
                v.extend_from_slice(&[0x03, 0x00, 0x00, 0x00]); // HID interface, padding
            }
            send(&mut wr, &v).await
        }
        Request::Import(busid) => {
            let Some(export) = exports.iter().find(|e| e.busid == busid) else {
                warn!(%peer, "import of unknown bus id {busid:?} refused");
                return send(&mut wr, &op_header(OP_REP_IMPORT, 1)).await;
            };
            if !claim(export).await {
                warn!(%peer, "import of {busid} refused: already attached");
                return send(&mut wr, &op_header(OP_REP_IMPORT, 1)).await;
            }
            let _guard = AttachGuard(export.clone());
            // Imported: the connection counts as the device's session from now on.
            drop(slot);
            let identity = export.device.identity();
            let mut v = op_header(OP_REP_IMPORT, 0);
            v.extend_from_slice(&export.record(&identity));
            send(&mut wr, &v).await?;
            info!(%peer, "{busid} attached");
            let r = run_session(rd, wr, export, identity).await;
            info!(%peer, "{busid} detached");
            r
        }
    }
}

/// Claims the device for a new session, waiting [`REIMPORT_GRACE`] for a previous one to end.
async fn claim(export: &Export) -> bool {
    let wait = async {
        loop {
            let released = export.released.notified();
            tokio::pin!(released);
            // Register before testing, so a release between the test and the await is seen.
            released.as_mut().enable();
            if !export.attached.swap(true, Ordering::AcqRel) {
                return;
            }
            released.await;
        }
    };
    tokio::time::timeout(REIMPORT_GRACE, wait).await.is_ok()
}

struct Session {
    control: Control,
    function: Box<dyn HidFunction>,
    /// Interrupt-IN URBs waiting for a report: (seqnum, buffer length).
    held_in: VecDeque<(u32, u32)>,
    /// Replies not yet written.
    out: Vec<u8>,
}

impl Session {
    fn handle(&mut self, cmd: UrbCommand, now: Instant) -> Result<(), WireError> {
        match cmd {
            UrbCommand::Submit {
                seqnum,
                direction,
                ep,
                buffer_len,
                setup,
                data,
            } => {
                match (ep as u8, direction) {
                    (0, _) => {
                        let reply = match self.control.handle(&setup, &data) {
                            ControlOutcome::Data(d) if direction == DIR_IN => {
                                // Never more than the URB's buffer or wLength: vhci drops
                                // the device on "recv xbuf".
                                let n = d.len().min(setup.length as usize).min(buffer_len as usize);
                                ret_submit(seqnum, 0, n as u32, &d[..n])
                            }
                            ControlOutcome::Data(_) => {
                                ret_submit(seqnum, 0, data.len() as u32, &[])
                            }
                            ControlOutcome::OutReport(r) => {
                                self.function.out_report(&r, now);
                                ret_submit(seqnum, 0, data.len() as u32, &[])
                            }
                            ControlOutcome::Stall => {
                                debug!("stall: {setup:?}");
                                ret_submit(seqnum, -EPIPE, 0, &[])
                            }
                        };
                        self.out.extend_from_slice(&reply);
                    }
                    (n, DIR_OUT) if n == EP_OUT => {
                        if data.len() > 64 {
                            return Err(WireError::Protocol(format!(
                                "interrupt OUT of {} bytes",
                                data.len()
                            )));
                        }
                        self.function.out_report(&data, now);
                        // OUT: no data back, actual_length = bytes taken (else hidraw's
                        // write() returns a short count and clients fail).
                        self.out
                            .extend_from_slice(&ret_submit(seqnum, 0, data.len() as u32, &[]));
                    }
                    (n, DIR_IN) if n == EP_IN & 0x7f => {
                        if self.held_in.len() >= MAX_HELD_IN_URBS {
                            return Err(WireError::Protocol(format!(
                                "more than {MAX_HELD_IN_URBS} IN URBs held"
                            )));
                        }
                        // Held until a report exists: completing it empty would turn the
                        // host's resubmission into a busy loop.
                        self.held_in.push_back((seqnum, buffer_len));
                    }
                    _ => self
                        .out
                        .extend_from_slice(&ret_submit(seqnum, -EPIPE, 0, &[])),
                }
            }
            UrbCommand::Unlink {
                seqnum,
                unlink_seqnum,
            } => {
                let status = match self.held_in.iter().position(|&(s, _)| s == unlink_seqnum) {
                    Some(i) => {
                        // Still pending: it is gone for good and never gets a RET_SUBMIT.
                        self.held_in.remove(i);
                        -ECONNRESET
                    }
                    None => 0,
                };
                self.out.extend_from_slice(&ret_unlink(seqnum, status));
            }
        }
        Ok(())
    }

    /// Completes held IN URBs with ready reports, oldest first.
    fn pump_in_reports(&mut self) {
        while let Some(&(seqnum, buffer_len)) = self.held_in.front() {
            let Some(report) = self.function.poll_in_report() else {
                break;
            };
            self.held_in.pop_front();
            let n = report.len().min(buffer_len as usize);
            self.out
                .extend_from_slice(&ret_submit(seqnum, 0, n as u32, &report[..n]));
        }
    }
}

async fn run_session(
    rd: tokio::net::tcp::OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    export: &Export,
    identity: DeviceIdentity,
) -> Result<(), WireError> {
    let mut unplug = export.device.unplug_signal();
    if let Some(rx) = &mut unplug {
        rx.mark_unchanged();
    }
    let (function, notify) = export.device.attach();
    let (tx, mut rx) = mpsc::channel::<Result<UrbCommand, WireError>>(32);
    let reader = tokio::spawn(async move {
        // One receive then brings a URB's header and its data together (and whatever
        // followed): read_urb_command's two exact reads no longer cost a system call each.
        let mut rd = tokio::io::BufReader::with_capacity(READ_BUFFER, rd);
        loop {
            let r = read_urb_command(&mut rd).await;
            let stop = r.is_err();
            if tx.send(r).await.is_err() || stop {
                break;
            }
        }
    });
    let mut s = Session {
        control: Control::new(identity),
        function,
        held_in: VecDeque::new(),
        out: Vec::new(),
    };
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let mut armed: Option<Instant> = None;
    let result = loop {
        s.pump_in_reports();
        if !s.out.is_empty() {
            if let Err(e) = send(&mut wr, &s.out).await {
                break Err(e);
            }
            s.out.clear();
        }
        // One timer while the function has a deadline, moved when the deadline moves (a
        // new timer per loop turn cost a registration and a removal in tokio's wheel);
        // dropped when there is none, so that a timer left behind never wakes an idle key.
        let deadline = s.function.poll_timeout();
        if deadline != armed {
            match (deadline, timer.as_mut()) {
                (Some(d), Some(t)) => t.as_mut().reset(tokio::time::Instant::from_std(d)),
                (Some(d), None) => {
                    timer = Some(Box::pin(tokio::time::sleep_until(
                        tokio::time::Instant::from_std(d),
                    )))
                }
                (None, _) => timer = None,
            }
            armed = deadline;
        }
        let unplugged = async {
            match &mut unplug {
                Some(rx) => {
                    // A dropped sender means the device is gone for good: unplugged too.
                    let _ = rx.changed().await;
                }
                None => std::future::pending().await,
            }
        };
        let due = async {
            match timer.as_mut() {
                Some(t) => t.as_mut().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // URBs that already came in go before the timer: a packet read late on a
            // loaded machine must not turn into a CTAPHID message timeout.
            biased;
            cmd = rx.recv() => {
                // Take every command already read before writing replies: a multi-report
                // message then costs one write, not one per report. Up to a bound: a
                // peer that sends faster than it reads gets its replies written first.
                let Some(first) = cmd else { break Ok(()) };
                let mut next = Some(first);
                let mut end = None;
                while let Some(c) = next.take() {
                    match c {
                        Ok(c) => if let Err(e) = s.handle(c, Instant::now()) { end = Some(Err(e)); break },
                        Err(WireError::Closed) => { end = Some(Ok(())); break }
                        Err(e) => { end = Some(Err(e)); break }
                    }
                    if s.out.len() < MAX_BUFFERED_OUTPUT {
                        next = rx.try_recv().ok();
                    }
                }
                if let Some(r) = end { break r }
            }
            _ = notify.notified() => s.function.handle_wakeup(Instant::now()),
            _ = due => s.function.handle_timeout(Instant::now()),
            _ = unplugged => {
                info!("{} unplugged: ending the session", export.busid);
                break Ok(());
            }
        }
    };
    reader.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel holds for an accepted connection after [`configure`]: the
    /// keepalive that frees the import of a host that vanished without FIN.
    #[test]
    fn accepted_connections_get_keepalive_and_user_timeout() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let _client = TcpStream::connect(addr).await.unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            configure(&stream).unwrap();
            let sock = socket2::SockRef::from(&stream);
            assert!(sock.keepalive().unwrap());
            assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
            assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
            assert_eq!(sock.tcp_keepalive_retries().unwrap(), KEEPALIVE_PROBES);
            assert_eq!(sock.tcp_user_timeout().unwrap(), Some(TCP_USER_TIMEOUT));
            assert!(stream.nodelay().unwrap());
            // A vanished host is let go well within a few minutes.
            assert!(
                KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_PROBES <= Duration::from_secs(60)
            );
        });
    }

    #[test]
    fn pending_connections_leave_the_fd_reserve_free() {
        assert_eq!(pending_capacity(None, 1), MAX_PENDING_CONNECTIONS);
        assert_eq!(pending_capacity(Some(1024), 1), MAX_PENDING_CONNECTIONS);
        // RLIMIT_NOFILE 64: 64 - 32 reserved - 1 session = 31 pending connections.
        assert_eq!(pending_capacity(Some(64), 1), 31);
        // Absurdly low limits still let one connection in.
        assert_eq!(pending_capacity(Some(10), 1), 1);
    }
}
