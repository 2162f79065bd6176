//! Encryption at rest. Two levels of keys:
//!
//! - the key-encryption key (KEK): Argon2id of the passphrase with the header's salt and
//!   parameters, or the random key of `vkey-store.key`;
//! - the data key: random per file (new at every compaction and replacement), stored in
//!   the header wrapped by the KEK with AES-256-GCM whose AAD is the rest of the header.
//!   Unwrapping it is the key check: a wrong passphrase fails there, before any record is
//!   read, and nothing is changed.
//!
//! Each record is AES-256-GCM under the data key with a random 96-bit nonce. A file holds
//! a bounded number of records (compaction starts a new file with a new data key long
//! before 2^32), so random nonces stay far inside GCM's limits.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use rand::Rng;
use zeroize::Zeroizing;

use super::format::{self, KdfParams, NONCE_LEN, RECORD_HEADER_LEN, TAG_LEN, WRAPPED_KEY_LEN};

/// How the store is unlocked.
pub enum Unlock {
    /// The random key in the key file beside the store.
    KeyFile,
    /// A passphrase (`--passphrase-file` / `VKEY_PASSPHRASE`).
    Passphrase(Zeroizing<Vec<u8>>),
}

/// A 256-bit key, wiped when dropped.
pub type Key = Zeroizing<[u8; 32]>;

pub fn random_key() -> Key {
    let mut k = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(&mut *k);
    k
}

pub fn random_array<const N: usize>() -> [u8; N] {
    let mut a = [0u8; N];
    rand::rng().fill_bytes(&mut a);
    a
}

/// Argon2id(passphrase, salt) with `params`: the KEK of a passphrase store.
pub fn derive_kek(passphrase: &[u8], salt: &[u8; 16], params: KdfParams) -> Result<Key, String> {
    let p = argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
        .map_err(|e| format!("Argon2id parameters: {e}"))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut kek = Zeroizing::new([0u8; 32]);
    a.hash_password_into(passphrase, salt, &mut *kek)
        .map_err(|e| format!("Argon2id: {e}"))?;
    Ok(kek)
}

/// Wraps `data_key` under `kek`, bound to the header bytes `aad`.
pub fn wrap_key(kek: &Key, data_key: &Key, aad: &[u8]) -> [u8; WRAPPED_KEY_LEN] {
    let nonce: [u8; NONCE_LEN] = random_array();
    let mut out = [0u8; WRAPPED_KEY_LEN];
    out[..NONCE_LEN].copy_from_slice(&nonce);
    out[NONCE_LEN..NONCE_LEN + 32].copy_from_slice(&data_key[..]);
    let cipher = Aes256Gcm::new((&**kek).into());
    // In-place encryption of 32 bytes cannot exceed GCM's length limit.
    let tag = cipher
        .encrypt_inout_detached(
            &Nonce::from(nonce),
            aad,
            (&mut out[NONCE_LEN..NONCE_LEN + 32]).into(),
        )
        .unwrap_or_default();
    out[NONCE_LEN + 32..].copy_from_slice(&tag);
    out
}

/// The data key, if `kek` is the right key and the header is the one it was wrapped with.
pub fn unwrap_key(kek: &Key, wrapped: &[u8; WRAPPED_KEY_LEN], aad: &[u8]) -> Option<Key> {
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&wrapped[NONCE_LEN..NONCE_LEN + 32]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&wrapped[..NONCE_LEN]);
    let tag = Tag::try_from(&wrapped[NONCE_LEN + 32..]).ok()?;
    let cipher = Aes256Gcm::new((&**kek).into());
    cipher
        .decrypt_inout_detached(&Nonce::from(nonce), aad, (&mut key[..]).into(), &tag)
        .ok()?;
    Some(key)
}

/// The record cipher of one file: its data key and what binds records to the file.
#[derive(Clone)]
pub struct FileCipher {
    cipher: Aes256Gcm,
    store_id: [u8; 16],
    generation: u64,
}

impl FileCipher {
    pub fn new(data_key: &Key, store_id: [u8; 16], generation: u64) -> FileCipher {
        FileCipher {
            cipher: Aes256Gcm::new((&**data_key).into()),
            store_id,
            generation,
        }
    }

