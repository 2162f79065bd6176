//! authenticatorLargeBlobs (0x0C), CTAP 2.1 §6.10: the serialized large-blob array, a
//! CBOR array of entries encrypted by platforms with credentials' largeBlobKeys, followed
//! by LEFT(SHA-256(array), 16). Read in fragments (`get`), written in fragments (`set`)
//! that build a new array; the whole of it is checked against its trailer before it
//! replaces the stored one (durably, in the store). A write in progress is the stateful
//! command of the runtime state: it continues only while its fragments follow one another
//! within 30 s, and a failed fragment ends it.

use ciborium::Value;

use super::cbor::{MapBuilder, RequestMap, read};
use super::dispatcher::Response;
use super::params::pin_uv_auth_protocol;
use super::runtime::StatefulCommand;
use super::status::{CtapResult, StatusCode};
use super::user_verification::RpScope;
use super::{Authenticator, MAX_MSG_SIZE};
use crate::crypto::sha256;
use crate::pin::Permissions;

/// maxFragmentLength: maxMsgSize − 64, the most one get returns or one set carries.
pub const MAX_FRAGMENT_LENGTH: usize = MAX_MSG_SIZE - 64;
/// getInfo maxSerializedLargeBlobArray (0x0B): the largest array, trailer included. The
/// spec's minimum is 1024; 16 KiB holds a few certificates and is written whole with
/// the store.
pub const MAX_SERIALIZED_LARGE_BLOB_ARRAY: usize = 16 * 1024;
/// The truncated SHA-256 trailer.
const TRAILER_LEN: usize = 16;
/// A key's array before anything is written: the empty CBOR array and its trailer.
pub const INITIAL_ARRAY: [u8; 17] = [
    0x80, 0x76, 0xbe, 0x8b, 0x52, 0x8d, 0x00, 0x75, 0xf7, 0xaa, 0xe9, 0x8d, 0x6f, 0xa5, 0x7a, 0x6d,
    0x3c,
];

/// The CBOR array of a serialized large-blob array whose trailer,
/// LEFT(SHA-256(array), 16), matches (§6.10.2 step 4.j, §6.10.3); `None` otherwise.
pub(super) fn verified_array(serialized: &[u8]) -> Option<&[u8]> {
    let (array, trailer) =
        serialized.split_at_checked(serialized.len().checked_sub(TRAILER_LEN)?)?;
    (sha256(array)[..TRAILER_LEN] == *trailer).then_some(array)
}

/// `array` (CBOR) serialized with its trailer.
pub(super) fn with_trailer(mut array: Vec<u8>) -> Vec<u8> {
    let trailer = sha256(&array);
    array.extend_from_slice(&trailer[..TRAILER_LEN]);
    array
}

pub(super) enum LargeBlobsRequest {
    /// Read `length` bytes at `offset`.
    Get { offset: u64, length: u64 },
    /// Write `fragment` at `offset`; `length` is the whole array's (at offset 0 only).
    Set {
        offset: u64,
        fragment: Vec<u8>,
        length: Option<u64>,
        pin_uv_auth_param: Option<Vec<u8>>,
        pin_uv_auth_protocol: Option<u64>,
    },
}

impl LargeBlobsRequest {
    /// §6.10.2 steps 1–3 and 4.a–b: offset present, exactly one of get and set, no length
    /// or pinUvAuth parameters with get — each else CTAP1_ERR_INVALID_PARAMETER.
    pub fn parse(params: &[u8]) -> CtapResult<Self> {
        let mut m = RequestMap::parse(params)?;
        let get = m.take(0x01).map(read::unsigned).transpose()?;
        let set = m.take(0x02).map(read::bytes).transpose()?;
        let offset = m.take(0x03).map(read::unsigned).transpose()?;
        let length = m.take(0x04).map(read::unsigned).transpose()?;
        let pin_uv_auth_param = m.take(0x05).map(read::bytes).transpose()?;
        let pin_uv_auth_protocol = m.take(0x06).map(read::unsigned).transpose()?;
        let offset = offset.ok_or(StatusCode::InvalidParameter)?;
        match (get, set) {
            (Some(get), None) => {
                let auth = pin_uv_auth_param.is_some() || pin_uv_auth_protocol.is_some();
                if length.is_some() || auth {
                    return Err(StatusCode::InvalidParameter);
                }
                Ok(LargeBlobsRequest::Get {
                    offset,
                    length: get,
                })
            }
            (None, Some(fragment)) => Ok(LargeBlobsRequest::Set {
                offset,
                fragment,
                length,
                pin_uv_auth_param,
                pin_uv_auth_protocol,
            }),
            _ => Err(StatusCode::InvalidParameter),
        }
    }
}

/// `config`: the fragment a get returns; a set answers with no data.
pub(super) struct LargeBlobsResponse {
    config: Option<Vec<u8>>,
}

impl Response for LargeBlobsResponse {
    fn encode(self) -> Option<Value> {
        MapBuilder::new()
            .int_opt(0x01, self.config.map(Value::Bytes))
            .build_non_empty()
    }
}

/// A write in progress: the new array so far (expectedNextOffset is its length) and the
/// length announced at offset 0 (expectedLength, at most the maximum array size).
pub struct PendingLargeBlobs {
    buffer: Vec<u8>,
    expected_length: usize,
}

