//! The key's persistent state: a directory holding the store file and a counter log,
//! or memory only (`--ephemeral`).
//!
//! The rest of vkey sees a domain API only: credentials by ID and by RP ID hash, typed
//! PIN/UV operations, counters by credential ID. How they are laid out is this module's
//! business, so the engine beneath can change.
//!
//! - `vkey-store.cbor`: device identity (USB serial), per-store secrets (the credential
//!   wrapping key, the attestation batch key and certificates) and the stored
//!   credentials (discoverable ones, and imported ones that hold their private key). Rewritten atomically (temp file, fsync, rename, fsync of the
//!   directory) on each acknowledged change, so a crash leaves the old or the new file.
//! - `vkey-counters.log`: signature counters as an append-only log of 20-byte records
//!   (credential key ‖ counter), so an assertion costs one small append + fsync instead
//!   of a store rewrite. The highest value per credential wins, so a torn last record
//!   can only lose a bump that was never acknowledged.
//!
//! The directory is locked so two processes never share a store. Encryption at rest and
//! scale are later changes inside this module.

mod credential;
mod file;
// The persistent engine beneath the domain API (issue 11); wired in once the domain
// API has landed.
#[allow(dead_code)]
mod engine;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::Rng;
use zeroize::Zeroizing;

pub use credential::{Credential, PrivateKey, RpInfo};
use file::{PinState, StoreFile};

use crate::pin::policy::{MAX_PIN_RETRIES, MAX_UV_RETRIES};

const STORE_FILE: &str = "vkey-store.cbor";
const COUNTER_FILE: &str = "vkey-counters.log";
const LOCK_FILE: &str = "vkey.lock";
/// A store file larger than this is refused as corrupt instead of being read into memory.
const MAX_STORE_FILE: u64 = 256 * 1024 * 1024;
const COUNTER_RECORD: usize = 20;
/// The counter log is compacted (rewritten with one record per credential) when it holds
/// this many records more than there are credentials.
const COUNTER_COMPACT_SLACK: usize = 65_536;
/// How many credentials the store holds at most (getInfo's
/// remainingDiscoverableCredentials counts down from it).
pub const MAX_DISCOVERABLE: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: the store is in use by another vkey process")]
    Locked(PathBuf),
    #[error("{path}: not a vkey store file ({why})")]
    Corrupt { path: PathBuf, why: String },
    #[error("the store is full ({MAX_DISCOVERABLE} discoverable credentials)")]
    Full,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Key of a signature counter in the log: the first 16 bytes of SHA-256(credential ID),
/// so credentials that are not stored (non-discoverable) have one too.
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

enum Backend {
    Memory,
    Dir {
        dir: PathBuf,
        counters: File,
        // Held for the life of the store: the advisory lock goes with the file handle.
        _lock: File,
    },
}

/// The key's state, on disk or in memory.
pub struct Store {
    backend: Backend,
    state: StoreFile,
    counters: HashMap<CounterKey, u32>,
    counter_records: usize,
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

impl Store {
    /// A store that lives in memory only and is gone when the process ends.
    pub fn ephemeral() -> Store {
        Store {
            backend: Backend::Memory,
            state: StoreFile::fresh(random_hex_serial(), random_key()),
            counters: HashMap::new(),
            counter_records: 0,
        }
    }

