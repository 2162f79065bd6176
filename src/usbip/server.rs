//! The USB/IP server: OP_REQ_DEVLIST / OP_REQ_IMPORT, then the URB phase of an
//! imported device (CMD_SUBMIT / RET_SUBMIT, CMD_UNLINK / RET_UNLINK).
//!
//! One task per connection. In the URB phase a reader task parses commands (reading is
//! not cancel-safe, so it must not sit in a `select!`) and the session loop owns all
//! state: endpoint 0, the queue of held interrupt-IN URBs, and the [`HidFunction`].
//! The loop sleeps until a command arrives, the function's worker signals, or the
//! function's own timer is due: an idle key with an IN URB held wakes up zero times.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
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
    peers: PeerPolicy,
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
            .collect();
        Ok(Server {
            listener,
            exports: Arc::new(exports),
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
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    if self.peers == PeerPolicy::RootOrSameUser
                        && let Err(why) = check_peer(&stream, peer)
                    {
                        warn!(%peer, "connection refused: {why}");
                        continue;
                    }
                    let exports = self.exports.clone();
                    tokio::spawn(async move {
                        match handle_connection(stream, peer, &exports).await {
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
) -> Result<(), WireError> {
    // Without TCP_NODELAY, Nagle + delayed ACK add ~40 ms per report pair.
    stream.set_nodelay(true)?;
    let (mut rd, wr) = stream.into_split();
    let mut wr = BufWriter::new(wr);
    let op = read_op_header(&mut rd).await?;
    match op.code {
        OP_REQ_DEVLIST => {
            let mut v = op_header(OP_REP_DEVLIST, 0);
            v.extend_from_slice(&(exports.len() as u32).to_be_bytes());
            for e in exports {
                v.extend_from_slice(&e.record(&e.device.identity()));
                v.extend_from_slice(&[0x03, 0x00, 0x00, 0x00]); // HID interface, padding
            }
            wr.write_all(&v).await?;
            wr.flush().await?;
            Ok(())
        }
        OP_REQ_IMPORT => {
            let mut b = [0u8; 32];
            rd.read_exact(&mut b).await.map_err(|_| WireError::Closed)?;
            let busid = parse_fixed_str(&b);
            let Some(export) = exports.iter().find(|e| e.busid == busid) else {
                warn!(%peer, "import of unknown bus id {busid:?} refused");
                wr.write_all(&op_header(OP_REP_IMPORT, 1)).await?;
                wr.flush().await?;
                return Ok(());
            };
            if !claim(export).await {
                warn!(%peer, "import of {busid} refused: already attached");
                wr.write_all(&op_header(OP_REP_IMPORT, 1)).await?;
                wr.flush().await?;
                return Ok(());
            }
            let _guard = AttachGuard(export.clone());
            let identity = export.device.identity();
            let mut v = op_header(OP_REP_IMPORT, 0);
            v.extend_from_slice(&export.record(&identity));
            wr.write_all(&v).await?;
            wr.flush().await?;
            info!(%peer, "{busid} attached");
            let r = run_session(rd, wr, export, identity).await;
            info!(%peer, "{busid} detached");
            r
        }
        other => Err(WireError::Protocol(format!(
            "unknown operation {other:#06x} (version {:#06x})",
            op.version
        ))),
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
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut wr: BufWriter<OwnedWriteHalf>,
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
    let result = loop {
        s.pump_in_reports();
        if !s.out.is_empty() {
            if let Err(e) = wr.write_all(&s.out).await {
                break Err(e.into());
            }
            s.out.clear();
            if let Err(e) = wr.flush().await {
                break Err(e.into());
            }
        }
        let deadline = s.function.poll_timeout();
        let unplugged = async {
            match &mut unplug {
                Some(rx) => {
                    // A dropped sender means the device is gone for good: unplugged too.
                    let _ = rx.changed().await;
                }
                None => std::future::pending().await,
            }
        };
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // URBs that already came in go before the timer: a packet read late on a
            // loaded machine must not turn into a CTAPHID message timeout.
            biased;
            cmd = rx.recv() => {
                // Take every command already read before writing replies: a multi-report
                // message then costs one write, not one per report.
                let Some(first) = cmd else { break Ok(()) };
                let mut next = Some(first);
                let mut end = None;
                while let Some(c) = next.take() {
                    match c {
                        Ok(c) => if let Err(e) = s.handle(c, Instant::now()) { end = Some(Err(e)); break },
                        Err(WireError::Closed) => { end = Some(Ok(())); break }
                        Err(e) => { end = Some(Err(e)); break }
                    }
                    next = rx.try_recv().ok();
                }
                if let Some(r) = end { break r }
            }
            _ = notify.notified() => s.function.handle_wakeup(Instant::now()),
            _ = timer => s.function.handle_timeout(Instant::now()),
            _ = unplugged => {
                info!("{} unplugged: ending the session", export.busid);
                break Ok(());
            }
        }
    };
    reader.abort();
    result
}
