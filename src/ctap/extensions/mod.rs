//! Extensions (CTAP 2.1 §12), one module per extension: its identifier, its input as
//! parsed from the request's extensions map, its output. Unknown extensions are
//! ignored; a response carries only the outputs that were asked for (Chrome drops an
//! assertion with unrequested ones). A new extension is a module, a field in the input
//! and output structs here, and its name in [`SUPPORTED`].

pub mod cred_protect;
pub mod min_pin_length;

use ciborium::Value;

use super::cbor::MapBuilder;
use super::status::CtapResult;
pub use cred_protect::CredProtect;

/// getInfo extensions (§6.4): exactly what is implemented.
pub const SUPPORTED: [&str; 2] = [cred_protect::NAME, min_pin_length::NAME];

/// makeCredential extension inputs.
#[derive(Default)]
pub struct MakeCredentialExtensions {
    pub cred_protect: Option<CredProtect>,
    pub min_pin_length: bool,
}

impl MakeCredentialExtensions {
    pub fn parse(map: Vec<(Value, Value)>) -> CtapResult<Self> {
        let mut ext = Self::default();
        for (k, v) in map {
            match k.as_text() {
                Some(cred_protect::NAME) => ext.cred_protect = cred_protect::parse(v)?,
                Some(min_pin_length::NAME) => ext.min_pin_length = min_pin_length::parse(v)?,
                _ => {}
            }
        }
        Ok(ext)
    }
}

/// makeCredential extension outputs.
#[derive(Default)]
pub struct MakeCredentialOutputs {
    pub cred_protect: Option<CredProtect>,
    /// The minimum PIN length, for an RP allowed to read it.
    pub min_pin_length: Option<u8>,
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
            .build_non_empty()
    }
}

/// getAssertion extension inputs: none of the implemented extensions has one yet.
#[derive(Clone, Default)]
pub struct GetAssertionExtensions {}

impl GetAssertionExtensions {
    pub fn parse(_map: Vec<(Value, Value)>) -> CtapResult<Self> {
        Ok(Self {})
    }

    /// The outputs for one assertion (each credential of a getAssertion gets its own).
    pub fn outputs(&self) -> GetAssertionOutputs {
        GetAssertionOutputs::default()
    }
}

/// getAssertion extension outputs, per credential.
#[derive(Default)]
pub struct GetAssertionOutputs {}

impl GetAssertionOutputs {
    pub fn encode(self) -> Option<Value> {
        MapBuilder::new().build_non_empty()
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
            (text("hmac-secret"), Value::Bool(true)),
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
            min_pin_length: None,
        };
        let expected = Value::Map(vec![(text("credProtect"), Value::Integer(3.into()))]);
        assert_eq!(out.encode(), Some(expected));
        assert_eq!(GetAssertionOutputs::default().encode(), None);
    }
}
