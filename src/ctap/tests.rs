//! The core, driven with plain byte messages.

use ciborium::Value;

use super::*;
use crate::store::Store;

fn auth() -> Authenticator {
    Authenticator::new(Store::ephemeral())
}

fn ok_map(resp: &[u8]) -> Vec<(Value, Value)> {
    assert_eq!(resp[0], 0x00, "status {:#04x}", resp[0]);
    match cbor::decode(&resp[1..]).unwrap() {
        Value::Map(m) => m,
        v => panic!("not a map: {v:?}"),
    }
}

fn member(m: &[(Value, Value)], key: i64) -> Option<&Value> {
    m.iter()
        .find(|(k, _)| k.as_integer().map(i128::from) == Some(key.into()))
        .map(|(_, v)| v)
}

#[test]
fn get_info_is_canonical_and_truthful() {
    let resp = auth().process(&[0x04]);
    // Canonical: re-encoding what we decoded gives the same bytes.
    assert_eq!(cbor::encode(&cbor::decode(&resp[1..]).unwrap()), resp[1..]);
    let m = ok_map(&resp);
    assert_eq!(
        member(&m, 1),
        Some(&Value::Array(vec![Value::Text("FIDO_2_0".into())]))
    );
    assert_eq!(member(&m, 3), Some(&Value::Bytes(AAGUID.to_vec())));
    assert_eq!(
        member(&m, 5).and_then(Value::as_integer).map(i128::from),
        Some(7609)
    );
    assert_eq!(
        member(&m, 9),
        Some(&Value::Array(vec![Value::Text("usb".into())]))
    );
    // Nothing we do not implement: no pinUvAuthProtocols, no options claiming PIN/rk.
    assert!(member(&m, 6).is_none());
    assert!(member(&m, 4).is_none());
}

#[test]
fn get_info_matches_fixture() {
    let expected = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/ctap/get_info.response.bin"
    ))
    .unwrap();
    assert_eq!(auth().process(&[0x04]), expected);
}

#[test]
fn unknown_empty_and_malformed_commands() {
    let mut a = auth();
    assert_eq!(a.process(&[]), vec![StatusCode::InvalidLength.byte()]);
    assert_eq!(a.process(&[0x55]), vec![StatusCode::InvalidCommand.byte()]);
    assert_eq!(
        a.process(&[0x40, 0xa0]),
        vec![StatusCode::InvalidCommand.byte()]
    );
    assert_eq!(
        a.process(&[0x04, 0xa0]),
        vec![StatusCode::InvalidLength.byte()]
    );
    assert_eq!(
        a.process(&vec![0x04; MAX_MSG_SIZE + 1]),
        vec![StatusCode::RequestTooLarge.byte()]
    );
}
