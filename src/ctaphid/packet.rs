//! CTAPHID packet format (CTAP 2.1 §11.2.4): 64-byte reports, an initialization packet
//! `CID(4) CMD|0x80 BCNT(2) DATA(57)` followed by continuation packets `CID(4) SEQ DATA(59)`.

/// Every HID report is exactly this long (our report descriptor says so, §11.2.2).
pub const REPORT_LEN: usize = 64;
/// Payload bytes in an initialization packet.
pub const INIT_DATA_LEN: usize = REPORT_LEN - 7;
/// Payload bytes in a continuation packet.
pub const CONT_DATA_LEN: usize = REPORT_LEN - 5;
/// Sequence numbers run 0..=127, so a message is at most 57 + 128 × 59 = 7609 bytes.
pub const MAX_MESSAGE_LEN: usize = INIT_DATA_LEN + 128 * CONT_DATA_LEN;
/// The broadcast channel, used only for CTAPHID_INIT (§11.2.3).
pub const BROADCAST_CID: u32 = 0xffff_ffff;

/// One 64-byte HID report.
pub type Report = [u8; REPORT_LEN];

/// CTAPHID commands (§11.2.9). KEEPALIVE and ERROR only ever travel device → host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    Ping = 0x01,
    Msg = 0x03,
    Lock = 0x04,
    Init = 0x06,
    Wink = 0x08,
    Cbor = 0x10,
    Cancel = 0x11,
    Keepalive = 0x3b,
    Error = 0x3f,
}

impl Command {
    pub fn from_u8(b: u8) -> Option<Command> {
        Some(match b {
            0x01 => Command::Ping,
            0x03 => Command::Msg,
            0x04 => Command::Lock,
            0x06 => Command::Init,
            0x08 => Command::Wink,
            0x10 => Command::Cbor,
            0x11 => Command::Cancel,
            0x3b => Command::Keepalive,
            0x3f => Command::Error,
            _ => return None,
        })
    }
}

/// CTAPHID_ERROR codes (§11.2.9.1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HidError {
    InvalidCmd = 0x01,
    InvalidPar = 0x02,
    InvalidLen = 0x03,
    InvalidSeq = 0x04,
    MsgTimeout = 0x05,
    ChannelBusy = 0x06,
    LockRequired = 0x0a,
    InvalidChannel = 0x0b,
    Other = 0x7f,
}

/// KEEPALIVE status bytes (§11.2.9.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum KeepaliveStatus {
    Processing = 1,
    UpNeeded = 2,
}

/// A parsed incoming report. Borrowed from the report; nothing is allocated.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Init {
        cid: u32,
        cmd: u8,
        bcnt: u16,
        data: &'a [u8],
    },
    Cont {
        cid: u32,
        seq: u8,
        data: &'a [u8],
    },
}

impl<'a> Packet<'a> {
    /// Parses a 64-byte report. The bit 7 of byte 4 tells an initialization packet
    /// (command) from a continuation packet (sequence number), §11.2.4.
    pub fn parse(report: &'a Report) -> Packet<'a> {
        let cid = u32::from_be_bytes([report[0], report[1], report[2], report[3]]);
        if report[4] & 0x80 != 0 {
            Packet::Init {
                cid,
                cmd: report[4] & 0x7f,
                bcnt: u16::from_be_bytes([report[5], report[6]]),
                data: &report[7..],
            }
        } else {
            Packet::Cont {
                cid,
                seq: report[4],
                data: &report[5..],
            }
        }
    }

    pub fn cid(&self) -> u32 {
        match *self {
            Packet::Init { cid, .. } | Packet::Cont { cid, .. } => cid,
        }
    }
}

/// Splits a message into reports. Unused trailing bytes are zero, as §11.2.4 asks.
/// Returns `None` if the payload is longer than a CTAPHID message can be.
pub fn fragment(cid: u32, cmd: u8, payload: &[u8]) -> Option<Vec<Report>> {
    if payload.len() > MAX_MESSAGE_LEN {
        return None;
    }
    let mut reports = Vec::with_capacity(
        1 + payload
            .len()
            .saturating_sub(INIT_DATA_LEN)
            .div_ceil(CONT_DATA_LEN),
    );
    let mut first = [0u8; REPORT_LEN];
    first[0..4].copy_from_slice(&cid.to_be_bytes());
    first[4] = cmd | 0x80;
    first[5..7].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    let n = payload.len().min(INIT_DATA_LEN);
    first[7..7 + n].copy_from_slice(&payload[..n]);
    reports.push(first);
    for (seq, chunk) in payload[n..].chunks(CONT_DATA_LEN).enumerate() {
        let mut r = [0u8; REPORT_LEN];
        r[0..4].copy_from_slice(&cid.to_be_bytes());
        r[4] = seq as u8; // < 128 because of the length check above
        r[5..5 + chunk.len()].copy_from_slice(chunk);
        reports.push(r);
    }
    Some(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_message_len_is_7609() {
        assert_eq!(MAX_MESSAGE_LEN, 7609);
    }

    #[test]
    fn fragment_and_parse_roundtrip() {
        let payload: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        let reports = fragment(0x01020304, 0x10, &payload).unwrap();
        assert_eq!(reports.len(), 4); // 57 + 59 + 59 + 25
        match Packet::parse(&reports[0]) {
            Packet::Init {
                cid,
                cmd,
                bcnt,
                data,
            } => {
                assert_eq!((cid, cmd, bcnt), (0x01020304, 0x10, 200));
                assert_eq!(data, &payload[..57]);
            }
            p => panic!("{p:?}"),
        }
        match Packet::parse(&reports[3]) {
            Packet::Cont { cid, seq, data } => {
                assert_eq!((cid, seq), (0x01020304, 2));
                assert_eq!(&data[..25], &payload[175..]);
                assert!(data[25..].iter().all(|&b| b == 0));
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn fragment_refuses_oversize() {
        assert_eq!(
            fragment(1, 1, &vec![0; MAX_MESSAGE_LEN]).unwrap().len(),
            129
        );
        assert!(fragment(1, 1, &vec![0; MAX_MESSAGE_LEN + 1]).is_none());
    }
}
