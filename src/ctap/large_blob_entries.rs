//! The platform's side of the serialized large-blob array (CTAP 2.1 §6.10.3), for the
//! control interface: it shows the blob of a credential (CDP `Credential.largeBlob`)
//! and imports one, as a platform would through authenticatorLargeBlobs.
//!
//! The array is a CBOR array of entries followed by LEFT(SHA-256(array), 16). An entry
//! is a map {0x01 ciphertext, 0x02 nonce (12 bytes), 0x03 origSize}: the blob,
//! DEFLATE-compressed (RFC 1951, raw), encrypted with AES-256-GCM under the credential's
//! largeBlobKey with the associated data "blob" ‖ uint64LE(origSize). A reader takes the
//! first entry that opens under its key and inflates to exactly origSize bytes; entries
//! it cannot read are kept untouched.

use ciborium::Value;
use zeroize::Zeroizing;

use super::cbor;
use super::large_blobs::{
    INITIAL_ARRAY, MAX_SERIALIZED_LARGE_BLOB_ARRAY, verified_array, with_trailer,
};
use crate::crypto::seal;

const NONCE_LEN: usize = 12;
/// The largest blob we inflate. A 16 KiB array could carry a blob that inflates a
/// thousandfold; a control request must not make the key hold that much.
pub const MAX_BLOB_LEN: usize = 1024 * 1024;
/// DEFLATE level: miniz's default (6) trades little size for much speed at 9.
const LEVEL: u8 = 6;

/// The entries of a serialized array. An array whose trailer does not match, or that
/// is not a CBOR array, reads as the initial (empty) one, as §6.10.3 tells platforms.
pub fn entries(serialized: &[u8]) -> Vec<Value> {
    match verified_array(serialized).map(cbor::decode) {
        Some(Ok(Value::Array(items))) => items,
        _ => Vec::new(),
    }
}

/// `entries` as a serialized array with its trailer.
pub fn serialize(entries: &[Value]) -> Vec<u8> {
    if entries.is_empty() {
        return INITIAL_ARRAY.to_vec();
    }
    with_trailer(cbor::encode(&Value::Array(entries.to_vec())))
}

fn associated_data(orig_size: u64) -> [u8; 12] {
    let mut aad = [0u8; 12];
    aad[..4].copy_from_slice(b"blob");
    aad[4..].copy_from_slice(&orig_size.to_le_bytes());
    aad
}

/// The blob in `entry` if it opens under `key`: `None` for an entry of another
/// credential, a malformed one, or one that does not inflate to its origSize.
pub fn open_entry(key: &[u8; 32], entry: &Value) -> Option<Zeroizing<Vec<u8>>> {
    let Value::Map(members) = entry else {
        return None;
    };
    let member = |n: u8| {
        members
            .iter()
            .find(|(k, _)| k.as_integer() == Some(n.into()))
            .map(|(_, v)| v)
    };
    let ciphertext = member(1)?.as_bytes()?;
    let nonce = member(2)?.as_bytes().filter(|n| n.len() == NONCE_LEN)?;
    let orig_size = u64::try_from(member(3)?.as_integer()?).ok()?;
    let limit = usize::try_from(orig_size)
        .ok()
        .filter(|&n| n <= MAX_BLOB_LEN)?;
    let mut sealed = Vec::with_capacity(nonce.len() + ciphertext.len());
    sealed.extend_from_slice(nonce);
    sealed.extend_from_slice(ciphertext);
    let compressed = Zeroizing::new(seal::open(key, &associated_data(orig_size), &sealed)?);
    let blob = match miniz_oxide::inflate::decompress_to_vec_with_limit(&compressed, limit) {
        Ok(b) => Zeroizing::new(b),
        Err(mut e) => {
            zeroize::Zeroize::zeroize(&mut e.output);
            return None;
        }
    };
    (blob.len() == limit).then_some(blob)
}

/// A new entry holding `blob` for the credential whose largeBlobKey is `key`.
pub fn seal_entry(key: &[u8; 32], blob: &[u8]) -> Value {
    let orig_size = blob.len() as u64;
    let compressed = Zeroizing::new(miniz_oxide::deflate::compress_to_vec(blob, LEVEL));
    let sealed = seal::seal(key, &associated_data(orig_size), &compressed);
    // seal() returns nonce ‖ ciphertext ‖ tag; the entry keeps the nonce apart.
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN.min(sealed.len()));
    Value::Map(vec![
        (Value::Integer(1.into()), Value::Bytes(ciphertext.to_vec())),
        (Value::Integer(2.into()), Value::Bytes(nonce.to_vec())),
        (Value::Integer(3.into()), Value::Integer(orig_size.into())),
    ])
}

/// The blob stored for `key` in the parsed array `entries`: the first entry that opens.
pub fn find(entries: &[Value], key: &[u8; 32]) -> Option<Zeroizing<Vec<u8>>> {
    entries.iter().find_map(|e| open_entry(key, e))
}

