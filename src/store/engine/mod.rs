//! The storage engine beneath the store's domain API: an append-only log of records,
//! each sealed with AES-256-GCM, in one file (`vkey-store.dat`, layout in [`format`]).
//!
//! - A commit appends its records in one write and fdatasyncs before it returns, so an
//!   acknowledged change is on disk. A change writes only its own records.
//! - Opening reads and authenticates every record and keeps an index in memory (key →
//!   offset, plus an ordered secondary index by a 32-byte group tag such as an RP ID
//!   hash); values are read back with one `pread` when asked for.
//! - A bad record at the end that an interrupted write can explain (everything from the
//!   start of the last commit is at most one commit long and no intact later commit
//!   follows) is a torn write: the file is cut back to the last whole commit. A bad record
//!   that intact later commits follow is damage, and the store refuses to open rather than
//!   drop acknowledged data.
//! - A failed write (ENOSPC half-way, EIO on fsync) is cut off again at once; memory only
//!   changes after the data is durable.
//! - Compaction rewrites the live records into a new file with a new data key on a
//!   background thread while commits go on; the commits made meanwhile are copied over,
//!   and the new file replaces the old one with a rename. It starts when superseded
//!   records outweigh live ones, so the file stays within about twice the live data.
//! - `replace_all` writes a complete new state to a new file and renames it in: a failed
//!   one changes nothing (authenticatorReset).
//!
//! Records are bound (GCM associated data) to the store, the file generation, their
//! sequence number and their place in their commit, so a record cannot be moved, replayed,
//! dropped from the middle or taken from another store or file undetected. What a reader
//! of the file can see: the header (format, KDF parameters, salt, store id, generation),
//! how many records there are, their sizes and the order they were written in. What it
//! cannot detect: the whole file replaced by an older copy of itself, or its last commits
//! cut off (indistinguishable from a crash before them) — that needs storage outside the
//! file that can only count up, which a process on a general-purpose OS does not have.

mod compact;
mod dir;
mod format;
mod seal;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

pub use dir::{
    ATTESTATION_CA_FILE, Contents, STORE_FILE, StoreDir, V2_COUNTER_FILE, V2_STORE_FILE,
};
pub use format::{KdfParams, MAX_KEY};
pub use seal::Unlock;

use format::{HEADER_LEN, Header, HeaderError, Kdf, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, Op};
use seal::{FileCipher, Key};

/// One change in a commit.
pub type Change<'a> = Op<'a>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: the store is in use by another vkey process")]
    Locked(PathBuf),
    #[error("{path}: refusing to use it: {why}")]
    Unsafe { path: PathBuf, why: String },
    #[error("{0}: not a vkey store file")]
    NotAStore(PathBuf),
    #[error(
        "{path}: store format {version} is from a newer vkey (this one reads formats 2 and {}); upgrade vkey",
        format::FORMAT_VERSION
    )]
    FutureVersion { path: PathBuf, version: u32 },
    #[error("{path}: damaged store: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error("{0}: wrong passphrase")]
    WrongPassphrase(PathBuf),
    #[error("{0}: the key file does not open this store")]
    WrongKeyFile(PathBuf),
    #[error(
        "{0}: this store is protected by a passphrase and none was given (--passphrase-file FILE or VKEY_PASSPHRASE)"
    )]
    NeedsPassphrase(PathBuf),
    #[error(
        "{0}: this store is not protected by a passphrase (it is unlocked by its key file); start without one"
    )]
    NotPassphraseStore(PathBuf),
    #[error("{0} is missing: the store beside it cannot be decrypted without it")]
    MissingKeyFile(PathBuf),
    #[error(
        "{dir}: holds {} but no {}: refusing to make a new key over a lost one (move those files away to start afresh)",
        files.join(", "), dir::STORE_FILE
    )]
    Orphans {
        dir: PathBuf,
        files: Vec<&'static str>,
    },
    #[error("{0}: a store already exists here")]
    Exists(PathBuf),
    #[error("passphrase key derivation: {0}")]
    Kdf(String),
    #[error("{path}: {len} bytes, more than the {max} a store of this size may have")]
    TooLarge { path: PathBuf, len: u64, max: u64 },
    #[error("the store is full: {0}")]
    Full(String),
    #[error("invalid change: {0}")]
    Invalid(&'static str),
    #[error("the store cannot be written since an earlier failure ({0}); restart vkey")]
    Unwritable(String),
}

