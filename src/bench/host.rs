//! A native USB/IP host that drives a FIDO HID device the way Linux's vhci-hcd + usbhid +
//! hidraw do: import, enumerate (device, configuration, strings, SET_CONFIGURATION,
//! SET_IDLE, report descriptor), keep **one interrupt-IN URB always outstanding** and
//! resubmit it the moment it completes, and write each OUT report as one interrupt-OUT
//! URB, waiting for its completion before the next (a hidraw `write()` is synchronous).
//!
//! Everything read from the peer is bounded: the receive buffer, each transfer's length
//! (never more than the URB asked for), the descriptors walked, the reports queued. A
//! read that passes its deadline keeps the bytes it has, so a late reply never desyncs
//! the stream; a reply for a seqnum we never sent, or a malformed header, ends the
//! connection with an error, never a panic.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::ctaphid::packet::{REPORT_LEN, Report};
use crate::usbip::client::setup_bytes;
use crate::usbip::protocol::{
    CMD_SUBMIT, CMD_UNLINK, DIR_IN, DIR_OUT, OP_REP_IMPORT, OP_REQ_IMPORT, RET_SUBMIT, RET_UNLINK,
    USBIP_VERSION, fixed_str, parse_fixed_str,
};

/// Largest transfer we ever ask for (a configuration or report descriptor); a reply is
/// never longer than the URB's buffer, so this bounds every read.
const MAX_CONTROL_LEN: u16 = 1024;
/// Reports received while no one reads them (e.g. during an OUT wait): hidraw's ring
/// (HIDRAW_BUFFER_SIZE), which drops new reports when full.
const MAX_QUEUED_REPORTS: usize = 64;
/// URBs we gave up waiting for (their RET may still come; it is then dropped).
const MAX_ABANDONED: usize = 64;

/// Why a host operation failed.
#[derive(Debug)]
pub enum HostError {
    /// Nothing arrived before the deadline; the connection is still usable.
    Timeout,
    /// The peer closed the connection or an I/O error occurred.
    Closed(String),
    /// The peer broke the USB/IP protocol (or sent a descriptor we cannot use).
    Protocol(String),
    /// A transfer completed with a non-zero USB status (e.g. -32 stall).
    Status(i32),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Timeout => write!(f, "timeout"),
            HostError::Closed(m) => write!(f, "connection lost: {m}"),
            HostError::Protocol(m) => write!(f, "USB/IP protocol: {m}"),
            HostError::Status(s) => write!(f, "USB status {s}"),
        }
    }
}

impl std::error::Error for HostError {}

fn closed(e: io::Error) -> HostError {
    HostError::Closed(e.to_string())
}

/// What the enumeration learned about the device.
#[derive(Debug, Clone, Default)]
pub struct DeviceInfo {
    pub vendor_id: u16,
    pub product_id: u16,
    pub manufacturer: String,
    pub product: String,
    pub serial: String,
    pub interface: u8,
    pub in_ep: u8,
    pub out_ep: u8,
    pub in_packet_size: u16,
}

#[derive(Clone, Copy)]
struct Pending {
    direction: u32,
    buffer_len: u32,
    abandoned: bool,
}

/// One RET_SUBMIT / RET_UNLINK frame.
enum Ret {
    Submit {
        seqnum: u32,
        status: i32,
        data: Vec<u8>,
    },
    Unlink,
}

/// An imported, enumerated FIDO HID device with one IN URB always outstanding.
pub struct UsbipHost {
    stream: TcpStream,
    rbuf: Vec<u8>,
    next_seqnum: u32,
    pending: HashMap<u32, Pending>,
    in_seq: u32,
    reports: VecDeque<Report>,
    pub info: DeviceInfo,
    /// Completed IN URBs with a non-zero status (resubmitted like usbhid does).
    pub in_errors: u64,
    /// IN URBs completed with no data (usbhid ignores them; a device that does this
    /// while idle keeps the host busy).
    pub empty_in: u64,
    /// Reports dropped because the queue was full (as hidraw drops them).
    pub dropped_reports: u64,
    /// The socket's read timeout as last set: a `setsockopt` per read was a third of
    /// the host's system calls per report.
    read_timeout: Option<Duration>,
}

/// How far the socket's read timeout may be from the time left before it is set again:
/// a read may then wait this much past its deadline, or time out this much early (and
/// is retried).
const READ_TIMEOUT_SLACK: Duration = Duration::from_millis(1);