/// The serialized array would be `len` bytes, more than getInfo's
/// maxSerializedLargeBlobArray.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the large-blob array would be {len} bytes, more than this key's maxSerializedLargeBlobArray ({MAX_SERIALIZED_LARGE_BLOB_ARRAY} bytes, getInfo 0x0B)"
)]
pub struct TooLarge {
    pub len: usize,
}

/// `serialized` with the blob for `key` replaced by `blob` (`None`: removed), as a
/// platform writes it: entries of other credentials stay, the credential's own ones go,
/// the new one is appended.
pub fn put(serialized: &[u8], key: &[u8; 32], blob: Option<&[u8]>) -> Result<Vec<u8>, TooLarge> {
    let mut list = entries(serialized);
    list.retain(|e| open_entry(key, e).is_none());
    if let Some(b) = blob {
        list.push(seal_entry(key, b));
    }
    let out = serialize(&list);
    if out.len() > MAX_SERIALIZED_LARGE_BLOB_ARRAY {
        return Err(TooLarge { len: out.len() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_entries_open_only_under_their_key() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let blob = b"certificate ".repeat(100);
        let array = put(&INITIAL_ARRAY, &k1, Some(&blob)).unwrap();
        assert!(array.len() < blob.len(), "compressed");
        let array = put(&array, &k2, Some(b"")).unwrap();
        let list = entries(&array);
        assert_eq!(list.len(), 2);
        assert_eq!(find(&list, &k1).unwrap().as_slice(), &blob[..]);
        assert_eq!(find(&list, &k2).unwrap().as_slice(), b"");
        assert!(find(&list, &[3u8; 32]).is_none());
        // Replacing k1's blob keeps k2's and leaves one entry for k1.
        let array = put(&array, &k1, Some(b"new")).unwrap();
        let list = entries(&array);
        assert_eq!(list.len(), 2);
        assert_eq!(find(&list, &k1).unwrap().as_slice(), b"new");
        let array = put(&array, &k1, None).unwrap();
        assert_eq!(entries(&array).len(), 1);
        let array = put(&array, &k2, None).unwrap();
        assert_eq!(array, INITIAL_ARRAY);
    }

    #[test]
    fn entry_format_is_the_spec_one() {
        let key = [9u8; 32];
        let e = seal_entry(&key, b"hello hello hello");
        let Value::Map(m) = &e else { panic!() };
        assert_eq!(m[1].1.as_bytes().unwrap().len(), NONCE_LEN);
        assert_eq!(m[2].1, Value::Integer(17.into()));
        // The ciphertext opens with aad "blob" ‖ 17 as u64 LE and inflates raw.
        let mut sealed = m[1].1.as_bytes().unwrap().clone();
        sealed.extend_from_slice(m[0].1.as_bytes().unwrap());
        let mut aad = b"blob".to_vec();
        aad.extend_from_slice(&17u64.to_le_bytes());
        let compressed = seal::open(&key, &aad, &sealed).unwrap();
        assert_eq!(
            miniz_oxide::inflate::decompress_to_vec(&compressed).unwrap(),
            b"hello hello hello"
        );
    }

    #[test]
    fn malformed_arrays_and_entries_read_as_nothing() {
        let key = [1u8; 32];
        let good = put(&INITIAL_ARRAY, &key, Some(b"x")).unwrap();
        let mut bad_trailer = good.clone();
        *bad_trailer.last_mut().unwrap() ^= 1;
        for a in [&b""[..], &[0x80][..], &bad_trailer, &[0u8; 17][..]] {
            assert!(entries(a).is_empty());
        }
        // Not an array, with a good trailer.
        assert!(entries(&with_trailer(vec![0xa0])).is_empty());
        // Wrong member types, a short nonce, an origSize that does not match.
        let Value::Map(m) = seal_entry(&key, b"abc") else {
            panic!()
        };
        let with = |i: usize, v: Value| {
            let mut m = m.clone();
            m[i].1 = v;
            Value::Map(m)
        };
        assert!(open_entry(&key, &Value::Map(m.clone())).is_some());
        assert!(open_entry(&key, &with(0, Value::Text("x".into()))).is_none());
        assert!(open_entry(&key, &with(1, Value::Bytes(vec![0; 11]))).is_none());
        assert!(open_entry(&key, &with(2, Value::Integer(4.into()))).is_none());
        assert!(open_entry(&key, &with(2, Value::Integer((-1).into()))).is_none());
        assert!(open_entry(&key, &Value::Array(vec![])).is_none());
    }

    #[test]
    fn an_array_past_the_maximum_is_refused() {
        let key = [1u8; 32];
        // Random bytes do not compress.
        let random = crate::crypto::random_bytes::<MAX_SERIALIZED_LARGE_BLOB_ARRAY>();
        let err = put(&INITIAL_ARRAY, &key, Some(&random)).unwrap_err();
        assert!(err.len > MAX_SERIALIZED_LARGE_BLOB_ARRAY);
        assert!(err.to_string().contains("maxSerializedLargeBlobArray"));
    }
}
