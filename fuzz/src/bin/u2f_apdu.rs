//! CTAP1/U2F APDUs (CTAPHID_MSG). The first input byte picks the mode:
//!
//! - even: the rest is one APDU. The parser must accept exactly the encodings ISO 7816-4
//!   and the clients we serve use: a parsed APDU re-encodes to the very input (or to
//!   python-fido2's empty extended Lc form), anything else is SW_WRONG_LENGTH. Then
//!   `Authenticator::process_u2f` on a fresh key: a known status word at the end, data
//!   only with SW_NO_ERROR, the parser's verdict kept. One key serves every input of this
//!   mode: no APDU it can be given changes it (a registration stores nothing, and an
//!   authentication needs a key handle of its own, which only the other mode has).
//! - odd: a registration and an authentication built from the input: U2F_REGISTER under
//!   an application parameter, then U2F_AUTHENTICATE (control byte, challenge, short or
//!   extended encoding from the input) with the key handle it returned, possibly with
//!   one byte changed or under another application. A changed key handle or another
//!   application is never accepted (SW_WRONG_DATA); the real one signs, and the
//!   signature verifies with the registered public key over application ‖ presence ‖
//!   counter ‖ challenge (U2F Raw Message Formats v1.2 §5.4).
#![no_main]

#[path = "../common.rs"]
mod common;

use std::sync::{Mutex, OnceLock};

use common::{Input, fresh_key};
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use vkey::ctap::u2f::apdu::{CommandApdu, Encoding, StatusWord};
use vkey::ctap::{Authenticator, Config};

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, apdu)) if mode % 2 == 0 => raw(apdu),
        Some((_, rest)) => register_and_authenticate(&mut Input(rest)),
        None => {}
    }
});

fn raw(msg: &[u8]) {
    let parsed = CommandApdu::parse(msg);
    match &parsed {
        Ok(a) => {
            assert_eq!(msg[..4], [a.cla, a.ins, a.p1, a.p2]);
            assert!(
                encodings(a).iter().any(|e| e == msg),
                "{a:?} does not re-encode to {msg:02x?}"
            );
        }
        Err(sw) => assert_eq!(*sw, StatusWord::WrongLength),
    }
    static KEY: OnceLock<Mutex<Authenticator>> = OnceLock::new();
    let key = KEY.get_or_init(|| Mutex::new(fresh_key(Config::default())));
    let resp = key
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .process_u2f(msg);
    let (body, sw) = resp.split_at(resp.len().checked_sub(2).expect("a status word"));
    let sw = StatusWord::from_u16(u16::from_be_bytes([sw[0], sw[1]])).expect("a known SW");
    assert!(
        body.is_empty() || sw == StatusWord::NoError,
        "data with {sw:?}"
    );
    match parsed {
        Err(_) => assert_eq!(sw, StatusWord::WrongLength),
        Ok(a) if a.cla != 0 => assert_eq!(sw, StatusWord::ClaNotSupported),
        Ok(a) if a.ins == 0x03 && a.data.is_empty() => assert_eq!(resp, b"U2F_V2\x90\x00"),
        Ok(a) if a.ins == 0x01 && a.data.len() == 64 => {
            assert_eq!(sw, StatusWord::NoError);
            assert_eq!(body[..2], [0x05, 0x04], "reserved byte, uncompressed point");
        }
        Ok(_) => {}
    }
}

/// The encodings of `a` that the parser accepts (ISO 7816-4 §5.1; the extended form
/// with an empty Lc is python-fido2's).
fn encodings(a: &CommandApdu) -> Vec<Vec<u8>> {
    let head = vec![a.cla, a.ins, a.p1, a.p2];
    let cat = |parts: &[&[u8]]| parts.concat();
    match a.encoding {
        Encoding::HeaderOnly => vec![head],
        Encoding::Short => {
            let lc: &[u8] = if a.data.is_empty() {
                &[]
            } else {
                &[a.data.len() as u8]
            };
            let le: Vec<u8> = a.ne.map(|n| vec![(n % 256) as u8]).unwrap_or_default();
            vec![cat(&[&head, lc, a.data, &le])]
        }
        Encoding::Extended => {
            let le: Vec<u8> =
                a.ne.map(|n| ((n % 65536) as u16).to_be_bytes().to_vec())
                    .unwrap_or_default();
            let lc = (a.data.len() as u16).to_be_bytes();
            if a.data.is_empty() {
                vec![cat(&[&head, &[0], &le]), cat(&[&head, &[0, 0, 0], &le])]
            } else {
                vec![cat(&[&head, &[0], &lc, a.data, &le])]
            }
        }
    }
}

fn status(resp: &[u8]) -> (&[u8], u16) {
    let (body, sw) = resp.split_at(resp.len() - 2);
    (body, u16::from_be_bytes([sw[0], sw[1]]))
}

fn register_and_authenticate(input: &mut Input) {
    let mut key = fresh_key(Config::default());
    let application: [u8; 32] = input.bytes(32).try_into().unwrap();
    let mut register = vec![0x00, 0x01, 0x00, 0x00, 64];
    register.extend_from_slice(&[0x5a; 32]);
    register.extend_from_slice(&application);
    let resp = key.process_u2f(&register);
    let (body, sw) = status(&resp);
    assert_eq!(sw, 0x9000, "U2F_REGISTER");
    let public = VerifyingKey::from_sec1_bytes(&body[1..66]).expect("the registered key");
    let kh_len = usize::from(body[66]);
    let mut key_handle = body[67..67 + kh_len].to_vec();

    let control = input.u8();
    let challenge = input.bytes(32);
    let flags = input.u8();
    let (at, xor) = (input.u8(), input.u8());
    let forged = xor != 0;
    if forged {
        let i = usize::from(at) % key_handle.len();
        key_handle[i] ^= xor;
    }
    let other_app = flags & 1 != 0;
    let app = if other_app {
        let mut a = application;
        a[usize::from(flags >> 3) % 32] ^= 0x80;
        a
    } else {
        application
    };
    let mut data = challenge.clone();
    data.extend_from_slice(&app);
    data.push(key_handle.len() as u8);
    data.extend_from_slice(&key_handle);
    let mut apdu = vec![0x00, 0x02, control, 0x00];
    if flags & 2 != 0 {
        apdu.extend_from_slice(&[0, 0, data.len() as u8]);
        apdu.extend_from_slice(&data);
        if flags & 4 != 0 {
            apdu.extend_from_slice(&[0, 0]);
        }
    } else {
        apdu.push(data.len() as u8);
        apdu.extend_from_slice(&data);
        if flags & 4 != 0 {
            apdu.push(0);
        }
    }
    let resp = key.process_u2f(&apdu);
    let (body, sw) = status(&resp);
    let ours = !forged && !other_app;
    match control {
        0x03 | 0x07 | 0x08 if !ours => assert_eq!(sw, 0x6a80, "a key handle not ours"),
        0x07 => assert_eq!(sw, 0x6985, "check-only, our key handle"),
        0x03 | 0x08 => {
            assert_eq!(sw, 0x9000);
            let presence = body[0];
            assert_eq!(presence, u8::from(control == 0x03));
            let mut signed = app.to_vec();
            signed.extend_from_slice(&body[..5]);
            signed.extend_from_slice(&challenge);
            let signature = Signature::from_der(&body[5..]).expect("a DER signature");
            public
                .verify(&signed, &signature)
                .expect("the signature verifies");
        }
        _ => assert_eq!(sw, 0x6a80, "an unknown control byte"),
    }
}
