//! The platform side of CTAP 2.1 that the benchmark needs: request encoding for
//! getInfo, makeCredential, getAssertion and clientPIN, and independent checks of what
//! comes back (status, authenticator data, attestation and assertion signatures), so a
//! key that answers garbage fast does not win. Written from the spec, not from vkey's
//! own encoder: it measures vkey too.

use std::fmt;

use ciborium::Value;
use p256::ecdsa::signature::Verifier as _;

use crate::crypto::sha256;

pub const GET_INFO: u8 = 0x04;
pub const MAKE_CREDENTIAL: u8 = 0x01;
pub const GET_ASSERTION: u8 = 0x02;
pub const CLIENT_PIN: u8 = 0x06;

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_AT: u8 = 0x40;
const FLAG_ED: u8 = 0x80;

/// A failed CTAP2 exchange that reached the authenticator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtapError {
    /// A non-zero status byte (CTAP 2.1 §8.2).
    Status(u8),
    /// The response is malformed or fails a check (the message says which).
    Invalid(String),
}

impl fmt::Display for CtapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtapError::Status(s) => write!(f, "{}", status_name(*s)),
            CtapError::Invalid(m) => write!(f, "invalid response: {m}"),
        }
    }
}

fn invalid(m: impl Into<String>) -> CtapError {
    CtapError::Invalid(m.into())
}

/// The spec name of a CTAP status byte (§8.2).
pub fn status_name(s: u8) -> String {
    let n = match s {
        0x01 => "CTAP1_ERR_INVALID_COMMAND",
        0x02 => "CTAP1_ERR_INVALID_PARAMETER",
        0x03 => "CTAP1_ERR_INVALID_LENGTH",
        0x04 => "CTAP1_ERR_INVALID_SEQ",
        0x05 => "CTAP1_ERR_TIMEOUT",
        0x06 => "CTAP1_ERR_CHANNEL_BUSY",
        0x0a => "CTAP1_ERR_LOCK_REQUIRED",
        0x0b => "CTAP1_ERR_INVALID_CHANNEL",
        0x11 => "CTAP2_ERR_CBOR_UNEXPECTED_TYPE",
        0x12 => "CTAP2_ERR_INVALID_CBOR",
        0x14 => "CTAP2_ERR_MISSING_PARAMETER",
        0x15 => "CTAP2_ERR_LIMIT_EXCEEDED",
        0x19 => "CTAP2_ERR_CREDENTIAL_EXCLUDED",
        0x21 => "CTAP2_ERR_PROCESSING",
        0x22 => "CTAP2_ERR_INVALID_CREDENTIAL",
        0x23 => "CTAP2_ERR_USER_ACTION_PENDING",
        0x24 => "CTAP2_ERR_OPERATION_PENDING",
        0x25 => "CTAP2_ERR_NO_OPERATIONS",
        0x26 => "CTAP2_ERR_UNSUPPORTED_ALGORITHM",
        0x27 => "CTAP2_ERR_OPERATION_DENIED",
        0x28 => "CTAP2_ERR_KEY_STORE_FULL",
        0x2b => "CTAP2_ERR_UNSUPPORTED_OPTION",
        0x2c => "CTAP2_ERR_INVALID_OPTION",
        0x2d => "CTAP2_ERR_KEEPALIVE_CANCEL",
        0x2e => "CTAP2_ERR_NO_CREDENTIALS",
        0x2f => "CTAP2_ERR_USER_ACTION_TIMEOUT",
        0x30 => "CTAP2_ERR_NOT_ALLOWED",
        0x31 => "CTAP2_ERR_PIN_INVALID",
        0x32 => "CTAP2_ERR_PIN_BLOCKED",
        0x33 => "CTAP2_ERR_PIN_AUTH_INVALID",
        0x34 => "CTAP2_ERR_PIN_AUTH_BLOCKED",
        0x35 => "CTAP2_ERR_PIN_NOT_SET",
        0x36 => "CTAP2_ERR_PUAT_REQUIRED",
        0x37 => "CTAP2_ERR_PIN_POLICY_VIOLATION",
        0x39 => "CTAP2_ERR_REQUEST_TOO_LARGE",
        0x3a => "CTAP2_ERR_ACTION_TIMEOUT",
        0x3b => "CTAP2_ERR_UP_REQUIRED",
        0x3c => "CTAP2_ERR_UV_BLOCKED",
        0x3d => "CTAP2_ERR_INTEGRITY_FAILURE",
        0x3e => "CTAP2_ERR_INVALID_SUBCOMMAND",
        0x3f => "CTAP2_ERR_UV_INVALID",
        0x40 => "CTAP2_ERR_UNAUTHORIZED_PERMISSION",
        0x7f => "CTAP1_ERR_OTHER",
        _ => return format!("CTAP_STATUS_{s:#04x}"),
    };
    n.to_string()
}

