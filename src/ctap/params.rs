//! WebAuthn/CTAP parameter structures shared by several commands (CTAP 2.1 §6.1, §6.2),
//! each read with the exact CTAP error for a missing member or a wrong type.

use ciborium::Value;

use super::MAX_CREDENTIAL_COUNT_IN_LIST;
use super::cbor::{self, MapBuilder, RequestMap, read};
use super::status::{CtapResult, StatusCode};
use crate::crypto::Algorithm;
use crate::pin::Protocol;
use crate::store::MAX_RP_ID_LEN;

/// user.id is at most 64 bytes (WebAuthn §5.4.3).
pub const MAX_USER_ID_LEN: usize = 64;
/// Names are kept to 64 bytes: CTAP 2.1 §6.1 lets authenticators truncate them there.
const MAX_NAME_LEN: usize = 64;
/// An RP ID (rp.id, rpId, minPinLengthRPIDs): text of at most the store's MAX_RP_ID_LEN
/// (256) bytes, else CTAP1_ERR_INVALID_LENGTH ("invalid message or item length", §8.2).
/// RP IDs are domain names (WebAuthn §5.1.2), at most 253 bytes; CTAP sets no limit. The
/// store refuses longer ones with the same status; every command that takes an RP ID
/// refuses them while parsing, so none reaches it.
pub fn rp_id(v: Value) -> CtapResult<String> {
    let id = read::text(v)?;
    if id.len() > MAX_RP_ID_LEN {
        return Err(StatusCode::InvalidLength);
    }
    Ok(id)
}

/// clientDataHash (§6.1, §6.2): the SHA-256 of the client data, so exactly 32 bytes. CTAP
/// names no status for another length; CTAP1_ERR_INVALID_LENGTH, as for user.id, and as
/// SoloKeys' firmware answers.
pub fn client_data_hash(v: Value) -> CtapResult<[u8; 32]> {
    read::bytes(v)?
        .try_into()
        .map_err(|_| StatusCode::InvalidLength)
}

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
                "id" => id = Some(rp_id(v)?),
                "name" => name = optional_text(Some(v))?,
                _ => {} // "icon" and unknown members are ignored
            }
        }
        Ok(RpEntity {
            id: id.ok_or(StatusCode::MissingParameter)?,
            name,
        })
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

    /// An optional list (allowList, excludeList): absent reads as empty. More entries
    /// than getInfo's maxCredentialCountInList: CTAP2_ERR_LIMIT_EXCEEDED ("limit for
    /// number of items exceeded", §8.2); platforms split longer lists (§6.4).
    pub fn parse_list(v: Option<Value>) -> CtapResult<Vec<CredentialDescriptor>> {
        let Some(v) = v else { return Ok(Vec::new()) };
        let list = read::array(v)?;
        if list.len() > MAX_CREDENTIAL_COUNT_IN_LIST {
            return Err(StatusCode::LimitExceeded);
        }
        list.into_iter().map(CredentialDescriptor::parse).collect()
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

/// The members authenticatorCredentialManagement (§6.8) and authenticatorConfig (§6.11)
/// share: subCommand (0x01), subCommandParams (0x02), pinUvAuthProtocol (0x03),
/// pinUvAuthParam (0x04).
pub struct SubCommandRequest {
    pub sub_command: u64,
    pub sub_command_params: Option<Vec<(Value, Value)>>,
    pub pin_uv_auth_protocol: Option<u64>,
    pub pin_uv_auth_param: Option<Vec<u8>>,
}

impl SubCommandRequest {
    pub fn parse(params: &[u8]) -> CtapResult<Self> {
        let mut m = RequestMap::parse(params)?;
        Ok(SubCommandRequest {
            sub_command: read::unsigned(m.required(0x01)?)?,
            sub_command_params: m.take(0x02).map(read::map).transpose()?,
            pin_uv_auth_protocol: m.take(0x03).map(read::unsigned).transpose()?,
            pin_uv_auth_param: m.take(0x04).map(read::bytes).transpose()?,
        })
    }

    /// What pinUvAuthParam authenticates: `prefix` ‖ uint8(subCommand) ‖
    /// subCommandParams in its canonical encoding (platforms must send canonical CBOR,
    /// so it is what they sent).
    pub fn message(&self, prefix: &[u8]) -> Vec<u8> {
        let mut message = prefix.to_vec();
        message.push(self.sub_command as u8);
        if let Some(sp) = &self.sub_command_params {
            message.extend_from_slice(&cbor::encode(&Value::Map(sp.clone())));
        }
        message
    }
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
