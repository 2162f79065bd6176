//! Cryptography for the authenticator, all from one RustCrypto generation: credential
//! key pairs (ES256, EdDSA) and their COSE encoding, credential-ID sealing
//! (AES-256-GCM), and the attestation CA and batch certificate.

pub mod attestation;
pub mod cose;
pub mod keys;
pub mod seal;

use sha2::{Digest, Sha256};

pub use keys::{Algorithm, CredentialKey};

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// HKDF-SHA-256 (RFC 5869) with no salt: a 32-byte key derived from `ikm` for the
/// purpose named by `info` (distinct `info` strings give independent keys).
pub fn hkdf_sha256(ikm: &[u8], info: &[u8]) -> zeroize::Zeroizing<[u8; 32]> {
    let mut okm = zeroize::Zeroizing::new([0u8; 32]);
    // 32 bytes are far below HKDF-SHA-256's 255 × 32 output limit: expand cannot fail.
    let _ = hkdf::Hkdf::<Sha256>::new(None, ikm).expand(info, &mut *okm);
    okm
}

/// Fills a fresh array from the thread-local CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::Rng;
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}
