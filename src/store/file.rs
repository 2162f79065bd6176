//! The store file's format: CBOR through serde, versioned. Decoding untrusted bytes
//! returns an error, never panics; everything is checked before it is used. The records
//! here are the format only: the rest of the store works with [`StoreFile`] and the
//! domain types of `credential`.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::AttestationMaterial;
use super::credential::{Credential, Index, PrivateKey};
use crate::crypto::Algorithm;

const FORMAT_VERSION: u32 = 2;

/// A stored credential as written. `discoverable` and `private_key` were added within
/// format 2 with defaults, so files written before them read as they always did (every
/// credential listed was discoverable and its ID carried its key).
#[derive(Serialize, Deserialize)]
struct CredentialRecord {
    #[serde(with = "serde_bytes")]
    id: Vec<u8>,
    rp_id: String,
    rp_name: Option<String>,
    #[serde(with = "serde_bytes")]
    user_id: Vec<u8>,
    user_name: Option<String>,
    user_display_name: Option<String>,
    /// Creation order: getAssertion lists the most recent first.
    created: u64,
    /// credProtect level 1–3 (CTAP 2.1 §12.1).
    cred_protect: u8,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    discoverable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    private_key: Option<KeyRecord>,
    /// Per-credential BE / BS, added within format 2 (absent: the key's flags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup_eligible: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup_state: Option<bool>,
    /// Extensions (CTAP 2.1 §12), added with defaults: absent is none.
    #[serde(default, skip_serializing_if = "is_false")]
    hmac_secret: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    large_blob_key: bool,
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Vec::is_empty")]
    cred_blob: Vec<u8>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct KeyRecord {
    /// COSE algorithm identifier.
    #[zeroize(skip)]
    alg: i64,
    #[serde(with = "serde_bytes")]
    secret: Vec<u8>,
}

/// PIN and user-verification state (CTAP 2.1 §6.5). Persisted: retries count down
/// across restarts; only a reset or a correct PIN restores them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PinState {
    /// LEFT(SHA-256(PIN), 16), if a PIN is set.
    #[serde(with = "serde_bytes")]
    pub hash: Option<Vec<u8>>,
    /// The PIN's length in code points (setMinPINLength compares against it).
    pub code_points: u8,
    pub retries: u8,
    pub uv_retries: u8,
    pub min_pin_length: u8,
    pub force_change: bool,
    pub min_pin_length_rp_ids: Vec<String>,
    pub always_uv: bool,
}

impl Default for PinState {
    fn default() -> Self {
        PinState {
            hash: None,
            code_points: 0,
            retries: 8,
            uv_retries: 8,
            min_pin_length: 4,
            force_change: false,
            min_pin_length_rp_ids: Vec::new(),
            always_uv: false,
        }
    }
}

impl Drop for PinState {
    fn drop(&mut self) {
        if let Some(h) = &mut self.hash {
            h.zeroize();
        }
    }
}

#[derive(Serialize, Deserialize)]
struct AttestationRecord {
    #[serde(with = "serde_bytes")]
    batch_key_pkcs8: Vec<u8>,
    #[serde(with = "serde_bytes")]
    batch_cert_der: Vec<u8>,
    #[serde(with = "serde_bytes")]
    ca_cert_der: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    version: u32,
    serial: String,
    #[serde(with = "serde_bytes")]
    wrapping_key: Vec<u8>,
    attestation: Option<AttestationRecord>,
    next_sequence: u64,
    credentials: Vec<CredentialRecord>,
    pin: PinState,
}

impl Drop for Record {
    fn drop(&mut self) {
        self.wrapping_key.zeroize();
        if let Some(a) = &mut self.attestation {
            a.batch_key_pkcs8.zeroize();
        }
    }
}

/// The store's state in memory.
pub(super) struct StoreFile {
    pub serial: String,
    pub wrapping_key: Zeroizing<[u8; 32]>,
    pub attestation: Option<AttestationMaterial>,
    pub next_sequence: u64,
    pub credentials: Index,
    pub pin: PinState,
}

impl StoreFile {
    pub fn decode(bytes: &[u8]) -> Result<StoreFile, String> {
        let mut rec: Record =
            ciborium::de::from_reader(bytes).map_err(|e| format!("not a store record: {e}"))?;
        if rec.version != FORMAT_VERSION {
            return Err(format!(
                "format version {} (this vkey reads {FORMAT_VERSION})",
                rec.version
            ));
        }
        if rec.serial.is_empty()
            || rec.serial.len() > 32
            || !rec.serial.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err("bad serial".into());
        }
        let mut wrapping_key = Zeroizing::new([0u8; 32]);
        if rec.wrapping_key.len() != 32 {
            return Err("bad wrapping key".into());
        }
        wrapping_key.copy_from_slice(&rec.wrapping_key);
        let mut credentials = Index::default();
        for c in std::mem::take(&mut rec.credentials) {
            if c.created > rec.next_sequence {
                return Err("credential sequence ahead of the store's".into());
            }
            let created = c.created;
            if !credentials.insert(created, from_record(c)?) {
                return Err("duplicate credential".into());
            }
        }
        Ok(StoreFile {
            serial: rec.serial.clone(),
            wrapping_key,
            attestation: rec.attestation.as_ref().map(|a| AttestationMaterial {
                batch_key_pkcs8: Zeroizing::new(a.batch_key_pkcs8.clone()),
                batch_cert_der: a.batch_cert_der.clone(),
                ca_cert_der: a.ca_cert_der.clone(),
            }),
            next_sequence: rec.next_sequence,
            credentials,
            pin: rec.pin.clone(),
        })
    }
}

