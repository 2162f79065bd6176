//! The CTAPHID transport as a sans-IO state machine (CTAP 2.1 §11.2).
//!
//! It consumes 64-byte OUT reports and timer ticks and produces IN reports and
//! [`Event`]s for the application above it. It knows nothing of USB (the caller moves
//! reports) nor of CTAP commands (CBOR and MSG payloads are opaque bytes), so every
//! framing rule is testable with plain byte arrays and a fake clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::packet::{
    BROADCAST_CID, Command, HidError, INIT_DATA_LEN, KeepaliveStatus, MAX_MESSAGE_LEN, Packet,
    REPORT_LEN, Report, fragment,
};

/// CTAPHID protocol version reported by INIT (§11.2.9.1.3).
const PROTOCOL_VERSION: u8 = 2;
/// Capability flags (§11.2.9.1.3; LOCK is the U2F HID flag that python-fido2 also knows).
pub const CAPABILITY_WINK: u8 = 0x01;
pub const CAPABILITY_LOCK: u8 = 0x02;
pub const CAPABILITY_CBOR: u8 = 0x04;
pub const CAPABILITY_NMSG: u8 = 0x08;

/// A message whose next packet does not come within this time is aborted with
/// ERR_MSG_TIMEOUT. Hosts use 400–1000 ms; the notes and most keys use 500 ms for the
/// whole message. vkey restarts the timer at every packet and waits 1 s: a USB/IP host
/// is a program on a possibly loaded machine (Chromium in the TCG-emulated test VM takes
/// ~850 ms for a six-packet makeCredential; at load 5–7 on 2 cores packets came up to
/// 316 ms apart, at load 8–10 more than 500 ms), and a timeout there reaches the page as
/// NotAllowedError.
pub const MSG_TIMEOUT: Duration = Duration::from_millis(1000);
/// §11.2.9.2.1: KEEPALIVE at least every 100 ms while a request is processed.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(100);
/// LOCK may last at most 10 s (§11.2.9.2.2).
const MAX_LOCK_SECS: u8 = 10;
/// Bound on reports waiting for the host to read them. A real host drains its IN pipe
/// continuously; this only stops a host that never reads from growing our memory.
const MAX_QUEUED_REPORTS: usize = 4 * 130;

/// What the application above may do; decides the INIT capability bits, which must
/// tell the truth (clients pick CTAP1 vs CTAP2 from them).
#[derive(Clone, Debug)]
pub struct Config {
    pub cbor: bool,
    pub msg: bool,
    pub wink: bool,
    /// Device version (major, minor, build) reported by INIT.
    pub version: (u8, u8, u8),
}

impl Config {
    fn capabilities(&self) -> u8 {
        let mut c = CAPABILITY_LOCK;
        if self.wink {
            c |= CAPABILITY_WINK;
        }
        if self.cbor {
            c |= CAPABILITY_CBOR;
        }
        if !self.msg {
            c |= CAPABILITY_NMSG;
        }
        c
    }
}

/// The kind of request handed to the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// CTAPHID_CBOR: a CTAP2 command byte followed by CBOR.
    Cbor,
    /// CTAPHID_MSG: a CTAP1/U2F APDU.
    Msg,
}

/// Identifies one request; the response must quote it. A transaction that was aborted
/// (INIT resync) is simply never matched again, so a late response is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxnId(u64);

/// What the transport asks of the application.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Process this request and call [`CtapHid::respond`] with the same `txn`.
    Request {
        txn: TxnId,
        cid: u32,
        kind: RequestKind,
        data: Vec<u8>,
    },
    /// CTAPHID_CANCEL for an outstanding request: stop waiting for the user and answer
    /// CTAP2_ERR_KEEPALIVE_CANCEL (§11.2.9.1.5). The response is still expected.
    Cancel { txn: TxnId },
    /// The request was abandoned (INIT resync on its channel); its response is dropped.
    Abort { txn: TxnId },
    /// CTAPHID_WINK: identify yourself.
    Wink,
}