fn int(i: i64) -> Value {
    Value::Integer(i.into())
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// A CTAP2 request: command byte ‖ CBOR map (keys in canonical order as built).
pub fn request(cmd: u8, params: Option<Vec<(Value, Value)>>) -> Vec<u8> {
    let mut v = vec![cmd];
    if let Some(p) = params {
        // Writing into a Vec cannot fail.
        let _ = ciborium::into_writer(&Value::Map(p), &mut v);
    }
    v
}

/// Splits a response into its status and CBOR map (empty map for an empty body).
pub fn parse_response(resp: &[u8]) -> Result<Vec<(Value, Value)>, CtapError> {
    let (&status, body) = resp
        .split_first()
        .ok_or_else(|| invalid("empty response"))?;
    if status != 0 {
        return Err(CtapError::Status(status));
    }
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let mut rest = body;
    let v: Value = ciborium::from_reader(&mut rest).map_err(|e| invalid(format!("CBOR: {e}")))?;
    if !rest.is_empty() {
        return Err(invalid(format!("{} bytes after the CBOR map", rest.len())));
    }
    match v {
        Value::Map(m) => Ok(m),
        _ => Err(invalid("response is not a CBOR map")),
    }
}

/// The value under integer key `k`.
pub fn get(m: &[(Value, Value)], k: i64) -> Option<&Value> {
    m.iter()
        .find(|(key, _)| key.as_integer().map(i128::from) == Some(i128::from(k)))
        .map(|(_, v)| v)
}

fn get_text<'a>(m: &'a [(Value, Value)], k: &str) -> Option<&'a Value> {
    m.iter()
        .find(|(key, _)| key.as_text() == Some(k))
        .map(|(_, v)| v)
}

fn get_bytes<'a>(m: &'a [(Value, Value)], k: i64, what: &str) -> Result<&'a [u8], CtapError> {
    get(m, k)
        .and_then(Value::as_bytes)
        .map(Vec::as_slice)
        .ok_or_else(|| invalid(format!("{what} missing")))
}

fn as_i64(v: &Value) -> Option<i64> {
    v.as_integer().and_then(|i| i64::try_from(i).ok())
}

/// What getInfo says that the benchmark uses (§6.4).
#[derive(Debug, Clone, Default)]
pub struct Info {
    pub versions: Vec<String>,
    pub aaguid: Vec<u8>,
    /// The clientPin option: `None` if the key has no PIN support.
    pub client_pin: Option<bool>,
    pub pin_uv_auth_token: bool,
    pub pin_protocols: Vec<u64>,
    pub max_msg_size: Option<u64>,
}

