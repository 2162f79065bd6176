//! The key's persistent state: a store directory, or memory only (`--ephemeral`).
//!
//! The rest of vkey sees a domain API only: credentials by ID and by RP ID hash, typed
//! PIN/UV operations, counters by credential ID. How they are laid out is this module's
//! business.
//!
//! On disk (store format 3, [`engine`]): `vkey-store.dat`, an append-only log of
//! AES-256-GCM records, one per credential, one per signature counter and one each for
//! the device identity, the attestation material, the PIN state and the credential
//! sequence; `vkey-store.key` (0600) holds the key that opens it unless a passphrase does
//! (Argon2id). Every change is one commit of the records it touches, durable before the
//! call returns; a crash leaves the old or the new state. A store of format 2
//! (`vkey-store.cbor` + `vkey-counters.log`, vkey ≤ 0.1.0) is migrated on open.
//!
//! The directory is locked so two processes never share a store, and refused if another
//! user owns it or group/others may write it.

mod credential;
mod engine;
mod file;
mod records;

use std::fs;
use std::path::{Path, PathBuf};

use rand::Rng;
use zeroize::Zeroizing;

pub use credential::{Credential, PrivateKey, RpInfo};
use engine::{Change, Contents, Engine, Limits, StoreDir, Unlock};
pub use engine::{EngineError, KdfParams, Stats};
use file::PinState;
use records::{MemRecords, Records};

use crate::pin::policy::{MAX_PIN_RETRIES, MAX_UV_RETRIES};

/// How many credentials a store holds by default (`--max-credentials`).
pub const DEFAULT_MAX_CREDENTIALS: usize = 100_000;
/// The largest `--max-credentials`.
pub const MAX_MAX_CREDENTIALS: usize = 1_000_000;
/// Longest RP ID a stored credential may have (bytes).
pub const MAX_RP_ID_LEN: usize = 256;
/// A format-2 store file or counter log larger than this is refused, not read.
const MAX_V2_FILE: u64 = 256 * 1024 * 1024;
const V2_COUNTER_RECORD: usize = 20;

/// Record kinds (bound into every record's encryption).
const KIND_META: u8 = 1;
/// Discoverable credentials, grouped by RP ID hash.
const KIND_DISCOVERABLE: u8 = 2;
/// Non-discoverable credentials that hold their own key (imported).
const KIND_PLAIN: u8 = 3;
/// Signature counters, keyed by [`counter_key`].
const KIND_COUNTER: u8 = 4;
const META_DEVICE: &[u8] = b"device";
const META_ATTESTATION: &[u8] = b"attestation";
const META_PIN: &[u8] = b"pin";
/// The credential sequence numbers handed out are below this stored value; it is moved
/// ahead by [`SEQUENCE_LEASE`] at a time, so most makeCredentials write no record for it.
const META_SEQUENCE: &[u8] = b"sequence";
const SEQUENCE_LEASE: u64 = 1024;
/// The value every counter not in the table starts from (see [`Store::bump_counter`]).
const META_COUNTER_FLOOR: &[u8] = b"counter-floor";
/// The serialized large-blob array (CTAP 2.1 §6.10); absent until first written.
const META_LARGE_BLOBS: &[u8] = b"large-blobs";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a vkey store file ({why})")]
    Corrupt { path: PathBuf, why: String },
    #[error("the store is full ({0} credentials)")]
    Full(usize),
    #[error("RP ID longer than {MAX_RP_ID_LEN} bytes")]
    RpIdTooLong,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Key of a signature counter: the first 16 bytes of SHA-256(credential ID), so
/// credentials that are not stored (non-discoverable) have one too.
type CounterKey = [u8; 16];

fn counter_key(id: &[u8]) -> CounterKey {
    let mut k = [0u8; 16];
    k.copy_from_slice(&crate::crypto::sha256(id)[..16]);
    k
}

/// The attestation material, kept as bytes: `ctap` turns it into keys.
#[derive(Clone)]
pub struct AttestationMaterial {
    pub batch_key_pkcs8: Zeroizing<Vec<u8>>,
    pub batch_cert_der: Vec<u8>,
    pub ca_cert_der: Vec<u8>,
}