    /// Appends a whole record (clear header, nonce, ciphertext, tag) for `op` to `out`.
    pub fn seal_record(
        &self,
        seq: u64,
        batch_pos: u16,
        last_in_batch: bool,
        op: &format::Op<'_>,
        out: &mut Vec<u8>,
    ) {
        let body = op.encoded_len();
        let len = RECORD_HEADER_LEN + NONCE_LEN + body + TAG_LEN;
        let hdr = format::RecordHeader {
            len: len as u32,
            seq,
            batch_pos,
            last_in_batch,
        }
        .encode();
        let start = out.len();
        out.reserve(len);
        out.extend_from_slice(&hdr);
        let nonce: [u8; NONCE_LEN] = random_array();
        out.extend_from_slice(&nonce);
        let pt_start = out.len();
        op.encode_into(out);
        let aad = format::record_aad(&self.store_id, self.generation, &hdr);
        // A record is at most MAX_RECORD bytes: far below GCM's limit.
        let tag = self
            .cipher
            .encrypt_inout_detached(&Nonce::from(nonce), &aad, (&mut out[pt_start..]).into())
            .unwrap_or_default();
        out.extend_from_slice(&tag);
        debug_assert_eq!(out.len() - start, len);
    }

    /// Opens a whole record (`rec` starts at its clear header and is exactly its
    /// length); the plaintext, or `None` if it is not authentic.
    pub fn open_record(&self, rec: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let hdr: [u8; RECORD_HEADER_LEN] = rec.get(..RECORD_HEADER_LEN)?.try_into().ok()?;
        let nonce: [u8; NONCE_LEN] = rec
            .get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + NONCE_LEN)?
            .try_into()
            .ok()?;
        let body = rec.get(RECORD_HEADER_LEN + NONCE_LEN..)?;
        let split = body.len().checked_sub(TAG_LEN)?;
        let (ct, tag) = body.split_at(split);
        let tag = Tag::try_from(tag).ok()?;
        let mut pt = Zeroizing::new(ct.to_vec());
        let aad = format::record_aad(&self.store_id, self.generation, &hdr);
        self.cipher
            .decrypt_inout_detached(&Nonce::from(nonce), &aad, (&mut pt[..]).into(), &tag)
            .ok()?;
        Some(pt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::format::Op;

    #[test]
    fn wrapped_key_opens_only_with_its_kek_and_header() {
        let kek = random_key();
        let dk = random_key();
        let w = wrap_key(&kek, &dk, b"header");
        assert_eq!(*unwrap_key(&kek, &w, b"header").unwrap(), *dk);
        assert!(unwrap_key(&random_key(), &w, b"header").is_none());
        assert!(unwrap_key(&kek, &w, b"headex").is_none());
        let mut t = w;
        t[20] ^= 1;
        assert!(unwrap_key(&kek, &t, b"header").is_none());
    }

    #[test]
    fn argon2id_is_deterministic_per_salt() {
        let p = KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let a = derive_kek(b"pass", &[1; 16], p).unwrap();
        assert_eq!(*a, *derive_kek(b"pass", &[1; 16], p).unwrap());
        assert_ne!(*a, *derive_kek(b"pass", &[2; 16], p).unwrap());
        assert_ne!(*a, *derive_kek(b"pasS", &[1; 16], p).unwrap());
    }

    #[test]
    fn record_is_bound_to_store_generation_and_position() {
        let dk = random_key();
        let c = FileCipher::new(&dk, [1; 16], 5);
        let op = Op::Put {
            kind: 2,
            key: b"k",
            group: None,
            value: b"secret value",
        };
        let mut rec = Vec::new();
        c.seal_record(9, 0, true, &op, &mut rec);
        assert!(!rec.windows(6).any(|w| w == b"secret"));
        let pt = c.open_record(&rec).unwrap();
        assert_eq!(Op::decode(&pt), Some(op.clone()));
        assert!(FileCipher::new(&dk, [2; 16], 5).open_record(&rec).is_none());
        assert!(FileCipher::new(&dk, [1; 16], 6).open_record(&rec).is_none());
        // Another sequence number in the clear header (with a valid check) fails.
        let mut moved = rec.clone();
        let mut h = format::RecordHeader::decode(&moved).unwrap();
        h.seq = 10;
        moved[..RECORD_HEADER_LEN].copy_from_slice(&h.encode());
        assert!(c.open_record(&moved).is_none());
        for i in RECORD_HEADER_LEN..rec.len() {
            let mut t = rec.clone();
            t[i] ^= 0x80;
            assert!(c.open_record(&t).is_none(), "{i}");
        }
    }
}
