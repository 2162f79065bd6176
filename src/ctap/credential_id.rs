//! Credential IDs. Every credential ID we issue seals the credential's private key and
//! its properties under the store's wrapping key with AES-256-GCM, the RP ID hash bound
//! in as associated data. So a non-discoverable credential needs no storage, and an ID
//! that is forged, altered or made for another RP (or before a reset) simply does not
//! open: it is "not ours". Discoverable credentials carry the same kind of ID and are
//! additionally listed in the store; their ID is honoured only while they are.
//!
//! Layout: version (1) ‖ nonce (12) ‖ AES-GCM(alg, flags, credProtect, secret[32],
//! credBlob[0..=32]) ‖ tag (16) = 64 bytes, plus the credBlob's length. The version byte
//! is in the associated data too. Flags: 0x01 discoverable, 0x02 hmac-secret (the
//! credential has CredRandom), 0x04 largeBlobKey. IDs made before the extensions
//! existed are the same layout with those bits clear and no credBlob.

use zeroize::Zeroizing;

use super::extensions::{CredProtect, cred_blob, hmac_secret, large_blob_key};
use crate::crypto::{Algorithm, CredentialKey, seal};
use crate::store::PrivateKey;

const VERSION: u8 = 1;
const PLAINTEXT_LEN: usize = 3 + 32;
/// Length of a credential ID without a credBlob.
pub const CREDENTIAL_ID_LEN: usize = 1 + seal::OVERHEAD + PLAINTEXT_LEN;
/// Length of the longest credential ID we make (with the longest credBlob).
pub const MAX_CREDENTIAL_ID_LEN: usize = CREDENTIAL_ID_LEN + cred_blob::MAX_CRED_BLOB_LENGTH;
const FLAG_DISCOVERABLE: u8 = 0x01;
const FLAG_HMAC_SECRET: u8 = 0x02;
const FLAG_LARGE_BLOB_KEY: u8 = 0x04;

/// What a credential is, beside its key: chosen at creation, sealed in its ID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    pub discoverable: bool,
    pub cred_protect: CredProtect,
    /// hmac-secret (§12.5): the credential has CredRandomWithUV / CredRandomWithoutUV.
    pub hmac_secret: bool,
    /// largeBlobKey (§12.3): the credential has a largeBlobKey.
    pub large_blob_key: bool,
    /// credBlob (§12.2), empty if none.
    pub cred_blob: Vec<u8>,
}

/// What a credential ID holds. The private key stays as its 32 secret bytes until
/// [`key`](Self::key) is asked for: finding credentials (allowList, excludeList)
/// needs only the properties, and rebuilding a P-256 key costs a point multiplication.
pub struct CredentialSource {
    alg: Algorithm,
    secret: Zeroizing<[u8; 32]>,
    pub props: Properties,
}

impl CredentialSource {
    /// A credential being made now.
    pub fn new(key: &CredentialKey, props: Properties) -> CredentialSource {
        CredentialSource {
            alg: key.algorithm(),
            secret: key.secret(),
            props,
        }
    }

    /// The credential's private key. `None` only if the sealed secret is not a valid
    /// key, which our own sealing never produces.
    pub fn key(&self) -> Option<CredentialKey> {
        CredentialKey::from_secret(self.alg, &self.secret)
    }

    /// CredRandomWithUV (`uv`) or CredRandomWithoutUV, if the credential has hmac-secret.
    pub fn cred_random(&self, uv: bool) -> Option<Zeroizing<[u8; 32]>> {
        self.props
            .hmac_secret
            .then(|| hmac_secret::cred_random(&self.secret, uv))
    }

    /// The credential's largeBlobKey, if it has one.
    pub fn large_blob_key(&self) -> Option<Zeroizing<[u8; 32]>> {
        self.props
            .large_blob_key
            .then(|| large_blob_key::derive(&self.secret))
    }

    /// A stored credential that holds its own private key (imported under an ID of the
    /// caller's choosing).
    pub fn from_stored(key: &PrivateKey, props: Properties) -> CredentialSource {
        CredentialSource {
            alg: key.algorithm,
            secret: key.secret.clone(),
            props,
        }
    }
}

fn aad(rp_id_hash: &[u8; 32]) -> [u8; 33] {
    let mut a = [0u8; 33];
    a[0] = VERSION;
    a[1..].copy_from_slice(rp_id_hash);
    a
}

