//! The CTAP trace: each request and response decoded for a human (command name, CBOR
//! members by their spec names, authenticator data taken apart, status name; for
//! CTAP1/U2F the APDU's fields and the status word's name), with
//! every secret redacted: PINs (newPinEnc, pinHashEnc), pinUvAuthParam, tokens,
//! hmac-secret salts and outputs, credBlob, largeBlobKey and large-blob data. What is
//! public stays (keyAgreement, public keys, signatures). It produces a plain tree; the
//! edge turns it into JSON.

use ciborium::Value;

use super::CommandCode;
use super::auth_data::{FLAG_AT, FLAG_BE, FLAG_BS, FLAG_ED, FLAG_UP, FLAG_UV};
use super::cbor;
use super::status::StatusCode;

/// A decoded CBOR item, ready for display.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceValue {
    Null,
    Bool(bool),
    Integer(i128),
    Float(f64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<TraceValue>),
    /// Members in the order sent; integer keys replaced by their spec names.
    Map(Vec<(String, TraceValue)>),
    /// A secret: only its length is shown.
    Redacted {
        len: usize,
    },
}

/// One CTAP request as the trace shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceRequest {
    pub command: u8,
    pub command_name: String,
    pub params: Option<TraceValue>,
}

/// One CTAP response.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceResponse {
    pub command: u8,
    pub command_name: String,
    /// The CTAP status byte, or a CTAP1/U2F status word.
    pub status: u16,
    pub status_name: String,
    pub body: Option<TraceValue>,
}

/// The spec name of a command byte.
pub fn command_name(code: u8) -> String {
    const NAMES: [(CommandCode, &str); 11] = [
        (CommandCode::MakeCredential, "makeCredential"),
        (CommandCode::GetAssertion, "getAssertion"),
        (CommandCode::GetInfo, "getInfo"),
        (CommandCode::ClientPin, "clientPin"),
        (CommandCode::Reset, "reset"),
        (CommandCode::GetNextAssertion, "getNextAssertion"),
        (CommandCode::CredentialManagement, "credentialManagement"),
        (CommandCode::Selection, "selection"),
        (CommandCode::LargeBlobs, "largeBlobs"),
        (CommandCode::Config, "config"),
        (
            CommandCode::CredentialManagementPreview,
            "credentialManagementPreview",
        ),
    ];
    NAMES
        .iter()
        .find(|(c, _)| *c as u8 == code)
        .map_or_else(|| format!("{code:#04x}"), |(_, n)| (*n).to_string())
}

/// The spec name of a status byte (CTAP 2.1 §8.2).
pub fn status_name(status: u8) -> String {
    if status == 0 {
        return "CTAP2_OK".into();
    }
    StatusCode::from_byte(status).map_or_else(|| format!("{status:#04x}"), |s| s.to_string())
}

/// What a member holds, by (command, key).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Secret,
    Extensions,
    AuthData,
}

