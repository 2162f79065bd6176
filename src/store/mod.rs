//! The key's persistent state: a directory holding one store file, or memory only.
//!
//! First version: the device identity (the USB serial number). Later issues add the
//! per-store secrets, discoverable credentials and counters; all of that stays a change
//! inside this module. Writes are atomic (temp file, fsync, rename, fsync of the
//! directory) so a crash leaves the old or the new file, never a torn one. The
//! directory is locked so two processes never share one store.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ciborium::Value;
use rand::Rng;

/// The store file inside the store directory.
const STORE_FILE: &str = "vkey-store.cbor";
const LOCK_FILE: &str = "vkey.lock";
const FORMAT_VERSION: i64 = 1;
/// A store file larger than this is refused as corrupt instead of being read into memory.
const MAX_STORE_FILE: u64 = 256 * 1024 * 1024;

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
    Corrupt { path: PathBuf, why: &'static str },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the store holds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    /// The USB serial number string: random at creation, stable for the store's life,
    /// so that tools which find a key by serial find the same key after a restart.
    serial: String,
}

impl State {
    fn fresh() -> State {
        let mut b = [0u8; 6];
        rand::rng().fill_bytes(&mut b);
        State {
            serial: b.iter().map(|x| format!("{x:02X}")).collect(),
        }
    }

    fn to_cbor(&self) -> Vec<u8> {
        let v = Value::Map(vec![
            (
                Value::Text("version".into()),
                Value::Integer(FORMAT_VERSION.into()),
            ),
            (
                Value::Text("serial".into()),
                Value::Text(self.serial.clone()),
            ),
        ]);
        let mut out = Vec::new();
        // Serialising a Value into a Vec does not fail.
        let _ = ciborium::ser::into_writer(&v, &mut out);
        out
    }

    fn from_cbor(path: &Path, bytes: &[u8]) -> Result<State, StoreError> {
        let corrupt = |why| StoreError::Corrupt {
            path: path.to_path_buf(),
            why,
        };
        let v: Value = ciborium::de::from_reader(bytes).map_err(|_| corrupt("not CBOR"))?;
        let Value::Map(m) = v else {
            return Err(corrupt("not a map"));
        };
        let get = |k: &str| {
            m.iter()
                .find(|(key, _)| key.as_text() == Some(k))
                .map(|(_, v)| v)
        };
        match get("version").and_then(Value::as_integer).map(i128::from) {
            Some(v) if v == i128::from(FORMAT_VERSION) => {}
            Some(_) => return Err(corrupt("unsupported format version")),
            None => return Err(corrupt("no version")),
        }
        let serial = get("serial")
            .and_then(Value::as_text)
            .ok_or_else(|| corrupt("no serial"))?;
        if serial.is_empty()
            || serial.len() > 32
            || !serial.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(corrupt("bad serial"));
        }
        Ok(State {
            serial: serial.to_string(),
        })
    }
}

enum Backend {
    Memory,
    Dir {
        dir: PathBuf,
        // Held for the life of the store: the advisory lock goes with the file handle.
        _lock: File,
    },
}

/// The key's state, on disk or in memory (`--ephemeral`).
pub struct Store {
    backend: Backend,
    state: State,
}

impl Store {
    /// A store that lives in memory only and is gone when the process ends.
    pub fn ephemeral() -> Store {
        Store {
            backend: Backend::Memory,
            state: State::fresh(),
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
                        why: "too large",
                    });
                }
                let bytes = fs::read(&path).map_err(io_err(&path))?;
                State::from_cbor(&path, &bytes)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let state = State::fresh();
                write_atomic(dir, STORE_FILE, &state.to_cbor())?;
                state
            }
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        Ok(Store {
            backend: Backend::Dir {
                dir: dir.to_path_buf(),
                _lock: lock,
            },
            state,
        })
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
mod tests {
    use super::*;

    fn tempdir() -> PathBuf {
        let mut b = [0u8; 8];
        rand::rng().fill_bytes(&mut b);
        let p = std::env::temp_dir().join(format!(
            "vkey-store-test-{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ));
        p
    }

    #[test]
    fn serial_is_stable_across_reopen_and_file_is_private() {
        let dir = tempdir();
        let serial = Store::open(&dir).unwrap().serial().to_string();
        assert_eq!(serial.len(), 12);
        assert_eq!(Store::open(&dir).unwrap().serial(), serial);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(STORE_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let dir = tempdir();
        let _a = Store::open(&dir).unwrap();
        assert!(matches!(Store::open(&dir), Err(StoreError::Locked(_))));
        drop(_a);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_file_is_an_error_not_a_panic() {
        let dir = tempdir();
        fs::create_dir_all(&dir).unwrap();
        for bad in [
            &b"garbage"[..],
            &[0xa0],
            &[0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02],
            &[],
        ] {
            fs::write(dir.join(STORE_FILE), bad).unwrap();
            assert!(
                matches!(Store::open(&dir), Err(StoreError::Corrupt { .. })),
                "{bad:?}"
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
