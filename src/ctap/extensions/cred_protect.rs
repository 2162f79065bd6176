//! credProtect (CTAP 2.1 §12.1): a credential's protection level, chosen at creation
//! and kept with it (sealed in non-discoverable IDs, stored with discoverable ones).

use ciborium::Value;

use crate::ctap::cbor::read;
use crate::ctap::status::CtapResult;

pub const NAME: &str = "credProtect";

/// credProtect levels, named as in §12.1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
pub enum CredProtect {
    #[default]
    UserVerificationOptional,
    UserVerificationOptionalWithCredentialIdList,
    UserVerificationRequired,
}

impl CredProtect {
    pub fn from_level(level: u64) -> Option<CredProtect> {
        match level {
            1 => Some(CredProtect::UserVerificationOptional),
            2 => Some(CredProtect::UserVerificationOptionalWithCredentialIdList),
            3 => Some(CredProtect::UserVerificationRequired),
            _ => None,
        }
    }

    pub fn level(self) -> u8 {
        match self {
            CredProtect::UserVerificationOptional => 1,
            CredProtect::UserVerificationOptionalWithCredentialIdList => 2,
            CredProtect::UserVerificationRequired => 3,
        }
    }

    /// Whether the credential may be used: level 3 only with UV; level 2 without UV only
    /// when the platform named its ID (allowList, excludeList).
    pub fn allows(self, uv: bool, named_by_id: bool) -> bool {
        match self {
            CredProtect::UserVerificationOptional => true,
            CredProtect::UserVerificationOptionalWithCredentialIdList => uv || named_by_id,
            CredProtect::UserVerificationRequired => uv,
        }
    }
}

/// The input: an unsigned level. Values outside 1–3 are ignored (no output), not an error.
pub fn parse(v: Value) -> CtapResult<Option<CredProtect>> {
    Ok(CredProtect::from_level(read::unsigned(v)?))
}
