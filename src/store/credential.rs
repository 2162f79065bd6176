//! Credentials as the store hands them out, and the in-memory index over the stored
//! ones: by ID, by RP ID hash (getAssertion without an allowList, enumerateCredentials)
//! and in creation order (most recent first per RP).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use zeroize::Zeroizing;

use crate::crypto::{Algorithm, sha256};

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

/// The stored credentials, each under its creation sequence number.
#[derive(Default)]
pub(super) struct Index {
    by_sequence: BTreeMap<u64, Credential>,
    sequence_of: HashMap<Vec<u8>, u64>,
    by_rp: HashMap<[u8; 32], BTreeSet<u64>>,
    discoverable: usize,
}

impl Index {
    /// Adds `cred` created as number `sequence`; false if its ID is already there.
    pub fn insert(&mut self, sequence: u64, cred: Credential) -> bool {
        if self.sequence_of.contains_key(&cred.id) || self.by_sequence.contains_key(&sequence) {
            return false;
        }
        self.sequence_of.insert(cred.id.clone(), sequence);
        self.by_rp
            .entry(sha256(cred.rp_id.as_bytes()))
            .or_default()
            .insert(sequence);
        self.discoverable += usize::from(cred.discoverable);
        self.by_sequence.insert(sequence, cred);
        true
    }

    /// Removes the credential `id`; returns it with its sequence number.
    pub fn remove(&mut self, id: &[u8]) -> Option<(u64, Credential)> {
        let sequence = self.sequence_of.remove(id)?;
        let cred = self.by_sequence.remove(&sequence)?;
        let rp = sha256(cred.rp_id.as_bytes());
        if let Some(set) = self.by_rp.get_mut(&rp) {
            set.remove(&sequence);
            if set.is_empty() {
                self.by_rp.remove(&rp);
            }
        }
        self.discoverable -= usize::from(cred.discoverable);
        Some((sequence, cred))
    }

    pub fn get(&self, id: &[u8]) -> Option<&Credential> {
        self.by_sequence.get(self.sequence_of.get(id)?)
    }

    /// For changes that keep the ID, RP and discoverability (user names).
    pub fn get_mut(&mut self, id: &[u8]) -> Option<&mut Credential> {
        self.by_sequence.get_mut(self.sequence_of.get(id)?)
    }

    /// The credentials of an RP, most recently created first.
    pub fn for_rp(&self, rp_id_hash: &[u8; 32]) -> impl Iterator<Item = &Credential> {
        self.by_rp
            .get(rp_id_hash)
            .into_iter()
            .flat_map(|set| set.iter().rev())
            .filter_map(|s| self.by_sequence.get(s))
    }

    /// Every credential with its sequence number, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Credential)> {
        self.by_sequence.iter().map(|(s, c)| (*s, c))
    }

    pub fn len(&self) -> usize {
        self.by_sequence.len()
    }

    pub fn discoverable_count(&self) -> usize {
        self.discoverable
    }

    pub fn clear(&mut self) {
        *self = Index::default();
    }
}