/// Request members: (command, key, name, kind).
const REQUEST_KEYS: &[(u8, u64, &str, Kind)] = {
    use Kind::*;
    &[
        (0x01, 1, "clientDataHash", Plain),
        (0x01, 2, "rp", Plain),
        (0x01, 3, "user", Plain),
        (0x01, 4, "pubKeyCredParams", Plain),
        (0x01, 5, "excludeList", Plain),
        (0x01, 6, "extensions", Extensions),
        (0x01, 7, "options", Plain),
        (0x01, 8, "pinUvAuthParam", Secret),
        (0x01, 9, "pinUvAuthProtocol", Plain),
        (0x01, 10, "enterpriseAttestation", Plain),
        (0x02, 1, "rpId", Plain),
        (0x02, 2, "clientDataHash", Plain),
        (0x02, 3, "allowList", Plain),
        (0x02, 4, "extensions", Extensions),
        (0x02, 5, "options", Plain),
        (0x02, 6, "pinUvAuthParam", Secret),
        (0x02, 7, "pinUvAuthProtocol", Plain),
        (0x06, 1, "pinUvAuthProtocol", Plain),
        (0x06, 2, "subCommand", Plain),
        (0x06, 3, "keyAgreement", Plain),
        (0x06, 4, "pinUvAuthParam", Secret),
        (0x06, 5, "newPinEnc", Secret),
        (0x06, 6, "pinHashEnc", Secret),
        (0x06, 9, "permissions", Plain),
        (0x06, 10, "rpId", Plain),
        (0x0a, 1, "subCommand", Plain),
        (0x0a, 2, "subCommandParams", Plain),
        (0x0a, 3, "pinUvAuthProtocol", Plain),
        (0x0a, 4, "pinUvAuthParam", Secret),
        (0x41, 1, "subCommand", Plain),
        (0x41, 2, "subCommandParams", Plain),
        (0x41, 3, "pinUvAuthProtocol", Plain),
        (0x41, 4, "pinUvAuthParam", Secret),
        (0x0c, 1, "get", Plain),
        (0x0c, 2, "set", Secret),
        (0x0c, 3, "offset", Plain),
        (0x0c, 4, "length", Plain),
        (0x0c, 5, "pinUvAuthParam", Secret),
        (0x0c, 6, "pinUvAuthProtocol", Plain),
        (0x0d, 1, "subCommand", Plain),
        (0x0d, 2, "subCommandParams", Plain),
        (0x0d, 3, "pinUvAuthProtocol", Plain),
        (0x0d, 4, "pinUvAuthParam", Secret),
    ]
};

/// Response members.
const RESPONSE_KEYS: &[(u8, u64, &str, Kind)] = {
    use Kind::*;
    &[
        (0x01, 1, "fmt", Plain),
        (0x01, 2, "authData", AuthData),
        (0x01, 3, "attStmt", Plain),
        (0x01, 4, "epAtt", Plain),
        (0x01, 5, "largeBlobKey", Secret),
        (0x02, 1, "credential", Plain),
        (0x02, 2, "authData", AuthData),
        (0x02, 3, "signature", Plain),
        (0x02, 4, "user", Plain),
        (0x02, 5, "numberOfCredentials", Plain),
        (0x02, 6, "userSelected", Plain),
        (0x02, 7, "largeBlobKey", Secret),
        (0x08, 1, "credential", Plain),
        (0x08, 2, "authData", AuthData),
        (0x08, 3, "signature", Plain),
        (0x08, 4, "user", Plain),
        (0x08, 7, "largeBlobKey", Secret),
        (0x04, 1, "versions", Plain),
        (0x04, 2, "extensions", Plain),
        (0x04, 3, "aaguid", Plain),
        (0x04, 4, "options", Plain),
        (0x04, 5, "maxMsgSize", Plain),
        (0x04, 6, "pinUvAuthProtocols", Plain),
        (0x04, 7, "maxCredentialCountInList", Plain),
        (0x04, 8, "maxCredentialIdLength", Plain),
        (0x04, 9, "transports", Plain),
        (0x04, 10, "algorithms", Plain),
        (0x04, 11, "maxSerializedLargeBlobArray", Plain),
        (0x04, 12, "forcePINChange", Plain),
        (0x04, 13, "minPINLength", Plain),
        (0x04, 14, "firmwareVersion", Plain),
        (0x04, 15, "maxCredBlobLength", Plain),
        (0x04, 16, "maxRPIDsForSetMinPINLength", Plain),
        (0x04, 17, "preferredPlatformUvAttempts", Plain),
        (0x04, 18, "uvModality", Plain),
        (0x04, 19, "certifications", Plain),
        (0x04, 20, "remainingDiscoverableCredentials", Plain),
        (0x06, 1, "keyAgreement", Plain),
        (0x06, 2, "pinUvAuthToken", Secret),
        (0x06, 3, "pinRetries", Plain),
        (0x06, 4, "powerCycleState", Plain),
        (0x06, 5, "uvRetries", Plain),
        (0x0a, 1, "existingResidentCredentialsCount", Plain),
        (
            0x0a,
            2,
            "maxPossibleRemainingResidentCredentialsCount",
            Plain,
        ),
        (0x0a, 3, "rp", Plain),
        (0x0a, 4, "rpIDHash", Plain),
        (0x0a, 5, "totalRPs", Plain),
        (0x0a, 6, "user", Plain),
        (0x0a, 7, "credentialID", Plain),
        (0x0a, 8, "publicKey", Plain),
        (0x0a, 9, "totalCredentials", Plain),
        (0x0a, 10, "credProtect", Plain),
        (0x0a, 11, "largeBlobKey", Secret),
        (0x0c, 1, "config", Secret),
    ]
};

