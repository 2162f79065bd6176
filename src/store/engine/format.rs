//! The bytes of `vkey-store.dat`, store format 3: a header, then a log of records.
//! Pure encoding and decoding; no I/O and no keys here. Every integer is big-endian.
//!
//! ```text
//! header (HEADER_LEN = 140 bytes)
//!   0  magic "VKEYSTOR"          8
//!   8  format version (3)        u32   read before anything else: a newer one is refused
//!  12  header length (140)       u32
//!  16  store id                  16    random at creation, kept by compaction
//!  32  generation                u64   +1 on every compaction or replacement
//!  40  kdf                       u8    0 = key file, 1 = Argon2id(passphrase)
//!  41  reserved (0)              3
//!  44  Argon2id m_cost (KiB)     u32   zero for a key file
//!  48  Argon2id t_cost           u32
//!  52  Argon2id p_cost           u32
//!  56  salt                      16
//!  72  wrapped data key          60    nonce 12 ‖ AES-256-GCM(data key) 32 ‖ tag 16,
//!                                      under the key-encryption key, AAD = bytes 0..72
//! 132  checksum                  8     SHA-256(bytes 0..132)[..8]: tells a damaged
//!                                      header apart from a wrong passphrase
//!
//! record (RECORD_HEADER_LEN = 20 bytes in the clear, then sealed)
//!   0  length of the record      u32   all of it, this header and the tag included
//!   4  sequence number           u64   0, 1, 2, … in file order, no gaps
//!  12  position in its batch     u16   0 for the first record of a commit
//!  14  last in batch             u8    1 on the commit's last record
//!  15  reserved (0)              u8
//!  16  check                     4     SHA-256(bytes 0..16)[..4], to find records
//!                                      when deciding whether a bad one is a torn tail
//!  20  nonce                     12    random
//!  32  AES-256-GCM(plaintext) ‖ tag    AAD = store id ‖ generation ‖ bytes 0..20
//!
//! plaintext
//!   op u8 (1 put, 2 delete) ‖ kind u8 ‖ key length u8 ‖ key
//!   put only: has group u8 (0/1) ‖ group 32 (if 1) ‖ value (the rest)
//! ```

use sha2::{Digest, Sha256};

pub const MAGIC: [u8; 8] = *b"VKEYSTOR";
/// The store format this vkey writes. Format 2 was the single CBOR file
/// `vkey-store.cbor` (migrated by the store on open).
pub const FORMAT_VERSION: u32 = 3;
pub const HEADER_LEN: usize = 140;
pub const WRAPPED_KEY_LEN: usize = 12 + 32 + 16;
/// The bytes of the header the wrapped data key authenticates.
pub const HEADER_AAD_LEN: usize = 72;
pub const RECORD_HEADER_LEN: usize = 20;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Longest key of a record (its length is one byte).
pub const MAX_KEY: usize = 255;
/// Longest value of a record.
pub const MAX_VALUE: usize = 1 << 20;
/// The smallest and largest record this format can hold.
pub const MIN_RECORD: usize = RECORD_HEADER_LEN + NONCE_LEN + 3 + TAG_LEN;
pub const MAX_RECORD: usize =
    RECORD_HEADER_LEN + NONCE_LEN + 3 + MAX_KEY + 1 + 32 + MAX_VALUE + TAG_LEN;
/// Most bytes one commit may append: a torn write can only ever be this long, which
/// bounds how far past a bad record the reader looks for intact later commits.
pub const MAX_BATCH_BYTES: usize = 2 * MAX_RECORD;
/// Most records in one commit (the position field is 16 bits).
pub const MAX_BATCH_RECORDS: usize = 4096;
/// Argon2id parameters a header may ask for; a tampered header must not make the
/// opener allocate unbounded memory or spin before the passphrase is even checked.
pub const MAX_KDF_MEMORY_KIB: u32 = 4 << 20;
pub const MAX_KDF_TIME: u32 = 64;
pub const MAX_KDF_LANES: u32 = 64;

/// How the key-encryption key is obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kdf {
    /// The random key in `vkey-store.key` beside the store.
    KeyFile,
    /// Argon2id of the passphrase with these parameters and the header's salt.
    Argon2id(KdfParams),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl KdfParams {
    /// RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes
    /// (about 0.2 s on the development machine).
    pub const RECOMMENDED: KdfParams = KdfParams {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 4,
    };
}