pub fn parse_info(resp: &[u8]) -> Result<Info, CtapError> {
    let m = parse_response(resp)?;
    let versions: Vec<String> = get(&m, 1)
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("getInfo without versions"))?
        .iter()
        .filter_map(|v| v.as_text().map(str::to_string))
        .collect();
    if versions.is_empty() {
        return Err(invalid("getInfo: empty versions"));
    }
    let aaguid = get_bytes(&m, 3, "getInfo aaguid")?.to_vec();
    if aaguid.len() != 16 {
        return Err(invalid("getInfo: aaguid is not 16 bytes"));
    }
    let options = get(&m, 4).and_then(Value::as_map);
    let option = |name: &str| {
        options
            .and_then(|o| get_text(o, name))
            .and_then(Value::as_bool)
    };
    let pin_protocols = get(&m, 6)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| as_i64(v).and_then(|i| u64::try_from(i).ok()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Info {
        versions,
        aaguid,
        client_pin: option("clientPin"),
        pin_uv_auth_token: option("pinUvAuthToken") == Some(true),
        pin_protocols,
        max_msg_size: get(&m, 5)
            .and_then(as_i64)
            .and_then(|i| u64::try_from(i).ok()),
    })
}

/// A credential public key from its COSE_Key, ready to verify signatures.
#[derive(Clone, Debug)]
pub enum PublicKey {
    Es256(p256::ecdsa::VerifyingKey),
    EdDsa(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    pub fn from_cose(v: &Value) -> Result<PublicKey, CtapError> {
        let m = v.as_map().ok_or_else(|| invalid("COSE key is not a map"))?;
        let field = |k: i64| get(m, k);
        let kty = field(1).and_then(as_i64);
        let alg = field(3).and_then(as_i64);
        let crv = field(-1).and_then(as_i64);
        let x = field(-2).and_then(Value::as_bytes);
        match (kty, alg, crv) {
            (Some(2), Some(-7), Some(1)) => {
                let y = field(-3).and_then(Value::as_bytes);
                let (Some(x), Some(y)) = (x, y) else {
                    return Err(invalid("EC2 key without x/y"));
                };
                if x.len() != 32 || y.len() != 32 {
                    return Err(invalid("EC2 coordinates are not 32 bytes"));
                }
                let mut sec1 = [0u8; 65];
                sec1[0] = 4;
                sec1[1..33].copy_from_slice(x);
                sec1[33..].copy_from_slice(y);
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                    .map(PublicKey::Es256)
                    .map_err(|_| invalid("EC2 key is not a P-256 point"))
            }
            (Some(1), Some(-8), Some(6)) => {
                let x: [u8; 32] = x
                    .and_then(|x| x.as_slice().try_into().ok())
                    .ok_or_else(|| invalid("OKP key x is not 32 bytes"))?;
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map(PublicKey::EdDsa)
                    .map_err(|_| invalid("OKP key is not an Ed25519 point"))
            }
            _ => Err(invalid(format!(
                "unsupported COSE key kty {kty:?} alg {alg:?} crv {crv:?}"
            ))),
        }
    }

    pub fn alg(&self) -> i64 {
        match self {
            PublicKey::Es256(_) => -7,
            PublicKey::EdDsa(_) => -8,
        }
    }

    /// ES256: DER ECDSA over SHA-256(msg); EdDSA: the 64-byte signature (WebAuthn §6.5.5).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CtapError> {
        let ok = match self {
            PublicKey::Es256(k) => p256::ecdsa::Signature::from_der(sig)
                .map(|s| k.verify(msg, &s).is_ok())
                .unwrap_or(false),
            PublicKey::EdDsa(k) => ed25519_dalek::Signature::from_slice(sig)
                .map(|s| k.verify_strict(msg, &s).is_ok())
                .unwrap_or(false),
        };
        if ok {
            Ok(())
        } else {
            Err(invalid("signature does not verify"))
        }
    }
}

/// Parsed authenticator data (WebAuthn §6.1).
pub struct AuthData<'a> {
    pub rp_id_hash: &'a [u8],
    pub flags: u8,
    pub sign_count: u32,
    pub credential: Option<(&'a [u8], Value)>,
}

