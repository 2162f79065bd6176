//! The key's persistent state: a directory holding the store file and a counter log,
//! or memory only (`--ephemeral`).
//!
//! - `vkey-store.cbor`: device identity (USB serial), per-store secrets (the credential
//!   wrapping key, the attestation batch key and certificates) and the discoverable
//!   credentials. Rewritten atomically (temp file, fsync, rename, fsync of the
//!   directory) on each acknowledged change, so a crash leaves the old or the new file.
//! - `vkey-counters.log`: signature counters as an append-only log of 20-byte records
//!   (credential key ‖ counter), so an assertion costs one small append + fsync instead
//!   of a store rewrite. The highest value per credential wins, so a torn last record
//!   can only lose a bump that was never acknowledged.
//!
//! The directory is locked so two processes never share a store. Encryption at rest and
//! scale are later changes inside this module.

mod file;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::Rng;
use zeroize::Zeroizing;

use file::StoreFile;
pub use file::{PinState, StoredCredential};

const STORE_FILE: &str = "vkey-store.cbor";
const COUNTER_FILE: &str = "vkey-counters.log";
const LOCK_FILE: &str = "vkey.lock";
/// A store file larger than this is refused as corrupt instead of being read into memory.
const MAX_STORE_FILE: u64 = 256 * 1024 * 1024;
const COUNTER_RECORD: usize = 20;
/// The counter log is compacted (rewritten with one record per credential) when it holds
/// this many records more than there are credentials.
const COUNTER_COMPACT_SLACK: usize = 65_536;
/// How many discoverable credentials the store accepts (getInfo's
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

/// Key of a signature counter: the first 16 bytes of SHA-256(credential ID), computed by
/// the caller. Works for credentials that are not stored (non-discoverable) too.
pub type CounterKey = [u8; 16];

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

    /// Discoverable credentials of `rp_id`, most recently created first.
    pub fn discoverable(&self, rp_id: &str) -> Vec<&StoredCredential> {
        let mut v: Vec<&StoredCredential> = self
            .state
            .credentials
            .iter()
            .filter(|c| c.rp_id == rp_id)
            .collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.created));
        v
    }

    pub fn credential(&self, id: &[u8]) -> Option<&StoredCredential> {
        self.state.credentials.iter().find(|c| c.id == id)
    }

    pub fn discoverable_count(&self) -> usize {
        self.state.credentials.len()
    }

    /// Stores a discoverable credential; one with the same RP ID and user ID is replaced
    /// (CTAP 2.1 §6.1.2 step 17).
    pub fn put_credential(&mut self, mut cred: StoredCredential) -> Result<(), StoreError> {
        let replaced = self
            .state
            .credentials
            .iter()
            .position(|c| c.rp_id == cred.rp_id && c.user_id == cred.user_id);
        if replaced.is_none() && self.state.credentials.len() >= MAX_DISCOVERABLE {
            return Err(StoreError::Full);
        }
        // Undo information is the one replaced record, not a copy of the whole list:
        // this runs on every discoverable makeCredential, with up to 100k credentials.
        let removed = replaced.map(|i| (i, self.state.credentials.remove(i)));
        self.state.next_sequence += 1;
        cred.created = self.state.next_sequence;
        self.state.credentials.push(cred);
        if let Err(e) = self.commit() {
            // Not acknowledged: memory goes back to what the disk has.
            self.state.credentials.pop();
            self.state.next_sequence -= 1;
            if let Some((i, c)) = removed {
                self.state.credentials.insert(i, c);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Removes a discoverable credential (credentialManagement deleteCredential).
    pub fn delete_credential(&mut self, id: &[u8]) -> Result<bool, StoreError> {
        let Some(i) = self.state.credentials.iter().position(|c| c.id == id) else {
            return Ok(false);
        };
        let removed = self.state.credentials.remove(i);
        if let Err(e) = self.commit() {
            self.state.credentials.insert(i, removed);
            return Err(e);
        }
        Ok(true)
    }

    /// Replaces a discoverable credential's user name and display name
    /// (credentialManagement updateUserInformation).
    pub fn update_user(
        &mut self,
        id: &[u8],
        name: Option<String>,
        display_name: Option<String>,
    ) -> Result<bool, StoreError> {
        let Some(c) = self.state.credentials.iter_mut().find(|c| c.id == id) else {
            return Ok(false);
        };
        let old = (c.user_name.clone(), c.user_display_name.clone());
        c.user_name = name;
        c.user_display_name = display_name;
        if let Err(e) = self.commit() {
            if let Some(c) = self.state.credentials.iter_mut().find(|c| c.id == id) {
                (c.user_name, c.user_display_name) = old;
            }
            return Err(e);
        }
        Ok(true)
    }

    /// Every discoverable credential, in store order.
    pub fn all_credentials(&self) -> &[StoredCredential] {
        &self.state.credentials
    }

    pub fn pin(&self) -> &PinState {
        &self.state.pin
    }

    /// Changes the PIN state and makes it durable before returning (retries are counted
    /// down on disk before a PIN is compared, §6.5.5.5).
    pub fn update_pin(&mut self, f: impl FnOnce(&mut PinState)) -> Result<(), StoreError> {
        let old = self.state.pin.clone();
        f(&mut self.state.pin);
        if let Err(e) = self.commit() {
            self.state.pin = old;
            return Err(e);
        }
        Ok(())
    }

    /// The current signature counter of a credential (0 if never used).
    pub fn counter(&self, key: &CounterKey) -> u32 {
        self.counters.get(key).copied().unwrap_or(0)
    }

    /// Increments a signature counter and makes the new value durable before returning it.
    pub fn bump_counter(&mut self, key: &CounterKey) -> Result<u32, StoreError> {
        let next = self.counter(key).saturating_add(1);
        if let Backend::Dir { dir, counters, .. } = &mut self.backend {
            let mut rec = [0u8; COUNTER_RECORD];
            rec[..16].copy_from_slice(key);
            rec[16..].copy_from_slice(&next.to_be_bytes());
            let path = dir.join(COUNTER_FILE);
            counters.write_all(&rec).map_err(io_err(&path))?;
            counters.sync_data().map_err(io_err(&path))?;
            self.counter_records += 1;
        }
        self.counters.insert(*key, next);
        Ok(next)
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
