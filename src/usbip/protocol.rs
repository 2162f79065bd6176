//! USB/IP wire format (Linux `Documentation/usb/usbip_protocol.rst`). All fields are
//! big-endian. Every length read from the wire is bounded before anything is allocated.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

pub const USBIP_VERSION: u16 = 0x0111;
pub const OP_REQ_DEVLIST: u16 = 0x8005;
pub const OP_REP_DEVLIST: u16 = 0x0005;
pub const OP_REQ_IMPORT: u16 = 0x8003;
pub const OP_REP_IMPORT: u16 = 0x0003;

pub const CMD_SUBMIT: u32 = 0x0000_0001;
pub const CMD_UNLINK: u32 = 0x0000_0002;
pub const RET_SUBMIT: u32 = 0x0000_0003;
pub const RET_UNLINK: u32 = 0x0000_0004;

pub const DIR_OUT: u32 = 0;
pub const DIR_IN: u32 = 1;

/// Linux errno values carried (negated) in RET_SUBMIT / RET_UNLINK status.
pub const EPIPE: i32 = 32;
pub const ECONNRESET: i32 = 104;

/// Upper bound on an OUT transfer's data: control requests carry a few bytes at most,
/// interrupt OUT exactly one 64-byte report. Anything longer is a hostile peer.
pub const MAX_OUT_LEN: u32 = 4096;
/// Upper bound on an IN transfer's buffer that we accept (usbhid asks for 64 on the
/// interrupt pipe and at most a few hundred bytes of descriptors on EP0).
pub const MAX_IN_LEN: u32 = 64 * 1024;

/// A protocol violation: the connection is closed with this as the log line.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Protocol(String),
}

fn map_eof(e: io::Error) -> WireError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        WireError::Closed
    } else {
        WireError::Io(e)
    }
}

/// The common 8-byte header of OP_* messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpHeader {
    pub version: u16,
    pub code: u16,
    pub status: u32,
}

pub async fn read_op_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<OpHeader, WireError> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b).await.map_err(map_eof)?;
    Ok(OpHeader {
        version: u16::from_be_bytes([b[0], b[1]]),
        code: u16::from_be_bytes([b[2], b[3]]),
        status: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
    })
}

pub fn op_header(code: u16, status: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(8);
    v.extend_from_slice(&USBIP_VERSION.to_be_bytes());
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(&status.to_be_bytes());
    v
}

/// The 8-byte USB SETUP packet of a control transfer (USB 2.0 §9.3). wValue, wIndex
/// and wLength are little-endian, as on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    pub request_type: u8,
    pub request: u8,
    pub value: u16,
    pub index: u16,
    pub length: u16,
}

impl Setup {
    pub fn parse(b: [u8; 8]) -> Setup {
        Setup {
            request_type: b[0],
            request: b[1],
            value: u16::from_le_bytes([b[2], b[3]]),
            index: u16::from_le_bytes([b[4], b[5]]),
            length: u16::from_le_bytes([b[6], b[7]]),
        }
    }
}

/// A command of the URB phase, after OP_REQ_IMPORT succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrbCommand {
    Submit {
        seqnum: u32,
        direction: u32,
        ep: u32,
        /// transfer_buffer_length: the OUT data length, or the IN buffer size.
        buffer_len: u32,
        setup: Setup,
        /// OUT data (empty for IN).
        data: Vec<u8>,
    },
    Unlink {
        seqnum: u32,
        unlink_seqnum: u32,
    },
}

/// Reads one CMD_SUBMIT or CMD_UNLINK (48-byte header plus OUT data).
pub async fn read_urb_command<R: AsyncRead + Unpin>(r: &mut R) -> Result<UrbCommand, WireError> {
    let mut h = [0u8; 48];
    r.read_exact(&mut h).await.map_err(map_eof)?;
    let u32_at = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let command = u32_at(0);
    let seqnum = u32_at(4);
    let direction = u32_at(12);
    let ep = u32_at(16);
    match command {
        CMD_SUBMIT => {
            let buffer_len = u32_at(24);
            let number_of_packets = u32_at(32) as i32;
            if direction > 1 {
                return Err(WireError::Protocol(format!(
                    "CMD_SUBMIT seq {seqnum}: bad direction {direction}"
                )));
            }
            if ep > 15 {
                return Err(WireError::Protocol(format!(
                    "CMD_SUBMIT seq {seqnum}: bad endpoint {ep}"
                )));
            }
            // We have no isochronous endpoint: a non-ISO URB carries 0 (or -1 from
            // older kernels) packets. Anything else is not ours to parse.
            if number_of_packets != 0 && number_of_packets != -1 {
                return Err(WireError::Protocol(format!(
                    "CMD_SUBMIT seq {seqnum}: {number_of_packets} iso packets on a device without isochronous endpoints"
                )));
            }
            let limit = if direction == DIR_OUT {
                MAX_OUT_LEN
            } else {
                MAX_IN_LEN
            };
            if buffer_len > limit {
                return Err(WireError::Protocol(format!(
                    "CMD_SUBMIT seq {seqnum}: transfer length {buffer_len} exceeds {limit}"
                )));
            }
            let setup = Setup::parse([h[40], h[41], h[42], h[43], h[44], h[45], h[46], h[47]]);
            let mut data = Vec::new();
            if direction == DIR_OUT && buffer_len > 0 {
                data = vec![0u8; buffer_len as usize];
                r.read_exact(&mut data).await.map_err(map_eof)?;
            }
            Ok(UrbCommand::Submit {
                seqnum,
                direction,
                ep,
                buffer_len,
                setup,
                data,
            })
        }
        CMD_UNLINK => Ok(UrbCommand::Unlink {
            seqnum,
            unlink_seqnum: u32_at(20),
        }),
        other => Err(WireError::Protocol(format!(
            "unknown URB command {other:#010x}"
        ))),
    }
}

/// RET_SUBMIT. The header's devid, direction and ep are 0 (vhci ignores them and
/// usbip-win wants them so); number_of_packets is 0 for non-ISO (usbip-win needs 0).
pub fn ret_submit(seqnum: u32, status: i32, actual_length: u32, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(48 + data.len());
    v.extend_from_slice(&RET_SUBMIT.to_be_bytes());
    v.extend_from_slice(&seqnum.to_be_bytes());
    v.extend_from_slice(&[0u8; 12]); // devid, direction, ep
    v.extend_from_slice(&status.to_be_bytes());
    v.extend_from_slice(&actual_length.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes()); // start_frame
    v.extend_from_slice(&0u32.to_be_bytes()); // number_of_packets
    v.extend_from_slice(&0u32.to_be_bytes()); // error_count
    v.extend_from_slice(&[0u8; 8]); // padding (the setup field's place)
    v.extend_from_slice(data);
    v
}

/// RET_UNLINK: status -ECONNRESET if the URB was still pending, 0 if it had completed.
pub fn ret_unlink(seqnum: u32, status: i32) -> Vec<u8> {
    let mut v = Vec::with_capacity(48);
    v.extend_from_slice(&RET_UNLINK.to_be_bytes());
    v.extend_from_slice(&seqnum.to_be_bytes());
    v.extend_from_slice(&[0u8; 12]);
    v.extend_from_slice(&status.to_be_bytes());
    v.extend_from_slice(&[0u8; 24]);
    v
}

/// Encodes a fixed-size, NUL-padded string field (path[256], busid[32]).
pub fn fixed_str(s: &str, len: usize) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.truncate(len - 1);
    v.resize(len, 0);
    v
}

/// Decodes a NUL-padded string field; non-UTF-8 bytes are replaced.
pub fn parse_fixed_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}
