//! largeBlobKey (CTAP 2.1 §12.3): a 32-byte key per discoverable credential, returned
//! in the makeCredential (0x05) and getAssertion (0x07) responses when asked for; the
//! platform encrypts the credential's entry of the large-blob array
//! (authenticatorLargeBlobs, §6.10) with it. Like CredRandom it is derived from the
//! credential's secret, so nothing more is stored.

use ciborium::Value;

use crate::ctap::cbor::read;
use crate::ctap::status::{CtapResult, StatusCode};

pub const NAME: &str = "largeBlobKey";

const INFO: &[u8] = b"vkey largeBlobKey";

/// The input must be `true` (§12.3: any other value is CTAP2_ERR_INVALID_OPTION).
pub fn parse(v: Value) -> CtapResult<()> {
    match read::boolean(v)? {
        true => Ok(()),
        false => Err(StatusCode::InvalidOption),
    }
}

/// The largeBlobKey of the credential whose secret is `secret`.
pub fn derive(secret: &[u8; 32]) -> zeroize::Zeroizing<[u8; 32]> {
    crate::crypto::hkdf_sha256(secret, INFO)
}
