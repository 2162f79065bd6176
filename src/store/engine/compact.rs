//! Writing a new store file: at creation, for `replace_all`, and for compaction, which
//! runs on a background thread from a snapshot of the live records and is installed by
//! the engine's own thread after copying the commits made meanwhile.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::dir::{COMPACT_TEMP, StoreDir};
use super::format::{
    HEADER_LEN, Header, Kdf, Op, RECORD_HEADER_LEN, RecordHeader, WRAPPED_KEY_LEN,
};
use super::seal::{self, FileCipher, Key};
use super::{Engine, EngineError, Index, io};

const FLUSH_AT: usize = 1 << 20;

/// A store file being written: a temporary file with its own data key.
pub(super) struct NewFile {
    pub file: File,
    path: PathBuf,
    pub header: Header,
    pub cipher: FileCipher,
    pub index: Index,
    pub end: u64,
    pub next_seq: u64,
    buf: Vec<u8>,
}

impl NewFile {
    /// Creates the temporary file `temp` with a header holding a new data key wrapped by
    /// `kek`.
    pub fn start(
        dir: &StoreDir,
        temp: &str,
        kek: &Key,
        store_id: [u8; 16],
        generation: u64,
        kdf: Kdf,
        salt: [u8; 16],
    ) -> Result<NewFile, EngineError> {
        let data_key = seal::random_key();
        let mut header = Header {
            store_id,
            generation,
            kdf,
            salt,
            wrapped_key: [0u8; WRAPPED_KEY_LEN],
        };
        header.wrapped_key = seal::wrap_key(kek, &data_key, &header.aad_bytes());
        let file = dir.create_temp(temp)?;
        let mut buf = Vec::with_capacity(FLUSH_AT + 4096);
        buf.extend_from_slice(&header.encode());
        Ok(NewFile {
            file,
            path: dir.file(temp),
            cipher: FileCipher::new(&data_key, store_id, generation),
            header,
            index: Index::default(),
            end: HEADER_LEN as u64,
            next_seq: 0,
            buf,
        })
    }

    /// Appends `op` as a commit of its own (the whole file becomes visible at once, by
    /// the rename, so its records need no grouping).
    pub fn push(&mut self, op: &Op<'_>) -> Result<(), EngineError> {
        if !op.fits() {
            return Err(EngineError::Invalid("record too large"));
        }
        let start = self.buf.len();
        self.cipher
            .seal_record(self.next_seq, 0, true, op, &mut self.buf);
        let len = (self.buf.len() - start) as u32;
        self.index.apply(self.end, len, op);
        self.end += u64::from(len);
        self.next_seq += 1;
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        self.file.write_all(&self.buf).map_err(io(&self.path))?;
        self.buf.clear();
        Ok(())
    }

    pub fn flush_and_sync(&mut self) -> Result<(), EngineError> {
        self.flush()?;
        self.file.sync_all().map_err(io(&self.path))
    }
}

/// A compaction on its background thread.
pub(super) struct Running {
    handle: Option<JoinHandle<Result<NewFile, EngineError>>>,
    cancel: Arc<AtomicBool>,
    /// Where the old file ended when the snapshot was taken.
    snapshot_end: u64,
}

impl Running {
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Stops the thread and waits for it (its temporary file is the caller's to remove).
    pub fn cancel(self) {
        drop(self);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Starts compacting `e` on a background thread.
pub(super) fn start(e: &mut Engine) -> Result<(), EngineError> {
    let old = e.file.try_clone().map_err(io(&e.path))?;
    let snapshot = e.index.live_in_order();
    let mut nf = NewFile::start(
        &e.dir,
        COMPACT_TEMP,
        &e.kek,
        e.header.store_id,
        e.header.generation + 1,
        e.header.kdf,
        e.header.salt,
    )?;
    let cipher = e.cipher.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    let stop = cancel.clone();
    let path = e.path.clone();
    let handle = std::thread::Builder::new()
        .name("vkey-compact".into())
        .spawn(move || {
            let mut rec = Vec::new();
            for (off, len) in snapshot {
                if stop.load(Ordering::Relaxed) {
                    return Err(EngineError::Invalid("compaction cancelled"));
                }
                rec.resize(len as usize, 0);
                old.read_exact_at(&mut rec, off).map_err(io(&path))?;
                let op_bytes = cipher
                    .open_record(&rec)
                    .ok_or_else(|| EngineError::Corrupt {
                        path: path.clone(),
                        why: format!("the record at offset {off} no longer opens"),
                    })?;
                let op = Op::decode(&op_bytes).ok_or_else(|| EngineError::Corrupt {
                    path: path.clone(),
                    why: format!("the record at offset {off} is not understood"),
                })?;
                nf.push(&op)?;
            }
            nf.flush_and_sync()?;
            Ok(nf)
        })
        .map_err(io(&e.path))?;
    e.compaction = Some(Running {
        handle: Some(handle),
        cancel,
        snapshot_end: e.end,
    });
    Ok(())
}

/// Waits for the thread, copies the commits made since its snapshot into the new file
/// and installs it.
pub(super) fn finish(e: &mut Engine, mut running: Running) -> Result<(), EngineError> {
    let handle = running
        .handle
        .take()
        .ok_or(EngineError::Invalid("compaction already finished"))?;
    let mut nf = handle
        .join()
        .map_err(|_| EngineError::Invalid("the compaction thread panicked"))??;
    let mut off = running.snapshot_end;
    while off < e.end {
        let mut hb = [0u8; RECORD_HEADER_LEN];
        e.file.read_exact_at(&mut hb, off).map_err(io(&e.path))?;
        let h = RecordHeader::decode(&hb).ok_or_else(|| EngineError::Corrupt {
            path: e.path.clone(),
            why: format!("no record header at offset {off}"),
        })?;
        let pt = e.read_at(off, h.len)?;
        let op = Op::decode(&pt).ok_or_else(|| EngineError::Corrupt {
            path: e.path.clone(),
            why: format!("the record at offset {off} is not understood"),
        })?;
        nf.push(&op)?;
        off += u64::from(h.len);
    }
    nf.flush_and_sync()?;
    e.install(nf, COMPACT_TEMP)
}
