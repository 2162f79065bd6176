//! U2F_REGISTER (U2F Raw Message Formats v1.2 §4): a new ES256 key pair for the
//! application parameter. Its key handle is a CTAP2 credential ID (non-discoverable,
//! sealed under the application parameter), so nothing is stored and getAssertion finds
//! it for the RP ID that hashes to that parameter.
//!
//! Response (§4.3): 0x05 ‖ public key (65, uncompressed P-256) ‖ L ‖ key handle (L) ‖
//! attestation certificate (X.509 DER) ‖ ECDSA signature over
//! 0x00 ‖ application ‖ challenge ‖ key handle ‖ public key.

use super::super::credential_id::{self, Properties};
use super::super::events::{CredentialInfo, Event};
use super::super::{AttestationFormat, Authenticator};
use super::apdu::StatusWord;
use crate::crypto::attestation::self_signed_certificate;
use crate::crypto::{Algorithm, CredentialKey};

/// The legacy first byte of a registration response (§4.3).
const RESERVED: u8 = 0x05;

pub(super) struct RegisterRequest {
    /// SHA-256 of the client data.
    pub challenge: [u8; 32],
    /// SHA-256 of the application identity (the appid).
    pub application: [u8; 32],
}

impl RegisterRequest {
    /// challenge (32) ‖ application (32), nothing else (§4.1). P1 and P2 carry nothing
    /// U2F defines (Chrome sets 0x03, libfido2 and python-fido2 0x00): ignored.
    pub fn parse(data: &[u8]) -> Result<RegisterRequest, StatusWord> {
        let data: &[u8; 64] = data.try_into().map_err(|_| StatusWord::WrongLength)?;
        let mut req = RegisterRequest {
            challenge: [0; 32],
            application: [0; 32],
        };
        req.challenge.copy_from_slice(&data[..32]);
        req.application.copy_from_slice(&data[32..]);
        Ok(req)
    }
}

pub(super) struct RegisterResponse {
    public_key: [u8; 65],
    key_handle: Vec<u8>,
    certificate: Vec<u8>,
    signature: Vec<u8>,
}

impl RegisterResponse {
    pub fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            2 + 65 + self.key_handle.len() + self.certificate.len() + self.signature.len(),
        );
        out.push(RESERVED);
        out.extend_from_slice(&self.public_key);
        // Our credential IDs are 64 bytes: the length fits its byte.
        out.push(self.key_handle.len() as u8);
        out.extend_from_slice(&self.key_handle);
        out.extend_from_slice(&self.certificate);
        out.extend_from_slice(&self.signature);
        out
    }
}

pub(super) fn register(
    auth: &mut Authenticator,
    req: RegisterRequest,
) -> Result<RegisterResponse, StatusWord> {
    // §4.2: only with the user's touch.
    if !auth.u2f_touch("U2F_REGISTER") {
        return Err(StatusWord::ConditionsNotSatisfied);
    }
    let key = CredentialKey::generate(Algorithm::Es256);
    let CredentialKey::Es256(signing) = &key else {
        return Err(StatusWord::Unknown);
    };
    let point = signing.verifying_key().to_sec1_point(false);
    let public_key: [u8; 65] = point
        .as_bytes()
        .try_into()
        .map_err(|_| StatusWord::Unknown)?;
    let key_handle = credential_id::seal(
        auth.store.wrapping_key(),
        &req.application,
        &key,
        // A U2F registration is a plain non-discoverable ES256 credential: no
        // extensions, default protection (CTAP 2.1 §8).
        &Properties::default(),
    );
    if key_handle.len() > usize::from(u8::MAX) {
        return Err(StatusWord::Unknown);
    }

    let mut signed = Vec::with_capacity(1 + 32 + 32 + key_handle.len() + 65);
    signed.push(0x00);
    signed.extend_from_slice(&req.application);
    signed.extend_from_slice(&req.challenge);
    signed.extend_from_slice(&key_handle);
    signed.extend_from_slice(&public_key);
    let overrides = auth.config.overrides.get();
    let (certificate, signature) = match auth.config.attestation {
        // The batch certificate, as CTAP2's packed attestation uses it.
        AttestationFormat::Packed => {
            let a = auth.attestation.as_ref().ok_or(StatusWord::Unknown)?;
            (a.batch_cert_der.clone(), a.sign(&signed))
        }
        // U2F must carry a certificate: without batch attestation, one of the new key
        // itself, self-signed, with nothing in it that tells keys apart.
        AttestationFormat::SelfAttestation | AttestationFormat::None => (
            self_signed_certificate(signing).map_err(|_| StatusWord::Unknown)?,
            key.sign(&signed),
        ),
    };

    let (backup_eligibility, backup_state) = auth.default_backup();
    auth.config
        .events
        .emit(Event::CredentialAdded(CredentialInfo {
            credential_id: key_handle.clone(),
            is_resident: false,
            // U2F names the application only by its hash.
            rp_id: String::new(),
            user_handle: None,
            user_name: None,
            user_display_name: None,
            sign_count: 0,
            backup_eligibility,
            backup_state,
        }));
    Ok(RegisterResponse {
        public_key,
        key_handle,
        certificate,
        signature: overrides.signature(signature),
    })
}
