//! The platform side of clientPIN (CTAP 2.1 §6.5.5): getKeyAgreement, setPIN, and a fresh
//! pinUvAuthToken per operation (getPinUvAuthTokenUsingPinWithPermissions, or getPinToken
//! on a key without `pinUvAuthToken`). ECDH is symmetric, so the platform's half is the
//! same [`KeyAgreement`] the authenticator uses, with a fresh key per exchange.

use ciborium::Value;
use zeroize::Zeroizing;

use super::ctap2::{CLIENT_PIN, CtapError, get, parse_response, request};
use crate::crypto::sha256;
use crate::pin::{KeyAgreement, Protocol, SharedSecret};

/// Permissions (§6.5.5.7): mc and ga.
pub const PERM_MC: u64 = 0x01;
pub const PERM_GA: u64 = 0x02;

/// How this key hands out tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinMethod {
    pub protocol: Protocol,
    /// getPinUvAuthTokenUsingPinWithPermissions (0x09) if true, else getPinToken (0x05).
    pub with_permissions: bool,
}

impl PinMethod {
    pub fn protocol_number(&self) -> u64 {
        match self.protocol {
            Protocol::One => 1,
            Protocol::Two => 2,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "PIN/UV protocol {}, {}",
            self.protocol_number(),
            if self.with_permissions {
                "getPinUvAuthTokenUsingPinWithPermissions"
            } else {
                "getPinToken"
            }
        )
    }
}

fn int(i: i64) -> Value {
    Value::Integer(i.into())
}

/// getKeyAgreement, then our own key pair: (our COSE key, shared secret).
pub fn key_agreement_request(m: PinMethod) -> Vec<u8> {
    request(
        CLIENT_PIN,
        Some(vec![
            (int(1), int(m.protocol_number() as i64)),
            (int(2), int(2)),
        ]),
    )
}

pub fn shared_secret(m: PinMethod, resp: &[u8]) -> Result<(Value, SharedSecret), CtapError> {
    let map = parse_response(resp)?;
    let peer = get(&map, 1)
        .and_then(normalize_key_agreement)
        .ok_or_else(|| CtapError::Invalid("keyAgreement is not a P-256 COSE key".into()))?;
    let ours = KeyAgreement::new();
    let shared = ours
        .decapsulate(m.protocol, &peer)
        .ok_or_else(|| CtapError::Invalid("keyAgreement is not a P-256 point".into()))?;
    Ok((ours.public_cose(), shared))
}

/// The authenticator's key as a strict COSE_Key, read as leniently as platforms do
/// (python-fido2 takes x and y as integers): virtual-fido omits crv and strips leading
/// zero bytes from the coordinates. The point itself is still checked by the ECDH.
fn normalize_key_agreement(v: &Value) -> Option<Value> {
    let m = v.as_map()?;
    if get(m, 1).and_then(|k| k.as_integer()).map(i128::from) != Some(2) {
        return None;
    }
    let coord = |k: i64| -> Option<[u8; 32]> {
        let b = get(m, k)?.as_bytes()?;
        if b.len() > 32 {
            return None;
        }
        let mut out = [0u8; 32];
        out[32 - b.len()..].copy_from_slice(b);
        Some(out)
    };
    Some(crate::crypto::cose::ec2_p256(-25, &coord(-2)?, &coord(-3)?))
}

/// setPIN (§6.5.5.5): newPinEnc = encrypt(shared, PIN padded to 64 bytes).
pub fn set_pin_request(m: PinMethod, pin: &str, ours: Value, shared: &SharedSecret) -> Vec<u8> {
    let mut padded = Zeroizing::new([0u8; 64]);
    let n = pin.len().min(63);
    padded[..n].copy_from_slice(&pin.as_bytes()[..n]);
    let new_pin_enc = m.protocol.encrypt(shared, &*padded);
    let param = m.protocol.authenticate(shared.hmac_key(), &new_pin_enc);
    request(
        CLIENT_PIN,
        Some(vec![
            (int(1), int(m.protocol_number() as i64)),
            (int(2), int(3)),
            (int(3), ours),
            (int(4), Value::Bytes(param)),
            (int(5), Value::Bytes(new_pin_enc)),
        ]),
    )
}

/// The token request: pinHashEnc = encrypt(shared, LEFT(SHA-256(PIN), 16)), with the
/// permissions and RP ID when the key supports them (§6.5.5.7.2).
pub fn token_request(
    m: PinMethod,
    pin: &str,
    ours: Value,
    shared: &SharedSecret,
    permissions: u64,
    rp_id: &str,
) -> Vec<u8> {
    let hash = Zeroizing::new(sha256(pin.as_bytes()));
    let pin_hash_enc = m.protocol.encrypt(shared, &hash[..16]);
    let mut params = vec![
        (int(1), int(m.protocol_number() as i64)),
        (int(2), int(if m.with_permissions { 9 } else { 5 })),
        (int(3), ours),
        (int(6), Value::Bytes(pin_hash_enc)),
    ];
    if m.with_permissions {
        params.push((int(9), int(permissions as i64)));
        params.push((int(10), Value::Text(rp_id.into())));
    }
    request(CLIENT_PIN, Some(params))
}

/// The decrypted pinUvAuthToken.
pub fn token(
    m: PinMethod,
    resp: &[u8],
    shared: &SharedSecret,
) -> Result<Zeroizing<Vec<u8>>, CtapError> {
    let map = parse_response(resp)?;
    let enc = get(&map, 2)
        .and_then(Value::as_bytes)
        .ok_or_else(|| CtapError::Invalid("pinUvAuthToken missing".into()))?;
    let t = m
        .protocol
        .decrypt(shared, enc)
        .ok_or_else(|| CtapError::Invalid("pinUvAuthToken does not decrypt".into()))?;
    if t.len() < 16 {
        return Err(CtapError::Invalid("pinUvAuthToken too short".into()));
    }
    Ok(t)
}

/// pinUvAuthParam = authenticate(token, clientDataHash).
pub fn auth_param(m: PinMethod, token: &[u8], client_data_hash: &[u8; 32]) -> Vec<u8> {
    m.protocol.authenticate(token, client_data_hash)
}