struct Assembly {
    cid: u32,
    cmd: Command,
    expected: usize,
    data: Vec<u8>,
    next_seq: u8,
    /// When the last packet of the message arrived.
    last_packet: Instant,
}

struct Busy {
    txn: TxnId,
    cid: u32,
    cmd: Command,
    next_keepalive: Instant,
}

/// CTAPHID state for one USB session. A new session (USB/IP import) starts fresh.
pub struct CtapHid {
    config: Config,
    next_cid: u32,
    next_txn: u64,
    assembly: Option<Assembly>,
    busy: Option<Busy>,
    keepalive_status: KeepaliveStatus,
    lock: Option<(u32, Instant)>,
    out: VecDeque<Report>,
    events: VecDeque<Event>,
}

impl CtapHid {
    pub fn new(config: Config) -> CtapHid {
        CtapHid {
            config,
            next_cid: 1,
            next_txn: 0,
            assembly: None,
            busy: None,
            keepalive_status: KeepaliveStatus::Processing,
            lock: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Next report for the host, if any.
    pub fn poll_report(&mut self) -> Option<Report> {
        self.out.pop_front()
    }

    /// Next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called. `None` when
    /// idle: an idle key sets no timer at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let a = self.assembly.as_ref().map(|a| a.last_packet + MSG_TIMEOUT);
        let b = self.busy.as_ref().map(|b| b.next_keepalive);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What the next KEEPALIVE says: the application sets UPNEEDED while it waits for the user.
    pub fn set_keepalive_status(&mut self, status: KeepaliveStatus) {
        self.keepalive_status = status;
    }

    /// Whether a request is waiting for its response.
    pub fn is_busy(&self) -> bool {
        self.busy.is_some()
    }

    /// Expires an incomplete message and sends due keepalives.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(a) = &self.assembly
            && now >= a.last_packet + MSG_TIMEOUT
        {
            let cid = a.cid;
            tracing::debug!(
                "CTAPHID channel {cid:08x}: message timed out after {} of {} bytes",
                a.data.len(),
                a.expected
            );
            self.assembly = None;
            self.send_error(cid, HidError::MsgTimeout);
        }
        if let Some(b) = &mut self.busy
            && now >= b.next_keepalive
        {
            // Schedule from now, not from the old deadline: after a stall we send
            // one keepalive, not a burst of catch-up ones.
            b.next_keepalive = now + KEEPALIVE_INTERVAL;
            let cid = b.cid;
            let status = self.keepalive_status as u8;
            self.send(cid, Command::Keepalive, &[status]);
        }
    }

    /// The application's answer to a request. Dropped if the transaction was aborted.
    pub fn respond(&mut self, txn: TxnId, data: &[u8]) {
        let Some(b) = &self.busy else { return };
        if b.txn != txn {
            return;
        }
        let (cid, cmd) = (b.cid, b.cmd);
        self.busy = None;
        self.keepalive_status = KeepaliveStatus::Processing;
        if data.len() > MAX_MESSAGE_LEN {
            // The application must never do this; tell the host rather than truncate.
            self.send_error(cid, HidError::Other);
        } else {
            self.send(cid, cmd, data);
        }
    }

    /// Feeds one OUT report from the host. Shorter reports are zero-padded (some hosts
    /// strip trailing zeros); longer ones are cut to the report length.
    pub fn handle_report(&mut self, bytes: &[u8], now: Instant) {
        let mut report = [0u8; REPORT_LEN];
        let n = bytes.len().min(REPORT_LEN);
        report[..n].copy_from_slice(&bytes[..n]);
        let packet = Packet::parse(&report);
        // A message that has timed out is over before this packet counts — unless this
        // packet continues it: on a loaded machine a packet is often read well after it
        // came in, and only the timer (nothing came) ends a message, not the lateness of
        // the packet that did come.
        let continues = matches!(&packet, Packet::Cont { cid, .. }
            if self.assembly.as_ref().is_some_and(|a| a.cid == *cid));
        if !continues {
            self.handle_timeout(now);
        }
        match packet {
            Packet::Init {
                cid,
                cmd,
                bcnt,
                data,
            } => self.handle_init_packet(cid, cmd, bcnt as usize, data, now),
            Packet::Cont { cid, seq, data } => self.handle_cont_packet(cid, seq, data, now),
        }
    }

    fn is_allocated(&self, cid: u32) -> bool {
        cid != 0 && cid != BROADCAST_CID && cid < self.next_cid
    }

    fn allocate_cid(&mut self) -> u32 {
        let cid = self.next_cid;
        // Channel IDs are handed out in order; 0 and the broadcast ID are never used.
        self.next_cid = if self.next_cid >= BROADCAST_CID - 1 {
            1
        } else {
            self.next_cid + 1
        };
        cid
    }

    fn locked_by_other(&mut self, cid: u32, now: Instant) -> bool {
        match self.lock {
            Some((owner, until)) if now < until => owner != cid,
            Some(_) => {
                self.lock = None;
                false
            }
            None => false,
        }
    }

    fn handle_init_packet(&mut self, cid: u32, cmd: u8, bcnt: usize, data: &[u8], now: Instant) {
        if cid == 0 {
            return self.send_error(cid, HidError::InvalidChannel);
        }
        if cmd == Command::Init as u8 {
            return self.handle_init(cid, bcnt, data);
        }
        if cid == BROADCAST_CID || !self.is_allocated(cid) {
            return self.send_error(cid, HidError::InvalidChannel);
        }
        if self.locked_by_other(cid, now) {
            return self.send_error(cid, HidError::ChannelBusy);
        }
        if cmd == Command::Cancel as u8 {
            // §11.2.9.1.5: cancels the outstanding request of this channel; no reply of its own.
            if let Some(b) = &self.busy
                && b.cid == cid
            {
                self.events.push_back(Event::Cancel { txn: b.txn });
            }
            return;
        }
        if let Some(a) = &self.assembly {
            if a.cid == cid {
                // A new message started before the last one was complete.
                self.assembly = None;
                return self.send_error(cid, HidError::InvalidSeq);
            }
            // Another channel is mid-message: answer at once, do not queue (§11.2.9.1).
            return self.send_error(cid, HidError::ChannelBusy);
        }
        if self.busy.is_some() {
            return self.send_error(cid, HidError::ChannelBusy);
        }
        let command = match Command::from_u8(cmd) {
            Some(c @ (Command::Ping | Command::Lock | Command::Cbor)) => c,
            Some(Command::Msg) if self.config.msg => Command::Msg,
            Some(Command::Wink) if self.config.wink => Command::Wink,
            _ => return self.send_error(cid, HidError::InvalidCmd),
        };
        if command == Command::Cbor && !self.config.cbor {
            return self.send_error(cid, HidError::InvalidCmd);
        }
        if bcnt > MAX_MESSAGE_LEN {
            return self.send_error(cid, HidError::InvalidLen);
        }
        // §11.2.9.1.2: CTAPHID_CBOR carries 1..n+1 bytes, the CTAP command byte first.
        if command == Command::Cbor && bcnt == 0 {
            return self.send_error(cid, HidError::InvalidLen);
        }
        if bcnt <= INIT_DATA_LEN {
            return self.handle_message(cid, command, data[..bcnt].to_vec(), now);
        }
        let mut buf = Vec::with_capacity(bcnt);
        buf.extend_from_slice(data);
        self.assembly = Some(Assembly {
            cid,
            cmd: command,
            expected: bcnt,
            data: buf,
            next_seq: 0,
            last_packet: now,
        });
    }

    fn handle_cont_packet(&mut self, cid: u32, seq: u8, data: &[u8], now: Instant) {
        let Some(a) = &mut self.assembly else {
            // Spurious continuation packets are ignored (§11.2.4).
            return;
        };
        if a.cid != cid {
            // A continuation on another channel while we assemble: that channel is not
            // allowed to send now; tell it so rather than silently dropping its data.
            if self.is_allocated(cid) {
                self.send_error(cid, HidError::ChannelBusy);
            }
            return;
        }
        if seq != a.next_seq {
            self.assembly = None;
            return self.send_error(cid, HidError::InvalidSeq);
        }
        a.next_seq += 1;
        a.last_packet = now;
        let take = (a.expected - a.data.len()).min(data.len());
        a.data.extend_from_slice(&data[..take]);
        if a.data.len() == a.expected {
            let Some(a) = self.assembly.take() else {
                return;
            };
            self.handle_message(a.cid, a.cmd, a.data, now);
        }
    }

    fn handle_init(&mut self, cid: u32, bcnt: usize, data: &[u8]) {
        if bcnt != 8 {
            return self.send_error(cid, HidError::InvalidLen);
        }
        let reply_cid = if cid == BROADCAST_CID {
            self.allocate_cid()
        } else if self.is_allocated(cid) {
            // Resynchronisation (§11.2.9.1.3): abandon whatever this channel was doing.
            if self.assembly.as_ref().is_some_and(|a| a.cid == cid) {
                self.assembly = None;
            }
            if let Some(b) = &self.busy
                && b.cid == cid
            {
                self.events.push_back(Event::Abort { txn: b.txn });
                self.busy = None;
                self.keepalive_status = KeepaliveStatus::Processing;
            }
            cid
        } else {
            return self.send_error(cid, HidError::InvalidChannel);
        };
        let mut resp = [0u8; 17];
        resp[..8].copy_from_slice(&data[..8]);
        resp[8..12].copy_from_slice(&reply_cid.to_be_bytes());
        resp[12] = PROTOCOL_VERSION;
        let (major, minor, build) = self.config.version;
        resp[13] = major;
        resp[14] = minor;
        resp[15] = build;
        resp[16] = self.config.capabilities();
        // The reply goes to the channel the request came on (broadcast for allocation).
        self.send(cid, Command::Init, &resp);
    }

    fn handle_message(&mut self, cid: u32, cmd: Command, data: Vec<u8>, now: Instant) {
        match cmd {
            Command::Ping => self.send(cid, Command::Ping, &data),
            Command::Wink => {
                self.events.push_back(Event::Wink);
                self.send(cid, Command::Wink, &[]);
            }
            Command::Lock => {
                if data.len() != 1 {
                    return self.send_error(cid, HidError::InvalidLen);
                }
                let secs = data[0];
                if secs > MAX_LOCK_SECS {
                    return self.send_error(cid, HidError::InvalidPar);
                }
                self.lock = (secs > 0).then(|| (cid, now + Duration::from_secs(u64::from(secs))));
                self.send(cid, Command::Lock, &[]);
            }
            Command::Cbor | Command::Msg => {
                let txn = TxnId(self.next_txn);
                self.next_txn += 1;
                self.busy = Some(Busy {
                    txn,
                    cid,
                    cmd,
                    next_keepalive: now + KEEPALIVE_INTERVAL,
                });
                let kind = if cmd == Command::Cbor {
                    RequestKind::Cbor
                } else {
                    RequestKind::Msg
                };
                self.events.push_back(Event::Request {
                    txn,
                    cid,
                    kind,
                    data,
                });
            }
            // Unreachable: handle_init_packet only lets the commands above through.
            Command::Init | Command::Cancel | Command::Keepalive | Command::Error => {
                self.send_error(cid, HidError::InvalidCmd)
            }
        }
    }

    fn send_error(&mut self, cid: u32, err: HidError) {
        self.send(cid, Command::Error, &[err as u8]);
    }

    fn send(&mut self, cid: u32, cmd: Command, data: &[u8]) {
        let Some(reports) = fragment(cid, cmd as u8, data) else {
            return;
        };
        for r in reports {
            if self.out.len() >= MAX_QUEUED_REPORTS {
                self.out.pop_front();
            }
            self.out.push_back(r);
        }
    }
}