/// The decoded header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub store_id: [u8; 16],
    pub generation: u64,
    pub kdf: Kdf,
    pub salt: [u8; 16],
    pub wrapped_key: [u8; WRAPPED_KEY_LEN],
}

/// Why a header was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Not a vkey store file at all (too short or another magic).
    NotAStore,
    /// Written by a newer vkey.
    FutureVersion(u32),
    /// An older format number than 3 in a format-3 file name.
    UnknownVersion(u32),
    /// The checksum or a field is wrong.
    Damaged(&'static str),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

fn array_at<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = b.get(at..at + N) {
        a.copy_from_slice(s);
    }
    a
}

fn sha256_prefix<const N: usize>(parts: &[&[u8]]) -> [u8; N] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    let d = h.finalize();
    array_at(&d, 0)
}

impl Header {
    /// The first 72 bytes: what the wrapped key's AAD covers (everything but itself and
    /// the checksum).
    pub fn aad_bytes(&self) -> [u8; HEADER_AAD_LEN] {
        let mut b = [0u8; HEADER_AAD_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_be_bytes());
        b[16..32].copy_from_slice(&self.store_id);
        b[32..40].copy_from_slice(&self.generation.to_be_bytes());
        let (kind, p) = match self.kdf {
            Kdf::KeyFile => (
                0u8,
                KdfParams {
                    m_cost_kib: 0,
                    t_cost: 0,
                    p_cost: 0,
                },
            ),
            Kdf::Argon2id(p) => (1u8, p),
        };
        b[40] = kind;
        b[44..48].copy_from_slice(&p.m_cost_kib.to_be_bytes());
        b[48..52].copy_from_slice(&p.t_cost.to_be_bytes());
        b[52..56].copy_from_slice(&p.p_cost.to_be_bytes());
        b[56..72].copy_from_slice(&self.salt);
        b
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..HEADER_AAD_LEN].copy_from_slice(&self.aad_bytes());
        b[HEADER_AAD_LEN..HEADER_AAD_LEN + WRAPPED_KEY_LEN].copy_from_slice(&self.wrapped_key);
        let sum: [u8; 8] = sha256_prefix(&[&b[..132]]);
        b[132..].copy_from_slice(&sum);
        b
    }

    /// Reads a header from the first bytes of a file (`b` may be shorter than a header,
    /// or longer). The version is looked at before anything else can fail, so a newer
    /// format is reported as such even if its header is laid out differently.
    pub fn decode(b: &[u8]) -> Result<Header, HeaderError> {
        if b.len() < 12 || b[..8] != MAGIC {
            return Err(HeaderError::NotAStore);
        }
        let version = u32_at(b, 8);
        if version > FORMAT_VERSION {
            return Err(HeaderError::FutureVersion(version));
        }
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnknownVersion(version));
        }
        let b = b
            .get(..HEADER_LEN)
            .ok_or(HeaderError::Damaged("header cut short"))?;
        if u32_at(b, 12) as usize != HEADER_LEN {
            return Err(HeaderError::Damaged("header length"));
        }
        let sum: [u8; 8] = sha256_prefix(&[&b[..132]]);
        if sum[..] != b[132..] {
            return Err(HeaderError::Damaged("header checksum"));
        }
        let params = KdfParams {
            m_cost_kib: u32_at(b, 44),
            t_cost: u32_at(b, 48),
            p_cost: u32_at(b, 52),
        };
        let kdf = match b[40] {
            0 => Kdf::KeyFile,
            1 => {
                if params.m_cost_kib > MAX_KDF_MEMORY_KIB
                    || params.t_cost == 0
                    || params.t_cost > MAX_KDF_TIME
                    || params.p_cost == 0
                    || params.p_cost > MAX_KDF_LANES
                    || params.m_cost_kib < 8 * params.p_cost
                {
                    return Err(HeaderError::Damaged("Argon2id parameters out of range"));
                }
                Kdf::Argon2id(params)
            }
            _ => return Err(HeaderError::Damaged("unknown key derivation")),
        };
        if b[41..44] != [0, 0, 0] {
            return Err(HeaderError::Damaged("reserved bytes"));
        }
        Ok(Header {
            store_id: array_at(b, 16),
            generation: u64_at(b, 32),
            kdf,
            salt: array_at(b, 56),
            wrapped_key: array_at(b, HEADER_AAD_LEN),
        })
    }
}

