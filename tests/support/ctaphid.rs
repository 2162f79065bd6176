//! CTAPHID framing as a host writes and reads it (CTAP 2.1 §11.2.4): 64-byte reports,
//! an initialization packet then continuation packets.

use vkey::usbip::client::Client;

const REPORT: usize = 64;
/// Payload bytes in an initialization packet (CID 4, CMD 1, BCNT 2).
const INIT_DATA: usize = REPORT - 7;
/// Payload bytes in a continuation packet (CID 4, SEQ 1).
const CONT_DATA: usize = REPORT - 5;
const CTAPHID_INIT: u8 = 0x06;
const CTAPHID_CBOR: u8 = 0x10;
const CTAPHID_KEEPALIVE: u8 = 0x3b;
const BROADCAST: u32 = 0xffff_ffff;

/// An initialization packet announcing `bcnt` bytes, carrying as much of `payload` as fits.
pub fn init_report(cid: u32, cmd: u8, bcnt: usize, payload: &[u8]) -> Vec<u8> {
    let mut r = cid.to_be_bytes().to_vec();
    r.push(cmd | 0x80);
    r.extend_from_slice(&(bcnt as u16).to_be_bytes());
    r.extend_from_slice(&payload[..payload.len().min(INIT_DATA)]);
    r.resize(REPORT, 0);
    r
}

/// A message that fits one report (BCNT is the payload's length).
pub fn report(cid: u32, cmd: u8, payload: &[u8]) -> Vec<u8> {
    init_report(cid, cmd, payload.len(), payload)
}

/// A whole CTAPHID message as reports: the initialization packet, then continuations.
pub fn message(cid: u32, cmd: u8, payload: &[u8]) -> Vec<Vec<u8>> {
    let mut v = vec![init_report(cid, cmd, payload.len(), payload)];
    let rest = payload.get(INIT_DATA..).unwrap_or(&[]);
    for (seq, chunk) in rest.chunks(CONT_DATA).enumerate() {
        let mut r = cid.to_be_bytes().to_vec();
        r.push(seq as u8);
        r.extend_from_slice(chunk);
        r.resize(REPORT, 0);
        v.push(r);
    }
    v
}

/// CTAPHID_INIT on the broadcast channel with an 8-byte `nonce`; returns the allocated
/// channel.
pub fn init_with(c: &mut Client, nonce: &[u8; 8]) -> u32 {
    c.write_report(&report(BROADCAST, CTAPHID_INIT, nonce))
        .unwrap();
    let r = c.read_report().unwrap();
    assert_eq!(&r[..5], &[0xff, 0xff, 0xff, 0xff, 0x80 | CTAPHID_INIT]);
    assert_eq!(&r[7..15], nonce);
    u32::from_be_bytes(r[15..19].try_into().unwrap())
}

/// CTAPHID_INIT on the broadcast channel; returns the allocated channel.
pub fn ctaphid_init(c: &mut Client) -> u32 {
    init_with(c, b"nonce123")
}

/// Sends a CTAPHID request (`cmd`: CBOR 0x10, MSG 0x03, ...) on channel `cid` and reads
/// its response, skipping keepalives. Any failure, or a response that is not `cmd` on
/// `cid` with its continuations in sequence, is an error string.
pub fn try_call(c: &mut Client, cid: u32, cmd: u8, req: &[u8]) -> Result<Vec<u8>, String> {
    for r in message(cid, cmd, req) {
        c.write_report(&r).map_err(|e| format!("write: {e}"))?;
    }
    let mut read = || -> Result<Vec<u8>, String> {
        let r = c.read_report().map_err(|e| format!("read: {e}"))?;
        match r.get(..4) {
            Some(id) if r.len() == REPORT && id == cid.to_be_bytes() => Ok(r),
            _ => Err(format!("unexpected report {r:02x?}")),
        }
    };
    let mut r = read()?;
    while r[4] == 0x80 | CTAPHID_KEEPALIVE {
        r = read()?;
    }
    if r[4] != 0x80 | cmd {
        return Err(format!("unexpected report {r:02x?}"));
    }
    let len = u16::from_be_bytes([r[5], r[6]]) as usize;
    let mut msg = r[7..7 + len.min(INIT_DATA)].to_vec();
    while msg.len() < len {
        let r = read()?;
        let seq = (msg.len() - INIT_DATA) / CONT_DATA;
        if usize::from(r[4]) != seq {
            return Err(format!("continuation {seq} out of sequence: {r:02x?}"));
        }
        msg.extend_from_slice(&r[5..5 + (len - msg.len()).min(CONT_DATA)]);
    }
    Ok(msg)
}

/// [`try_call`], panicking on an error.
pub fn call(c: &mut Client, cid: u32, cmd: u8, req: &[u8]) -> Vec<u8> {
    try_call(c, cid, cmd, req).unwrap_or_else(|e| panic!("CTAPHID command {cmd:#04x}: {e}"))
}

/// Sends a CTAPHID_CBOR request and reads its response, skipping keepalives.
pub fn cbor(c: &mut Client, cid: u32, req: &[u8]) -> Vec<u8> {
    call(c, cid, CTAPHID_CBOR, req)
}
