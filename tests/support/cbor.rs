//! CTAP2 requests and responses as CBOR values (CTAP 2.1 §6, §8).

use ciborium::Value;

pub fn text(s: &str) -> Value {
    Value::Text(s.into())
}

pub fn int(i: i64) -> Value {
    Value::Integer(i.into())
}

/// A CTAP2 request: the command byte, then its parameters as a CBOR map.
pub fn request(cmd: u8, params: Vec<(Value, Value)>) -> Vec<u8> {
    let mut req = vec![cmd];
    ciborium::into_writer(&Value::Map(params), &mut req).unwrap();
    req
}

/// authenticatorMakeCredential (0x01) for `rp_id` and the user `user_id`, ES256 (so
/// packed attestation: a P-256 key generation and two signatures), clientDataHash
/// `[7; 32]`; discoverable if `rk`.
pub fn make_credential(rp_id: &str, user_id: &[u8], rk: bool) -> Vec<u8> {
    let mut params = vec![
        (int(1), Value::Bytes(vec![7; 32])),
        (int(2), Value::Map(vec![(text("id"), text(rp_id))])),
        (
            int(3),
            Value::Map(vec![(text("id"), Value::Bytes(user_id.to_vec()))]),
        ),
        (
            int(4),
            Value::Array(vec![Value::Map(vec![
                (text("alg"), int(-7)),
                (text("type"), text("public-key")),
            ])]),
        ),
    ];
    if rk {
        params.push((int(7), Value::Map(vec![(text("rk"), Value::Bool(true))])));
    }
    request(0x01, params)
}

/// The value under `key` in the CBOR map `v`; `None` if `v` is no map or lacks it.
pub fn member<'a>(v: &'a Value, key: &Value) -> Option<&'a Value> {
    v.as_map()?.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}