/// The clear header of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub len: u32,
    pub seq: u64,
    pub batch_pos: u16,
    pub last_in_batch: bool,
}

impl RecordHeader {
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut b = [0u8; RECORD_HEADER_LEN];
        b[0..4].copy_from_slice(&self.len.to_be_bytes());
        b[4..12].copy_from_slice(&self.seq.to_be_bytes());
        b[12..14].copy_from_slice(&self.batch_pos.to_be_bytes());
        b[14] = u8::from(self.last_in_batch);
        let check: [u8; 4] = sha256_prefix(&[&b[..16]]);
        b[16..20].copy_from_slice(&check);
        b
    }

    /// `None` unless the check matches and the fields are in range.
    pub fn decode(b: &[u8]) -> Option<RecordHeader> {
        let b = b.get(..RECORD_HEADER_LEN)?;
        let check: [u8; 4] = sha256_prefix(&[&b[..16]]);
        if check[..] != b[16..20] || b[14] > 1 || b[15] != 0 {
            return None;
        }
        let len = u32_at(b, 0);
        if !(MIN_RECORD..=MAX_RECORD).contains(&(len as usize)) {
            return None;
        }
        let mut pos = [0u8; 2];
        pos.copy_from_slice(&b[12..14]);
        Some(RecordHeader {
            len,
            seq: u64_at(b, 4),
            batch_pos: u16::from_be_bytes(pos),
            last_in_batch: b[14] == 1,
        })
    }

    /// The sequence number of the first record of this record's commit.
    pub fn batch_start(&self) -> u64 {
        self.seq.saturating_sub(u64::from(self.batch_pos))
    }
}

/// A record's associated data: the store, the file's generation and the record's clear
/// header. So a record opens only in its own store, file, position and commit.
pub fn record_aad(
    store_id: &[u8; 16],
    generation: u64,
    hdr: &[u8; RECORD_HEADER_LEN],
) -> [u8; 16 + 8 + RECORD_HEADER_LEN] {
    let mut a = [0u8; 16 + 8 + RECORD_HEADER_LEN];
    a[..16].copy_from_slice(store_id);
    a[16..24].copy_from_slice(&generation.to_be_bytes());
    a[24..].copy_from_slice(hdr);
    a
}

/// What a record says, once opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    Put {
        kind: u8,
        key: &'a [u8],
        group: Option<[u8; 32]>,
        value: &'a [u8],
    },
    Delete {
        kind: u8,
        key: &'a [u8],
    },
}

impl<'a> Op<'a> {
    pub fn kind(&self) -> u8 {
        match self {
            Op::Put { kind, .. } | Op::Delete { kind, .. } => *kind,
        }
    }

