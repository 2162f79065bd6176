//! Credentials as the store hands them out.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use zeroize::Zeroizing;

use crate::crypto::Algorithm;

/// A credential's private key, kept for credentials whose ID does not carry it (an ID
/// chosen by the caller of an import). Zeroized when dropped.
#[derive(Clone)]
pub struct PrivateKey {
    pub algorithm: Algorithm,
    pub secret: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({:?}, ..)", self.algorithm)
    }
}

/// A stored credential. Discoverable credentials made over CTAP carry their private key
/// sealed in their ID (`private_key` is `None`); non-discoverable ones are not stored at
/// all unless imported.
#[derive(Clone, Debug)]
pub struct Credential {
    pub id: Vec<u8>,
    pub rp_id: String,
    pub rp_name: Option<String>,
    pub user_id: Vec<u8>,
    pub user_name: Option<String>,
    pub user_display_name: Option<String>,
    /// credProtect level 1–3 (CTAP 2.1 §12.1).
    pub cred_protect: u8,
    /// Listed for its RP: getAssertion without an allowList, credentialManagement.
    pub discoverable: bool,
    /// hmac-secret (CTAP 2.1 §12.5): the credential has CredRandom (derived from its key).
    pub hmac_secret: bool,
    /// largeBlobKey (§12.3): the credential has one (derived from its key).
    pub large_blob_key: bool,
    /// credBlob (§12.2), empty if none.
    pub cred_blob: Vec<u8>,
    /// The private key, when the ID does not carry it.
    pub private_key: Option<PrivateKey>,
    /// Backup eligibility (authData BE) of this credential; `None` (stores written
    /// before it existed): the key's `--backup-eligible`.
    pub backup_eligible: Option<bool>,
    /// Backup state (authData BS); `None`: the key's `--backup-state`.
    pub backup_state: Option<bool>,
}

/// An RP that has discoverable credentials (credentialManagement enumerateRPs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpInfo {
    pub id: String,
    pub name: Option<String>,
}

/// The credentials of a format-2 store, each under its creation sequence number: read
/// once, to migrate them.
#[derive(Default)]
pub(super) struct Index {
    by_sequence: BTreeMap<u64, Credential>,
    ids: HashSet<Vec<u8>>,
}

impl Index {
    /// Adds `cred` created as number `sequence`; false if its ID or number is taken.
    pub fn insert(&mut self, sequence: u64, cred: Credential) -> bool {
        if self.by_sequence.contains_key(&sequence) || !self.ids.insert(cred.id.clone()) {
            return false;
        }
        self.by_sequence.insert(sequence, cred);
        true
    }

    /// Every credential with its sequence number, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Credential)> {
        self.by_sequence.iter().map(|(s, c)| (*s, c))
    }
}
