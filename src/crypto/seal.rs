//! AES-256-GCM sealing with associated data: how non-discoverable credential IDs carry
//! their own private key (bound to the RP ID hash) so that nothing is stored for them.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes `seal` adds to the plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// nonce ‖ ciphertext ‖ tag, with a fresh random nonce.
pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.into());
    let nonce: [u8; NONCE_LEN] = super::random_bytes();
    let nonce_arr = Nonce::from(nonce);
    // Encryption into a Vec only fails for plaintexts beyond GCM's 64 GiB limit.
    let ct = cipher
        .encrypt(
            &nonce_arr,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default();
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Opens what [`seal`] produced; `None` if it was not sealed under `key` with `aad`.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < OVERHEAD {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_tamper() {
        let key = [7u8; 32];
        let s = seal(&key, b"rp", b"secret");
        assert_eq!(s.len(), 6 + OVERHEAD);
        assert_eq!(open(&key, b"rp", &s).unwrap(), b"secret");
        assert!(open(&key, b"other rp", &s).is_none());
        assert!(open(&[8u8; 32], b"rp", &s).is_none());
        let mut t = s.clone();
        t[15] ^= 1;
        assert!(open(&key, b"rp", &t).is_none());
        assert!(open(&key, b"rp", &s[..10]).is_none());
    }
}
