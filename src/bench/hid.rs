//! CTAPHID over the USB/IP host (CTAP 2.1 §11.2): channel allocation with INIT, message
//! framing, KEEPALIVE skipping, ERROR packets as results, and resynchronisation after a
//! broken exchange (a fresh INIT with a new nonce on the broadcast channel, every stale
//! report dropped).

use std::fmt;
use std::time::{Duration, Instant};

use crate::ctaphid::packet::{
    BROADCAST_CID, CONT_DATA_LEN, INIT_DATA_LEN, MAX_MESSAGE_LEN, Packet, fragment,
};

use super::host::{HostError, UsbipHost};

pub const CMD_PING: u8 = 0x01;
pub const CMD_INIT: u8 = 0x06;
pub const CMD_CBOR: u8 = 0x10;
const CMD_KEEPALIVE: u8 = 0x3b;
const CMD_ERROR: u8 = 0x3f;

/// Why a CTAPHID exchange failed.
#[derive(Debug)]
pub enum HidError {
    /// The device answered with CTAPHID_ERROR and this code (§11.2.9.1.6).
    Device(u8),
    /// The response broke the framing (wrong command, sequence, channel or length).
    Framing(String),
    Host(HostError),
}

impl From<HostError> for HidError {
    fn from(e: HostError) -> Self {
        HidError::Host(e)
    }
}

impl fmt::Display for HidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HidError::Device(c) => write!(f, "CTAPHID_ERROR {}", hid_error_name(*c)),
            HidError::Framing(m) => write!(f, "CTAPHID framing: {m}"),
            HidError::Host(e) => e.fmt(f),
        }
    }
}

/// ERR_INVALID_SEQ and its kin, by their spec names.
pub fn hid_error_name(code: u8) -> String {
    let name = match code {
        0x01 => "ERR_INVALID_CMD",
        0x02 => "ERR_INVALID_PAR",
        0x03 => "ERR_INVALID_LEN",
        0x04 => "ERR_INVALID_SEQ",
        0x05 => "ERR_MSG_TIMEOUT",
        0x06 => "ERR_CHANNEL_BUSY",
        0x0a => "ERR_LOCK_REQUIRED",
        0x0b => "ERR_INVALID_CHANNEL",
        0x7f => "ERR_OTHER",
        _ => return format!("ERR_{code:#04x}"),
    };
    name.to_string()
}

/// What CTAPHID_INIT told us about the device.
#[derive(Debug, Clone, Default)]
pub struct InitInfo {
    pub protocol_version: u8,
    pub device_version: (u8, u8, u8),
    pub capabilities: u8,
}

/// A FIDO HID device with an allocated channel.
pub struct Ctaphid {
    pub host: UsbipHost,
    cid: u32,
    pub init: InitInfo,
    /// Set when an exchange broke: the next one first allocates a fresh channel.
    needs_resync: bool,
    timeout: Duration,
    nonce_counter: u64,
}

impl Ctaphid {
    pub fn new(host: UsbipHost, timeout: Duration) -> Result<Ctaphid, HidError> {
        let mut c = Ctaphid {
            host,
            cid: BROADCAST_CID,
            init: InitInfo::default(),
            needs_resync: true,
            timeout,
            nonce_counter: 0,
        };
        c.allocate_channel()?;
        Ok(c)
    }

