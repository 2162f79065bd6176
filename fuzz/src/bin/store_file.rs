//! The store's files as a start-up reads them from disk: `Store::open` on a directory
//! the input damaged. The first byte chooses what is fuzzed:
//!
//! - even: the format-3 log. A store is built once per process through the real API in
//!   key-file mode (creation, a reset, attestation, credentials of every shape, PIN
//!   changes, counters, a large-blob array, commits of several records); its
//!   `vkey-store.dat` and `vkey-store.key` are the base. The rest of the input is a list
//!   of edits ([`Edit`]): truncations, byte flips, inserted, deleted, copied and appended
//!   bytes, record headers and store headers forged with a correct checksum (the checks
//!   are unkeyed: anyone who can write the file can compute them), a damaged or missing
//!   key file. Bit 1 also leaves a format-2 store beside it (an interrupted migration).
//!   Positions are relative to the start of one of the base's records, so edits land on
//!   record headers. The store is then opened in a fresh directory:
//!   - it returns `Ok` or an error, never panics, hangs or allocates without bound;
//!   - untouched files open, and read back exactly what the API wrote;
//!   - a damaged store that opens holds the state after one of its whole commits (a torn
//!     tail is cut back to a commit, damage with intact commits after it is refused): the
//!     states after every commit of the base are computed once, by opening the base cut
//!     at each commit boundary (read from the documented record layout), and checked
//!     against what the API calls returned;
//!   - the opened store takes a new credential, and reopened holds the same state.
//! - odd: a format-2 store to migrate. Bit 1 says whether `vkey-counters.log` exists;
//!   then a big-endian u16 length L, L bytes of `vkey-store.cbor`, and the rest is the
//!   counter log. If the migration succeeds the format-2 files are gone and a reopen
//!   reads the same state.
//!
//! Every input gets its own directory (mode 0700, removed afterwards) under /dev/shm
//! when there is one (commits fsync; on tmpfs that costs nothing), else the temporary
//! directory. The base store's keys and nonces are random per process, its record sizes
//! and boundaries are not, so an input replays the same way.
#![no_main]

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use vkey::crypto::{Algorithm, sha256};
use vkey::store::{
    AttestationMaterial, Credential, OpenOptions, PinStatus, PrivateKey, RpInfo, Store,
};

const STORE_FILE: &str = "vkey-store.dat";
const KEY_FILE: &str = "vkey-store.key";
const V2_STORE_FILE: &str = "vkey-store.cbor";
const V2_COUNTER_FILE: &str = "vkey-counters.log";
/// The documented layout of `vkey-store.dat` (src/store/engine/format.rs).
const HEADER_LEN: usize = 140;
const HEADER_CHECKSUM_AT: usize = 132;
const RECORD_HEADER_LEN: usize = 20;
/// How much an input may grow the store file. Enough for thousands of forged record
/// headers (past the engine's bound on the torn-tail check); not the 2 MiB of the longest
/// tail it examines: at that size the check's SHA-256 per byte offset made the target run
/// 30 inputs/s instead of 580 (the engine's tests cover that bound).
const MAX_GROWTH: usize = 64 << 10;
/// The largest record the format allows (format.rs MAX_RECORD) and the smallest.
const MAX_RECORD: usize = 20 + 12 + 3 + 255 + 1 + 32 + (1 << 20) + 16;
const MIN_RECORD: usize = 20 + 12 + 3 + 16;
/// The PIN the base store is given: LEFT(SHA-256(PIN), 16).
const PIN: &[u8] = b"fuzz-pin-123";

// ---------------------------------------------------------------------------------
// Scratch directories.

fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly()) {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A new empty directory (0700), removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        static ROOT: OnceLock<PathBuf> = OnceLock::new();
        let root = ROOT.get_or_init(scratch_root);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = root.join(format!("vkey-fuzz-store-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&p)
            .expect("a scratch directory");
        Scratch(p)
    }

    /// Writes `name` (0600, as vkey writes its own files).
    fn write(&self, name: &str, bytes: &[u8]) {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.0.join(name))
            .expect("a scratch file");
        f.write_all(bytes).expect("a scratch file written");
    }

    fn has(&self, name: &str) -> bool {
        self.0.join(name).symlink_metadata().is_ok()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn open(dir: &Path) -> Result<Store, vkey::store::StoreError> {
    // Key-file mode: no Argon2id, so an execution takes milliseconds.
    Store::open(dir, &OpenOptions::default())
}

// ---------------------------------------------------------------------------------
// What a store holds, as far as the domain API shows it.

/// A credential as compared: every field (the secret is left out of Debug).
type Cred = (String, Option<[u8; 32]>);

fn cred_of(c: &Credential) -> Cred {
    (format!("{c:?}"), c.private_key.as_ref().map(|k| *k.secret))
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    serial: String,
    wrapping_key: [u8; 32],
    attestation: Option<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    credentials: Vec<Cred>,
    count: usize,
    rps: Vec<RpInfo>,
    /// The discoverable credential IDs of each RP of `rps`, newest first.
    by_rp: Vec<Vec<Vec<u8>>>,
    /// For the probe IDs and every listed credential: lookup by ID and counter.
    lookups: Vec<(Vec<u8>, Option<Cred>, u32)>,
    pin: PinStatus,
    pin_matches: bool,
    min_pin_length_for: Option<u8>,
    large_blobs: Vec<u8>,
}

/// IDs looked up in every state: those the base store ever used and the one every
/// opened store is given.
const PROBE_IDS: &[&[u8]] = &[
    b"cred-0",
    b"cred-1",
    b"cred-2",
    b"cred-3",
    b"cred-4",
    b"cred-5",
    b"cred-new",
];

fn state(s: &Store) -> State {
    let creds = s.credentials();
    let rps = s.rps();
    let by_rp = rps
        .iter()
        .map(|rp| {
            s.discoverable_for_rp(&sha256(rp.id.as_bytes()))
                .into_iter()
                .map(|c| c.id)
                .collect()
        })
        .collect();
    let mut ids: Vec<Vec<u8>> = PROBE_IDS.iter().map(|i| i.to_vec()).collect();
    ids.extend(creds.iter().map(|c| c.id.clone()));
    let lookups = ids
        .into_iter()
        .map(|id| {
            let c = s.get_credential(&id).as_ref().map(cred_of);
            let n = s.counter(&id);
            (id, c, n)
        })
        .collect();
    State {
        serial: s.serial().to_string(),
        wrapping_key: *s.wrapping_key(),
        attestation: s
            .attestation()
            .map(|a| (a.batch_key_pkcs8.to_vec(), a.batch_cert_der, a.ca_cert_der)),
        credentials: creds.iter().map(cred_of).collect(),
        count: s.credential_count(),
        rps,
        by_rp,
        lookups,
        pin: s.pin_status(),
        pin_matches: s.pin_hash_matches(&pin_hash()),
        min_pin_length_for: s.min_pin_length_for("a.example"),
        large_blobs: s.large_blob_array().to_vec(),
    }
}

fn pin_hash() -> [u8; 16] {
    let mut h = [0u8; 16];
    h.copy_from_slice(&sha256(PIN)[..16]);
    h
}

// ---------------------------------------------------------------------------------
// The base store.

fn cred(id: &str, rp: &str, user: &[u8], discoverable: bool) -> Credential {
    Credential {
        id: id.as_bytes().to_vec(),
        rp_id: rp.into(),
        rp_name: Some(format!("{rp} name")),
        user_id: user.to_vec(),
        user_name: Some("alice".into()),
        user_display_name: None,
        cred_protect: 1,
        discoverable,
        private_key: None,
        backup_eligible: None,
        backup_state: None,
        hmac_secret: false,
        large_blob_key: false,
        cred_blob: Vec::new(),
    }
}

struct Base {
    dat: Vec<u8>,
    key: Vec<u8>,
    /// Where each record of `dat` starts (edit positions are relative to these).
    records: Vec<usize>,
    /// The state after each whole-commit prefix of `dat` that opens.
    prefixes: Vec<State>,
    /// The state the API left.
    last: State,
}

/// Offsets of every record and of every commit's end, from the record layout: length
/// u32 at 0, last-in-batch at 14.
fn layout(dat: &[u8]) -> (Vec<usize>, Vec<usize>) {
    let (mut records, mut commits) = (Vec::new(), vec![HEADER_LEN]);
    let mut off = HEADER_LEN;
    while off + RECORD_HEADER_LEN <= dat.len() {
        records.push(off);
        let len = u32::from_be_bytes(dat[off..off + 4].try_into().expect("4 bytes")) as usize;
        let last = dat[off + 14] == 1;
        off += len;
        if last {
            commits.push(off);
        }
    }
    assert_eq!(off, dat.len(), "the base store file parses as records");
    (records, commits)
}

fn build_base() -> Base {
    let dir = Scratch::new();
    let mut s = open(&dir.0).expect("a new store");
    let mut api_states = Vec::new();
    s.put_credential(cred("cred-0", "a.example", b"u0", true))
        .expect("put");
    // A reset writes a new file (generation 1) holding the fixed part only.
    s.reset().expect("reset");
    api_states.push(state(&s));
    let attestation = AttestationMaterial {
        batch_key_pkcs8: vec![0x30; 40].into(),
        batch_cert_der: vec![0x31; 60],
        ca_cert_der: vec![0x32; 50],
    };
    s.set_attestation(attestation, "-----BEGIN CERTIFICATE-----\n")
        .expect("attestation");
    api_states.push(state(&s));
    let mut steps: Vec<Box<dyn Fn(&mut Store)>> = vec![
        Box::new(|s| {
            s.put_credential(cred("cred-1", "a.example", b"u1", true))
                .expect("put")
        }),
        Box::new(|s| {
            let mut c = cred("cred-2", "a.example", b"u2", true);
            c.user_display_name = Some("Bob B.".into());
            c.cred_protect = 3;
            s.put_credential(c).expect("put")
        }),
        Box::new(|s| {
            let mut c = cred("cred-3", "b.example", b"u3", false);
            c.private_key = Some(PrivateKey {
                algorithm: Algorithm::EdDsa,
                secret: [7u8; 32].into(),
            });
            s.put_credential(c).expect("put")
        }),
        Box::new(|s| s.set_pin(&pin_hash(), 12).expect("set_pin")),
        Box::new(|s| assert!(s.bump_counter(b"cred-1").expect("bump") > 0)),
        Box::new(|s| assert!(s.bump_counter(b"cred-1").expect("bump") > 0)),
        Box::new(|s| s.set_counter(b"cred-3", 7).expect("set_counter")),
        Box::new(|s| s.set_large_blob_array(vec![0x80; 33]).expect("large blobs")),
        Box::new(|s| {
            assert!(
                s.update_user(b"cred-2", Some("bob".into()), None)
                    .expect("update_user")
            )
        }),
        // Same RP and user as cred-1: one commit deletes it and puts this one.
        Box::new(|s| {
            s.put_credential(cred("cred-4", "a.example", b"u1", true))
                .expect("put")
        }),
        Box::new(|s| assert!(s.delete_credential(b"cred-2").expect("delete"))),
        Box::new(|s| assert_eq!(s.record_pin_attempt().expect("pin attempt"), 7)),
        Box::new(|s| {
            // The PIN has 12 code points: no change forced.
            assert!(
                !s.set_min_pin_length(6, Some(vec!["a.example".into()]), false)
                    .expect("min PIN length")
            )
        }),
        Box::new(|s| {
            let mut c = cred("cred-5", "c.example", &[0xEE; 64], true);
            c.cred_blob = vec![0x42; 32];
            c.hmac_secret = true;
            c.large_blob_key = true;
            c.backup_eligible = Some(true);
            c.backup_state = Some(false);
            s.put_credential(c).expect("put")
        }),
        Box::new(|s| assert!(s.bump_counter(b"cred-5").expect("bump") > 0)),
    ];
    for step in steps.drain(..) {
        step(&mut s);
        api_states.push(state(&s));
    }
    let last = state(&s);
    drop(s);
    let dat = fs::read(dir.0.join(STORE_FILE)).expect("the store file");
    let key = fs::read(dir.0.join(KEY_FILE)).expect("the key file");
    let (records, commits) = layout(&dat);
    let mut prefixes: Vec<State> = Vec::new();
    for &end in &commits {
        let d = Scratch::new();
        d.write(STORE_FILE, &dat[..end]);
        d.write(KEY_FILE, &key);
        // A prefix that ends before the device record does not open (no device).
        if let Ok(s) = open(&d.0) {
            let st = state(&s);
            if !prefixes.contains(&st) {
                prefixes.push(st);
            }
        }
    }
    // The oracle must agree with the API: every state it left is a commit prefix, and
    // the whole file is the last.
    for (i, st) in api_states.iter().enumerate() {
        assert!(
            prefixes.contains(st),
            "API state {i} is not a commit prefix"
        );
    }
    assert_eq!(prefixes.last(), Some(&last));
    Base {
        dat,
        key,
        records,
        prefixes,
        last,
    }
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(build_base)
}

// ---------------------------------------------------------------------------------
// Edits.

/// Reads the input; past its end every number is 0.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }

    /// A position: a record of the base (by index) and a signed distance from its start.
    fn pos(&mut self, records: &[usize]) -> usize {
        let r = records
            .get(usize::from(self.u8()) % records.len().max(1))
            .copied()
            .unwrap_or(HEADER_LEN);
        let delta = i64::from(self.u16() as i16);
        (r as i64 + delta).max(0) as usize
    }
}

/// The edits an input can make, by the input's op byte modulo their number.
#[derive(Clone, Copy)]
enum Edit {
    Truncate,
    Flip,
    Append,
    Insert,
    Remove,
    CopyWithin,
    AppendCopy,
    ForgeRecordHeader,
    ForgeRecordHeaderRun,
    ForgeHeader,
    TruncateKey,
    FlipKey,
    RemoveKey,
}

const EDITS: [Edit; 13] = [
    Edit::Truncate,
    Edit::Flip,
    Edit::Append,
    Edit::Insert,
    Edit::Remove,
    Edit::CopyWithin,
    Edit::AppendCopy,
    Edit::ForgeRecordHeader,
    Edit::ForgeRecordHeaderRun,
    Edit::ForgeHeader,
    Edit::TruncateKey,
    Edit::FlipKey,
    Edit::RemoveKey,
];

/// Writes `bytes` at `at`, growing `v` with zeros if needed.
fn write_at(v: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    if v.len() < at + bytes.len() {
        v.resize(at + bytes.len(), 0);
    }
    v[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A record header with a correct check (format.rs: SHA-256(bytes 0..16)[..4]).
fn record_header(len: u32, seq: u64, pos: u16, last: u8, reserved: u8) -> [u8; 20] {
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0..4].copy_from_slice(&len.to_be_bytes());
    h[4..12].copy_from_slice(&seq.to_be_bytes());
    h[12..14].copy_from_slice(&pos.to_be_bytes());
    h[14] = last;
    h[15] = reserved;
    let check = sha256(&h[..16]);
    h[16..].copy_from_slice(&check[..4]);
    h
}

fn apply(edit: Edit, inp: &mut Input<'_>, b: &Base, dat: &mut Vec<u8>, key: &mut Option<Vec<u8>>) {
    let cap = b.dat.len() + MAX_GROWTH;
    match edit {
        Edit::Truncate => {
            let at = inp.pos(&b.records);
            dat.truncate(at);
        }
        Edit::Flip => {
            let at = inp.pos(&b.records);
            let x = inp.u8();
            if let Some(v) = dat.get_mut(at) {
                *v ^= x;
            }
        }
        Edit::Append => {
            let n = usize::from(inp.u8());
            let bytes = inp.bytes(n);
            if dat.len() + bytes.len() <= cap {
                dat.extend_from_slice(bytes);
            }
        }
        Edit::Insert => {
            let at = inp.pos(&b.records).min(dat.len());
            let n = usize::from(inp.u8());
            let bytes = inp.bytes(n);
            if dat.len() + bytes.len() <= cap {
                dat.splice(at..at, bytes.iter().copied());
            }
        }
        Edit::Remove => {
            let at = inp.pos(&b.records).min(dat.len());
            let n = usize::from(inp.u16());
            let end = at.saturating_add(n).min(dat.len());
            dat.drain(at..end);
        }
        Edit::CopyWithin | Edit::AppendCopy => {
            let src = inp.pos(&b.records).min(dat.len());
            let n = usize::from(inp.u16());
            let end = src.saturating_add(n).min(dat.len());
            let chunk = dat[src..end].to_vec();
            let dst = match edit {
                Edit::CopyWithin => inp.pos(&b.records),
                _ => dat.len(),
            };
            if dst.saturating_add(chunk.len()) <= cap {
                write_at(dat, dst, &chunk);
            }
        }
        Edit::ForgeRecordHeader => {
            let at = inp.pos(&b.records);
            let len = u32::from_be_bytes([0, inp.u8(), inp.u8(), inp.u8()]);
            let seq = match inp.u16() {
                0xFFFF => u64::MAX,
                s => u64::from(s),
            };
            let pos = inp.u16();
            let (last, reserved) = (inp.u8(), inp.u8());
            // Mostly well formed: a flag byte of 0/1 and a zero reserved byte.
            let (last, reserved) = if reserved & 0x80 == 0 {
                (last & 1, 0)
            } else {
                (last, reserved)
            };
            if at + RECORD_HEADER_LEN <= cap {
                write_at(dat, at, &record_header(len, seq, pos, last, reserved));
            }
        }
        Edit::ForgeRecordHeaderRun => {
            // Many headers with a correct check, each claiming to run to the end of the
            // file: what a hostile file can do to the torn-tail check.
            let at = inp.pos(&b.records);
            let count = usize::from(inp.u16());
            let stride = usize::from(inp.u8()).max(RECORD_HEADER_LEN);
            let seq = u64::from(inp.u16());
            let end = at
                .saturating_add(count.saturating_mul(stride))
                .min(cap)
                .max(dat.len());
            dat.resize(end, 0);
            let mut y = at;
            while y + RECORD_HEADER_LEN <= end {
                let len = (end - y).clamp(MIN_RECORD, MAX_RECORD) as u32;
                write_at(dat, y, &record_header(len, seq, 0, 1, 0));
                y += stride;
            }
        }
        Edit::ForgeHeader => {
            let at = usize::from(inp.u8()) % HEADER_CHECKSUM_AT;
            let n = usize::from(inp.u8() % 16);
            let bytes = inp.bytes(n);
            if dat.len() >= HEADER_LEN {
                let end = (at + bytes.len()).min(HEADER_CHECKSUM_AT);
                dat[at..end].copy_from_slice(&bytes[..end - at]);
                let sum = sha256(&dat[..HEADER_CHECKSUM_AT]);
                dat[HEADER_CHECKSUM_AT..HEADER_LEN].copy_from_slice(&sum[..8]);
            }
        }
        Edit::TruncateKey => {
            let at = usize::from(inp.u8());
            if let Some(k) = key {
                k.truncate(at);
            }
        }
        Edit::FlipKey => {
            let (at, x) = (usize::from(inp.u8()), inp.u8());
            if let Some(v) = key.as_mut().and_then(|k| k.get_mut(at)) {
                *v ^= x;
            }
        }
        Edit::RemoveKey => *key = None,
    }
}

// ---------------------------------------------------------------------------------
// The two cases.

/// Gives an opened store a new credential, then checks that a reopen reads the same.
fn write_and_reopen(dir: &Scratch, mut s: Store) {
    s.put_credential(cred("cred-new", "a.example", b"new", true))
        .expect("an opened store takes a commit");
    let before = state(&s);
    assert!(
        before
            .lookups
            .iter()
            .any(|(id, c, _)| id == b"cred-new" && c.is_some())
    );
    drop(s);
    let s = open(&dir.0).expect("a store vkey just wrote reopens");
    assert_eq!(
        state(&s),
        before,
        "reopened store differs from what was written"
    );
}

fn format3(flags: u8, data: &[u8]) {
    let b = base();
    let mut dat = b.dat.clone();
    let mut key = Some(b.key.clone());
    let mut inp = Input(data);
    while !inp.is_empty() {
        let edit = EDITS[usize::from(inp.u8()) % EDITS.len()];
        apply(edit, &mut inp, b, &mut dat, &mut key);
    }
    let intact = dat == b.dat && key.as_deref() == Some(&b.key[..]);
    let dir = Scratch::new();
    dir.write(STORE_FILE, &dat);
    if let Some(k) = &key {
        dir.write(KEY_FILE, k);
    }
    let leftover_v2 = flags & 2 != 0;
    if leftover_v2 {
        dir.write(V2_STORE_FILE, b"\xa0");
        dir.write(V2_COUNTER_FILE, &[0u8; 20]);
    }
    let s = match open(&dir.0) {
        Ok(s) => s,
        Err(e) => {
            assert!(!intact, "the untouched store does not open: {e}");
            return;
        }
    };
    let st = state(&s);
    if intact {
        assert_eq!(st, b.last, "the untouched store reads back differently");
    } else {
        assert!(
            b.prefixes.contains(&st),
            "a damaged store opened with a state no commit of it left: {st:#?}"
        );
    }
    if leftover_v2 {
        assert!(
            !dir.has(V2_STORE_FILE) && !dir.has(V2_COUNTER_FILE),
            "format-2 files left beside an opened format-3 store"
        );
    }
    write_and_reopen(&dir, s);
}

fn format2(flags: u8, data: &[u8]) {
    let mut inp = Input(data);
    let len = usize::from(inp.u16());
    let cbor = inp.bytes(len);
    let counters = inp.bytes(usize::MAX);
    let dir = Scratch::new();
    dir.write(V2_STORE_FILE, cbor);
    if flags & 2 != 0 {
        dir.write(V2_COUNTER_FILE, counters);
    }
    let Ok(s) = open(&dir.0) else {
        return;
    };
    assert!(
        !dir.has(V2_STORE_FILE) && !dir.has(V2_COUNTER_FILE),
        "format-2 files left after a migration"
    );
    assert!(dir.has(STORE_FILE) && dir.has(KEY_FILE));
    let before = state(&s);
    drop(s);
    let s = open(&dir.0).expect("a migrated store reopens");
    assert_eq!(
        state(&s),
        before,
        "a migrated store reads differently after reopen"
    );
    write_and_reopen(&dir, s);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        format3(mode, rest);
    } else {
        format2(mode, rest);
    }
});