/// Bounds the engine enforces on what it reads and writes.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A store file larger than this is refused at open, and no commit grows it past it.
    pub max_file_bytes: u64,
    /// Most live records (every kind together).
    pub max_records: usize,
    /// Compaction starts once superseded bytes exceed both the live bytes and this.
    pub compact_min_garbage: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_file_bytes: 2 << 30,
            max_records: 1 << 20,
            compact_min_garbage: 1 << 20,
        }
    }
}

/// A file never holds more records than this (a new file, with a new data key, is
/// started first), keeping random 96-bit GCM nonces far from collisions.
const MAX_RECORDS_PER_FILE: u64 = 1 << 26;

/// Where a live record is.
#[derive(Clone, Copy, Debug)]
struct Loc {
    off: u64,
    len: u32,
    group: Option<[u8; 32]>,
}

/// Offset and length of a record.
type Place = (u64, u32);

/// A record read back: its key and its value.
pub type Entry = (Vec<u8>, Zeroizing<Vec<u8>>);

/// The in-memory index: every live record by kind ‖ key, and the members of each group
/// in insertion order (an overwrite keeps its place).
#[derive(Default)]
struct Index {
    entries: HashMap<Box<[u8]>, Loc>,
    groups: HashMap<(u8, [u8; 32]), Vec<Place>>,
    counts: HashMap<u8, usize>,
    live_bytes: u64,
}

/// kind ‖ key on the stack, for lookups without an allocation.
struct FullKey {
    buf: [u8; 1 + MAX_KEY],
    len: usize,
}