pub fn parse_auth_data(a: &[u8]) -> Result<AuthData<'_>, CtapError> {
    if a.len() < 37 {
        return Err(invalid("authData shorter than 37 bytes"));
    }
    let flags = a[32];
    let sign_count = u32::from_be_bytes([a[33], a[34], a[35], a[36]]);
    let mut rest = &a[37..];
    let mut credential = None;
    if flags & FLAG_AT != 0 {
        if rest.len() < 18 {
            return Err(invalid("attestedCredentialData truncated"));
        }
        let id_len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
        rest = &rest[18..];
        if rest.len() < id_len {
            return Err(invalid("credentialId truncated"));
        }
        let (id, after) = rest.split_at(id_len);
        rest = after;
        let key: Value =
            ciborium::from_reader(&mut rest).map_err(|e| invalid(format!("COSE key: {e}")))?;
        credential = Some((id, key));
    }
    if flags & FLAG_ED != 0 {
        let _: Value =
            ciborium::from_reader(&mut rest).map_err(|e| invalid(format!("extensions: {e}")))?;
    }
    if !rest.is_empty() {
        return Err(invalid("bytes after authData"));
    }
    Ok(AuthData {
        rp_id_hash: &a[..32],
        flags,
        sign_count,
        credential,
    })
}

/// The authenticator data checks every response gets.
fn check_flags(ad: &AuthData, rp_id: &str, uv: bool) -> Result<(), CtapError> {
    if ad.rp_id_hash != sha256(rp_id.as_bytes()) {
        return Err(invalid("rpIdHash is not SHA-256(rp.id)"));
    }
    if ad.flags & FLAG_UP == 0 {
        return Err(invalid("UP flag not set"));
    }
    if uv && ad.flags & FLAG_UV == 0 {
        return Err(invalid("UV flag not set with a PIN token"));
    }
    Ok(())
}

/// makeCredential parameters (§6.1).
pub struct MakeCredential<'a> {
    pub client_data_hash: &'a [u8; 32],
    pub rp_id: &'a str,
    pub user_id: &'a [u8],
    pub alg: i64,
    pub rk: bool,
    pub pin_auth: Option<(Vec<u8>, u64)>,
}

pub fn make_credential_request(p: &MakeCredential) -> Vec<u8> {
    let mut m = vec![
        (int(1), Value::Bytes(p.client_data_hash.to_vec())),
        (
            int(2),
            Value::Map(vec![
                (text("id"), text(p.rp_id)),
                (text("name"), text(p.rp_id)),
            ]),
        ),
        (
            int(3),
            Value::Map(vec![
                (text("id"), Value::Bytes(p.user_id.to_vec())),
                (text("name"), text("bench")),
                (text("displayName"), text("vkey bench")),
            ]),
        ),
        (
            int(4),
            Value::Array(vec![Value::Map(vec![
                (text("alg"), int(p.alg)),
                (text("type"), text("public-key")),
            ])]),
        ),
    ];
    if p.rk {
        m.push((int(7), Value::Map(vec![(text("rk"), Value::Bool(true))])));
    }
    if let Some((param, protocol)) = &p.pin_auth {
        m.push((int(8), Value::Bytes(param.clone())));
        m.push((int(9), int(*protocol as i64)));
    }
    request(MAKE_CREDENTIAL, Some(m))
}

/// A credential the benchmark made, with what it needs to check assertions.
#[derive(Clone, Debug)]
pub struct Credential {
    pub id: Vec<u8>,
    pub key: PublicKey,
    pub sign_count: u32,
}

/// What verifying an attestation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attestation {
    /// The signature was checked (packed x5c or self, fido-u2f).
    Verified,
    /// "none": nothing to check.
    None,
    /// A format this tool does not check (tpm, android-key, …).
    Unchecked,
}