pub(super) fn large_blobs(
    auth: &mut Authenticator,
    req: LargeBlobsRequest,
    stateful: Option<StatefulCommand>,
) -> CtapResult<LargeBlobsResponse> {
    match req {
        LargeBlobsRequest::Get { offset, length } => get(auth, offset, length),
        LargeBlobsRequest::Set {
            offset,
            fragment,
            length,
            pin_uv_auth_param,
            pin_uv_auth_protocol,
        } => {
            let pending = match stateful {
                Some(StatefulCommand::LargeBlobsSet(p)) => Some(p),
                _ => None,
            };
            let fragment = Fragment {
                offset,
                data: fragment,
                length,
                pin_uv_auth_param,
                pin_uv_auth_protocol,
            };
            set(auth, fragment, pending)?;
            Ok(LargeBlobsResponse { config: None })
        }
    }
}

/// The stored array, or the initial one if none was ever written.
fn stored_array(auth: &Authenticator) -> &[u8] {
    match auth.store.large_blob_array() {
        [] => &INITIAL_ARRAY,
        a => a,
    }
}

/// §6.10.2 step 4.c–e: up to `length` bytes from `offset`, fewer at the end.
fn get(auth: &Authenticator, offset: u64, length: u64) -> CtapResult<LargeBlobsResponse> {
    if length > MAX_FRAGMENT_LENGTH as u64 {
        return Err(StatusCode::InvalidLength);
    }
    let array = stored_array(auth);
    let start = usize::try_from(offset)
        .ok()
        .filter(|&o| o <= array.len())
        .ok_or(StatusCode::InvalidParameter)?;
    let end = array.len().min(start + length as usize);
    Ok(LargeBlobsResponse {
        config: Some(array.get(start..end).unwrap_or_default().to_vec()),
    })
}

struct Fragment {
    offset: u64,
    data: Vec<u8>,
    length: Option<u64>,
    pin_uv_auth_param: Option<Vec<u8>>,
    pin_uv_auth_protocol: Option<u64>,
}

/// §6.10.2 step 5.
fn set(
    auth: &mut Authenticator,
    fragment: Fragment,
    pending: Option<PendingLargeBlobs>,
) -> CtapResult<()> {
    // a. One fragment is at most maxFragmentLength.
    if fragment.data.len() > MAX_FRAGMENT_LENGTH {
        return Err(StatusCode::InvalidLength);
    }
    // b–c. Offset 0 starts a new array of the announced length; later fragments
    // announce none.
    let mut pending = if fragment.offset == 0 {
        let length = fragment.length.ok_or(StatusCode::InvalidParameter)?;
        if length > MAX_SERIALIZED_LARGE_BLOB_ARRAY as u64 {
            return Err(StatusCode::LargeBlobStorageFull);
        }
        if length < (1 + TRAILER_LEN) as u64 {
            return Err(StatusCode::InvalidParameter);
        }
        let expected_length = length as usize;
        PendingLargeBlobs {
            buffer: Vec::with_capacity(expected_length),
            expected_length,
        }
    } else {
        if fragment.length.is_some() {
            return Err(StatusCode::InvalidParameter);
        }
        // d. Without a write in progress expectedNextOffset is 0: any other offset
        // is out of sequence.
        pending.ok_or(StatusCode::InvalidSeq)?
    };
    // d. The fragment must continue the array where the last one ended.
    if fragment.offset != pending.buffer.len() as u64 {
        return Err(StatusCode::InvalidSeq);
    }
    // e. A key protected by a PIN or built-in UV (or with alwaysUv) writes only with a
    // token that has the lbw permission.
    if auth.is_protected() || auth.store.pin_status().always_uv {
        authorize_fragment(auth, &fragment)?;
    }
    // f. Not past the announced length.
    if pending.buffer.len() + fragment.data.len() > pending.expected_length {
        return Err(StatusCode::InvalidParameter);
    }
    // g–i. Append.
    pending.buffer.extend_from_slice(&fragment.data);
    // j. Complete: the trailer must match before the array replaces the stored one.
    if pending.buffer.len() == pending.expected_length {
        if verified_array(&pending.buffer).is_none() {
            return Err(StatusCode::IntegrityFailure);
        }
        auth.store.set_large_blob_array(pending.buffer)?;
        tracing::info!(
            "large-blob array written ({} bytes)",
            pending.expected_length
        );
        return Ok(());
    }
    // k. More to come.
    let now = auth.now();
    auth.state
        .begin_stateful(StatefulCommand::LargeBlobsSet(pending), now);
    Ok(())
}

/// §6.10.2 step 5.e: pinUvAuthParam (else PUAT_REQUIRED) and its protocol, over
/// 32×0xff ‖ 0x0c 0x00 ‖ uint32LE(offset) ‖ SHA-256(fragment), with the lbw permission.
fn authorize_fragment(auth: &mut Authenticator, fragment: &Fragment) -> CtapResult<()> {
    let param = fragment
        .pin_uv_auth_param
        .as_deref()
        .ok_or(StatusCode::PuatRequired)?;
    let protocol = pin_uv_auth_protocol(fragment.pin_uv_auth_protocol)?;
    // An offset past u32 cannot be authenticated; it is past every length we accept.
    let offset = u32::try_from(fragment.offset).map_err(|_| StatusCode::InvalidParameter)?;
    let mut message = vec![0xff; 32];
    message.extend_from_slice(&[0x0c, 0x00]);
    message.extend_from_slice(&offset.to_le_bytes());
    message.extend_from_slice(&sha256(&fragment.data));
    let lbw = Permissions::LARGE_BLOB_WRITE;
    auth.authorize(protocol, param, &message, lbw, RpScope::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_array_is_the_empty_array_and_its_trailer() {
        assert_eq!(INITIAL_ARRAY[0], 0x80);
        assert_eq!(INITIAL_ARRAY[1..], sha256(&[0x80])[..TRAILER_LEN]);
    }
}