impl FullKey {
    fn new(kind: u8, key: &[u8]) -> Option<FullKey> {
        let mut buf = [0u8; 1 + MAX_KEY];
        buf[0] = kind;
        buf.get_mut(1..1 + key.len())?.copy_from_slice(key);
        Some(FullKey {
            buf,
            len: 1 + key.len(),
        })
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Index {
    fn get(&self, kind: u8, key: &[u8]) -> Option<&Loc> {
        let fk = FullKey::new(kind, key)?;
        self.entries.get(fk.as_slice())
    }

    fn group_remove(&mut self, kind: u8, group: [u8; 32], off: u64) {
        if let Some(members) = self.groups.get_mut(&(kind, group)) {
            if let Some(i) = members.iter().position(|m| m.0 == off) {
                members.remove(i);
            }
            if members.is_empty() {
                self.groups.remove(&(kind, group));
            }
        }
    }

    fn apply(&mut self, off: u64, len: u32, op: &Op<'_>) {
        let Some(fk) = FullKey::new(op.kind(), op.key()) else {
            return;
        };
        match *op {
            Op::Put { kind, group, .. } => {
                let loc = Loc { off, len, group };
                self.live_bytes += u64::from(len);
                let Some(slot) = self.entries.get_mut(fk.as_slice()) else {
                    *self.counts.entry(kind).or_default() += 1;
                    if let Some(b) = group {
                        self.groups.entry((kind, b)).or_default().push((off, len));
                    }
                    self.entries.insert(fk.as_slice().into(), loc);
                    return;
                };
                // An overwrite: the key stays, its place in a group too.
                let old = std::mem::replace(slot, loc);
                self.live_bytes = self.live_bytes.saturating_sub(u64::from(old.len));
                match (old.group, group) {
                    (Some(a), Some(b)) if a == b => {
                        if let Some(m) = self
                            .groups
                            .get_mut(&(kind, a))
                            .and_then(|ms| ms.iter_mut().find(|m| m.0 == old.off))
                        {
                            *m = (off, len);
                        }
                    }
                    _ => {
                        if let Some(a) = old.group {
                            self.group_remove(kind, a, old.off);
                        }
                        if let Some(b) = group {
                            self.groups.entry((kind, b)).or_default().push((off, len));
                        }
                    }
                }
            }
            Op::Delete { kind, .. } => {
                if let Some(old) = self.entries.remove(fk.as_slice()) {
                    self.live_bytes = self.live_bytes.saturating_sub(u64::from(old.len));
                    if let Some(a) = old.group {
                        self.group_remove(kind, a, old.off);
                    }
                    if let Some(c) = self.counts.get_mut(&kind) {
                        *c = c.saturating_sub(1);
                    }
                }
            }
        }
    }

    /// Every live record's place, grouped records in their group order, so a file
    /// written in this order rebuilds the same group order when read.
    fn live_in_order(&self) -> Vec<(u64, u32)> {
        let mut v: Vec<(u64, u32)> = self
            .entries
            .values()
            .filter(|l| l.group.is_none())
            .map(|l| (l.off, l.len))
            .collect();
        v.sort_unstable();
        for members in self.groups.values() {
            v.extend_from_slice(members);
        }
        v
    }
}

/// What a store looks like from the outside, for logs, tests and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    pub file_bytes: u64,
    pub live_bytes: u64,
    pub records: usize,
    pub generation: u64,
    pub compacting: bool,
}

/// An open store.
pub struct Engine {
    dir: StoreDir,
    path: PathBuf,
    file: File,
    header: Header,
    cipher: FileCipher,
    kek: Key,
    end: u64,
    next_seq: u64,
    index: Index,
    limits: Limits,
    /// Set when a failed write could not be cut off again: no more writes.
    poisoned: Option<String>,
    compaction: Option<compact::Running>,
    /// After a failed compaction: superseded bytes to reach before trying again.
    compact_retry_at: u64,
    /// Tests: bytes the next writes may put on disk before failing like ENOSPC.
    write_budget: Option<u64>,
    /// Tests: keep a finished compaction from being installed.
    hold_compaction: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The key-encryption key for a header's KDF from what the caller unlocks with.
fn kek_for(
    dir: &StoreDir,
    path: &Path,
    header: &Header,
    unlock: &Unlock,
) -> Result<Key, EngineError> {
    match (header.kdf, unlock) {
        (Kdf::KeyFile, Unlock::KeyFile) => dir.read_key_file(),
        (Kdf::Argon2id(params), Unlock::Passphrase(p)) => {
            seal::derive_kek(p, &header.salt, params).map_err(EngineError::Kdf)
        }
        (Kdf::KeyFile, Unlock::Passphrase(_)) => {
            Err(EngineError::NotPassphraseStore(path.to_path_buf()))
        }
        (Kdf::Argon2id(_), Unlock::KeyFile) => {
            Err(EngineError::NeedsPassphrase(path.to_path_buf()))
        }
    }
}

/// What reading the log found.
struct Scan {
    index: Index,
    end: u64,
    next_seq: u64,
    /// A torn last commit starts here and the file is this long.
    torn: Option<(u64, u64)>,
}

/// Reads and authenticates every record after the header; see the module docs for how
/// a bad record is told apart as a torn tail or damage.
fn scan(
    file: &File,
    file_len: u64,
    cipher: &FileCipher,
    path: &Path,
    limits: &Limits,
) -> Result<Scan, EngineError> {
    let corrupt = |why: String| EngineError::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    let mut reader = BufReader::with_capacity(256 << 10, file);
    reader
        .seek(SeekFrom::Start(HEADER_LEN as u64))
        .map_err(io(path))?;
    let mut index = Index::default();
    let (mut off, mut seq) = (HEADER_LEN as u64, 0u64);
    let (mut batch_off, mut batch_seq) = (off, seq);
    let mut pending: Vec<(u64, u32, Zeroizing<Vec<u8>>)> = Vec::new();
    let mut rec = Vec::new();
    let bad = loop {
        if off == file_len {
            break !pending.is_empty();
        }
        if file_len - off < format::RECORD_HEADER_LEN as u64 || pending.len() >= MAX_BATCH_RECORDS {
            break true;
        }
        let mut hb = [0u8; format::RECORD_HEADER_LEN];
        reader.read_exact(&mut hb).map_err(io(path))?;
        let Some(h) = format::RecordHeader::decode(&hb) else {
            break true;
        };
        if h.seq != seq
            || usize::from(h.batch_pos) != pending.len()
            || u64::from(h.len) > file_len - off
        {
            break true;
        }
        rec.clear();
        rec.extend_from_slice(&hb);
        rec.resize(h.len as usize, 0);
        reader
            .read_exact(&mut rec[format::RECORD_HEADER_LEN..])
            .map_err(io(path))?;
        let Some(pt) = cipher.open_record(&rec) else {
            break true;
        };
        if Op::decode(&pt).is_none() {
            return Err(corrupt(format!(
                "record {seq} at offset {off} is authentic but not understood"
            )));
        }
        off += u64::from(h.len);
        seq += 1;
        if h.last_in_batch && pending.is_empty() {
            // The common case, a commit of one record: no copy to the pending list.
            if let Some(op) = Op::decode(&pt) {
                index.apply(off - u64::from(h.len), h.len, &op);
            }
        } else {
            pending.push((off - u64::from(h.len), h.len, pt));
        }
        if h.last_in_batch {
            for (o, l, pt) in pending.drain(..) {
                if let Some(op) = Op::decode(&pt) {
                    index.apply(o, l, &op);
                }
            }
            if index.entries.len() > limits.max_records {
                return Err(corrupt(format!(
                    "more than {} live records",
                    limits.max_records
                )));
            }
            batch_off = off;
            batch_seq = seq;
        }
    };
    if bad {
        check_torn_tail(file, file_len, cipher, path, batch_off, batch_seq)?;
    }
    Ok(Scan {
        index,
        end: batch_off,
        next_seq: batch_seq,
        torn: bad.then_some((batch_off, file_len)),
    })
}

/// Most record bytes [`check_torn_tail`] authenticates. The records a crash can leave in
/// a tail (the torn commit's, or stale ones of an older file) lie side by side, so they
/// add up to at most the tail, itself at most [`MAX_BATCH_BYTES`]. Headers that overlap
/// can only be forged (their check is not keyed): without this bound, one every 20 bytes
/// each claiming to run to the end made opening a 2 MiB file take over a minute.
const MAX_TAIL_CHECK_BYTES: usize = 2 * MAX_BATCH_BYTES;

/// Everything from `batch_off` on failed to read as whole commits. That is a torn write
/// only if it is no longer than one commit can be and no intact record of a later commit
/// lies in it; otherwise acknowledged data would be dropped, and it is damage.
fn check_torn_tail(
    file: &File,
    file_len: u64,
    cipher: &FileCipher,
    path: &Path,
    batch_off: u64,
    batch_seq: u64,
) -> Result<(), EngineError> {
    let tail = file_len - batch_off;
    if tail > MAX_BATCH_BYTES as u64 {
        return Err(EngineError::Corrupt {
            path: path.to_path_buf(),
            why: format!(
                "bad record at offset {batch_off}, {tail} bytes before the end: more than an interrupted write can leave"
            ),
        });
    }
    let mut buf = vec![0u8; tail as usize];
    file.read_exact_at(&mut buf, batch_off).map_err(io(path))?;
    let mut budget = MAX_TAIL_CHECK_BYTES;
    // From 0: a record at the very start of the tail that belongs to a later commit
    // means records are missing before it.
    for y in 0..buf.len() {
        let Some(h) = buf.get(y..).and_then(format::RecordHeader::decode) else {
            continue;
        };
        if h.batch_start() <= batch_seq {
            continue;
        }
        let Some(rec) = buf.get(y..y + h.len as usize) else {
            continue;
        };
        let Some(left) = budget.checked_sub(rec.len()) else {
            return Err(EngineError::Corrupt {
                path: path.to_path_buf(),
                why: format!(
                    "bad record at offset {batch_off}, then more overlapping record headers than an interrupted write can leave"
                ),
            });
        };
        budget = left;
        if cipher.open_record(rec).is_some() {
            return Err(EngineError::Corrupt {
                path: path.to_path_buf(),
                why: format!(
                    "bad record at offset {batch_off} with intact later records (offset {}): refusing to drop acknowledged changes",
                    batch_off + y as u64
                ),
            });
        }
    }
    Ok(())
}

impl Engine {
    /// Opens the store in `dir`. Nothing is written unless the key opens the store and
    /// every record reads; then a torn last commit (an interrupted write) is cut off.
    pub fn open(dir: StoreDir, unlock: &Unlock, limits: Limits) -> Result<Engine, EngineError> {
        let path = dir.file(dir::STORE_FILE);
        let file = dir::open_existing(&path, true)?;
        let file_len = file.metadata().map_err(io(&path))?.len();
        if file_len > limits.max_file_bytes {
            return Err(EngineError::TooLarge {
                path,
                len: file_len,
                max: limits.max_file_bytes,
            });
        }
        let mut hb = vec![0u8; (file_len as usize).min(HEADER_LEN)];
        file.read_exact_at(&mut hb, 0).map_err(io(&path))?;
        let header = Header::decode(&hb).map_err(|e| match e {
            HeaderError::NotAStore => EngineError::NotAStore(path.clone()),
            HeaderError::FutureVersion(version) => EngineError::FutureVersion {
                path: path.clone(),
                version,
            },
            HeaderError::UnknownVersion(v) => EngineError::Corrupt {
                path: path.clone(),
                why: format!("unknown format version {v}"),
            },
            HeaderError::Damaged(why) => EngineError::Corrupt {
                path: path.clone(),
                why: why.into(),
            },
        })?;
        let kek = kek_for(&dir, &path, &header, unlock)?;
        let data_key = seal::unwrap_key(&kek, &header.wrapped_key, &header.aad_bytes())
            .ok_or_else(|| match unlock {
                Unlock::Passphrase(_) => EngineError::WrongPassphrase(path.clone()),
                Unlock::KeyFile => EngineError::WrongKeyFile(path.clone()),
            })?;
        let cipher = FileCipher::new(&data_key, header.store_id, header.generation);
        let scan = scan(&file, file_len, &cipher, &path, &limits)?;
        if let Some((good, len)) = scan.torn {
            tracing::warn!(
                "{}: cut off an interrupted write ({} bytes at offset {good}); the store is as of its last completed change",
                path.display(),
                len - good
            );
            file.set_len(good)
                .and_then(|()| file.sync_all())
                .map_err(io(&path))?;
        }
        dir.remove_if_present(dir::NEW_TEMP)?;
        dir.remove_if_present(dir::COMPACT_TEMP)?;
        let mut e = Engine {
            dir,
            path,
            file,
            header,
            cipher,
            kek,
            end: scan.end,
            next_seq: scan.next_seq,
            index: scan.index,
            limits,
            poisoned: None,
            compaction: None,
            compact_retry_at: 0,
            write_budget: None,
            hold_compaction: false,
        };
        e.maybe_start_compaction();
        Ok(e)
    }

