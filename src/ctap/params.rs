//! WebAuthn/CTAP parameter structures shared by several commands (CTAP 2.1 §6.1, §6.2),
//! each read with the exact CTAP error for a missing member or a wrong type.

use ciborium::Value;

use super::cbor::{MapBuilder, read};
use super::status::{CtapResult, StatusCode};
use crate::crypto::Algorithm;
use crate::pin::Protocol;

/// user.id is at most 64 bytes (WebAuthn §5.4.3).
pub const MAX_USER_ID_LEN: usize = 64;
/// Names are kept to 64 bytes: CTAP 2.1 §6.1 lets authenticators truncate them there.
const MAX_NAME_LEN: usize = 64;

fn truncate_utf8(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn optional_text(v: Option<Value>) -> CtapResult<Option<String>> {
    v.map(read::text)
        .transpose()
        .map(|o| o.map(|s| truncate_utf8(s, MAX_NAME_LEN)))
}

/// PublicKeyCredentialRpEntity.
pub struct RpEntity {
    pub id: String,
    pub name: Option<String>,
}

impl RpEntity {
    pub fn parse(v: Value) -> CtapResult<RpEntity> {
        let mut id = None;
        let mut name = None;
        for (k, v) in read::text_map(v)? {
            match k.as_str() {
                "id" => id = Some(read::text(v)?),
                "name" => name = optional_text(Some(v))?,
                _ => {} // "icon" and unknown members are ignored
            }
        }
        let id = id.ok_or(StatusCode::MissingParameter)?;
        // Stored with every discoverable credential: bounded (issue 11), like user.id.
        if id.len() > crate::store::MAX_RP_ID_LEN {
            return Err(StatusCode::InvalidLength);
        }
        Ok(RpEntity { id, name })
    }
}

/// PublicKeyCredentialUserEntity.
pub struct UserEntity {
    pub id: Vec<u8>,
    pub name: Option<String>,
    pub display_name: Option<String>,
}

impl UserEntity {
    pub fn parse(v: Value) -> CtapResult<UserEntity> {
        let mut id = None;
        let (mut name, mut display_name) = (None, None);
        for (k, v) in read::text_map(v)? {
            match k.as_str() {
                "id" => id = Some(read::bytes(v)?),
                "name" => name = optional_text(Some(v))?,
                "displayName" => display_name = optional_text(Some(v))?,
                _ => {}
            }
        }
        let id = id.ok_or(StatusCode::MissingParameter)?;
        if id.len() > MAX_USER_ID_LEN {
            return Err(StatusCode::InvalidLength);
        }
        Ok(UserEntity {
            id,
            name,
            display_name,
        })
    }

    pub fn encode(self) -> Value {
        MapBuilder::new()
            .text("id", Value::Bytes(self.id))
            .text_opt("name", self.name)
            .text_opt("displayName", self.display_name)
            .build()
    }
}

/// PublicKeyCredentialDescriptor. Only type "public-key" is ours; others are skipped.
pub struct CredentialDescriptor {
    pub id: Vec<u8>,
    pub public_key: bool,
}

impl CredentialDescriptor {
    pub fn parse(v: Value) -> CtapResult<CredentialDescriptor> {
        let mut id = None;
        let mut ty = None;
        for (k, v) in read::text_map(v)? {
            match k.as_str() {
                "id" => id = Some(read::bytes(v)?),
                "type" => ty = Some(read::text(v)?),
                _ => {} // "transports" is a hint for the platform
            }
        }
        let id = id.ok_or(StatusCode::MissingParameter)?;
        let ty = ty.ok_or(StatusCode::MissingParameter)?;
        Ok(CredentialDescriptor {
            id,
            public_key: ty == "public-key",
        })
    }

    /// An optional list: absent reads as empty.
    pub fn parse_list(v: Option<Value>) -> CtapResult<Vec<CredentialDescriptor>> {
        let Some(v) = v else { return Ok(Vec::new()) };
        read::array(v)?
            .into_iter()
            .map(CredentialDescriptor::parse)
            .collect()
    }

    /// The descriptor of one of our credentials.
    pub fn encode_public_key(id: Vec<u8>) -> Value {
        MapBuilder::new()
            .text("id", Value::Bytes(id))
            .text("type", "public-key")
            .build()
    }
}

/// pubKeyCredParams (§6.1.2 step 3): every entry is validated; the first supported
/// algorithm in the RP's order wins, else UNSUPPORTED_ALGORITHM.
pub fn first_supported_algorithm(params: Vec<Value>) -> CtapResult<Algorithm> {
    let mut chosen = None;
    for p in params {
        let mut alg = None;
        let mut ty = None;
        for (k, v) in read::text_map(p)? {
            match k.as_str() {
                "alg" => alg = Some(read::int(v)?),
                "type" => ty = Some(read::text(v)?),
                _ => {}
            }
        }
        let public_key = ty.ok_or(StatusCode::MissingParameter)? == "public-key";
        let alg = alg.ok_or(StatusCode::MissingParameter)?;
        if public_key && chosen.is_none() {
            chosen = Algorithm::from_cose_id(alg);
        }
    }
    chosen.ok_or(StatusCode::UnsupportedAlgorithm)
}

/// pinUvAuthProtocol: present (MISSING_PARAMETER) and supported (INVALID_PARAMETER).
pub fn pin_uv_auth_protocol(v: Option<u64>) -> CtapResult<Protocol> {
    Protocol::from_param(v.ok_or(StatusCode::MissingParameter)?).ok_or(StatusCode::InvalidParameter)
}

/// The options map: text keys with boolean values. Unknown options are ignored.
#[derive(Default)]
pub struct Options {
    pub rk: Option<bool>,
    pub up: Option<bool>,
    pub uv: Option<bool>,
}

impl Options {
    pub fn parse(v: Option<Value>) -> CtapResult<Options> {
        let mut o = Options::default();
        let Some(v) = v else { return Ok(o) };
        for (k, v) in read::text_map(v)? {
            let b = read::boolean(v)?;
            match k.as_str() {
                "rk" => o.rk = Some(b),
                "up" => o.up = Some(b),
                "uv" => o.uv = Some(b),
                _ => {}
            }
        }
        Ok(o)
    }
}
