//! The store directory: who may write it, the lock, what it holds, and how files in it
//! are created and replaced (never through a symbolic link, never over a file someone
//! else made, with fsync of the directory after every rename).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use zeroize::Zeroizing;

use super::EngineError;
use super::seal::Key;

/// The log of format 3.
pub const STORE_FILE: &str = "vkey-store.dat";
/// The random key-encryption key of a store without a passphrase.
pub const KEY_FILE: &str = "vkey-store.key";
pub const LOCK_FILE: &str = "vkey.lock";
/// Format 2: the whole store as one CBOR file, and its counter log.
pub const V2_STORE_FILE: &str = "vkey-store.cbor";
pub const V2_COUNTER_FILE: &str = "vkey-counters.log";
/// Written by the store for relying parties; its presence means a key lived here.
pub const ATTESTATION_CA_FILE: &str = "attestation-ca.pem";
/// Temporary files: a new store being written (creation, reset) and a compaction.
pub const NEW_TEMP: &str = ".vkey-store.dat.new";
pub const COMPACT_TEMP: &str = ".vkey-store.dat.compact";
const KEY_TEMP: &str = ".vkey-store.key.new";

const KEY_FILE_MAGIC: &[u8; 8] = b"VKEYKEY1";
const KEY_FILE_LEN: usize = 8 + 32 + 8;

/// What a locked directory holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Contents {
    /// A format-3 store.
    Store,
    /// A format-2 store (`vkey-store.cbor`) and no format-3 store: migrate it.
    V2,
    /// Nothing of vkey's: a new store may be made here.
    Empty,
    /// Files of a store but not the store itself: refusing to make a new identity.
    Orphans(Vec<&'static str>),
}

