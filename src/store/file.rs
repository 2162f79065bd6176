//! The store file's format: CBOR through serde, versioned. Decoding untrusted bytes
//! returns an error, never panics; everything is checked before it is used.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::AttestationMaterial;

const FORMAT_VERSION: u32 = 2;

/// A discoverable credential as stored. The private key is not here: it is sealed in
/// the credential ID itself, like a non-discoverable credential's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    #[serde(with = "serde_bytes")]
    pub id: Vec<u8>,
    pub rp_id: String,
    pub rp_name: Option<String>,
    #[serde(with = "serde_bytes")]
    pub user_id: Vec<u8>,
    pub user_name: Option<String>,
    pub user_display_name: Option<String>,
    /// Creation order: getAssertion lists the most recent first.
    pub created: u64,
    /// credProtect level 1–3 (CTAP 2.1 §12.1).
    pub cred_protect: u8,
}

/// PIN and user-verification state (CTAP 2.1 §6.5). Persisted: retries count down
/// across restarts; only a reset or a correct PIN restores them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinState {
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
    credentials: Vec<StoredCredential>,
    pin: PinState,
}

impl Drop for Record {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.wrapping_key.zeroize();
        if let Some(a) = &mut self.attestation {
            a.batch_key_pkcs8.zeroize();
        }
        if let Some(h) = &mut self.pin.hash {
            h.zeroize();
        }
    }
}

/// The decoded store file.
pub(super) struct StoreFile {
    pub serial: String,
    pub wrapping_key: Zeroizing<[u8; 32]>,
    pub attestation: Option<AttestationMaterial>,
    pub next_sequence: u64,
    pub credentials: Vec<StoredCredential>,
    pub pin: PinState,
}

impl StoreFile {
    pub fn fresh(serial: String, wrapping_key: Zeroizing<[u8; 32]>) -> StoreFile {
        StoreFile {
            serial,
            wrapping_key,
            attestation: None,
            next_sequence: 0,
            credentials: Vec::new(),
            pin: PinState::default(),
        }
    }

    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let rec = Record {
            version: FORMAT_VERSION,
            serial: self.serial.clone(),
            wrapping_key: self.wrapping_key.to_vec(),
            attestation: self.attestation.as_ref().map(|a| AttestationRecord {
                batch_key_pkcs8: a.batch_key_pkcs8.to_vec(),
                batch_cert_der: a.batch_cert_der.clone(),
                ca_cert_der: a.ca_cert_der.clone(),
            }),
            next_sequence: self.next_sequence,
            credentials: self.credentials.clone(),
            pin: self.pin.clone(),
        };
        let mut out = Zeroizing::new(Vec::new());
        // Serialising plain data into a Vec cannot fail.
        let _ = ciborium::ser::into_writer(&rec, &mut *out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<StoreFile, String> {
        let rec: Record =
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
        if rec
            .credentials
            .iter()
            .any(|c| c.created > rec.next_sequence)
        {
            return Err("credential sequence ahead of the store's".into());
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
            credentials: rec.credentials.clone(),
            pin: rec.pin.clone(),
        })
    }
}