/// The ID of a new credential with `key` and `props` for the RP with `rp_id_hash`. A
/// credBlob longer than the maximum is not sealed (the caller stores only what fits).
pub fn seal(
    wrapping_key: &[u8; 32],
    rp_id_hash: &[u8; 32],
    key: &CredentialKey,
    props: &Properties,
) -> Vec<u8> {
    let blob = match props.cred_blob.len() {
        n if n <= cred_blob::MAX_CRED_BLOB_LENGTH => &props.cred_blob[..],
        _ => &[],
    };
    let mut pt = Zeroizing::new(Vec::with_capacity(PLAINTEXT_LEN + blob.len()));
    pt.push(key.algorithm().tag());
    let flag = |set: bool, bit: u8| if set { bit } else { 0 };
    pt.push(
        flag(props.discoverable, FLAG_DISCOVERABLE)
            | flag(props.hmac_secret, FLAG_HMAC_SECRET)
            | flag(props.large_blob_key, FLAG_LARGE_BLOB_KEY),
    );
    pt.push(props.cred_protect.level());
    pt.extend_from_slice(&*key.secret());
    pt.extend_from_slice(blob);
    let mut id = vec![VERSION];
    id.extend_from_slice(&seal::seal(wrapping_key, &aad(rp_id_hash), &pt));
    id
}

/// Opens a credential ID for `rp_id_hash`; `None` if it is not one of ours for that RP.
pub fn open(wrapping_key: &[u8; 32], rp_id_hash: &[u8; 32], id: &[u8]) -> Option<CredentialSource> {
    if !(CREDENTIAL_ID_LEN..=MAX_CREDENTIAL_ID_LEN).contains(&id.len()) || id[0] != VERSION {
        return None;
    }
    let pt = Zeroizing::new(seal::open(wrapping_key, &aad(rp_id_hash), &id[1..])?);
    let (head, cred_blob) = pt.split_at_checked(PLAINTEXT_LEN)?;
    let alg = Algorithm::from_tag(head[0])?;
    let flags = head[1];
    let mut secret = Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(&head[3..]);
    Some(CredentialSource {
        alg,
        secret,
        props: Properties {
            discoverable: flags & FLAG_DISCOVERABLE != 0,
            cred_protect: CredProtect::from_level(head[2].into())?,
            hmac_secret: flags & FLAG_HMAC_SECRET != 0,
            large_blob_key: flags & FLAG_LARGE_BLOB_KEY != 0,
            cred_blob: cred_blob.to_vec(),
        },
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
        let props = Properties {
            discoverable: true,
            cred_protect: level,
            ..Default::default()
        };
        let id = seal(&wk, &rp, &key, &props);
        assert_eq!(id.len(), CREDENTIAL_ID_LEN);
        let back = open(&wk, &rp, &id).unwrap();
        assert_eq!(back.key().unwrap().cose_public_key(), key.cose_public_key());
        assert_eq!(back.props, props);
        assert!(back.cred_random(true).is_none() && back.large_blob_key().is_none());
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

    #[test]
    fn extensions_are_sealed_with_the_key() {
        let wk = [3u8; 32];
        let rp = [4u8; 32];
        let key = CredentialKey::generate(Algorithm::Es256);
        for blob in [
            vec![],
            vec![0xab; 1],
            vec![0xcd; cred_blob::MAX_CRED_BLOB_LENGTH],
        ] {
            let props = Properties {
                discoverable: false,
                cred_protect: CredProtect::UserVerificationRequired,
                hmac_secret: true,
                large_blob_key: true,
                cred_blob: blob.clone(),
            };
            let id = seal(&wk, &rp, &key, &props);
            assert_eq!(id.len(), CREDENTIAL_ID_LEN + blob.len());
            assert!(id.len() <= crate::ctap::MAX_CREDENTIAL_ID_LENGTH);
            let back = open(&wk, &rp, &id).unwrap();
            assert_eq!(back.props, props);
            let now = CredentialSource::new(&key, props);
            assert_eq!(back.cred_random(true), now.cred_random(true));
            assert_ne!(back.cred_random(true), back.cred_random(false));
            assert_eq!(back.large_blob_key(), now.large_blob_key());
        }
        // A blob over the maximum is not sealed.
        let props = Properties {
            cred_blob: vec![1; cred_blob::MAX_CRED_BLOB_LENGTH + 1],
            ..Default::default()
        };
        let id = seal(&wk, &rp, &key, &props);
        assert_eq!(
            open(&wk, &rp, &id).unwrap().props.cred_blob,
            Vec::<u8>::new()
        );
    }
}