/// How to open a store directory.
pub struct OpenOptions {
    /// Unlocks the store (Argon2id) instead of the key file; a new store is made with it.
    pub passphrase: Option<Zeroizing<Vec<u8>>>,
    /// The most credentials the store accepts (getInfo remainingDiscoverableCredentials
    /// counts down from it; then KEY_STORE_FULL).
    pub max_credentials: usize,
    /// Argon2id parameters for a new passphrase store.
    pub kdf: KdfParams,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            passphrase: None,
            max_credentials: DEFAULT_MAX_CREDENTIALS,
            kdf: KdfParams::RECOMMENDED,
        }
    }
}

/// The key's state, on disk or in memory.
pub struct Store {
    records: Records,
    dir: Option<PathBuf>,
    serial: String,
    wrapping_key: Zeroizing<[u8; 32]>,
    attestation: Option<AttestationMaterial>,
    pin: PinState,
    next_sequence: u64,
    /// The stored bound on sequence numbers (META_SEQUENCE).
    sequence_lease: u64,
    counter_floor: u32,
    max_credentials: usize,
    /// The serialized large-blob array as last committed; empty if never written.
    large_blob_array: Vec<u8>,
}

fn random_hex_serial() -> String {
    let mut b = [0u8; 6];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn random_key() -> Zeroizing<[u8; 32]> {
    let mut k = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(&mut *k);
    k
}

/// How many counters are kept: one per stored credential and as many again for
/// non-discoverable credentials (which anyone can make without a PIN).
fn counter_capacity(max_credentials: usize) -> usize {
    max_credentials.saturating_mul(2).max(1024)
}

/// The engine's bounds for a store of `max_credentials`: a credential record is at most
/// about 1 KiB, a counter record about 100 bytes, and the file holds about as much
/// superseded data again before it is compacted.
fn limits(max_credentials: usize) -> Limits {
    let records = max_credentials
        .saturating_add(counter_capacity(max_credentials))
        .saturating_add(16);
    Limits {
        max_records: records,
        max_file_bytes: (records as u64)
            .saturating_mul(2 * 1024)
            .saturating_add(64 << 20),
        ..Limits::default()
    }
}

fn u64_value(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

fn u32_value(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

/// The records of a store's fixed part.
struct Meta {
    device: Zeroizing<Vec<u8>>,
    attestation: Option<Zeroizing<Vec<u8>>>,
    pin: Zeroizing<Vec<u8>>,
    sequence: [u8; 8],
    floor: [u8; 4],
}

impl Meta {
    fn changes(&self) -> Vec<Change<'_>> {
        let put = |key, value| Change::Put {
            kind: KIND_META,
            key,
            group: None,
            value,
        };
        let mut v = vec![
            put(META_DEVICE, &self.device[..]),
            put(META_PIN, &self.pin[..]),
            put(META_SEQUENCE, &self.sequence[..]),
            put(META_COUNTER_FLOOR, &self.floor[..]),
        ];
        if let Some(a) = &self.attestation {
            v.push(put(META_ATTESTATION, &a[..]));
        }
        v
    }
}

impl Store {
    /// A store that lives in memory only and is gone when the process ends.
    pub fn ephemeral() -> Store {
        Store::ephemeral_with(DEFAULT_MAX_CREDENTIALS)
    }

    pub fn ephemeral_with(max_credentials: usize) -> Store {
        Store {
            records: Records::Memory(MemRecords::default()),
            dir: None,
            serial: random_hex_serial(),
            wrapping_key: random_key(),
            attestation: None,
            pin: PinState::default(),
            next_sequence: 0,
            sequence_lease: u64::MAX,
            counter_floor: 0,
            max_credentials,
            large_blob_array: Vec::new(),
        }
    }

    /// Opens the store in `dir`: creates the directory (0700) and a new store if there
    /// is nothing of vkey's in it, migrates a format-2 store, and refuses a directory
    /// that has a key file or counters but no store (a lost store is not silently
    /// replaced by a new identity).
    pub fn open(dir: &Path, opts: &OpenOptions) -> Result<Store, StoreError> {
        let sd = StoreDir::lock(dir)?;
        let unlock = match &opts.passphrase {
            Some(p) => Unlock::Passphrase(p.clone()),
            None => Unlock::KeyFile,
        };
        // The engine's bounds follow the largest store vkey makes, not this start's
        // --max-credentials: a lower one must not lock the existing credentials out.
        let limits = limits(MAX_MAX_CREDENTIALS.max(opts.max_credentials));
        let engine = match sd.contents()? {
            Contents::Store => {
                let e = Engine::open(sd, &unlock, limits)?;
                // A format-2 store left over from an interrupted migration: its content
                // is in the new store, and it holds secrets in the clear.
                e.dir().remove_if_present(engine::V2_STORE_FILE)?;
                e.dir().remove_if_present(engine::V2_COUNTER_FILE)?;
                e
            }
            Contents::Empty => {
                let meta = Meta {
                    device: file::encode_device(&random_hex_serial(), &random_key()),
                    attestation: None,
                    pin: file::encode_pin(&PinState::default()),
                    sequence: 0u64.to_be_bytes(),
                    floor: 0u32.to_be_bytes(),
                };
                Engine::create(sd, &unlock, opts.kdf, &meta.changes(), limits)?
            }
            Contents::V2 => migrate_v2(sd, &unlock, opts.kdf, limits)?,
            Contents::Orphans(files) => {
                return Err(EngineError::Orphans {
                    dir: dir.to_path_buf(),
                    files,
                }
                .into());
            }
        };
        Store::load(Records::Disk(Box::new(engine)), dir, opts.max_credentials)
    }

    /// Reads the fixed part of an opened store.
    fn load(records: Records, dir: &Path, max_credentials: usize) -> Result<Store, StoreError> {
        let path = dir.join(engine::STORE_FILE);
        let corrupt = |why: String| StoreError::Corrupt {
            path: path.clone(),
            why,
        };
        let meta = |key: &[u8]| records.get(KIND_META, key);
        let device = meta(META_DEVICE)?.ok_or_else(|| corrupt("no device record".into()))?;
        let (serial, wrapping_key) = file::decode_device(&device).map_err(corrupt)?;
        let attestation = meta(META_ATTESTATION)?
            .map(|b| file::decode_attestation(&b))
            .transpose()
            .map_err(corrupt)?;
        let pin = match meta(META_PIN)? {
            Some(b) => file::decode_pin(&b).map_err(corrupt)?,
            None => PinState::default(),
        };
        let next_sequence = meta(META_SEQUENCE)?
            .and_then(|b| u64_value(&b))
            .unwrap_or(0);
        let counter_floor = meta(META_COUNTER_FLOOR)?
            .and_then(|b| u32_value(&b))
            .unwrap_or(0);
        let large_blob_array = meta(META_LARGE_BLOBS)?
            .map(|b| b.to_vec())
            .unwrap_or_default();
        Ok(Store {
            records,
            dir: Some(dir.to_path_buf()),
            serial,
            wrapping_key,
            attestation,
            pin,
            next_sequence,
            sequence_lease: next_sequence,
            counter_floor,
            max_credentials,
            large_blob_array,
        })
    }

    /// Tests: every append fails after `bytes` more bytes, like a full disk.
    #[cfg(test)]
    fn fail_writes_after(&mut self, bytes: Option<u64>) {
        if let Records::Disk(e) = &mut self.records {
            e.fail_writes_after(bytes);
        }
    }

    /// The USB serial number of this key.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// Where the store lives, if on disk.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The engine's view of the store file (size, live data, compactions), if on disk.
    pub fn stats(&self) -> Option<Stats> {
        self.records.stats()
    }

    /// Whether a passphrase protects the store (false in memory).
    pub fn has_passphrase(&self) -> bool {
        self.records.engine().is_some_and(Engine::has_passphrase)
    }

    /// The secret that seals credential IDs (new after every reset).
    pub fn wrapping_key(&self) -> &[u8; 32] {
        &self.wrapping_key
    }

    pub fn attestation(&self) -> Option<AttestationMaterial> {
        self.attestation.clone()
    }

    /// Saves the attestation material (once, at first start). The CA certificate is also
    /// written as `attestation-ca.pem` beside the store for relying parties to trust.
    pub fn set_attestation(
        &mut self,
        a: AttestationMaterial,
        ca_pem: &str,
    ) -> Result<(), StoreError> {
        let value = file::encode_attestation(&a);
        self.records.commit(&[Change::Put {
            kind: KIND_META,
            key: META_ATTESTATION,
            group: None,
            value: &value,
        }])?;
        self.attestation = Some(a);
        if let Some(e) = self.records.engine() {
            e.dir()
                .write_public_file(engine::ATTESTATION_CA_FILE, ca_pem.as_bytes())?;
        }
        Ok(())
    }

    fn decode(&self, b: &[u8]) -> Option<(u64, Credential)> {
        match file::decode_credential(b) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!("store: {e}");
                None
            }
        }
    }

    fn read(&self, kind: u8, id: &[u8]) -> Option<(u64, Credential)> {
        match self.records.get(kind, id) {
            Ok(Some(b)) => self.decode(&b),
            Ok(None) => None,
            Err(e) => {
                tracing::error!("store: {e}");
                None
            }
        }
    }

    /// The stored credential `id` (discoverable, or imported with its own key). A record
    /// that cannot be read is logged and treated as absent.
    pub fn get_credential(&self, id: &[u8]) -> Option<Credential> {
        self.read(KIND_DISCOVERABLE, id)
            .or_else(|| self.read(KIND_PLAIN, id))
            .map(|(_, c)| c)
    }

    /// Every stored credential, oldest first (the control interface's list). Reads and
    /// decodes every record: for listing, not for a request path.
    pub fn credentials(&self) -> Vec<Credential> {
        let mut v: Vec<(u64, Credential)> = [KIND_DISCOVERABLE, KIND_PLAIN]
            .iter()
            .flat_map(|&kind| match self.records.entries(kind) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!("store: {e}");
                    Vec::new()
                }
            })
            .filter_map(|(_, b)| self.decode(&b))
            .collect();
        v.sort_by_key(|(seq, _)| *seq);
        v.into_iter().map(|(_, c)| c).collect()
    }

    /// How many credentials are stored (discoverable and imported).
    pub fn credential_count(&self) -> usize {
        self.stored_count()
    }

    /// The discoverable credentials of an RP, oldest first, with their sequence numbers.
    fn of_rp(&self, rp_id_hash: &[u8; 32]) -> Vec<(u64, Credential)> {
        match self.records.group(KIND_DISCOVERABLE, rp_id_hash) {
            Ok(v) => v.iter().filter_map(|(_, b)| self.decode(b)).collect(),
            Err(e) => {
                tracing::error!("store: {e}");
                Vec::new()
            }
        }
    }

    /// The discoverable credentials of the RP with this RP ID hash, most recently created
    /// first (getAssertion without an allowList, enumerateCredentials).
    pub fn discoverable_for_rp(&self, rp_id_hash: &[u8; 32]) -> Vec<Credential> {
        let mut v = self.of_rp(rp_id_hash);
        v.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        v.into_iter().map(|(_, c)| c).collect()
    }

    /// The RPs that have discoverable credentials, each once, in the order their first
    /// credential was made (enumerateRPs).
    pub fn rps(&self) -> Vec<RpInfo> {
        let mut v: Vec<(u64, RpInfo)> = self
            .records
            .groups(KIND_DISCOVERABLE)
            .iter()
            .filter_map(|g| {
                let (_, b) = self
                    .records
                    .group_at(KIND_DISCOVERABLE, g, 0)
                    .inspect_err(|e| tracing::error!("store: {e}"))
                    .ok()??;
                let (seq, c) = self.decode(&b)?;
                Some((
                    seq,
                    RpInfo {
                        id: c.rp_id,
                        name: c.rp_name,
                    },
                ))
            })
            .collect();
        v.sort_by_key(|(seq, _)| *seq);
        v.into_iter().map(|(_, rp)| rp).collect()
    }

    pub fn discoverable_count(&self) -> usize {
        self.records.count(KIND_DISCOVERABLE)
    }

    fn stored_count(&self) -> usize {
        self.records.count(KIND_DISCOVERABLE) + self.records.count(KIND_PLAIN)
    }

    /// How many more credentials fit (getInfo remainingDiscoverableCredentials).
    pub fn remaining_capacity(&self) -> usize {
        self.max_credentials.saturating_sub(self.stored_count())
    }

    /// Stores a credential, durably. It replaces one with the same ID and, if it is
    /// discoverable, the RP's discoverable credential for the same user.id (CTAP 2.1
    /// §6.1.2 step 17); the new one is the RP's most recent. [`StoreError::Full`] when no
    /// room is left, [`StoreError::RpIdTooLong`] for an RP ID over 256 bytes.
    pub fn put_credential(&mut self, cred: Credential) -> Result<(), StoreError> {
        if cred.rp_id.len() > MAX_RP_ID_LEN {
            return Err(StoreError::RpIdTooLong);
        }
        let rp_id_hash = crate::crypto::sha256(cred.rp_id.as_bytes());
        let same_user = if cred.discoverable {
            self.of_rp(&rp_id_hash)
                .into_iter()
                .find(|(_, c)| c.user_id == cred.user_id && c.id != cred.id)
                .map(|(_, c)| c.id)
        } else {
            None
        };
        let mut deletes: Vec<(u8, &[u8])> = Vec::new();
        for kind in [KIND_DISCOVERABLE, KIND_PLAIN] {
            if self.records.contains(kind, &cred.id) {
                deletes.push((kind, &cred.id));
            }
        }
        if let Some(id) = &same_user {
            deletes.push((KIND_DISCOVERABLE, id));
        }
        let replaced = deletes
            .iter()
            .filter(|(_, id)| *id == cred.id)
            .count()
            .min(1)
            + usize::from(same_user.is_some());
        if self.stored_count().saturating_sub(replaced) >= self.max_credentials {
            return Err(StoreError::Full(self.max_credentials));
        }
        let sequence = self.next_sequence + 1;
        let value = file::encode_credential(sequence, &cred);
        let lease = (sequence >= self.sequence_lease).then(|| sequence + SEQUENCE_LEASE);
        let lease_bytes = lease.unwrap_or(0).to_be_bytes();
        let mut changes: Vec<Change<'_>> = deletes
            .iter()
            .map(|&(kind, key)| Change::Delete { kind, key })
            .collect();
        let (kind, group) = if cred.discoverable {
            (KIND_DISCOVERABLE, Some(rp_id_hash))
        } else {
            (KIND_PLAIN, None)
        };
        changes.push(Change::Put {
            kind,
            key: &cred.id,
            group,
            value: &value,
        });
        if lease.is_some() {
            changes.push(Change::Put {
                kind: KIND_META,
                key: META_SEQUENCE,
                group: None,
                value: &lease_bytes,
            });
        }
        self.records.commit(&changes)?;
        self.next_sequence = sequence;
        if let Some(l) = lease {
            self.sequence_lease = l;
        }
        Ok(())
    }

    /// Removes a stored credential (credentialManagement deleteCredential).
    pub fn delete_credential(&mut self, id: &[u8]) -> Result<bool, StoreError> {
        for kind in [KIND_DISCOVERABLE, KIND_PLAIN] {
            if self.records.contains(kind, id) {
                self.records.commit(&[Change::Delete { kind, key: id }])?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Replaces a stored credential's user name and display name
    /// (credentialManagement updateUserInformation). It keeps its place and age.
    pub fn update_user(
        &mut self,
        id: &[u8],
        name: Option<String>,
        display_name: Option<String>,
    ) -> Result<bool, StoreError> {
        self.update_credential(id, |c| {
            c.user_name = name;
            c.user_display_name = display_name;
        })
    }

    /// Sets a stored credential's backup eligibility and state (each only if given).
    pub fn set_backup_flags(
        &mut self,
        id: &[u8],
        eligible: Option<bool>,
        state: Option<bool>,
    ) -> Result<bool, StoreError> {
        self.update_credential(id, |c| {
            c.backup_eligible = eligible.or(c.backup_eligible);
            c.backup_state = state.or(c.backup_state);
        })
    }

    /// Applies `change` to stored credential `id` and writes it back (same sequence
    /// number, same kind and RP group); `false` if no credential `id` is stored.
    fn update_credential(
        &mut self,
        id: &[u8],
        change: impl FnOnce(&mut Credential),
    ) -> Result<bool, StoreError> {
        for kind in [KIND_DISCOVERABLE, KIND_PLAIN] {
            let Some((seq, mut c)) = self.read(kind, id) else {
                continue;
            };
            change(&mut c);
            let value = file::encode_credential(seq, &c);
            let group = c
                .discoverable
                .then(|| crate::crypto::sha256(c.rp_id.as_bytes()));
            self.records.commit(&[Change::Put {
                kind,
                key: id,
                group,
                value: &value,
            }])?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The fixed part of the state, as records.
    fn meta(&self, wrapping_key: &[u8; 32], pin: &PinState, floor: u32) -> Meta {
        Meta {
            device: file::encode_device(&self.serial, wrapping_key),
            attestation: self.attestation.as_ref().map(file::encode_attestation),
            pin: file::encode_pin(pin),
            sequence: self.sequence_lease.max(self.next_sequence).to_be_bytes(),
            floor: floor.to_be_bytes(),
        }
    }

    /// Removes every stored credential (counters, the large-blob array and the wrapping
    /// key stay), atomically.
    pub fn clear_credentials(&mut self) -> Result<(), StoreError> {
        let counters = self.records.entries(KIND_COUNTER)?;
        let meta = self.meta(&self.wrapping_key, &self.pin, self.counter_floor);
        let mut puts = meta.changes();
        puts.extend(counters.iter().map(|(k, v)| Change::Put {
            kind: KIND_COUNTER,
            key: k,
            group: None,
            value: v,
        }));
        if !self.large_blob_array.is_empty() {
            puts.push(Change::Put {
                kind: KIND_META,
                key: META_LARGE_BLOBS,
                group: None,
                value: &self.large_blob_array,
            });
        }
        self.records.replace_all(&puts)?;
        Ok(())
    }

    /// The serialized large-blob array (CTAP 2.1 §6.10) as last committed; empty if it
    /// was never written (the CTAP layer then serves the initial, empty array).
    pub fn large_blob_array(&self) -> &[u8] {
        &self.large_blob_array
    }

    /// Replaces the serialized large-blob array, durably before returning; on a failed
    /// write nothing changes.
    pub fn set_large_blob_array(&mut self, array: Vec<u8>) -> Result<(), StoreError> {
        self.records.commit(&[Change::Put {
            kind: KIND_META,
            key: META_LARGE_BLOBS,
            group: None,
            value: &array,
        }])?;
        self.large_blob_array = array;
        Ok(())
    }

    /// What getInfo and clientPIN may know of the PIN and UV state.
    pub fn pin_status(&self) -> PinStatus {
        let p = &self.pin;
        PinStatus {
            is_set: p.hash.is_some(),
            retries: p.retries,
            uv_retries: p.uv_retries,
            min_pin_length: p.min_pin_length,
            force_change: p.force_change,
            always_uv: p.always_uv,
        }
    }

    /// Whether `hash` is the PIN's LEFT(SHA-256(PIN), 16), compared in constant time.
    /// False when no PIN is set. Spends no retry: see [`record_pin_attempt`](Self::record_pin_attempt).
    pub fn pin_hash_matches(&self, hash: &[u8]) -> bool {
        let Some(stored) = &self.pin.hash else {
            return false;
        };
        stored.len() == hash.len()
            && stored
                .iter()
                .zip(hash)
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    }

    /// minPinLength extension (CTAP 2.1 §12.4): the minimum PIN length, for the RP IDs
    /// setMinPINLength allowed to read it.
    pub fn min_pin_length_for(&self, rp_id: &str) -> Option<u8> {
        let p = &self.pin;
        p.min_pin_length_rp_ids
            .iter()
            .any(|r| r == rp_id)
            .then_some(p.min_pin_length)
    }

    /// Sets or replaces the PIN: retries full, no change forced (setPIN, changePIN).
    pub fn set_pin(&mut self, hash: &[u8; 16], code_points: u8) -> Result<(), StoreError> {
        self.change_pin_state(|p| {
            p.hash = Some(hash.to_vec());
            p.code_points = code_points;
            p.retries = MAX_PIN_RETRIES;
            p.force_change = false;
        })
    }

    /// One PIN retry spent, durably, before the PIN is compared (CTAP 2.1 §6.5.5.5):
    /// a crash cannot give a guess back. Returns the retries left.
    pub fn record_pin_attempt(&mut self) -> Result<u8, StoreError> {
        self.change_pin_state(|p| p.retries = p.retries.saturating_sub(1))?;
        Ok(self.pin.retries)
    }

    /// The PIN matched: the retries are full again.
    pub fn pin_matched(&mut self) -> Result<(), StoreError> {
        if self.pin.retries == MAX_PIN_RETRIES {
            return Ok(());
        }
        self.change_pin_state(|p| p.retries = MAX_PIN_RETRIES)
    }

    /// Built-in UV failed: one UV retry spent. Returns the retries left.
    pub fn record_uv_failure(&mut self) -> Result<u8, StoreError> {
        self.change_pin_state(|p| p.uv_retries = p.uv_retries.saturating_sub(1))?;
        Ok(self.pin.uv_retries)
    }

    /// Built-in UV succeeded: the UV retries are full again.
    pub fn uv_matched(&mut self) -> Result<(), StoreError> {
        self.set_uv_retries(MAX_UV_RETRIES)
    }

    pub fn set_uv_retries(&mut self, n: u8) -> Result<(), StoreError> {
        if self.pin.uv_retries == n {
            return Ok(());
        }
        self.change_pin_state(|p| p.uv_retries = n)
    }

    /// authenticatorConfig toggleAlwaysUv; returns the new value.
    pub fn toggle_always_uv(&mut self) -> Result<bool, StoreError> {
        self.change_pin_state(|p| p.always_uv = !p.always_uv)?;
        Ok(self.pin.always_uv)
    }

    /// authenticatorConfig setMinPINLength: the new minimum, the RP IDs that may read it
    /// (kept if `None`), and forceChangePin. A PIN shorter than the new minimum must be
    /// changed too. Returns whether a PIN change is now forced.
    pub fn set_min_pin_length(
        &mut self,
        min_pin_length: u8,
        rp_ids: Option<Vec<String>>,
        force_change: bool,
    ) -> Result<bool, StoreError> {
        let p = &self.pin;
        let too_short = p.hash.is_some() && p.code_points < min_pin_length;
        let force = force_change || too_short;
        self.change_pin_state(|p| {
            p.min_pin_length = min_pin_length;
            if let Some(ids) = rp_ids {
                p.min_pin_length_rp_ids = ids;
            }
            p.force_change |= force;
        })?;
        Ok(force)
    }

    /// Changes the PIN state and makes it durable before returning; on a failed write
    /// memory stays as the disk has it.
    fn change_pin_state(&mut self, f: impl FnOnce(&mut PinState)) -> Result<(), StoreError> {
        let mut new = self.pin.clone();
        f(&mut new);
        let value = file::encode_pin(&new);
        self.records.commit(&[Change::Put {
            kind: KIND_META,
            key: META_PIN,
            group: None,
            value: &value,
        }])?;
        self.pin = new;
        Ok(())
    }

    /// The signature counter of credential `id` (0 if never used).
    pub fn counter(&self, id: &[u8]) -> u32 {
        self.counter_by_key(&counter_key(id))
    }

    fn counter_by_key(&self, key: &CounterKey) -> u32 {
        match self.records.get(KIND_COUNTER, key) {
            Ok(Some(b)) => u32_value(&b).unwrap_or(self.counter_floor),
            Ok(None) => self.counter_floor,
            Err(e) => {
                tracing::error!("store: {e}");
                // Unreadable: never hand out a value that could be lower than before.
                u32::MAX
            }
        }
    }

    /// Increments the signature counter of credential `id` and makes the new value
    /// durable before returning it. Counters never go back: the table is bounded, and
    /// when it is full the counter it drops is folded into a floor that every counter
    /// not in the table starts from.
    pub fn bump_counter(&mut self, id: &[u8]) -> Result<u32, StoreError> {
        let key = counter_key(id);
        let known = self.records.contains(KIND_COUNTER, &key);
        let mut floor = self.counter_floor;
        let mut evicted = None;
        if !known
            && self.records.count(KIND_COUNTER) >= counter_capacity(self.max_credentials)
            && let Some(k) = self.records.any_key(KIND_COUNTER)
        {
            if let Ok(ek) = <CounterKey>::try_from(&k[..]) {
                floor = floor.max(self.counter_by_key(&ek));
            }
            evicted = Some(k);
        }
        let next = if known {
            self.counter_by_key(&key)
        } else {
            floor
        }
        .saturating_add(1);
        let value = next.to_be_bytes();
        let floor_bytes = floor.to_be_bytes();
        let mut changes = Vec::with_capacity(3);
        if let Some(k) = &evicted {
            changes.push(Change::Put {
                kind: KIND_META,
                key: META_COUNTER_FLOOR,
                group: None,
                value: &floor_bytes,
            });
            changes.push(Change::Delete {
                kind: KIND_COUNTER,
                key: k,
            });
        }
        changes.push(Change::Put {
            kind: KIND_COUNTER,
            key: &key,
            group: None,
            value: &value,
        });
        self.records.commit(&changes)?;
        self.counter_floor = floor;
        Ok(next)
    }

    /// Sets the signature counter of credential `id` (an imported credential's
    /// signCount), durably — also below its current value: this is the administrator's
    /// call, not an assertion.
    pub fn set_counter(&mut self, id: &[u8], value: u32) -> Result<(), StoreError> {
        let key = counter_key(id);
        let bytes = value.to_be_bytes();
        self.records.commit(&[Change::Put {
            kind: KIND_COUNTER,
            key: &key,
            group: None,
            value: &bytes,
        }])?;
        Ok(())
    }

    /// authenticatorReset: forget every credential and counter and make a new wrapping
    /// key, so that non-discoverable credential IDs issued before are no longer ours.
    /// The PIN and the large-blob array go too. The USB serial and the attestation identity
    /// stay: they belong to the device. The new state is written whole and swapped in at
    /// once: a reset that fails changes nothing.
    pub fn reset(&mut self) -> Result<(), StoreError> {
        let wrapping_key = random_key();
        let pin = PinState::default();
        let meta = self.meta(&wrapping_key, &pin, 0);
        self.records.replace_all(&meta.changes())?;
        self.wrapping_key = wrapping_key;
        self.pin = pin;
        self.counter_floor = 0;
        self.large_blob_array = Vec::new();
        Ok(())
    }
}

/// A format-2 credential as a format-3 record: kind, key, group, value.
type MigratedCredential = (u8, Vec<u8>, Option<[u8; 32]>, Zeroizing<Vec<u8>>);

/// Opens the format-2 store in `sd` and writes it as a format-3 store; the old files
/// are removed once the new store is durable.
fn migrate_v2(
    sd: StoreDir,
    unlock: &Unlock,
    kdf: KdfParams,
    limits: Limits,
) -> Result<Engine, StoreError> {
    let path = sd.file(engine::V2_STORE_FILE);
    let bytes = read_bounded(&path, MAX_V2_FILE)?;
    let old = file::StoreFile::decode(&bytes).map_err(|why| StoreError::Corrupt {
        path: path.clone(),
        why,
    })?;
    let counter_path = sd.file(engine::V2_COUNTER_FILE);
    let log = match read_bounded(&counter_path, MAX_V2_FILE) {
        Ok(b) => b,
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Zeroizing::new(Vec::new())
        }
        Err(e) => return Err(e),
    };
    let mut counters: std::collections::HashMap<CounterKey, u32> = Default::default();
    // The highest value per credential wins; a torn last record is ignored.
    for rec in log.chunks_exact(V2_COUNTER_RECORD) {
        let mut key = [0u8; 16];
        key.copy_from_slice(&rec[..16]);
        let value = u32::from_be_bytes([rec[16], rec[17], rec[18], rec[19]]);
        let e = counters.entry(key).or_insert(0);
        *e = (*e).max(value);
    }
    let meta = Meta {
        device: file::encode_device(&old.serial, &old.wrapping_key),
        attestation: old.attestation.as_ref().map(file::encode_attestation),
        pin: file::encode_pin(&old.pin),
        sequence: old.next_sequence.to_be_bytes(),
        floor: 0u32.to_be_bytes(),
    };
    let creds: Vec<MigratedCredential> = old
        .credentials
        .iter()
        .map(|(seq, c)| {
            let (kind, group) = if c.discoverable {
                (
                    KIND_DISCOVERABLE,
                    Some(crate::crypto::sha256(c.rp_id.as_bytes())),
                )
            } else {
                (KIND_PLAIN, None)
            };
            (kind, c.id.clone(), group, file::encode_credential(seq, c))
        })
        .collect();
    let counter_values: Vec<(CounterKey, [u8; 4])> = counters
        .iter()
        .map(|(k, v)| (*k, v.to_be_bytes()))
        .collect();
    let mut puts = meta.changes();
    puts.extend(creds.iter().map(|(kind, id, group, v)| Change::Put {
        kind: *kind,
        key: id,
        group: *group,
        value: v,
    }));
    puts.extend(counter_values.iter().map(|(k, v)| Change::Put {
        kind: KIND_COUNTER,
        key: k,
        group: None,
        value: v,
    }));
    let e = Engine::create(sd, unlock, kdf, &puts, limits)?;
    e.dir().remove_if_present(engine::V2_STORE_FILE)?;
    e.dir().remove_if_present(engine::V2_COUNTER_FILE)?;
    e.dir().sync()?;
    tracing::info!(
        "{}: store format 2 migrated to format 3 ({} credentials, {} counters)",
        e.dir().path().display(),
        creds.len(),
        counter_values.len()
    );
    Ok(e)
}

/// Reads a whole file of at most `max` bytes.
fn read_bounded(path: &Path, max: u64) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    use std::io::Read;
    let f = fs::File::open(path).map_err(io_err(path))?;
    let mut b = Zeroizing::new(Vec::new());
    f.take(max + 1).read_to_end(&mut b).map_err(io_err(path))?;
    if b.len() as u64 > max {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            why: format!("larger than {max} bytes"),
        });
    }
    Ok(b)
}

/// The PIN and UV state as getInfo and clientPIN report it. The PIN hash is not here:
/// it never leaves the store ([`Store::pin_hash_matches`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinStatus {
    pub is_set: bool,
    pub retries: u8,
    pub uv_retries: u8,
    pub min_pin_length: u8,
    /// forcePINChange: the PIN must be changed before it is used again.
    pub force_change: bool,
    pub always_uv: bool,
}

#[cfg(test)]
mod tests;
