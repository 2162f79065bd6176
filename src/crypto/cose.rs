//! COSE_Key encodings of public keys (RFC 9053 §7; CTAP 2.1 §6.5.6 for key agreement).

use ciborium::Value;

fn int(i: i64) -> Value {
    Value::Integer(i.into())
}

/// EC2 key on P-256: {1: 2 (EC2), 3: alg, -1: 1 (P-256), -2: x, -3: y}.
pub fn ec2_p256(alg: i64, x: &[u8], y: &[u8]) -> Value {
    Value::Map(vec![
        (int(1), int(2)),
        (int(3), int(alg)),
        (int(-1), int(1)),
        (int(-2), Value::Bytes(x.to_vec())),
        (int(-3), Value::Bytes(y.to_vec())),
    ])
}

/// OKP key on Ed25519: {1: 1 (OKP), 3: -8 (EdDSA), -1: 6 (Ed25519), -2: x}.
pub fn okp_ed25519(x: &[u8]) -> Value {
    Value::Map(vec![
        (int(1), int(1)),
        (int(3), int(-8)),
        (int(-1), int(6)),
        (int(-2), Value::Bytes(x.to_vec())),
    ])
}
