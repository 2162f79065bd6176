//! Extensions (CTAP 2.1 §12), one module per extension: its identifier, its input as
//! parsed from the request's extensions map, its output. Unknown extensions are
//! ignored; a response carries only the outputs that were asked for (Chrome drops an
//! assertion with unrequested ones). A new extension is a module, a field in the input
//! and output structs here, and its name in [`SUPPORTED`].

pub mod cred_blob;
pub mod cred_protect;
pub mod hmac_secret;
pub mod large_blob_key;
pub mod min_pin_length;

use ciborium::Value;
use zeroize::Zeroizing;

use super::cbor::MapBuilder;
use super::credential_id::CredentialSource;
use super::status::{CtapResult, StatusCode};
use crate::pin::KeyAgreement;
pub use cred_protect::CredProtect;
use hmac_secret::{HmacSecretInput, Salts};

/// getInfo extensions (§6.4): exactly what is implemented.
pub const SUPPORTED: [&str; 6] = [
    cred_blob::NAME,
    cred_protect::NAME,
    hmac_secret::NAME,
    hmac_secret::MC_NAME,
    large_blob_key::NAME,
    min_pin_length::NAME,
];

/// makeCredential extension inputs.
#[derive(Default)]
pub struct MakeCredentialExtensions {
    pub cred_protect: Option<CredProtect>,
    pub min_pin_length: bool,
    /// hmac-secret as sent: `true` gives the credential CredRandom.
    pub hmac_secret: Option<bool>,
    /// hmac-secret-mc: salts to evaluate at once (needs hmac-secret `true`).
    pub hmac_secret_mc: Option<HmacSecretInput>,
    pub cred_blob: Option<Vec<u8>>,
    /// largeBlobKey `true` (anything else is refused when parsed).
    pub large_blob_key: bool,
}

impl MakeCredentialExtensions {
    pub fn parse(map: Vec<(Value, Value)>) -> CtapResult<Self> {
        let mut ext = Self::default();
        for (k, v) in map {
            match k.as_text() {
                Some(cred_protect::NAME) => ext.cred_protect = cred_protect::parse(v)?,
                Some(min_pin_length::NAME) => ext.min_pin_length = min_pin_length::parse(v)?,
                Some(hmac_secret::NAME) => ext.hmac_secret = Some(hmac_secret::parse_create(v)?),
                Some(hmac_secret::MC_NAME) => {
                    ext.hmac_secret_mc = Some(HmacSecretInput::parse(v)?);
                }
                Some(cred_blob::NAME) => ext.cred_blob = Some(cred_blob::parse_create(v)?),
                Some(large_blob_key::NAME) => {
                    large_blob_key::parse(v)?;
                    ext.large_blob_key = true;
                }
                _ => {}
            }
        }
        Ok(ext)
    }

    /// The checks that need the request's other parameters (§6.1.2 step 13):
    /// largeBlobKey only for a discoverable credential (CTAP2_ERR_INVALID_OPTION), and
    /// hmac-secret-mc only together with hmac-secret `true` (CTAP2_ERR_MISSING_PARAMETER).
    pub fn check(&self, rk: bool) -> CtapResult<()> {
        if self.large_blob_key && !rk {
            return Err(StatusCode::InvalidOption);
        }
        if self.hmac_secret_mc.is_some() && self.hmac_secret != Some(true) {
            return Err(StatusCode::MissingParameter);
        }
        Ok(())
    }

    /// The credBlob output: whether the blob sent is stored (`None` if none was sent).
    pub fn cred_blob_output(&self) -> Option<bool> {
        self.cred_blob
            .as_ref()
            .map(|b| b.len() <= cred_blob::MAX_CRED_BLOB_LENGTH)
    }

    /// The credBlob to store with the new credential: the one sent if it fits, else none.
    pub fn cred_blob_to_store(&self) -> Vec<u8> {
        self.cred_blob
            .clone()
            .filter(|b| b.len() <= cred_blob::MAX_CRED_BLOB_LENGTH)
            .unwrap_or_default()
    }
}

/// makeCredential extension outputs: each present only if its input was.
#[derive(Default)]
pub struct MakeCredentialOutputs {
    pub cred_protect: Option<CredProtect>,
    /// The minimum PIN length, for an RP allowed to read it.
    pub min_pin_length: Option<u8>,
    /// Whether the credential has CredRandom (echoes the input).
    pub hmac_secret: Option<bool>,
    /// hmac-secret-mc: the encrypted outputs for its salts.
    pub hmac_secret_mc: Option<Vec<u8>>,
    /// Whether the credBlob was stored.
    pub cred_blob: Option<bool>,
}

impl MakeCredentialOutputs {
    /// The extensions map of authenticator data; `None` if there is no output.
    pub fn encode(self) -> Option<Value> {
        MapBuilder::new()
            .text_opt(
                cred_protect::NAME,
                self.cred_protect.map(CredProtect::level),
            )
            .text_opt(min_pin_length::NAME, self.min_pin_length)
            .text_opt(hmac_secret::NAME, self.hmac_secret)
            .text_opt(hmac_secret::MC_NAME, self.hmac_secret_mc.map(Value::Bytes))
            .text_opt(cred_blob::NAME, self.cred_blob)
            .build_non_empty()
    }
}