/// Decodes a request: command byte ‖ CBOR parameters.
pub fn request(msg: &[u8]) -> TraceRequest {
    let (command, params) = match msg.split_first() {
        Some((&c, p)) => (c, p),
        None => (0, &[][..]),
    };
    TraceRequest {
        command,
        command_name: command_name(command),
        params: body(REQUEST_KEYS, command, params),
    }
}

/// Decodes the response to `command`: status byte ‖ CBOR.
pub fn response(command: u8, msg: &[u8]) -> TraceResponse {
    let (status, rest) = match msg.split_first() {
        Some((&s, r)) => (s, r),
        None => (StatusCode::Other.byte(), &[][..]),
    };
    // credentialManagementPreview answers like credentialManagement.
    let keyed = if command == 0x41 { 0x0a } else { command };
    TraceResponse {
        command,
        command_name: command_name(command),
        status: status.into(),
        status_name: status_name(status),
        body: body(RESPONSE_KEYS, keyed, rest),
    }
}

/// Decodes a CTAP1/U2F request APDU (CTAPHID_MSG): `command` is its INS.
pub fn u2f_request(msg: &[u8]) -> TraceRequest {
    let (ins, name, params) = super::u2f::describe::request(msg);
    TraceRequest {
        command: ins,
        command_name: name,
        params: Some(params),
    }
}

/// Decodes the response APDU to `request`.
pub fn u2f_response(request: &[u8], msg: &[u8]) -> TraceResponse {
    let (ins, command_name, _) = super::u2f::describe::request(request);
    let (status, status_name, body) = super::u2f::describe::response(ins, msg);
    TraceResponse {
        command: ins,
        command_name,
        status,
        status_name,
        body,
    }
}

fn body(table: &[(u8, u64, &str, Kind)], command: u8, bytes: &[u8]) -> Option<TraceValue> {
    if bytes.is_empty() {
        return None;
    }
    let Ok(value) = cbor::decode(bytes) else {
        return Some(TraceValue::Text(format!(
            "<not CBOR: {} bytes>",
            bytes.len()
        )));
    };
    Some(match value {
        Value::Map(entries) => TraceValue::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = k.as_integer().and_then(|i| u64::try_from(i).ok());
                    let known = key.and_then(|key| {
                        table.iter().find(|(c, n, _, _)| *c == command && *n == key)
                    });
                    match known {
                        Some((_, _, name, kind)) => (name.to_string(), member(*kind, v)),
                        None => (key_name(&k), plain(v)),
                    }
                })
                .collect(),
        ),
        other => plain(other),
    })
}

fn member(kind: Kind, v: Value) -> TraceValue {
    match kind {
        Kind::Plain => plain(v),
        Kind::Secret => redact(&v),
        Kind::Extensions => extensions(v),
        Kind::AuthData => match v {
            Value::Bytes(b) => auth_data(&b).unwrap_or(TraceValue::Bytes(b)),
            other => plain(other),
        },
    }
}

fn key_name(k: &Value) -> String {
    match k {
        Value::Text(t) => t.clone(),
        Value::Integer(i) => i128::from(*i).to_string(),
        other => format!("{other:?}"),
    }
}

fn redact(v: &Value) -> TraceValue {
    TraceValue::Redacted {
        len: match v {
            Value::Bytes(b) => b.len(),
            Value::Text(t) => t.len(),
            _ => cbor::encode(v).len(),
        },
    }
}