    /// Makes a new store in `dir` holding `initial`, atomically: the store file appears
    /// complete or not at all. Without a passphrase a random key is written to the key
    /// file first.
    pub fn create(
        dir: StoreDir,
        unlock: &Unlock,
        kdf: KdfParams,
        initial: &[Change<'_>],
        limits: Limits,
    ) -> Result<Engine, EngineError> {
        let path = dir.file(dir::STORE_FILE);
        if dir.contents()? == Contents::Store {
            return Err(EngineError::Exists(path));
        }
        let (kek, kdf, salt) = match unlock {
            Unlock::KeyFile => (seal::random_key(), Kdf::KeyFile, [0u8; 16]),
            Unlock::Passphrase(p) => {
                let salt = seal::random_array();
                let kek = seal::derive_kek(p, &salt, kdf).map_err(EngineError::Kdf)?;
                (kek, Kdf::Argon2id(kdf), salt)
            }
        };
        let store_id = seal::random_array();
        let mut nf = compact::NewFile::start(&dir, dir::NEW_TEMP, &kek, store_id, 0, kdf, salt)?;
        for op in initial {
            nf.push(op)?;
        }
        nf.flush_and_sync()?;
        if matches!(unlock, Unlock::KeyFile) {
            dir.write_key_file(&kek)?;
        }
        dir.install(dir::NEW_TEMP, dir::STORE_FILE)?;
        let mut e = Engine {
            dir,
            path,
            file: nf.file,
            header: nf.header,
            cipher: nf.cipher,
            kek,
            end: nf.end,
            next_seq: nf.next_seq,
            index: nf.index,
            limits,
            poisoned: None,
            compaction: None,
            compact_retry_at: 0,
            write_budget: None,
            hold_compaction: false,
        };
        e.dir.remove_if_present(dir::COMPACT_TEMP)?;
        e.maybe_start_compaction();
        Ok(e)
    }

    /// Tests: every append fails after `bytes` more bytes, like a full disk.
    #[cfg(test)]
    pub fn fail_writes_after(&mut self, bytes: Option<u64>) {
        self.write_budget = bytes;
    }

    pub fn dir(&self) -> &StoreDir {
        &self.dir
    }

    pub fn stats(&self) -> Stats {
        Stats {
            file_bytes: self.end,
            live_bytes: self.index.live_bytes,
            records: self.index.entries.len(),
            generation: self.header.generation,
            compacting: self.compaction.is_some(),
        }
    }

    /// Whether a passphrase protects this store.
    pub fn has_passphrase(&self) -> bool {
        matches!(self.header.kdf, Kdf::Argon2id(_))
    }

    fn read_at(&self, off: u64, len: u32) -> Result<Zeroizing<Vec<u8>>, EngineError> {
        let mut rec = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut rec, off)
            .map_err(io(&self.path))?;
        self.cipher
            .open_record(&rec)
            .ok_or_else(|| EngineError::Corrupt {
                path: self.path.clone(),
                why: format!("the record at offset {off} no longer opens (changed while in use?)"),
            })
    }