/// getAssertion extension inputs, as parsed.
#[derive(Default)]
pub struct GetAssertionExtensions {
    pub hmac_secret: Option<HmacSecretInput>,
    pub get_cred_blob: bool,
    pub large_blob_key: bool,
}

impl GetAssertionExtensions {
    pub fn parse(map: Vec<(Value, Value)>) -> CtapResult<Self> {
        let mut ext = Self::default();
        for (k, v) in map {
            match k.as_text() {
                Some(hmac_secret::NAME) => ext.hmac_secret = Some(HmacSecretInput::parse(v)?),
                Some(cred_blob::NAME) => ext.get_cred_blob = cred_blob::parse_get(v)?,
                Some(large_blob_key::NAME) => {
                    large_blob_key::parse(v)?;
                    ext.large_blob_key = true;
                }
                _ => {}
            }
        }
        Ok(ext)
    }

    /// §6.2.2 step 10: what needs the key's state. hmac-secret needs user presence
    /// (§12.5: up=false is CTAP2_ERR_UNSUPPORTED_OPTION) and opens its salts with the key
    /// agreement key of its protocol.
    pub fn prepare(self, keys: &[KeyAgreement; 2], up: bool) -> CtapResult<AssertionExtensions> {
        let hmac_secret = match self.hmac_secret {
            Some(_) if !up => return Err(StatusCode::UnsupportedOption),
            Some(input) => Some(input.open(keys)?),
            None => None,
        };
        Ok(AssertionExtensions {
            hmac_secret,
            get_cred_blob: self.get_cred_blob,
            large_blob_key: self.large_blob_key,
        })
    }
}

/// getAssertion extensions ready to apply to each credential of the request
/// (getNextAssertion keeps them).
#[derive(Default)]
pub struct AssertionExtensions {
    hmac_secret: Option<Salts>,
    get_cred_blob: bool,
    large_blob_key: bool,
}

impl AssertionExtensions {
    /// The outputs for one assertion with `credential`; `uv` is the response's UV flag,
    /// which picks CredRandomWithUV or CredRandomWithoutUV. A credential without
    /// hmac-secret or a largeBlobKey simply has no such output.
    pub fn outputs(&self, credential: &CredentialSource, uv: bool) -> GetAssertionOutputs {
        GetAssertionOutputs {
            hmac_secret: self
                .hmac_secret
                .as_ref()
                .zip(credential.cred_random(uv))
                .map(|(salts, cr)| salts.evaluate(&cr)),
            cred_blob: self
                .get_cred_blob
                .then(|| credential.props.cred_blob.clone()),
            large_blob_key: self
                .large_blob_key
                .then(|| credential.large_blob_key())
                .flatten(),
        }
    }
}

/// getAssertion extension outputs, per credential.
#[derive(Default)]
pub struct GetAssertionOutputs {
    hmac_secret: Option<Vec<u8>>,
    cred_blob: Option<Vec<u8>>,
    /// Not in authenticator data: the response's largeBlobKey member (0x07).
    pub large_blob_key: Option<Zeroizing<[u8; 32]>>,
}

impl GetAssertionOutputs {
    /// The extensions map of authenticator data; `None` if there is no output.
    pub fn encode_auth_data(&self) -> Option<Value> {
        MapBuilder::new()
            .text_opt(cred_blob::NAME, self.cred_blob.clone().map(Value::Bytes))
            .text_opt(
                hmac_secret::NAME,
                self.hmac_secret.clone().map(Value::Bytes),
            )
            .build_non_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctap::StatusCode;

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn inputs_ignore_unknown_extensions_and_out_of_range_levels() {
        let ext = MakeCredentialExtensions::parse(vec![
            (text("credProtect"), Value::Integer(4.into())),
            (text("future"), Value::Bool(true)),
            (Value::Integer(1.into()), Value::Null),
            (text("minPinLength"), Value::Bool(true)),
        ])
        .unwrap();
        assert_eq!(ext.cred_protect, None);
        assert!(ext.min_pin_length);
        let bad = MakeCredentialExtensions::parse(vec![(text("credProtect"), text("3"))]);
        assert_eq!(bad.err(), Some(StatusCode::CborUnexpectedType));
    }

    #[test]
    fn outputs_carry_only_what_was_asked_for() {
        assert_eq!(MakeCredentialOutputs::default().encode(), None);
        let out = MakeCredentialOutputs {
            cred_protect: Some(CredProtect::UserVerificationRequired),
            ..Default::default()
        };
        let expected = Value::Map(vec![(text("credProtect"), Value::Integer(3.into()))]);
        assert_eq!(out.encode(), Some(expected));
        assert_eq!(GetAssertionOutputs::default().encode_auth_data(), None);
    }
}
