//! Authenticator data (WebAuthn §6.1): rpIdHash ‖ flags ‖ signCount ‖
//! [attestedCredentialData] ‖ [extensions].

use ciborium::Value;

use super::cbor;

pub const FLAG_UP: u8 = 0x01;
pub const FLAG_UV: u8 = 0x04;
pub const FLAG_BE: u8 = 0x08;
pub const FLAG_BS: u8 = 0x10;
pub const FLAG_AT: u8 = 0x40;
pub const FLAG_ED: u8 = 0x80;

/// attestedCredentialData: aaguid ‖ credentialIdLength (2, big-endian) ‖ credentialId ‖
/// credentialPublicKey (COSE_Key).
pub struct AttestedCredential<'a> {
    pub aaguid: &'a [u8; 16],
    pub credential_id: &'a [u8],
    pub public_key: Value,
}

pub fn build(
    rp_id_hash: &[u8; 32],
    mut flags: u8,
    sign_count: u32,
    attested: Option<AttestedCredential<'_>>,
    extensions: Option<Value>,
) -> Vec<u8> {
    if attested.is_some() {
        flags |= FLAG_AT;
    }
    if extensions.is_some() {
        flags |= FLAG_ED;
    }
    let mut v = Vec::with_capacity(37 + 200);
    v.extend_from_slice(rp_id_hash);
    v.push(flags);
    v.extend_from_slice(&sign_count.to_be_bytes());
    if let Some(a) = attested {
        v.extend_from_slice(a.aaguid);
        v.extend_from_slice(&(a.credential_id.len() as u16).to_be_bytes());
        v.extend_from_slice(a.credential_id);
        v.extend_from_slice(&cbor::encode(&a.public_key));
    }
    if let Some(e) = extensions {
        v.extend_from_slice(&cbor::encode(&e));
    }
    v
}
