//! Credential IDs. Every credential ID we issue seals the credential's private key and
//! its properties under the store's wrapping key with AES-256-GCM, the RP ID hash bound
//! in as associated data. So a non-discoverable credential needs no storage, and an ID
//! that is forged, altered or made for another RP (or before a reset) simply does not
//! open: it is "not ours". Discoverable credentials carry the same kind of ID and are
//! additionally listed in the store; their ID is honoured only while they are.
//!
//! Layout: version (1) ‖ nonce (12) ‖ AES-GCM(alg, flags, credProtect, secret[32]) ‖ tag (16)
//! = 64 bytes. The version byte is in the associated data too.

use super::extensions::CredProtect;
use crate::crypto::{Algorithm, CredentialKey, seal};
use crate::store::PrivateKey;

const VERSION: u8 = 1;
const PLAINTEXT_LEN: usize = 3 + 32;
/// Length of every credential ID we make.
pub const CREDENTIAL_ID_LEN: usize = 1 + seal::OVERHEAD + PLAINTEXT_LEN;
const FLAG_DISCOVERABLE: u8 = 0x01;

/// What a credential ID holds. The private key stays as its 32 secret bytes until
/// [`key`](Self::key) is asked for: finding credentials (allowList, excludeList)
/// needs only the properties, and rebuilding a P-256 key costs a point multiplication.
pub struct CredentialSource {
    alg: Algorithm,
    secret: zeroize::Zeroizing<[u8; 32]>,
    pub discoverable: bool,
    pub cred_protect: CredProtect,
}

impl CredentialSource {
    /// The credential's private key. `None` only if the sealed secret is not a valid
    /// key, which our own sealing never produces.
    pub fn key(&self) -> Option<CredentialKey> {
        CredentialKey::from_secret(self.alg, &self.secret)
    }

    /// A stored credential that holds its own private key (imported under an ID of the
    /// caller's choosing). `None` for a credProtect level outside 1–3.
    pub fn from_stored(
        key: &PrivateKey,
        discoverable: bool,
        cred_protect: u8,
    ) -> Option<CredentialSource> {
        Some(CredentialSource {
            alg: key.algorithm,
            secret: key.secret.clone(),
            discoverable,
            cred_protect: CredProtect::from_level(cred_protect.into())?,
        })
    }
}

fn aad(rp_id_hash: &[u8; 32]) -> [u8; 33] {
    let mut a = [0u8; 33];
    a[0] = VERSION;
    a[1..].copy_from_slice(rp_id_hash);
    a
}

pub fn seal(
    wrapping_key: &[u8; 32],
    rp_id_hash: &[u8; 32],
    key: &CredentialKey,
    discoverable: bool,
    cred_protect: CredProtect,
) -> Vec<u8> {
    let mut pt = zeroize::Zeroizing::new([0u8; PLAINTEXT_LEN]);
    pt[0] = key.algorithm().tag();
    pt[1] = if discoverable { FLAG_DISCOVERABLE } else { 0 };
    pt[2] = cred_protect.level();
    pt[3..].copy_from_slice(&*key.secret());
    let mut id = vec![VERSION];
    id.extend_from_slice(&seal::seal(wrapping_key, &aad(rp_id_hash), &*pt));
    id
}

/// Opens a credential ID for `rp_id_hash`; `None` if it is not one of ours for that RP.
pub fn open(wrapping_key: &[u8; 32], rp_id_hash: &[u8; 32], id: &[u8]) -> Option<CredentialSource> {
    if id.len() != CREDENTIAL_ID_LEN || id[0] != VERSION {
        return None;
    }
    let pt = zeroize::Zeroizing::new(seal::open(wrapping_key, &aad(rp_id_hash), &id[1..])?);
    if pt.len() != PLAINTEXT_LEN {
        return None;
    }
    let alg = Algorithm::from_tag(pt[0])?;
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(&pt[3..]);
    Some(CredentialSource {
        alg,
        secret,
        discoverable: pt[1] & FLAG_DISCOVERABLE != 0,
        cred_protect: CredProtect::from_level(pt[2].into())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_binding() {
        let wk = [3u8; 32];
        let rp = [4u8; 32];
        let key = CredentialKey::generate(Algorithm::EdDsa);
        let level = CredProtect::UserVerificationOptionalWithCredentialIdList;
        let id = seal(&wk, &rp, &key, true, level);
        assert_eq!(id.len(), CREDENTIAL_ID_LEN);
        let back = open(&wk, &rp, &id).unwrap();
        assert_eq!(back.key().unwrap().cose_public_key(), key.cose_public_key());
        assert!(back.discoverable);
        assert_eq!(back.cred_protect, level);
        assert!(open(&wk, &[5u8; 32], &id).is_none(), "other RP");
        assert!(
            open(&[9u8; 32], &rp, &id).is_none(),
            "other store / after reset"
        );
        let mut forged = id.clone();
        forged[20] ^= 0x80;
        assert!(open(&wk, &rp, &forged).is_none());
        assert!(open(&wk, &rp, &[1u8; 10]).is_none());
        assert!(open(&wk, &rp, &[]).is_none());
    }
}