/// Checks a makeCredential response; with `verify_signature` also the attestation
/// signature (an ECDSA verification costs ~0.4 ms, so the caller samples).
pub fn check_make_credential(
    resp: &[u8],
    p: &MakeCredential,
    verify_signature: bool,
) -> Result<(Credential, Attestation, String), CtapError> {
    let m = parse_response(resp)?;
    let fmt = get(&m, 1)
        .and_then(Value::as_text)
        .ok_or_else(|| invalid("fmt missing"))?
        .to_string();
    let auth_data = get_bytes(&m, 2, "authData")?;
    let att_stmt = get(&m, 3)
        .and_then(Value::as_map)
        .ok_or_else(|| invalid("attStmt missing"))?;
    let ad = parse_auth_data(auth_data)?;
    check_flags(&ad, p.rp_id, p.pin_auth.is_some())?;
    let Some((id, cose)) = &ad.credential else {
        return Err(invalid("no attested credential data"));
    };
    if id.is_empty() || id.len() > 1023 {
        return Err(invalid("credentialId length out of range"));
    }
    let key = PublicKey::from_cose(cose)?;
    if key.alg() != p.alg {
        return Err(invalid("credential algorithm is not the one asked for"));
    }
    let mut signed = auth_data.to_vec();
    signed.extend_from_slice(p.client_data_hash);
    let attestation = match fmt.as_str() {
        "none" => {
            if !att_stmt.is_empty() {
                return Err(invalid("fmt none with a non-empty attStmt"));
            }
            Attestation::None
        }
        "packed" => {
            let alg = get_text(att_stmt, "alg").and_then(as_i64);
            let sig = get_text(att_stmt, "sig")
                .and_then(Value::as_bytes)
                .ok_or_else(|| invalid("packed attStmt without sig"))?;
            match get_text(att_stmt, "x5c").and_then(Value::as_array) {
                Some(x5c) => {
                    if alg != Some(-7) {
                        return Err(invalid(format!("packed x5c with alg {alg:?}")));
                    }
                    if verify_signature {
                        certificate_key(x5c)?.verify(&signed, sig)?;
                    }
                }
                None => {
                    if alg != Some(key.alg()) {
                        return Err(invalid("self attestation alg differs from the key's"));
                    }
                    if verify_signature {
                        key.verify(&signed, sig)?;
                    }
                }
            }
            if verify_signature {
                Attestation::Verified
            } else {
                Attestation::Unchecked
            }
        }
        "fido-u2f" => {
            let sig = get_text(att_stmt, "sig")
                .and_then(Value::as_bytes)
                .ok_or_else(|| invalid("fido-u2f attStmt without sig"))?;
            let x5c = get_text(att_stmt, "x5c")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("fido-u2f attStmt without x5c"))?;
            let PublicKey::Es256(k) = &key else {
                return Err(invalid("fido-u2f with a non-P-256 credential"));
            };
            if verify_signature {
                // FIDO U2F §4.3: 0x00 ‖ rpIdHash ‖ clientDataHash ‖ credentialId ‖ point.
                let mut msg = vec![0u8];
                msg.extend_from_slice(ad.rp_id_hash);
                msg.extend_from_slice(p.client_data_hash);
                msg.extend_from_slice(id);
                msg.extend_from_slice(k.to_sec1_point(false).as_bytes());
                certificate_key(x5c)?.verify(&msg, sig)?;
                Attestation::Verified
            } else {
                Attestation::Unchecked
            }
        }
        _ => Attestation::Unchecked,
    };
    Ok((
        Credential {
            id: id.to_vec(),
            key,
            sign_count: ad.sign_count,
        },
        attestation,
        fmt,
    ))
}

/// The P-256 public key of x5c[0], the attestation certificate.
fn certificate_key(x5c: &[Value]) -> Result<PublicKey, CtapError> {
    use x509_cert::der::Decode;
    let der = x5c
        .first()
        .and_then(Value::as_bytes)
        .ok_or_else(|| invalid("x5c is empty"))?;
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|e| invalid(format!("x5c[0] is not a certificate: {e}")))?;
    let spki = &cert.tbs_certificate().subject_public_key_info();
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| invalid("certificate key has unused bits"))?;
    p256::ecdsa::VerifyingKey::from_sec1_bytes(bits)
        .map(PublicKey::Es256)
        .map_err(|_| invalid("attestation certificate key is not P-256"))
}

/// getAssertion parameters (§6.2).
pub struct GetAssertion<'a> {
    pub client_data_hash: &'a [u8; 32],
    pub rp_id: &'a str,
    /// The allowList (one credential), or `None` for a discoverable credential.
    pub allow: Option<&'a [u8]>,
    pub pin_auth: Option<(Vec<u8>, u64)>,
}