    /// Reads a live record and checks it is the put the index says it is.
    fn read_put(
        &self,
        off: u64,
        len: u32,
        kind: u8,
        key: Option<&[u8]>,
    ) -> Result<Entry, EngineError> {
        let pt = self.read_at(off, len)?;
        match Op::decode(&pt) {
            Some(Op::Put {
                kind: k,
                key: kk,
                value,
                ..
            }) if k == kind && key.is_none_or(|key| key == kk) => {
                Ok((kk.to_vec(), Zeroizing::new(value.to_vec())))
            }
            _ => Err(EngineError::Corrupt {
                path: self.path.clone(),
                why: format!("the record at offset {off} is not the one the index expects"),
            }),
        }
    }

    /// The value stored under `kind` and `key`.
    pub fn get(&self, kind: u8, key: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, EngineError> {
        match self.index.get(kind, key) {
            None => Ok(None),
            Some(loc) => Ok(Some(self.read_put(loc.off, loc.len, kind, Some(key))?.1)),
        }
    }

    pub fn contains(&self, kind: u8, key: &[u8]) -> bool {
        self.index.get(kind, key).is_some()
    }

    /// How many records of `kind` there are.
    pub fn count(&self, kind: u8) -> usize {
        self.index.counts.get(&kind).copied().unwrap_or(0)
    }

    /// The keys of every record of `kind`, in no particular order.
    pub fn keys(&self, kind: u8) -> impl Iterator<Item = &[u8]> + '_ {
        self.index
            .entries
            .keys()
            .filter(move |k| k.first() == Some(&kind))
            .map(|k| &k[1..])
    }