    pub fn key(&self) -> &'a [u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
        }
    }

    /// Plaintext length of this operation.
    pub fn encoded_len(&self) -> usize {
        match self {
            Op::Put {
                key, group, value, ..
            } => 3 + key.len() + 1 + if group.is_some() { 32 } else { 0 } + value.len(),
            Op::Delete { key, .. } => 3 + key.len(),
        }
    }

    /// Whether the sizes fit the format.
    pub fn fits(&self) -> bool {
        self.key().len() <= MAX_KEY
            && match self {
                Op::Put { value, .. } => value.len() <= MAX_VALUE,
                Op::Delete { .. } => true,
            }
    }

    /// Appends the plaintext. The caller checked [`Op::fits`].
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let key = self.key();
        let op = match self {
            Op::Put { .. } => 1,
            Op::Delete { .. } => 2,
        };
        out.extend_from_slice(&[op, self.kind(), key.len() as u8]);
        out.extend_from_slice(key);
        if let Op::Put { group, value, .. } = self {
            match group {
                Some(g) => {
                    out.push(1);
                    out.extend_from_slice(g);
                }
                None => out.push(0),
            }
            out.extend_from_slice(value);
        }
    }

    /// Parses an opened record's plaintext (authentic, so a failure here is not a torn
    /// write but a format error).
    pub fn decode(p: &'a [u8]) -> Option<Op<'a>> {
        let (&op, rest) = p.split_first()?;
        let (&kind, rest) = rest.split_first()?;
        let (&key_len, rest) = rest.split_first()?;
        let key = rest.get(..usize::from(key_len))?;
        let rest = rest.get(usize::from(key_len)..)?;
        match op {
            1 => {
                let (&has_group, rest) = rest.split_first()?;
                let (group, value) = match has_group {
                    0 => (None, rest),
                    1 => (Some(array_at::<32>(rest.get(..32)?, 0)), rest.get(32..)?),
                    _ => return None,
                };
                (value.len() <= MAX_VALUE).then_some(Op::Put {
                    kind,
                    key,
                    group,
                    value,
                })
            }
            2 if rest.is_empty() => Some(Op::Delete { kind, key }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            store_id: [1; 16],
            generation: 7,
            kdf: Kdf::Argon2id(KdfParams {
                m_cost_kib: 64,
                t_cost: 1,
                p_cost: 1,
            }),
            salt: [2; 16],
            wrapped_key: [3; WRAPPED_KEY_LEN],
        }
    }

    #[test]
    fn header_round_trip_and_every_flipped_byte_is_caught() {
        let h = header();
        let b = h.encode();
        assert_eq!(Header::decode(&b).unwrap(), h);
        for i in 0..HEADER_LEN {
            let mut t = b;
            t[i] ^= 0x40;
            let e = Header::decode(&t).unwrap_err();
            match i {
                0..8 => assert_eq!(e, HeaderError::NotAStore),
                8..12 => assert!(matches!(
                    e,
                    HeaderError::FutureVersion(_) | HeaderError::UnknownVersion(_)
                )),
                _ => assert!(matches!(e, HeaderError::Damaged(_)), "{i}: {e:?}"),
            }
        }
        for n in 0..HEADER_LEN {
            assert!(Header::decode(&b[..n]).is_err());
        }
    }

    #[test]
    fn future_version_is_reported_before_anything_else() {
        let mut b = header().encode().to_vec();
        b[8..12].copy_from_slice(&4u32.to_be_bytes());
        b.truncate(16);
        assert_eq!(Header::decode(&b), Err(HeaderError::FutureVersion(4)));
    }

    #[test]
    fn tampered_kdf_parameters_are_refused_before_use() {
        let mut h = header();
        h.kdf = Kdf::Argon2id(KdfParams {
            m_cost_kib: u32::MAX,
            t_cost: 1,
            p_cost: 1,
        });
        assert!(matches!(
            Header::decode(&h.encode()),
            Err(HeaderError::Damaged(_))
        ));
    }

    #[test]
    fn record_header_round_trip() {
        let r = RecordHeader {
            len: 100,
            seq: 42,
            batch_pos: 3,
            last_in_batch: true,
        };
        let b = r.encode();
        assert_eq!(RecordHeader::decode(&b), Some(r));
        assert_eq!(r.batch_start(), 39);
        for i in 0..RECORD_HEADER_LEN {
            let mut t = b;
            t[i] ^= 1;
            assert_eq!(RecordHeader::decode(&t), None, "{i}");
        }
    }

    #[test]
    fn op_round_trip_and_garbage() {
        let ops = [
            Op::Put {
                kind: 2,
                key: b"id",
                group: Some([9; 32]),
                value: b"value",
            },
            Op::Put {
                kind: 3,
                key: b"",
                group: None,
                value: b"",
            },
            Op::Delete {
                kind: 2,
                key: &[0xff; 255],
            },
        ];
        for op in ops {
            let mut b = Vec::new();
            op.encode_into(&mut b);
            assert_eq!(b.len(), op.encoded_len());
            assert_eq!(Op::decode(&b), Some(op.clone()));
            for n in 0..b.len() {
                // A cut plaintext is either refused or a shorter put value, never a panic.
                let _ = Op::decode(&b[..n]);
            }
        }
        assert_eq!(Op::decode(&[2, 1, 0, 0]), None);
        assert_eq!(Op::decode(&[3, 1, 0]), None);
        assert_eq!(Op::decode(&[1, 1, 0, 2]), None);
    }
}