pub fn get_assertion_request(p: &GetAssertion) -> Vec<u8> {
    let mut m = vec![
        (int(1), text(p.rp_id)),
        (int(2), Value::Bytes(p.client_data_hash.to_vec())),
    ];
    if let Some(id) = p.allow {
        m.push((
            int(3),
            Value::Array(vec![Value::Map(vec![
                (text("id"), Value::Bytes(id.to_vec())),
                (text("type"), text("public-key")),
            ])]),
        ));
    }
    if let Some((param, protocol)) = &p.pin_auth {
        m.push((int(6), Value::Bytes(param.clone())));
        m.push((int(7), int(*protocol as i64)));
    }
    request(GET_ASSERTION, Some(m))
}

/// A getAssertion response, parsed but not yet checked.
pub struct Assertion {
    /// The credential ID, if the response names it (it may not with a one-entry allowList).
    pub credential_id: Option<Vec<u8>>,
    pub auth_data: Vec<u8>,
    pub signature: Vec<u8>,
}

pub fn parse_assertion(resp: &[u8], p: &GetAssertion) -> Result<Assertion, CtapError> {
    let m = parse_response(resp)?;
    let credential_id = match get(&m, 1) {
        Some(c) => Some(
            c.as_map()
                .and_then(|c| get_text(c, "id"))
                .and_then(Value::as_bytes)
                .ok_or_else(|| invalid("credential without id"))?
                .clone(),
        ),
        None if p.allow.is_none() => {
            return Err(invalid("discoverable assertion without credential"));
        }
        None => None,
    };
    if let (Some(id), Some(allowed)) = (&credential_id, p.allow)
        && id.as_slice() != allowed
    {
        return Err(invalid("assertion from a credential not in the allowList"));
    }
    Ok(Assertion {
        credential_id,
        auth_data: get_bytes(&m, 2, "authData")?.to_vec(),
        signature: get_bytes(&m, 3, "signature")?.to_vec(),
    })
}

/// Checks an assertion against the credential it comes from: rpIdHash, flags, a
/// signature counter that never goes back, and (sampled) the signature.
pub fn check_assertion(
    a: &Assertion,
    p: &GetAssertion,
    cred: &mut Credential,
    verify_signature: bool,
) -> Result<(), CtapError> {
    let ad = parse_auth_data(&a.auth_data)?;
    check_flags(&ad, p.rp_id, p.pin_auth.is_some())?;
    // A counter of 0 means the key keeps none (allowed); otherwise it must grow.
    if ad.sign_count != 0 && ad.sign_count <= cred.sign_count {
        return Err(invalid(format!(
            "signCount {} after {}",
            ad.sign_count, cred.sign_count
        )));
    }
    cred.sign_count = ad.sign_count;
    if verify_signature {
        let mut signed = a.auth_data.clone();
        signed.extend_from_slice(p.client_data_hash);
        cred.key.verify(&signed, &a.signature)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_responses_are_errors_not_panics() {
        for r in [
            &[][..],
            &[0x00, 0xff],
            &[0x00, 0xa1],
            &[0x00, 0x01],
            &[0x00, 0xa0, 0x00],
            &[0x2e],
        ] {
            assert!(parse_info(r).is_err());
            let p = MakeCredential {
                client_data_hash: &[0; 32],
                rp_id: "x",
                user_id: b"u",
                alg: -7,
                rk: false,
                pin_auth: None,
            };
            assert!(check_make_credential(r, &p, true).is_err());
        }
        assert_eq!(
            parse_response(&[0x2e]).unwrap_err(),
            CtapError::Status(0x2e)
        );
        assert_eq!(status_name(0x2e), "CTAP2_ERR_NO_CREDENTIALS");
        for a in [&[0u8; 10][..], &[0xffu8; 37], &[0x41; 60]] {
            assert!(parse_auth_data(a).is_err());
        }
    }
}
