//! U2F requests and responses decoded for the trace: the APDU's fields, each command's
//! data by its spec names, the status word's name. Nothing in U2F is secret (the key
//! handle is sealed).

use super::super::trace::TraceValue;
use super::apdu::{self, CommandApdu, StatusWord};
use super::authenticate::Control;
use super::{INS_AUTHENTICATE, INS_REGISTER, INS_VERSION, ins_name};

fn bytes(b: &[u8]) -> TraceValue {
    TraceValue::Bytes(b.to_vec())
}

fn int(i: impl Into<i128>) -> TraceValue {
    TraceValue::Integer(i.into())
}

/// A request APDU: (INS, its name, the decoded fields).
pub(in crate::ctap) fn request(msg: &[u8]) -> (u8, String, TraceValue) {
    let Ok(a) = CommandApdu::parse(msg) else {
        let ins = msg.get(1).copied().unwrap_or(0);
        let what = format!("<malformed APDU: {} bytes>", msg.len());
        return (ins, ins_name(ins), TraceValue::Text(what));
    };
    let mut m = vec![
        (
            "encoding".to_string(),
            TraceValue::Text(a.encoding.name().into()),
        ),
        ("cla".into(), int(a.cla)),
        ("ins".into(), int(a.ins)),
        ("p1".into(), int(a.p1)),
        ("p2".into(), int(a.p2)),
        ("lc".into(), int(a.data.len() as u64)),
    ];
    if let Some(ne) = a.ne {
        m.push(("le".into(), int(ne)));
    }
    let d = a.data;
    match (a.ins, d.len()) {
        (INS_REGISTER, 64) => {
            m.push(("challengeParameter".into(), bytes(&d[..32])));
            m.push(("applicationParameter".into(), bytes(&d[32..])));
        }
        (INS_AUTHENTICATE, 65..) => {
            let control = Control::from_byte(a.p1).map_or_else(
                || TraceValue::Text(format!("{:#04x}", a.p1)),
                |c| TraceValue::Text(c.name().into()),
            );
            m.push(("control".into(), control));
            m.push(("challengeParameter".into(), bytes(&d[..32])));
            m.push(("applicationParameter".into(), bytes(&d[32..64])));
            m.push(("keyHandle".into(), bytes(&d[65..])));
        }
        (_, 0) => {}
        _ => m.push(("data".into(), bytes(d))),
    }
    (a.ins, ins_name(a.ins), TraceValue::Map(m))
}

/// The response to a request with `ins`: (status word, its name, the decoded data).
pub(in crate::ctap) fn response(ins: u8, msg: &[u8]) -> (u16, String, Option<TraceValue>) {
    let (data, sw) = apdu::split_response(msg);
    let Some(sw) = sw else {
        return (0, "<no status word>".into(), None);
    };
    let name =
        StatusWord::from_u16(sw).map_or_else(|| format!("SW {sw:#06x}"), |s| s.name().into());
    let body = (!data.is_empty()).then(|| match ins {
        INS_REGISTER => registration(data),
        INS_AUTHENTICATE => signature(data),
        INS_VERSION => Some(TraceValue::Map(vec![(
            "version".into(),
            TraceValue::Text(String::from_utf8_lossy(data).into_owned()),
        )])),
        _ => None,
    });
    let body = body.map(|b| b.unwrap_or_else(|| bytes(data)));
    (sw, name, body)
}

/// A registration response (§4.3) taken apart; `None` if it does not parse.
fn registration(d: &[u8]) -> Option<TraceValue> {
    let (&reserved, rest) = d.split_first()?;
    let public_key = rest.get(..65)?;
    let kh_len = usize::from(*rest.get(65)?);
    let key_handle = rest.get(66..66 + kh_len)?;
    let rest = rest.get(66 + kh_len..)?;
    let cert_len = der_length(rest)?;
    let certificate = rest.get(..cert_len)?;
    let signature = rest.get(cert_len..)?;
    Some(TraceValue::Map(vec![
        ("reserved".into(), int(reserved)),
        ("publicKey".into(), bytes(public_key)),
        ("keyHandle".into(), bytes(key_handle)),
        ("attestationCertificate".into(), bytes(certificate)),
        ("signature".into(), bytes(signature)),
    ]))
}

/// The whole length of the DER SEQUENCE at the start of `b` (header included).
pub(super) fn der_length(b: &[u8]) -> Option<usize> {
    if *b.first()? != 0x30 {
        return None;
    }
    let first = *b.get(1)?;
    if first < 0x80 {
        return Some(2 + usize::from(first));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 3 {
        return None;
    }
    let len = b
        .get(2..2 + n)?
        .iter()
        .fold(0usize, |acc, &x| acc << 8 | usize::from(x));
    Some(2 + n + len)
}

/// An authentication response (§5.4).
fn signature(d: &[u8]) -> Option<TraceValue> {
    let (&up, rest) = d.split_first()?;
    let (counter, sig) = rest.split_first_chunk::<4>()?;
    Some(TraceValue::Map(vec![
        ("userPresence".into(), int(up)),
        ("counter".into(), int(u32::from_be_bytes(*counter))),
        ("signature".into(), bytes(sig)),
    ]))
}
