//! authenticatorGetInfo (CTAP 2.1 §6.4): advertises exactly what this key implements,
//! because clients pick their code paths from it.

use ciborium::Value;

use super::authenticator_config::MAX_MIN_PIN_LENGTH_RP_IDS;
use super::cbor::{MapBuilder, no_parameters};
use super::dispatcher::Response;
use super::extensions::cred_blob::MAX_CRED_BLOB_LENGTH;
use super::large_blobs::MAX_SERIALIZED_LARGE_BLOB_ARRAY;
use super::status::CtapResult;
use super::{
    AAGUID, Authenticator, MAX_CREDENTIAL_COUNT_IN_LIST, MAX_CREDENTIAL_ID_LENGTH, MAX_MSG_SIZE,
    extensions, firmware_version,
};
use crate::crypto::Algorithm;
use crate::store::PinStatus;

/// The parts of getInfo that change with the key's state and configuration.
pub(super) struct GetInfoResponse {
    pin: PinStatus,
    built_in_uv: bool,
    remaining_discoverable_credentials: usize,
    /// CTAP1/U2F is served: on, and not switched off by alwaysUv (§7.2.2).
    u2f: bool,
}

pub(super) fn get_info(auth: &Authenticator, params: &[u8]) -> CtapResult<GetInfoResponse> {
    no_parameters(params)?;
    Ok(GetInfoResponse {
        pin: auth.store.pin_status(),
        built_in_uv: auth.config.uv.is_some(),
        remaining_discoverable_credentials: auth.store.remaining_capacity(),
        u2f: auth.u2f_serves(),
    })
}

fn array<T: Into<Value>>(items: impl IntoIterator<Item = T>) -> Value {
    Value::Array(items.into_iter().map(Into::into).collect())
}

impl Response for GetInfoResponse {
    fn encode(self) -> Option<Value> {
        let pin = self.pin;
        // FIDO_2_1: clientPIN with both protocols, pinUvAuthToken, credential management
        // and authenticatorConfig are complete. Never FIDO_2_1_PRE (it broke iPhones).
        // U2F_V2: CTAP1/U2F over CTAPHID_MSG (§6.4), unless it is off.
        let u2f = self.u2f.then_some("U2F_V2");
        let versions = array(u2f.into_iter().chain(["FIDO_2_0", "FIDO_2_1"]));
        let mut options = MapBuilder::new()
            .text("rk", true)
            .text("up", true)
            .text("plat", false)
            .text("clientPin", pin.is_set)
            .text("credMgmt", true)
            .text("credentialMgmtPreview", true)
            .text("authnrCfg", true)
            .text("setMinPINLength", true)
            .text("pinUvAuthToken", true)
            .text("largeBlobs", true)
            .text("makeCredUvNotRqd", !pin.always_uv)
            .text("alwaysUv", pin.always_uv);
        if self.built_in_uv {
            // Built-in UV, configured from the start.
            options = options.text("uv", true);
        }
        let algorithms = array([Algorithm::Es256, Algorithm::EdDsa].map(|a| {
            MapBuilder::new()
                .text("alg", a.cose_id())
                .text("type", "public-key")
                .build()
        }));
        let uv = self.built_in_uv.then_some(());
        MapBuilder::new()
            .int(0x01, versions)
            .int(0x02, array(extensions::SUPPORTED))
            .int(0x03, Value::Bytes(AAGUID.to_vec()))
            .int(0x04, options.build())
            .int(0x05, MAX_MSG_SIZE as u64)
            .int(0x06, array([2, 1]))
            .int(0x07, MAX_CREDENTIAL_COUNT_IN_LIST as u64)
            .int(0x08, MAX_CREDENTIAL_ID_LENGTH as u64)
            .int(0x09, array(["usb"]))
            .int(0x0a, algorithms)
            .int(0x0b, MAX_SERIALIZED_LARGE_BLOB_ARRAY as u64)
            .int(0x0c, pin.force_change)
            .int(0x0d, pin.min_pin_length)
            .int(0x0e, firmware_version())
            .int(0x0f, MAX_CRED_BLOB_LENGTH as u64)
            .int(0x10, MAX_MIN_PIN_LENGTH_RP_IDS as u64)
            // preferredPlatformUvAttempts 1; uvModality USER_VERIFY_FINGERPRINT_INTERNAL
            // (FIDO Registry §3.1).
            .int_opt(0x11, uv.map(|()| 1))
            .int_opt(0x12, uv.map(|()| 2))
            .int(0x14, self.remaining_discoverable_credentials as u64)
            .build()
            .into()
    }
}