impl UsbipHost {
    /// Connects, imports `busid`, enumerates like Linux and submits the first IN URB.
    pub fn attach(addr: &str, busid: &str, timeout: Duration) -> Result<UsbipHost, HostError> {
        let sa: SocketAddr = addr
            .to_socket_addrs()
            .map_err(closed)?
            .next()
            .ok_or_else(|| HostError::Closed(format!("{addr}: no address")))?;
        let stream = TcpStream::connect_timeout(&sa, timeout).map_err(closed)?;
        stream.set_nodelay(true).map_err(closed)?;
        // A peer that stops reading must not block a write for ever either.
        stream.set_write_timeout(Some(timeout)).map_err(closed)?;
        let mut host = UsbipHost {
            stream,
            rbuf: Vec::with_capacity(4096),
            next_seqnum: 1,
            pending: HashMap::new(),
            in_seq: 0,
            reports: VecDeque::new(),
            info: DeviceInfo::default(),
            in_errors: 0,
            empty_in: 0,
            dropped_reports: 0,
            read_timeout: None,
        };
        let deadline = Instant::now() + timeout;
        host.import(busid, deadline)?;
        host.enumerate(deadline)?;
        host.in_seq = host.submit_in()?;
        Ok(host)
    }

    fn import(&mut self, busid: &str, deadline: Instant) -> Result<(), HostError> {
        let mut req = USBIP_VERSION.to_be_bytes().to_vec();
        req.extend_from_slice(&OP_REQ_IMPORT.to_be_bytes());
        req.extend_from_slice(&0u32.to_be_bytes());
        req.extend_from_slice(&fixed_str(busid, 32));
        self.stream.write_all(&req).map_err(closed)?;
        self.fill(8, deadline)?;
        let h: Vec<u8> = self.rbuf.drain(..8).collect();
        if u16::from_be_bytes([h[2], h[3]]) != OP_REP_IMPORT {
            return Err(HostError::Protocol("bad OP_REP_IMPORT header".into()));
        }
        if h[4..8] != [0; 4] {
            return Err(HostError::Protocol(format!("import of {busid} refused")));
        }
        self.fill(312, deadline)?;
        let rec: Vec<u8> = self.rbuf.drain(..312).collect();
        let got = parse_fixed_str(&rec[256..288]);
        if got != busid {
            return Err(HostError::Protocol(format!(
                "recv different busid ({got:?} for {busid:?})"
            )));
        }
        Ok(())
    }