/// A CBOR item with nothing secret in it.
fn plain(v: Value) -> TraceValue {
    match v {
        Value::Null => TraceValue::Null,
        Value::Bool(b) => TraceValue::Bool(b),
        Value::Integer(i) => TraceValue::Integer(i.into()),
        Value::Float(f) => TraceValue::Float(f),
        Value::Bytes(b) => TraceValue::Bytes(b),
        Value::Text(t) => TraceValue::Text(t),
        Value::Array(a) => TraceValue::Array(a.into_iter().map(plain).collect()),
        Value::Map(m) => TraceValue::Map(
            m.into_iter()
                .map(|(k, v)| (key_name(&k), plain(v)))
                .collect(),
        ),
        Value::Tag(_, inner) => plain(*inner),
        _ => TraceValue::Null,
    }
}

/// Extension inputs or outputs: hmac-secret salts and outputs, credBlob contents and
/// anything else given as bytes under a secret-bearing extension are redacted;
/// hmac-secret's keyAgreement (public) stays.
fn extensions(v: Value) -> TraceValue {
    const SECRET_BEARING: [&str; 3] = ["hmac-secret", "hmac-secret-mc", "credBlob"];
    let Value::Map(entries) = v else {
        return plain(v);
    };
    TraceValue::Map(
        entries
            .into_iter()
            .map(|(k, v)| {
                let name = key_name(&k);
                let secret = SECRET_BEARING.contains(&name.as_str());
                let shown = match v {
                    Value::Map(m) if secret => TraceValue::Map(
                        m.into_iter()
                            .map(|(k, v)| match k.as_integer().map(i128::from) {
                                Some(1) => ("keyAgreement".into(), plain(v)),
                                Some(2) => ("saltEnc".into(), redact(&v)),
                                Some(3) => ("saltAuth".into(), redact(&v)),
                                Some(4) => ("pinUvAuthProtocol".into(), plain(v)),
                                _ => (key_name(&k), redact(&v)),
                            })
                            .collect(),
                    ),
                    Value::Bool(b) => TraceValue::Bool(b),
                    Value::Integer(i) => TraceValue::Integer(i.into()),
                    other if secret => redact(&other),
                    other => plain(other),
                };
                (name, shown)
            })
            .collect(),
    )
}

/// Authenticator data (WebAuthn §6.1) taken apart; `None` if it does not parse.
fn auth_data(b: &[u8]) -> Option<TraceValue> {
    let rp_id_hash = b.get(..32)?;
    let flags = *b.get(32)?;
    let sign_count = u32::from_be_bytes(b.get(33..37)?.try_into().ok()?);
    let mut rest = b.get(37..)?;
    let flag = |f: u8| TraceValue::Bool(flags & f != 0);
    let mut out = vec![
        (
            "rpIdHash".to_string(),
            TraceValue::Bytes(rp_id_hash.to_vec()),
        ),
        (
            "flags".into(),
            TraceValue::Map(vec![
                ("up".into(), flag(FLAG_UP)),
                ("uv".into(), flag(FLAG_UV)),
                ("be".into(), flag(FLAG_BE)),
                ("bs".into(), flag(FLAG_BS)),
                ("at".into(), flag(FLAG_AT)),
                ("ed".into(), flag(FLAG_ED)),
            ]),
        ),
        ("signCount".into(), TraceValue::Integer(sign_count.into())),
    ];
    if flags & FLAG_AT != 0 {
        let aaguid = rest.get(..16)?;
        let len = usize::from(u16::from_be_bytes(rest.get(16..18)?.try_into().ok()?));
        let id = rest.get(18..18 + len)?;
        let (key, used) = one_item(rest.get(18 + len..)?)?;
        out.push((
            "attestedCredentialData".into(),
            TraceValue::Map(vec![
                ("aaguid".into(), TraceValue::Bytes(aaguid.to_vec())),
                ("credentialId".into(), TraceValue::Bytes(id.to_vec())),
                ("credentialPublicKey".into(), plain(key)),
            ]),
        ));
        rest = rest.get(18 + len + used..)?;
    }
    if flags & FLAG_ED != 0 {
        let (ext, used) = one_item(rest)?;
        out.push(("extensions".into(), extensions(ext)));
        rest = rest.get(used..)?;
    }
    rest.is_empty().then_some(TraceValue::Map(out))
}