    /// CTAPHID_INIT on the broadcast channel with a fresh nonce. Reports that are not the
    /// answer to this nonce (late replies from a broken exchange) are dropped.
    fn allocate_channel(&mut self) -> Result<(), HidError> {
        self.host.discard_reports();
        self.nonce_counter += 1;
        let mut nonce = crate::crypto::random_bytes::<8>();
        nonce[..2].copy_from_slice(&(self.nonce_counter as u16).to_be_bytes());
        let deadline = Instant::now() + self.timeout;
        let reports = fragment(BROADCAST_CID, CMD_INIT, &nonce)
            .ok_or_else(|| HidError::Framing("INIT".into()))?;
        for r in &reports {
            self.host.write_report(r, deadline)?;
        }
        loop {
            let r = self.host.read_report(deadline)?;
            if let Packet::Init {
                cid: BROADCAST_CID,
                cmd,
                bcnt,
                data,
            } = Packet::parse(&r)
                && cmd == CMD_INIT
                && bcnt >= 17
                && data[..8] == nonce
            {
                self.cid = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
                self.init = InitInfo {
                    protocol_version: data[12],
                    device_version: (data[13], data[14], data[15]),
                    capabilities: data[16],
                };
                if self.cid == 0 || self.cid == BROADCAST_CID {
                    return Err(HidError::Framing(format!(
                        "INIT allocated channel {:#x}",
                        self.cid
                    )));
                }
                self.needs_resync = false;
                return Ok(());
            }
        }
    }

    /// Sends one message and returns the response payload. Any error leaves the channel
    /// to be resynchronised before the next exchange: an ERROR packet in the middle of a
    /// request may be followed by more (one per continuation packet the device then
    /// takes for a new message), and none of them may answer the next request.
    pub fn transact(&mut self, cmd: u8, payload: &[u8]) -> Result<Vec<u8>, HidError> {
        if self.needs_resync {
            self.allocate_channel()?;
        }
        let result = self.exchange(cmd, payload);
        if result.is_err() {
            self.needs_resync = true;
        }
        result
    }

    fn exchange(&mut self, cmd: u8, payload: &[u8]) -> Result<Vec<u8>, HidError> {
        let reports = fragment(self.cid, cmd, payload)
            .ok_or_else(|| HidError::Framing("request longer than 7609 bytes".into()))?;
        let mut deadline = Instant::now() + self.timeout;
        for r in &reports {
            self.host.write_report(r, deadline)?;
        }
        // The first packet of the response; KEEPALIVE moves the deadline (the device
        // is working), reports of other channels are not ours.
        let (len, mut out) = loop {
            let r = self.host.read_report(deadline)?;
            match Packet::parse(&r) {
                Packet::Init {
                    cid,
                    cmd: got,
                    bcnt,
                    data,
                } if cid == self.cid => {
                    if got == CMD_KEEPALIVE {
                        deadline = Instant::now() + self.timeout;
                        continue;
                    }
                    if got == CMD_ERROR {
                        return Err(HidError::Device(data[0]));
                    }
                    if got != cmd {
                        return Err(HidError::Framing(format!(
                            "response command {got:#04x} to {cmd:#04x}"
                        )));
                    }
                    let len = usize::from(bcnt);
                    if len > MAX_MESSAGE_LEN {
                        return Err(HidError::Framing(format!("BCNT {len}")));
                    }
                    let mut out = Vec::with_capacity(len);
                    out.extend_from_slice(&data[..len.min(INIT_DATA_LEN)]);
                    break (len, out);
                }
                Packet::Cont { cid, seq, .. } if cid == self.cid => {
                    return Err(HidError::Framing(format!(
                        "continuation {seq} before an initialization packet"
                    )));
                }
                _ => continue,
            }
        };
        let mut expected_seq = 0u8;
        while out.len() < len {
            let r = self.host.read_report(deadline)?;
            match Packet::parse(&r) {
                Packet::Cont { cid, seq, data } if cid == self.cid => {
                    if seq != expected_seq {
                        return Err(HidError::Framing(format!(
                            "response SEQ {seq}, expected {expected_seq}"
                        )));
                    }
                    expected_seq = expected_seq.wrapping_add(1);
                    let n = (len - out.len()).min(CONT_DATA_LEN);
                    out.extend_from_slice(&data[..n]);
                }
                Packet::Init { cid, cmd, data, .. } if cid == self.cid => {
                    if cmd == CMD_ERROR {
                        return Err(HidError::Device(data[0]));
                    }
                    return Err(HidError::Framing(format!(
                        "initialization packet {cmd:#04x} inside a response"
                    )));
                }
                _ => continue,
            }
        }
        Ok(out)
    }
}