    /// Every record of `kind` (key, value), read from disk.
    pub fn entries(&self, kind: u8) -> Result<Vec<Entry>, EngineError> {
        self.index
            .entries
            .iter()
            .filter(|(k, _)| k.first() == Some(&kind))
            .map(|(_, l)| self.read_put(l.off, l.len, kind, None))
            .collect()
    }

    /// The group tags of `kind` in use, in no particular order.
    pub fn groups(&self, kind: u8) -> impl Iterator<Item = &[u8; 32]> + '_ {
        self.index
            .groups
            .keys()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, g)| g)
    }

    #[cfg(test)]
    pub fn group_len(&self, kind: u8, group: &[u8; 32]) -> usize {
        self.index
            .groups
            .get(&(kind, *group))
            .map_or(0, |m| m.len())
    }

    /// The `i`-th record (key, value) of a group, in the order they were first put.
    pub fn group_at(
        &self,
        kind: u8,
        group: &[u8; 32],
        i: usize,
    ) -> Result<Option<Entry>, EngineError> {
        match self
            .index
            .groups
            .get(&(kind, *group))
            .and_then(|m| m.get(i))
        {
            None => Ok(None),
            Some(&(off, len)) => self.read_put(off, len, kind, None).map(Some),
        }
    }

    /// Every record (key, value) of a group, in the order they were first put.
    pub fn group(&self, kind: u8, group: &[u8; 32]) -> Result<Vec<Entry>, EngineError> {
        self.index
            .groups
            .get(&(kind, *group))
            .map_or(&[][..], |m| &m[..])
            .iter()
            .map(|&(off, len)| self.read_put(off, len, kind, None))
            .collect()
    }

    #[cfg(test)]
    pub fn put(
        &mut self,
        kind: u8,
        key: &[u8],
        group: Option<[u8; 32]>,
        value: &[u8],
    ) -> Result<(), EngineError> {
        self.commit(&[Change::Put {
            kind,
            key,
            group,
            value,
        }])
    }

    #[cfg(test)]
    /// Deletes a record; `false` if there was none (then nothing is written).
    pub fn delete(&mut self, kind: u8, key: &[u8]) -> Result<bool, EngineError> {
        if !self.contains(kind, key) {
            return Ok(false);
        }
        self.commit(&[Change::Delete { kind, key }])?;
        Ok(true)
    }

    /// Applies `changes` atomically and durably: when this returns `Ok` they are on
    /// disk; after a crash at any point either all of them or none are there. On an
    /// error nothing changed.
    pub fn commit(&mut self, changes: &[Change<'_>]) -> Result<(), EngineError> {
        self.poll_compaction();
        if let Some(why) = &self.poisoned {
            return Err(EngineError::Unwritable(why.clone()));
        }
        if changes.is_empty() {
            return Ok(());
        }
        if changes.len() > MAX_BATCH_RECORDS || !changes.iter().all(Op::fits) {
            return Err(EngineError::Invalid("commit too large"));
        }
        let new_keys = changes
            .iter()
            .filter(|c| matches!(c, Op::Put { .. }) && !self.contains(c.kind(), c.key()))
            .count();
        if self.index.entries.len() + new_keys > self.limits.max_records {
            return Err(EngineError::Full(format!(
                "{} records",
                self.limits.max_records
            )));
        }
        let mut buf = Vec::new();
        let mut placed = Vec::with_capacity(changes.len());
        let last = changes.len() - 1;
        for (i, op) in changes.iter().enumerate() {
            let start = buf.len();
            self.cipher
                .seal_record(self.next_seq + i as u64, i as u16, i == last, op, &mut buf);
            placed.push((self.end + start as u64, (buf.len() - start) as u32));
        }
        if buf.len() > MAX_BATCH_BYTES {
            return Err(EngineError::Invalid("commit too large"));
        }
        if self.end + buf.len() as u64 > self.limits.max_file_bytes {
            return Err(EngineError::Full(format!(
                "the store file would exceed {} bytes",
                self.limits.max_file_bytes
            )));
        }
        self.append(&buf)?;
        for (op, (off, len)) in changes.iter().zip(placed) {
            self.index.apply(off, len, op);
        }
        self.end += buf.len() as u64;
        self.next_seq += changes.len() as u64;
        self.maybe_start_compaction();
        Ok(())
    }

    /// Writes `buf` at the end and syncs it. On failure the file is cut back to its last
    /// whole commit; if even that fails, the engine stops writing.
    fn append(&mut self, buf: &[u8]) -> Result<(), EngineError> {
        let written = self
            .write_at(buf, self.end)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            if let Err(e2) = self
                .file
                .set_len(self.end)
                .and_then(|()| self.file.sync_data())
            {
                self.poisoned = Some(format!("a failed write ({e}) could not be cut off ({e2})"));
            }
            return Err(io(&self.path)(e));
        }
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], off: u64) -> std::io::Result<()> {
        match self.write_budget {
            None => self.file.write_all_at(buf, off),
            Some(budget) if budget >= buf.len() as u64 => {
                self.write_budget = Some(budget - buf.len() as u64);
                self.file.write_all_at(buf, off)
            }
            Some(budget) => {
                self.write_budget = Some(0);
                self.file.write_all_at(&buf[..budget as usize], off)?;
                Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "no space left on device (injected)",
                ))
            }
        }
    }

    /// Replaces the whole content with `puts` (deletes are ignored), atomically: a new
    /// file is written and synced, then renamed over the store. If anything fails before
    /// the rename, nothing changed.
    pub fn replace_all(&mut self, puts: &[Change<'_>]) -> Result<(), EngineError> {
        if !puts.iter().all(Op::fits) {
            return Err(EngineError::Invalid("record too large"));
        }
        if puts.len() > self.limits.max_records {
            return Err(EngineError::Full(format!(
                "{} records",
                self.limits.max_records
            )));
        }
        self.cancel_compaction();
        let mut nf = compact::NewFile::start(
            &self.dir,
            dir::NEW_TEMP,
            &self.kek,
            self.header.store_id,
            self.header.generation + 1,
            self.header.kdf,
            self.header.salt,
        )?;
        let written = puts
            .iter()
            .filter(|op| matches!(op, Op::Put { .. }))
            .try_for_each(|op| nf.push(op))
            .and_then(|()| nf.flush_and_sync());
        if let Err(e) = written {
            let _ = self.dir.remove_if_present(dir::NEW_TEMP);
            return Err(e);
        }
        self.install(nf, dir::NEW_TEMP)
    }

    /// Renames a finished new file over the store and switches to it.
    fn install(&mut self, nf: compact::NewFile, temp: &str) -> Result<(), EngineError> {
        let to = self.dir.file(dir::STORE_FILE);
        if let Err(e) = std::fs::rename(self.dir.file(temp), &to) {
            let _ = self.dir.remove_if_present(temp);
            return Err(io(&to)(e));
        }
        // From here the name points to the new file: switch to it whatever follows.
        self.file = nf.file;
        self.header = nf.header;
        self.cipher = nf.cipher;
        self.end = nf.end;
        self.next_seq = nf.next_seq;
        self.index = nf.index;
        self.poisoned = None;
        self.compact_retry_at = 0;
        if let Err(e) = self.dir.sync() {
            tracing::error!("{e}: the new store file may not survive a power loss");
            self.poisoned = Some(format!("the directory could not be synced: {e}"));
        }
        Ok(())
    }

    fn garbage(&self) -> u64 {
        self.end
            .saturating_sub(HEADER_LEN as u64)
            .saturating_sub(self.index.live_bytes)
    }

    fn maybe_start_compaction(&mut self) {
        if self.compaction.is_some() || self.poisoned.is_some() {
            return;
        }
        let garbage = self.garbage();
        let due = (garbage > self.index.live_bytes
            && garbage > self.limits.compact_min_garbage
            && garbage >= self.compact_retry_at)
            || self.next_seq > MAX_RECORDS_PER_FILE;
        if due && let Err(e) = compact::start(self) {
            tracing::warn!("compaction not started: {e}");
            self.compact_retry_at = garbage + garbage / 2 + self.limits.compact_min_garbage;
        }
    }

    /// Installs a finished background compaction (called before each commit).
    fn poll_compaction(&mut self) {
        if self.hold_compaction {
            return;
        }
        if self.compaction.as_ref().is_some_and(|r| r.is_finished()) {
            self.finish_compaction();
        }
    }

    fn finish_compaction(&mut self) {
        let Some(running) = self.compaction.take() else {
            return;
        };
        let garbage = self.garbage();
        match compact::finish(self, running) {
            Ok(()) => tracing::debug!("compacted {}: {} bytes", self.path.display(), self.end),
            Err(e) => {
                tracing::warn!("compaction failed, the store goes on as it was: {e}");
                let _ = self.dir.remove_if_present(dir::COMPACT_TEMP);
                self.compact_retry_at = garbage + garbage / 2 + self.limits.compact_min_garbage;
            }
        }
    }

    fn cancel_compaction(&mut self) {
        if let Some(r) = self.compaction.take() {
            r.cancel();
            let _ = self.dir.remove_if_present(dir::COMPACT_TEMP);
        }
    }

    #[cfg(test)]
    /// Compacts now and waits for it (tests, benchmarks, tools).
    pub fn compact_now(&mut self) -> Result<(), EngineError> {
        if self.compaction.is_none() {
            compact::start(self)?;
        }
        let Some(running) = self.compaction.take() else {
            return Ok(());
        };
        let garbage = self.garbage();
        compact::finish(self, running).inspect_err(|_| {
            let _ = self.dir.remove_if_present(dir::COMPACT_TEMP);
            self.compact_retry_at = garbage + garbage / 2 + self.limits.compact_min_garbage;
        })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.cancel_compaction();
    }
}

#[cfg(test)]
mod tests;