/// The first CBOR item of `b` and how many bytes it took.
fn one_item(b: &[u8]) -> Option<(Value, usize)> {
    let mut cursor = std::io::Cursor::new(b);
    let v: Value = ciborium::de::from_reader_with_recursion_limit(&mut cursor, 16).ok()?;
    Some((v, usize::try_from(cursor.position()).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctap::cbor::MapBuilder;

    fn find<'a>(v: &'a TraceValue, key: &str) -> &'a TraceValue {
        let TraceValue::Map(m) = v else {
            panic!("not a map: {v:?}")
        };
        &m.iter().find(|(k, _)| k == key).unwrap().1
    }

    #[test]
    fn client_pin_secrets_are_redacted_and_key_agreement_stays() {
        let ka = MapBuilder::new().int(1, 2).int(-1, 1).build();
        let params = MapBuilder::new()
            .int(1, 2)
            .int(2, 4)
            .int(3, ka)
            .int(4, Value::Bytes(vec![7; 32]))
            .int(5, Value::Bytes(vec![8; 80]))
            .int(6, Value::Bytes(vec![9; 32]))
            .build();
        let mut msg = vec![0x06];
        msg.extend(cbor::encode(&params));
        let t = request(&msg);
        assert_eq!(t.command_name, "clientPin");
        let p = t.params.unwrap();
        assert_eq!(find(&p, "subCommand"), &TraceValue::Integer(4));
        assert!(matches!(find(&p, "keyAgreement"), TraceValue::Map(_)));
        assert_eq!(
            find(&p, "pinUvAuthParam"),
            &TraceValue::Redacted { len: 32 }
        );
        assert_eq!(find(&p, "newPinEnc"), &TraceValue::Redacted { len: 80 });
        assert_eq!(find(&p, "pinHashEnc"), &TraceValue::Redacted { len: 32 });
        assert!(!format!("{p:?}").contains("[7, 7"));

        let resp = MapBuilder::new().int(2, Value::Bytes(vec![5; 48])).build();
        let mut msg = vec![0x00];
        msg.extend(cbor::encode(&resp));
        let r = response(0x06, &msg);
        assert_eq!(r.status_name, "CTAP2_OK");
        assert_eq!(
            find(&r.body.unwrap(), "pinUvAuthToken"),
            &TraceValue::Redacted { len: 48 }
        );
        assert_eq!(
            response(0x01, &[0x27]).status_name,
            "CTAP2_ERR_OPERATION_DENIED"
        );
    }

    #[test]
    fn auth_data_is_taken_apart_and_hmac_secret_output_redacted() {
        let ext = MapBuilder::new()
            .text("hmac-secret", Value::Bytes(vec![3; 32]))
            .text("credProtect", 2)
            .build();
        let mut ad = vec![1u8; 32];
        ad.push(FLAG_UP | FLAG_ED);
        ad.extend(7u32.to_be_bytes());
        ad.extend(cbor::encode(&ext));
        let resp = MapBuilder::new()
            .int(2, Value::Bytes(ad))
            .int(3, Value::Bytes(vec![4; 70]))
            .build();
        let mut msg = vec![0x00];
        msg.extend(cbor::encode(&resp));
        let body = response(0x02, &msg).body.unwrap();
        let ad = find(&body, "authData");
        assert_eq!(find(ad, "signCount"), &TraceValue::Integer(7));
        assert_eq!(find(find(ad, "flags"), "up"), &TraceValue::Bool(true));
        let ext = find(ad, "extensions");
        assert_eq!(find(ext, "hmac-secret"), &TraceValue::Redacted { len: 32 });
        assert_eq!(find(ext, "credProtect"), &TraceValue::Integer(2));
    }

    #[test]
    fn garbage_is_described_not_decoded() {
        let t = request(&[0x01, 0xff, 0x00]);
        assert_eq!(t.command_name, "makeCredential");
        assert!(matches!(t.params, Some(TraceValue::Text(_))));
        assert_eq!(request(&[]).command_name, "0x00");
        assert_eq!(command_name(0x55), "0x55");
    }
}
