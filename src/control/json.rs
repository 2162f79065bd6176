//! The control interface's JSON: Chrome DevTools `WebAuthn` names (camelCase), bytes
//! as base64url without padding (standard base64 and padding are accepted on input).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::ctap::trace::{TraceRequest, TraceResponse, TraceValue};
use crate::ctap::{CredentialInfo, Event, StoredCredential};
use crate::key::{KeyEvent, KeyEventKind};

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// base64url (or base64), with or without padding.
pub fn unb64(field: &str, s: &str) -> Result<Vec<u8>, String> {
    let t = s.trim_end_matches('=');
    let r = if t.contains(['+', '/']) {
        STANDARD_NO_PAD.decode(t)
    } else {
        URL_SAFE_NO_PAD.decode(t)
    };
    r.map_err(|e| format!("{field}: not base64url: {e}"))
}

/// A credential without its private key (events, lists).
pub fn credential_info(c: &CredentialInfo) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("credentialId".into(), b64(&c.credential_id).into());
    m.insert("isResidentCredential".into(), c.is_resident.into());
    m.insert("rpId".into(), c.rp_id.clone().into());
    if let Some(u) = &c.user_handle {
        m.insert("userHandle".into(), b64(u).into());
    }
    if let Some(n) = &c.user_name {
        m.insert("userName".into(), n.clone().into());
    }
    if let Some(n) = &c.user_display_name {
        m.insert("userDisplayName".into(), n.clone().into());
    }
    m.insert("signCount".into(), c.sign_count.into());
    m.insert("backupEligibility".into(), c.backup_eligibility.into());
    m.insert("backupState".into(), c.backup_state.into());
    m
}

/// A CDP `Credential` with its private key (PKCS#8 DER).
pub fn credential(c: &StoredCredential) -> Value {
    let mut m = credential_info(&c.info);
    if let Some(k) = &c.private_key {
        m.insert("privateKey".into(), b64(k).into());
    }
    m.insert(
        "algorithm".into(),
        match c.algorithm {
            crate::crypto::Algorithm::Es256 => "ES256",
            crate::crypto::Algorithm::EdDsa => "EdDSA",
        }
        .into(),
    );
    Value::Object(m)
}

/// `POST …/credentials`: a CDP `Credential`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialIn {
    pub credential_id: String,
    pub is_resident_credential: bool,
    pub rp_id: String,
    pub private_key: String,
    #[serde(default)]
    pub user_handle: Option<String>,
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub user_display_name: Option<String>,
    #[serde(default)]
    pub sign_count: u32,
    #[serde(default)]
    pub backup_eligibility: Option<bool>,
    #[serde(default)]
    pub backup_state: Option<bool>,
    /// Accepted by name so that the error says why (no large-blob storage yet).
    #[serde(default)]
    pub large_blob: Option<String>,
    /// What export writes; ignored on import (the key type says it).
    #[serde(default)]
    pub algorithm: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PropertiesIn {
    #[serde(default)]
    pub backup_eligibility: Option<bool>,
    #[serde(default)]
    pub backup_state: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserVerifiedIn {
    pub is_user_verified: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PresenceIn {
    pub mode: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnswerIn {
    /// The number of the request being answered (from `…/presence/pending`); without
    /// it, whichever request waits.
    #[serde(default)]
    pub id: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OverrideBitsIn {
    #[serde(default)]
    pub is_bogus_signature: bool,
    #[serde(default, rename = "isBadUV")]
    pub is_bad_uv: bool,
    #[serde(default, rename = "isBadUP")]
    pub is_bad_up: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PinIn {
    pub pin: String,
    /// For a change: the PIN that is set now (checked if given).
    #[serde(default)]
    pub current_pin: Option<String>,
}

impl Drop for PinIn {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.pin.zeroize();
        if let Some(c) = &mut self.current_pin {
            c.zeroize();
        }
    }
}

impl Drop for CredentialIn {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.private_key.zeroize();
    }
}

fn trace_value(v: &TraceValue) -> Value {
    match v {
        TraceValue::Null => Value::Null,
        TraceValue::Bool(b) => (*b).into(),
        TraceValue::Integer(i) => i64::try_from(*i)
            .map(Value::from)
            .or_else(|_| u64::try_from(*i).map(Value::from))
            .unwrap_or_else(|_| i.to_string().into()),
        TraceValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        TraceValue::Bytes(b) => b64(b).into(),
        TraceValue::Text(t) => t.clone().into(),
        TraceValue::Array(a) => a.iter().map(trace_value).collect(),
        TraceValue::Map(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), trace_value(v))).collect())
        }
        TraceValue::Redacted { len } => format!("<redacted: {len} bytes>").into(),
    }
}

fn request(t: &TraceRequest) -> Value {
    json!({
        "command": t.command_name,
        "params": t.params.as_ref().map(trace_value),
    })
}

fn response(t: &TraceResponse) -> Value {
    json!({
        "command": t.command_name,
        "status": t.status_name,
        "response": t.body.as_ref().map(trace_value),
    })
}

/// The event's name (the SSE `event:` field) and its JSON.
pub fn event(e: &KeyEvent) -> (&'static str, Value) {
    let (name, mut body) = match &e.kind {
        KeyEventKind::Ctap(Event::CredentialAdded(c)) => (
            "credentialAdded",
            json!({ "credential": Value::Object(credential_info(c)) }),
        ),
        KeyEventKind::Ctap(Event::CredentialAsserted(c)) => (
            "credentialAsserted",
            json!({ "credential": Value::Object(credential_info(c)) }),
        ),
        KeyEventKind::Ctap(Event::CredentialUpdated(c)) => (
            "credentialUpdated",
            json!({ "credential": Value::Object(credential_info(c)) }),
        ),
        KeyEventKind::Ctap(Event::CredentialDeleted { credential_id }) => (
            "credentialDeleted",
            json!({ "credentialId": b64(credential_id) }),
        ),
        KeyEventKind::Ctap(Event::PresenceRequested {
            id,
            command,
            rp_id,
            waits,
        }) => (
            "presenceRequested",
            json!({ "id": id, "command": command, "rpId": rp_id, "waits": waits }),
        ),
        KeyEventKind::Attached => ("attached", json!({})),
        KeyEventKind::Detached => ("detached", json!({})),
        KeyEventKind::Request(r) => ("ctapRequest", request(r)),
        KeyEventKind::Response(r) => ("ctapResponse", response(r)),
    };
    if let Value::Object(m) = &mut body {
        m.insert("type".into(), name.into());
        m.insert("busId".into(), e.bus_id.to_string().into());
        let ms = e
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        m.insert("time".into(), ms.into());
    }
    (name, body)
}

/// The AAGUID as a UUID string.
pub fn uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