    /// Opens the store in `dir`, creating the directory (mode 0700) and a fresh store if
    /// there is none yet.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(dir.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => {
                return Err(StoreError::Io {
                    path: lock_path,
                    source: e,
                });
            }
        }
        let path = dir.join(STORE_FILE);
        let state = match File::open(&path) {
            Ok(f) => {
                let len = f.metadata().map_err(io_err(&path))?.len();
                if len > MAX_STORE_FILE {
                    return Err(StoreError::Corrupt {
                        path,
                        why: "too large".into(),
                    });
                }
                let bytes = Zeroizing::new(fs::read(&path).map_err(io_err(&path))?);
                StoreFile::decode(&bytes).map_err(|why| StoreError::Corrupt {
                    path: path.clone(),
                    why,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let state = StoreFile::fresh(random_hex_serial(), random_key());
                write_atomic(dir, STORE_FILE, &state.encode())?;
                state
            }
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        let counter_path = dir.join(COUNTER_FILE);
        let log = match fs::read(&counter_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(StoreError::Io {
                    path: counter_path,
                    source: e,
                });
            }
        };
        let mut counters = HashMap::new();
        // A torn last record (crash mid-append) is ignored by chunks_exact.
        for rec in log.chunks_exact(COUNTER_RECORD) {
            let mut key = [0u8; 16];
            key.copy_from_slice(&rec[..16]);
            let value = u32::from_be_bytes([rec[16], rec[17], rec[18], rec[19]]);
            let e = counters.entry(key).or_insert(0);
            *e = (*e).max(value);
        }
        let records = log.len() / COUNTER_RECORD;
        if records > counters.len() + COUNTER_COMPACT_SLACK || log.len() % COUNTER_RECORD != 0 {
            write_atomic(dir, COUNTER_FILE, &encode_counters(&counters))?;
        }
        let counter_file = private_options()
            .append(true)
            .create(true)
            .open(&counter_path)
            .map_err(io_err(&counter_path))?;
        let counter_records = counters.len();
        Ok(Store {
            backend: Backend::Dir {
                dir: dir.to_path_buf(),
                counters: counter_file,
                _lock: lock,
            },
            state,
            counters,
            counter_records,
        })
    }

    /// Writes the store file (no-op in memory).
    fn commit(&mut self) -> Result<(), StoreError> {
        if let Backend::Dir { dir, .. } = &self.backend {
            write_atomic(dir, STORE_FILE, &self.state.encode())?;
        }
        Ok(())
    }

    /// The USB serial number of this key.
    pub fn serial(&self) -> &str {
        &self.state.serial
    }

    /// Where the store lives, if on disk.
    pub fn dir(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Memory => None,
            Backend::Dir { dir, .. } => Some(dir),
        }
    }

    /// The secret that seals credential IDs (new after every reset).
    pub fn wrapping_key(&self) -> &[u8; 32] {
        &self.state.wrapping_key
    }

    pub fn attestation(&self) -> Option<AttestationMaterial> {
        self.state.attestation.clone()
    }

    /// Saves the attestation material (once, at first start). The CA certificate is also
    /// written as `attestation-ca.pem` beside the store for relying parties to trust.
    pub fn set_attestation(
        &mut self,
        a: AttestationMaterial,
        ca_pem: &str,
    ) -> Result<(), StoreError> {
        self.state.attestation = Some(a);
        self.commit()?;
        if let Backend::Dir { dir, .. } = &self.backend {
            let path = dir.join("attestation-ca.pem");
            fs::write(&path, ca_pem).map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// The stored credential `id` (discoverable, or imported with its own key).
    pub fn get_credential(&self, id: &[u8]) -> Option<Credential> {
        self.state.credentials.get(id).cloned()
    }

    /// Every stored credential, oldest first (the control interface's list).
    pub fn credentials(&self) -> Vec<Credential> {
        self.state
            .credentials
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// The discoverable credentials of the RP with this RP ID hash, most recently created
    /// first (getAssertion without an allowList, enumerateCredentials).
    pub fn discoverable_for_rp(&self, rp_id_hash: &[u8; 32]) -> Vec<Credential> {
        self.state
            .credentials
            .for_rp(rp_id_hash)
            .filter(|c| c.discoverable)
            .cloned()
            .collect()
    }

    /// The RPs that have discoverable credentials, each once, in the order their first
    /// credential was made (enumerateRPs).
    pub fn rps(&self) -> Vec<RpInfo> {
        let mut seen = HashSet::new();
        self.state
            .credentials
            .iter()
            .filter(|(_, c)| c.discoverable && seen.insert(c.rp_id.as_str()))
            .map(|(_, c)| RpInfo {
                id: c.rp_id.clone(),
                name: c.rp_name.clone(),
            })
            .collect()
    }

    /// How many credentials are stored (discoverable and imported).
    pub fn credential_count(&self) -> usize {
        self.state.credentials.len()
    }

    pub fn discoverable_count(&self) -> usize {
        self.state.credentials.discoverable_count()
    }

    /// How many more credentials fit (getInfo remainingDiscoverableCredentials).
    pub fn remaining_capacity(&self) -> usize {
        MAX_DISCOVERABLE.saturating_sub(self.state.credentials.len())
    }

    /// Stores a credential, durably. It replaces one with the same ID and, if it is
    /// discoverable, the RP's discoverable credential for the same user.id (CTAP 2.1
    /// §6.1.2 step 17). [`StoreError::Full`] when no room is left.
    pub fn put_credential(&mut self, cred: Credential) -> Result<(), StoreError> {
        let index = &mut self.state.credentials;
        let rp_id_hash = crate::crypto::sha256(cred.rp_id.as_bytes());
        let same_user = cred
            .discoverable
            .then(|| {
                index
                    .for_rp(&rp_id_hash)
                    .find(|c| c.discoverable && c.user_id == cred.user_id)
                    .map(|c| c.id.clone())
            })
            .flatten();
        // Undo information is the replaced records, not a copy of the whole store: this
        // runs on every discoverable makeCredential.
        let replaced: Vec<(u64, Credential)> = [Some(cred.id.clone()), same_user]
            .iter()
            .flatten()
            .filter_map(|id| index.remove(id))
            .collect();
        let undo = |s: &mut Self, replaced: Vec<(u64, Credential)>| {
            for (seq, c) in replaced {
                s.state.credentials.insert(seq, c);
            }
        };
        if self.state.credentials.len() >= MAX_DISCOVERABLE {
            undo(self, replaced);
            return Err(StoreError::Full);
        }
        let id = cred.id.clone();
        self.state.next_sequence += 1;
        self.state
            .credentials
            .insert(self.state.next_sequence, cred);
        if let Err(e) = self.commit() {
            // Not acknowledged: memory goes back to what the disk has.
            self.state.credentials.remove(&id);
            self.state.next_sequence -= 1;
            undo(self, replaced);
            return Err(e);
        }
        Ok(())
    }

    /// Removes a stored credential (credentialManagement deleteCredential).
    pub fn delete_credential(&mut self, id: &[u8]) -> Result<bool, StoreError> {
        let Some((seq, removed)) = self.state.credentials.remove(id) else {
            return Ok(false);
        };
        if let Err(e) = self.commit() {
            self.state.credentials.insert(seq, removed);
            return Err(e);
        }
        Ok(true)
    }

    /// Replaces a stored credential's user name and display name
    /// (credentialManagement updateUserInformation).
    pub fn update_user(
        &mut self,
        id: &[u8],
        name: Option<String>,
        display_name: Option<String>,
    ) -> Result<bool, StoreError> {
        let Some(c) = self.state.credentials.get_mut(id) else {
            return Ok(false);
        };
        let old_name = std::mem::replace(&mut c.user_name, name);
        let old_display = std::mem::replace(&mut c.user_display_name, display_name);
        if let Err(e) = self.commit() {
            if let Some(c) = self.state.credentials.get_mut(id) {
                (c.user_name, c.user_display_name) = (old_name, old_display);
            }
            return Err(e);
        }
        Ok(true)
    }

    /// Sets a stored credential's backup eligibility and state (each only if given).
    pub fn set_backup_flags(
        &mut self,
        id: &[u8],
        eligible: Option<bool>,
        state: Option<bool>,
    ) -> Result<bool, StoreError> {
        let Some(c) = self.state.credentials.get_mut(id) else {
            return Ok(false);
        };
        let old = (c.backup_eligible, c.backup_state);
        c.backup_eligible = eligible.or(c.backup_eligible);
        c.backup_state = state.or(c.backup_state);
        if let Err(e) = self.commit() {
            if let Some(c) = self.state.credentials.get_mut(id) {
                (c.backup_eligible, c.backup_state) = old;
            }
            return Err(e);
        }
        Ok(true)
    }

    /// Removes every stored credential (counters and the wrapping key stay).
    pub fn clear_credentials(&mut self) -> Result<(), StoreError> {
        let old = std::mem::take(&mut self.state.credentials);
        if let Err(e) = self.commit() {
            self.state.credentials = old;
            return Err(e);
        }
        Ok(())
    }

    /// What getInfo and clientPIN may know of the PIN and UV state.
    pub fn pin_status(&self) -> PinStatus {
        let p = &self.state.pin;
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
        let Some(stored) = &self.state.pin.hash else {
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
        let p = &self.state.pin;
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
        Ok(self.state.pin.retries)
    }

    /// The PIN matched: the retries are full again.
    pub fn pin_matched(&mut self) -> Result<(), StoreError> {
        if self.state.pin.retries == MAX_PIN_RETRIES {
            return Ok(());
        }
        self.change_pin_state(|p| p.retries = MAX_PIN_RETRIES)
    }

    /// Built-in UV failed: one UV retry spent. Returns the retries left.
    pub fn record_uv_failure(&mut self) -> Result<u8, StoreError> {
        self.change_pin_state(|p| p.uv_retries = p.uv_retries.saturating_sub(1))?;
        Ok(self.state.pin.uv_retries)
    }

    /// Built-in UV succeeded: the UV retries are full again.
    pub fn uv_matched(&mut self) -> Result<(), StoreError> {
        self.set_uv_retries(MAX_UV_RETRIES)
    }

    pub fn set_uv_retries(&mut self, n: u8) -> Result<(), StoreError> {
        if self.state.pin.uv_retries == n {
            return Ok(());
        }
        self.change_pin_state(|p| p.uv_retries = n)
    }

    /// authenticatorConfig toggleAlwaysUv; returns the new value.
    pub fn toggle_always_uv(&mut self) -> Result<bool, StoreError> {
        self.change_pin_state(|p| p.always_uv = !p.always_uv)?;
        Ok(self.state.pin.always_uv)
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
        let p = &self.state.pin;
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
        let old = self.state.pin.clone();
        f(&mut self.state.pin);
        if let Err(e) = self.commit() {
            self.state.pin = old;
            return Err(e);
        }
        Ok(())
    }

    /// The signature counter of credential `id` (0 if never used).
    pub fn counter(&self, id: &[u8]) -> u32 {
        self.counters.get(&counter_key(id)).copied().unwrap_or(0)
    }

    /// Increments the signature counter of credential `id` and makes the new value
    /// durable before returning it.
    pub fn bump_counter(&mut self, id: &[u8]) -> Result<u32, StoreError> {
        let key = counter_key(id);
        let next = self.counter(id).saturating_add(1);
        if let Backend::Dir { dir, counters, .. } = &mut self.backend {
            let mut rec = [0u8; COUNTER_RECORD];
            rec[..16].copy_from_slice(&key);
            rec[16..].copy_from_slice(&next.to_be_bytes());
            let path = dir.join(COUNTER_FILE);
            counters.write_all(&rec).map_err(io_err(&path))?;
            counters.sync_data().map_err(io_err(&path))?;
            self.counter_records += 1;
        }
        self.counters.insert(key, next);
        Ok(next)
    }

    /// Sets the signature counter of credential `id` (an imported credential's
    /// signCount), durably. A value below the current one rewrites the counter log,
    /// where the highest record per credential would otherwise win on the next start.
    pub fn set_counter(&mut self, id: &[u8], value: u32) -> Result<(), StoreError> {
        let key = counter_key(id);
        let lower = value < self.counter(id);
        let old = self.counters.insert(key, value);
        let result = match &mut self.backend {
            Backend::Memory => Ok(()),
            Backend::Dir { dir, counters, .. } if lower => {
                let r = write_atomic(dir, COUNTER_FILE, &encode_counters(&self.counters));
                // The log was replaced: append to the new file from now on.
                let path = dir.join(COUNTER_FILE);
                match r.and_then(|()| {
                    private_options()
                        .append(true)
                        .open(&path)
                        .map_err(io_err(&path))
                }) {
                    Ok(f) => {
                        *counters = f;
                        self.counter_records = self.counters.len();
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Backend::Dir { dir, counters, .. } => {
                let mut rec = [0u8; COUNTER_RECORD];
                rec[..16].copy_from_slice(&key);
                rec[16..].copy_from_slice(&value.to_be_bytes());
                let path = dir.join(COUNTER_FILE);
                counters
                    .write_all(&rec)
                    .and_then(|()| counters.sync_data())
                    .map_err(io_err(&path))
                    .map(|()| self.counter_records += 1)
            }
        };
        if result.is_err() {
            match old {
                Some(v) => self.counters.insert(key, v),
                None => self.counters.remove(&key),
            };
        }
        result
    }

    /// authenticatorReset: forget every credential and counter and make a new wrapping
    /// key, so that non-discoverable credential IDs issued before are no longer ours.
    /// The PIN goes too. The USB serial and the attestation identity stay: they belong to
    /// the device.
    pub fn reset(&mut self) -> Result<(), StoreError> {
        self.state.credentials.clear();
        self.state.pin = PinState::default();
        self.state.wrapping_key = random_key();
        self.commit()?;
        self.counters.clear();
        if let Backend::Dir { dir, counters, .. } = &mut self.backend {
            let path = dir.join(COUNTER_FILE);
            counters.set_len(0).map_err(io_err(&path))?;
            counters.sync_all().map_err(io_err(&path))?;
        }
        self.counter_records = 0;
        Ok(())
    }
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

fn encode_counters(counters: &HashMap<CounterKey, u32>) -> Vec<u8> {
    let mut v = Vec::with_capacity(counters.len() * COUNTER_RECORD);
    for (k, c) in counters {
        v.extend_from_slice(k);
        v.extend_from_slice(&c.to_be_bytes());
    }
    v
}

#[cfg(unix)]
fn private_options() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.mode(0o600);
    o
}

#[cfg(not(unix))]
fn private_options() -> OpenOptions {
    OpenOptions::new()
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir).map_err(io_err(dir))
    }
}

/// Replaces `dir/name` with `bytes` so that a crash at any point leaves either the old
/// or the new content: write a temp file, fsync it, rename over, fsync the directory.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    {
        let mut f = private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, &target).map_err(io_err(&target))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests;