/// A store directory that this process holds the lock of.
#[derive(Debug)]
pub struct StoreDir {
    path: PathBuf,
    // Held for the life of the store: the advisory lock goes with the handle.
    _lock: File,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Refuses a file or directory that another user owns or that group or others may
/// write: whoever can write it can replace the key's state.
fn check_owner_and_mode(path: &Path, meta: &fs::Metadata, dir: bool) -> Result<(), EngineError> {
    let me = euid();
    if meta.uid() != me {
        return Err(EngineError::Unsafe {
            path: path.to_path_buf(),
            why: format!("owned by uid {}, not by this user (uid {me})", meta.uid()),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(EngineError::Unsafe {
            path: path.to_path_buf(),
            why: format!(
                "writable by {} (mode {mode:04o}); chmod go-w it",
                if mode & 0o002 != 0 {
                    "everyone"
                } else {
                    "its group"
                }
            ),
        });
    }
    if !dir && !meta.is_file() {
        return Err(EngineError::Unsafe {
            path: path.to_path_buf(),
            why: "not a regular file".into(),
        });
    }
    Ok(())
}

/// Opens an existing file without following a symbolic link, and checks its owner and
/// mode.
pub fn open_existing(path: &Path, write: bool) -> Result<File, EngineError> {
    let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
    let fd = rustix::fs::open(
        path,
        access | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(path)(e.into()))?;
    let f = File::from(fd);
    let meta = f.metadata().map_err(io(path))?;
    check_owner_and_mode(path, &meta, false)?;
    Ok(f)
}

impl StoreDir {
    /// Creates `path` (mode 0700) if needed, checks that only this user can write it,
    /// and takes its lock, so two processes never share a store.
    pub fn lock(path: &Path) -> Result<StoreDir, EngineError> {
        match fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(io(path))?,
            Err(e) => return Err(io(path)(e)),
        }
        let meta = fs::metadata(path).map_err(io(path))?;
        if !meta.is_dir() {
            return Err(EngineError::Unsafe {
                path: path.to_path_buf(),
                why: "not a directory".into(),
            });
        }
        check_owner_and_mode(path, &meta, true)?;
        let lock_path = path.join(LOCK_FILE);
        let fd = rustix::fs::open(
            &lock_path,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io(&lock_path)(e.into()))?;
        let lock = File::from(fd);
        check_owner_and_mode(&lock_path, &lock.metadata().map_err(io(&lock_path))?, false)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(EngineError::Locked(path.to_path_buf()));
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        Ok(StoreDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn exists(&self, name: &str) -> Result<bool, EngineError> {
        let p = self.file(name);
        match fs::symlink_metadata(&p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// What the directory holds. Leftover temporary files are not data (nothing in them
    /// was ever acknowledged) and are removed.
    pub fn contents(&self) -> Result<Contents, EngineError> {
        for t in [NEW_TEMP, COMPACT_TEMP, KEY_TEMP] {
            self.remove_if_present(t)?;
        }
        if self.exists(STORE_FILE)? {
            return Ok(Contents::Store);
        }
        if self.exists(V2_STORE_FILE)? {
            return Ok(Contents::V2);
        }
        let mut orphans = Vec::new();
        for f in [KEY_FILE, V2_COUNTER_FILE, ATTESTATION_CA_FILE] {
            if self.exists(f)? {
                orphans.push(f);
            }
        }
        Ok(if orphans.is_empty() {
            Contents::Empty
        } else {
            Contents::Orphans(orphans)
        })
    }

    pub fn remove_if_present(&self, name: &str) -> Result<(), EngineError> {
        let p = self.file(name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// A new temporary file, opened read-write, created with O_EXCL|O_NOFOLLOW and mode
    /// 0600 (a stale one from a crash is removed first: temporary files never hold
    /// acknowledged data).
    pub fn create_temp(&self, name: &str) -> Result<File, EngineError> {
        self.remove_if_present(name)?;
        let p = self.file(name);
        let fd = rustix::fs::open(
            &p,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io(&p)(e.into()))?;
        Ok(File::from(fd))
    }

    /// Renames `temp` over `name` and makes the rename durable. The caller has synced
    /// the file's contents, so after a crash the name holds the old or the new file.
    pub fn install(&self, temp: &str, name: &str) -> Result<(), EngineError> {
        let to = self.file(name);
        fs::rename(self.file(temp), &to).map_err(io(&to))?;
        self.sync()
    }

    pub fn sync(&self) -> Result<(), EngineError> {
        File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.path))
    }

    /// Writes a file others may read (the attestation CA certificate), through a
    /// temporary file and a rename, never through a symbolic link.
    pub fn write_public_file(&self, name: &str, bytes: &[u8]) -> Result<(), EngineError> {
        let temp = format!(".{name}.new");
        let p = self.file(&temp);
        let mut f = self.create_temp(&temp)?;
        f.set_permissions(fs::Permissions::from_mode(0o644))
            .and_then(|()| f.write_all(bytes))
            .and_then(|()| f.sync_all())
            .map_err(io(&p))?;
        self.install(&temp, name)
    }

    /// Reads the key file: present, this user's, readable by nobody else, well formed.
    pub fn read_key_file(&self) -> Result<Key, EngineError> {
        let p = self.file(KEY_FILE);
        let mut f = match open_existing(&p, false) {
            Ok(f) => f,
            Err(EngineError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(EngineError::MissingKeyFile(p));
            }
            Err(e) => return Err(e),
        };
        let meta = f.metadata().map_err(io(&p))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(EngineError::Unsafe {
                path: p,
                why: format!(
                    "readable by others (mode {:04o}); chmod 600 it",
                    meta.permissions().mode() & 0o7777
                ),
            });
        }
        let mut b = Zeroizing::new(Vec::with_capacity(KEY_FILE_LEN));
        (&mut f)
            .take(KEY_FILE_LEN as u64 + 1)
            .read_to_end(&mut b)
            .map_err(io(&p))?;
        let damaged = || EngineError::Corrupt {
            path: p.clone(),
            why: "not a vkey key file".into(),
        };
        if b.len() != KEY_FILE_LEN || &b[..8] != KEY_FILE_MAGIC {
            return Err(damaged());
        }
        let sum = key_file_checksum(&b[..40]);
        if b[40..] != sum {
            return Err(damaged());
        }
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&b[8..40]);
        Ok(k)
    }

    /// Writes the key file (0600, through a temporary file and a rename).
    pub fn write_key_file(&self, key: &Key) -> Result<(), EngineError> {
        let mut b = Zeroizing::new(Vec::with_capacity(KEY_FILE_LEN));
        b.extend_from_slice(KEY_FILE_MAGIC);
        b.extend_from_slice(&key[..]);
        let sum = key_file_checksum(&b);
        b.extend_from_slice(&sum);
        let mut f = self.create_temp(KEY_TEMP)?;
        let p = self.file(KEY_TEMP);
        f.write_all(&b).map_err(io(&p))?;
        f.sync_all().map_err(io(&p))?;
        self.install(KEY_TEMP, KEY_FILE)
    }
}

fn key_file_checksum(b: &[u8]) -> [u8; 8] {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(b);
    let mut s = [0u8; 8];
    s.copy_from_slice(&d[..8]);
    s
}