    /// Reads until `rbuf` holds at least `n` bytes or the deadline passes.
    fn fill(&mut self, n: usize, deadline: Instant) -> Result<(), HostError> {
        let mut chunk = [0u8; 8192];
        while self.rbuf.len() < n {
            let now = Instant::now();
            if now >= deadline {
                return Err(HostError::Timeout);
            }
            // set_read_timeout(Some(0)) is an error: always wait at least 1 µs.
            let wait = (deadline - now).max(Duration::from_micros(1));
            if self
                .read_timeout
                .is_none_or(|t| t.abs_diff(wait) > READ_TIMEOUT_SLACK)
            {
                self.stream.set_read_timeout(Some(wait)).map_err(closed)?;
                self.read_timeout = Some(wait);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(HostError::Closed("peer closed the connection".into())),
                Ok(k) => self.rbuf.extend_from_slice(&chunk[..k]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // The timeout may have been up to the slack shorter than the time
                    // left: then read again with the exact time left.
                    if Instant::now() < deadline {
                        self.read_timeout = None;
                        continue;
                    }
                    return Err(HostError::Timeout);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(closed(e)),
            }
        }
        Ok(())
    }

    fn submit(
        &mut self,
        ep: u8,
        direction: u32,
        setup: [u8; 8],
        buffer_len: u32,
        data: &[u8],
    ) -> Result<u32, HostError> {
        let seqnum = self.next_seqnum;
        self.next_seqnum = self.next_seqnum.wrapping_add(1).max(1);
        let mut v = Vec::with_capacity(48 + data.len());
        for x in [
            CMD_SUBMIT,
            seqnum,
            0x0001_0002, // devid: bus 1, device 2, as vhci numbers the first device
            direction,
            u32::from(ep),
            0, // transfer_flags
            buffer_len,
            0, // start_frame
            0, // number_of_packets: not isochronous
            0, // interval
        ] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(&setup);
        v.extend_from_slice(data);
        self.stream.write_all(&v).map_err(closed)?;
        self.pending.insert(
            seqnum,
            Pending {
                direction,
                buffer_len,
                abandoned: false,
            },
        );
        Ok(seqnum)
    }

    fn submit_in(&mut self) -> Result<u32, HostError> {
        let (ep, len) = (self.info.in_ep, u32::from(self.info.in_packet_size));
        self.submit(ep, DIR_IN, [0; 8], len, &[])
    }

    /// Reads the next RET frame, or times out keeping what was read.
    fn next_ret(&mut self, deadline: Instant) -> Result<Ret, HostError> {
        self.fill(48, deadline)?;
        let h = &self.rbuf[..48];
        let u = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let (command, seqnum, status, actual_length) = (u(0), u(4), u(20) as i32, u(24));
        match command {
            RET_SUBMIT => {
                let Some(p) = self.pending.get(&seqnum).copied() else {
                    return Err(HostError::Protocol(format!(
                        "RET_SUBMIT for unknown seqnum {seqnum}"
                    )));
                };
                let data_len = if p.direction == DIR_IN {
                    if actual_length > p.buffer_len {
                        return Err(HostError::Protocol(format!(
                            "RET_SUBMIT seq {seqnum}: actual_length {actual_length} > buffer {}",
                            p.buffer_len
                        )));
                    }
                    actual_length as usize
                } else {
                    0
                };
                self.fill(48 + data_len, deadline)?;
                let data = self.rbuf[48..48 + data_len].to_vec();
                self.rbuf.drain(..48 + data_len);
                self.pending.remove(&seqnum);
                if p.abandoned {
                    return self.next_ret(deadline);
                }
                Ok(Ret::Submit {
                    seqnum,
                    status,
                    data,
                })
            }
            RET_UNLINK => {
                self.rbuf.drain(..48);
                Ok(Ret::Unlink)
            }
            other => Err(HostError::Protocol(format!(
                "unexpected reply command {other:#x}"
            ))),
        }
    }

    /// Handles one RET that is not the one a caller waits for: an IN completion queues
    /// its report and resubmits the IN URB at once (usbhid's behaviour).
    fn on_in_completion(&mut self, status: i32, data: Vec<u8>) -> Result<(), HostError> {
        self.in_seq = self.submit_in()?;
        if status != 0 {
            self.in_errors += 1;
            return Ok(());
        }
        // usbhid's hid_irq_in passes on only completions with data.
        if data.is_empty() {
            self.empty_in += 1;
            return Ok(());
        }
        if self.reports.len() >= MAX_QUEUED_REPORTS {
            self.dropped_reports += 1;
            return Ok(());
        }
        // Reports shorter than 64 bytes are zero-padded, as hidraw hands them on.
        let mut r = [0u8; REPORT_LEN];
        let n = data.len().min(REPORT_LEN);
        r[..n].copy_from_slice(&data[..n]);
        self.reports.push_back(r);
        Ok(())
    }

    /// Waits for the completion of `seq` (control or OUT); IN reports meanwhile are queued.
    fn wait_for(&mut self, seq: u32, deadline: Instant) -> Result<(i32, Vec<u8>), HostError> {
        loop {
            let ret = match self.next_ret(deadline) {
                Err(HostError::Timeout) => {
                    self.abandon(seq);
                    return Err(HostError::Timeout);
                }
                r => r?,
            };
            match ret {
                Ret::Submit {
                    seqnum,
                    status,
                    data,
                } if seqnum == seq => return Ok((status, data)),
                other => self.on_ret(other)?,
            }
        }
    }

    /// A reply that is not the one a caller waits for: the IN URB's completion (a
    /// report), a late RET_UNLINK, or a RET_SUBMIT nobody sent (a protocol error).
    fn on_ret(&mut self, ret: Ret) -> Result<(), HostError> {
        match ret {
            Ret::Submit {
                seqnum,
                status,
                data,
            } if seqnum == self.in_seq => self.on_in_completion(status, data),
            Ret::Submit { seqnum, .. } => Err(HostError::Protocol(format!(
                "RET_SUBMIT for seqnum {seqnum} out of turn"
            ))),
            Ret::Unlink => Ok(()),
        }
    }

    /// Gives up on a URB like a host that unlinks it: CMD_UNLINK, and its RET (if it
    /// still comes) is dropped.
    fn abandon(&mut self, seq: u32) {
        if let Some(p) = self.pending.get_mut(&seq) {
            p.abandoned = true;
        }
        let seqnum = self.next_seqnum;
        self.next_seqnum = self.next_seqnum.wrapping_add(1).max(1);
        let mut v = Vec::with_capacity(48);
        for x in [CMD_UNLINK, seqnum, 0x0001_0002, 0, 0, seq] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(&[0u8; 24]);
        let _ = self.stream.write_all(&v);
    }

    /// Too many URBs never answered: the peer is not serving this connection.
    pub fn is_wedged(&self) -> bool {
        self.pending.values().filter(|p| p.abandoned).count() > MAX_ABANDONED
    }

    fn control_in(
        &mut self,
        setup: [u8; 8],
        len: u16,
        deadline: Instant,
    ) -> Result<Vec<u8>, HostError> {
        let seq = self.submit(0, DIR_IN, setup, u32::from(len), &[])?;
        match self.wait_for(seq, deadline)? {
            (0, d) => Ok(d),
            (s, _) => Err(HostError::Status(s)),
        }
    }

    fn control_out(&mut self, setup: [u8; 8], deadline: Instant) -> Result<i32, HostError> {
        let seq = self.submit(0, DIR_OUT, setup, 0, &[])?;
        Ok(self.wait_for(seq, deadline)?.0)
    }

    fn get_descriptor(
        &mut self,
        request_type: u8,
        value: u16,
        index: u16,
        len: u16,
        deadline: Instant,
    ) -> Result<Vec<u8>, HostError> {
        self.control_in(
            setup_bytes(request_type, 6, value, index, len),
            len,
            deadline,
        )
    }

    fn string(&mut self, index: u8, deadline: Instant) -> String {
        if index == 0 {
            return String::new();
        }
        match self.get_descriptor(0x80, 0x0300 | u16::from(index), 0x0409, 255, deadline) {
            Ok(d) => decode_string_descriptor(&d),
            Err(_) => String::new(),
        }
    }

    /// The enumeration Linux performs on attach (see ../shared/notes/usbip-hid.md).
    fn enumerate(&mut self, deadline: Instant) -> Result<(), HostError> {
        self.get_descriptor(0x80, 0x0100, 0, 8, deadline)?;
        let dev = self.get_descriptor(0x80, 0x0100, 0, 18, deadline)?;
        if dev.len() < 18 || dev[1] != 1 {
            return Err(HostError::Protocol("short device descriptor".into()));
        }
        self.info.vendor_id = u16::from_le_bytes([dev[8], dev[9]]);
        self.info.product_id = u16::from_le_bytes([dev[10], dev[11]]);
        let head = self.get_descriptor(0x80, 0x0200, 0, 9, deadline)?;
        if head.len() < 9 || head[1] != 2 {
            return Err(HostError::Protocol("short configuration descriptor".into()));
        }
        let total = u16::from_le_bytes([head[2], head[3]]).clamp(9, MAX_CONTROL_LEN);
        let config_value = head[5];
        let config = self.get_descriptor(0x80, 0x0200, 0, total, deadline)?;
        // Padded replies (seen from virtual-fido) are cut to the length the descriptor states.
        let config = &config[..config.len().min(usize::from(total))];
        let fido = find_fido_interface(config)?;
        self.get_descriptor(0x80, 0x0300, 0, 255, deadline)?;
        self.info.manufacturer = self.string(dev[14], deadline);
        self.info.product = self.string(dev[15], deadline);
        self.info.serial = self.string(dev[16], deadline);
        let st = self.control_out(
            setup_bytes(0x00, 9, u16::from(config_value), 0, 0),
            deadline,
        )?;
        if st != 0 {
            return Err(HostError::Protocol(format!(
                "SET_CONFIGURATION failed ({st})"
            )));
        }
        // SET_IDLE: usbhid ignores a stall here, so do we.
        let iface = u16::from(fido.interface);
        self.control_out(setup_bytes(0x21, 0x0a, 0, iface, 0), deadline)?;
        let rd_len = fido.report_descriptor_len.clamp(1, MAX_CONTROL_LEN);
        let rd = self.get_descriptor(0x81, 0x2200, iface, rd_len, deadline)?;
        if !is_fido_report_descriptor(&rd) {
            return Err(HostError::Protocol(
                "report descriptor has no FIDO usage page 0xF1D0".into(),
            ));
        }
        self.info.interface = fido.interface;
        self.info.in_ep = fido.in_ep;
        self.info.out_ep = fido.out_ep;
        self.info.in_packet_size = fido.in_packet_size;
        Ok(())
    }

    /// Writes one report on interrupt OUT and waits for the URB to complete, as a
    /// hidraw `write()` does.
    pub fn write_report(&mut self, report: &Report, deadline: Instant) -> Result<(), HostError> {
        let ep = self.info.out_ep;
        let seq = self.submit(ep, DIR_OUT, [0; 8], REPORT_LEN as u32, report)?;
        match self.wait_for(seq, deadline)? {
            (0, _) => Ok(()),
            (s, _) => Err(HostError::Status(s)),
        }
    }

    /// The next IN report (the IN URB is resubmitted before this returns).
    pub fn read_report(&mut self, deadline: Instant) -> Result<Report, HostError> {
        loop {
            if let Some(r) = self.reports.pop_front() {
                return Ok(r);
            }
            let ret = self.next_ret(deadline)?;
            self.on_ret(ret)?;
        }
    }

    /// Drops every report received but not read (before a channel resync).
    pub fn discard_reports(&mut self) {
        self.reports.clear();
    }
}

/// Where the FIDO HID interface and its endpoints are.
#[derive(Debug, PartialEq, Eq)]
struct FidoInterface {
    interface: u8,
    in_ep: u8,
    out_ep: u8,
    in_packet_size: u16,
    report_descriptor_len: u16,
}

/// Walks a configuration descriptor for the first HID interface (class 3) with an
/// interrupt IN and OUT endpoint. Bounded: every step advances by bLength ≥ 2.
fn find_fido_interface(config: &[u8]) -> Result<FidoInterface, HostError> {
    let mut i = 0;
    let mut current: Option<FidoInterface> = None;
    let mut found: Option<FidoInterface> = None;
    while i + 2 <= config.len() {
        let len = usize::from(config[i]);
        if len < 2 || i + len > config.len() {
            break;
        }
        let d = &config[i..i + len];
        match d[1] {
            4 if len >= 9 => {
                if let Some(f) = current.take().filter(complete) {
                    found.get_or_insert(f);
                }
                current = (d[5] == 3).then_some(FidoInterface {
                    interface: d[2],
                    in_ep: 0,
                    out_ep: 0,
                    in_packet_size: 64,
                    report_descriptor_len: 0,
                });
            }
            0x21 if len >= 9 => {
                if let Some(c) = current.as_mut() {
                    c.report_descriptor_len = u16::from_le_bytes([d[7], d[8]]);
                }
            }
            5 if len >= 7 => {
                if let Some(c) = current.as_mut() {
                    let addr = d[2];
                    let interrupt = d[3] & 0x03 == 3;
                    let size = u16::from_le_bytes([d[4], d[5]]) & 0x7ff;
                    if interrupt && addr & 0x80 != 0 && c.in_ep == 0 {
                        c.in_ep = addr & 0x0f;
                        c.in_packet_size = size.clamp(1, 1024);
                    } else if interrupt && addr & 0x80 == 0 && c.out_ep == 0 {
                        c.out_ep = addr & 0x0f;
                    }
                }
            }
            _ => {}
        }
        i += len;
    }
    if let Some(f) = current.take().filter(complete) {
        found.get_or_insert(f);
    }
    found.ok_or_else(|| {
        HostError::Protocol("no HID interface with interrupt IN and OUT endpoints".into())
    })
}

fn complete(f: &FidoInterface) -> bool {
    f.in_ep != 0 && f.out_ep != 0 && f.report_descriptor_len != 0
}

/// Usage Page (0x06, 2 bytes) 0xF1D0: the FIDO Alliance page (CTAP 2.1 §11.2.2).
fn is_fido_report_descriptor(rd: &[u8]) -> bool {
    rd.windows(3).any(|w| w == [0x06, 0xd0, 0xf1])
}

fn decode_string_descriptor(d: &[u8]) -> String {
    let len = d.first().map_or(0, |&l| usize::from(l)).min(d.len());
    if len < 2 || d[1] != 3 {
        return String::new();
    }
    let units: Vec<u16> = d[2..len]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_vkey_interface_in_its_own_descriptor() {
        let identity = crate::usbip::DeviceIdentity {
            vendor_id: 0x1209,
            product_id: 1,
            device_release: 0x0100,
            manufacturer: "m".into(),
            product: "p".into(),
            serial: "s".into(),
        };
        let config = identity.configuration_descriptor();
        let f = find_fido_interface(&config).unwrap();
        assert_eq!((f.in_ep, f.out_ep, f.in_packet_size), (1, 1, 64));
        assert_eq!(
            usize::from(f.report_descriptor_len),
            crate::usbip::descriptors::REPORT_DESCRIPTOR.len()
        );
        assert!(is_fido_report_descriptor(
            &crate::usbip::descriptors::REPORT_DESCRIPTOR
        ));
    }

    #[test]
    fn hostile_descriptors_do_not_panic() {
        for bytes in [
            &[][..],
            &[0],
            &[1, 4],
            &[9, 4, 0, 0, 2, 3],
            &[255, 4, 0, 0],
            &[0, 0, 0, 0],
        ] {
            assert!(find_fido_interface(bytes).is_err());
        }
        assert_eq!(decode_string_descriptor(&[]), "");
        assert_eq!(decode_string_descriptor(&[200, 3, b'a']), "");
        assert_eq!(decode_string_descriptor(&[4, 3, b'a', 0]), "a");
    }
}
