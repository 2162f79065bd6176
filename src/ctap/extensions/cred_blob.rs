//! credBlob (CTAP 2.1 §12.2): up to [`MAX_CRED_BLOB_LENGTH`] bytes an RP stores with a
//! credential at creation and reads back at assertion (the authenticator input is
//! `credBlob: true` there; `getCredBlob` is the WebAuthn client input that maps to it). vkey keeps
//! them sealed inside the credential ID with the private key (§12.2 allows that for
//! non-discoverable credentials; discoverable ones carry the same kind of ID), so every
//! credential can have one.

use ciborium::Value;

use crate::ctap::cbor::read;
use crate::ctap::status::CtapResult;

pub const NAME: &str = "credBlob";

/// getInfo maxCredBlobLength (0x0F): the spec's minimum. Bounded so that a credential
/// ID with its blob stays within maxCredentialIdLength (64 + 32 ≤ 128).
pub const MAX_CRED_BLOB_LENGTH: usize = 32;

/// The makeCredential input: the blob. A longer one is not an error: it is not stored,
/// and the output says `false`.
pub fn parse_create(v: Value) -> CtapResult<Vec<u8>> {
    read::bytes(v)
}

/// The getAssertion input: `true` asks for the blob.
pub fn parse_get(v: Value) -> CtapResult<bool> {
    read::boolean(v)
}