fn to_record((created, c): (u64, &Credential)) -> CredentialRecord {
    CredentialRecord {
        id: c.id.clone(),
        rp_id: c.rp_id.clone(),
        rp_name: c.rp_name.clone(),
        user_id: c.user_id.clone(),
        user_name: c.user_name.clone(),
        user_display_name: c.user_display_name.clone(),
        created,
        cred_protect: c.cred_protect,
        discoverable: c.discoverable,
        private_key: c.private_key.as_ref().map(|k| KeyRecord {
            alg: k.algorithm.cose_id(),
            secret: k.secret.to_vec(),
        }),
        backup_eligible: c.backup_eligible,
        backup_state: c.backup_state,
        hmac_secret: c.hmac_secret,
        large_blob_key: c.large_blob_key,
        cred_blob: c.cred_blob.clone(),
    }
}

fn from_record(r: CredentialRecord) -> Result<Credential, String> {
    let CredentialRecord {
        id,
        rp_id,
        rp_name,
        user_id,
        user_name,
        user_display_name,
        created: _,
        cred_protect,
        discoverable,
        private_key,
        backup_eligible,
        backup_state,
        hmac_secret,
        large_blob_key,
        cred_blob,
    } = r;
    let private_key = match private_key {
        None => None,
        Some(k) => {
            let algorithm = Algorithm::from_cose_id(k.alg).ok_or("bad credential key")?;
            if k.secret.len() != 32 {
                return Err("bad credential key".into());
            }
            let mut secret = Zeroizing::new([0u8; 32]);
            secret.copy_from_slice(&k.secret);
            Some(PrivateKey { algorithm, secret })
        }
    };
    Ok(Credential {
        id,
        rp_id,
        rp_name,
        user_id,
        user_name,
        user_display_name,
        cred_protect,
        discoverable,
        private_key,
        backup_eligible,
        backup_state,
        hmac_secret,
        large_blob_key,
        cred_blob,
    })
}

// Format 3 keeps each part of the state in a record of its own (see `engine`); the
// records reuse the serde types above, each encoded as CBOR on its own.

fn cbor<T: Serialize>(v: &T) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::new());
    // Serialising plain data into a Vec cannot fail.
    let _ = ciborium::ser::into_writer(v, &mut *out);
    out
}

fn from_cbor<T: serde::de::DeserializeOwned>(b: &[u8], what: &str) -> Result<T, String> {
    ciborium::de::from_reader(b).map_err(|e| format!("bad {what} record: {e}"))
}

/// A stored credential and its creation sequence number.
pub(super) fn encode_credential(created: u64, c: &Credential) -> Zeroizing<Vec<u8>> {
    cbor(&to_record((created, c)))
}

pub(super) fn decode_credential(b: &[u8]) -> Result<(u64, Credential), String> {
    let r: CredentialRecord = from_cbor(b, "credential")?;
    let created = r.created;
    Ok((created, from_record(r)?))
}

pub(super) fn encode_pin(p: &PinState) -> Zeroizing<Vec<u8>> {
    cbor(p)
}

pub(super) fn decode_pin(b: &[u8]) -> Result<PinState, String> {
    from_cbor(b, "PIN state")
}

/// What identifies the device and seals credential IDs.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct DeviceRecord {
    #[zeroize(skip)]
    serial: String,
    #[serde(with = "serde_bytes")]
    wrapping_key: Vec<u8>,
}

pub(super) fn encode_device(serial: &str, wrapping_key: &[u8; 32]) -> Zeroizing<Vec<u8>> {
    cbor(&DeviceRecord {
        serial: serial.to_string(),
        wrapping_key: wrapping_key.to_vec(),
    })
}

pub(super) fn decode_device(b: &[u8]) -> Result<(String, Zeroizing<[u8; 32]>), String> {
    let r: DeviceRecord = from_cbor(b, "device")?;
    if r.serial.is_empty()
        || r.serial.len() > 32
        || !r.serial.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err("bad serial".into());
    }
    if r.wrapping_key.len() != 32 {
        return Err("bad wrapping key".into());
    }
    let mut k = Zeroizing::new([0u8; 32]);
    k.copy_from_slice(&r.wrapping_key);
    Ok((r.serial.clone(), k))
}

pub(super) fn encode_attestation(a: &AttestationMaterial) -> Zeroizing<Vec<u8>> {
    let r = AttestationRecord {
        batch_key_pkcs8: a.batch_key_pkcs8.to_vec(),
        batch_cert_der: a.batch_cert_der.clone(),
        ca_cert_der: a.ca_cert_der.clone(),
    };
    let out = cbor(&r);
    let mut r = r;
    r.batch_key_pkcs8.zeroize();
    out
}

pub(super) fn decode_attestation(b: &[u8]) -> Result<AttestationMaterial, String> {
    let mut r: AttestationRecord = from_cbor(b, "attestation")?;
    let a = AttestationMaterial {
        batch_key_pkcs8: Zeroizing::new(std::mem::take(&mut r.batch_key_pkcs8)),
        batch_cert_der: std::mem::take(&mut r.batch_cert_der),
        ca_cert_der: std::mem::take(&mut r.ca_cert_der),
    };
    Ok(a)
}
