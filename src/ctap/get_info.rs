//! authenticatorGetInfo (CTAP 2.1 §6.4): advertises exactly what this key implements,
//! because clients pick their code paths from it.

use ciborium::Value;

use super::authenticator_config::MAX_MIN_PIN_LENGTH_RP_IDS;
use super::cbor::{self, MapBuilder, no_parameters};
use super::dispatcher::Response;
use super::extensions::cred_blob::MAX_CRED_BLOB_LENGTH;
use super::large_blobs::MAX_SERIALIZED_LARGE_BLOB_ARRAY;
use super::status::CtapResult;
use super::{
    AAGUID, Authenticator, MAX_CREDENTIAL_COUNT_IN_LIST, MAX_CREDENTIAL_ID_LENGTH, MAX_MSG_SIZE,
    extensions, firmware_version,
};
use crate::crypto::Algorithm;

/// Everything in getInfo that changes with the key's state and configuration; the rest
/// is constant. Clients send getInfo before nearly every operation, so its encoding is
/// kept ([`InfoCache`]) and made again only when one of these differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct GetInfoResponse {
    /// options.clientPin: a PIN is set.
    client_pin: bool,
    /// forcePINChange (0x0C).
    force_pin_change: bool,
    /// minPINLength (0x0D).
    min_pin_length: u8,
    /// options.alwaysUv (and makeCredUvNotRqd, its negation).
    always_uv: bool,
    built_in_uv: bool,
    remaining_discoverable_credentials: usize,
    /// CTAP1/U2F is served: on, and not switched off by alwaysUv (§7.2.2).
    u2f: bool,
}

impl GetInfoResponse {
    /// What the key reports now (cheap: a few fields and two counts).
    pub(super) fn of(auth: &Authenticator) -> GetInfoResponse {
        let pin = auth.store.pin_status();
        GetInfoResponse {
            client_pin: pin.is_set,
            force_pin_change: pin.force_change,
            min_pin_length: pin.min_pin_length,
            always_uv: pin.always_uv,
            built_in_uv: auth.config.uv.is_some(),
            remaining_discoverable_credentials: auth.store.remaining_capacity(),
            u2f: auth.u2f_serves(),
        }
    }

    /// The options map (0x04), in the order the key advertises them.
    ///
    /// `plat` is left out: its default when absent is false (CTAP 2.1 §6.4, the options
    /// table), which is what it would say, and without its 6 bytes the whole response
    /// fits in 6 CTAPHID reports instead of 7. `up` stays although its default is true:
    /// clients read it directly.
    pub(super) fn options(&self) -> Vec<(&'static str, bool)> {
        let mut options = vec![
            ("rk", true),
            ("up", true),
            ("clientPin", self.client_pin),
            ("credMgmt", true),
            ("credentialMgmtPreview", true),
            ("authnrCfg", true),
            ("setMinPINLength", true),
            ("pinUvAuthToken", true),
            ("largeBlobs", true),
            ("makeCredUvNotRqd", !self.always_uv),
            ("alwaysUv", self.always_uv),
        ];
        if self.built_in_uv {
            // Built-in UV, configured from the start.
            options.push(("uv", true));
        }
        options
    }
}

/// getInfo's last encoding and what it was made from.
#[derive(Default)]
pub(super) struct InfoCache(Option<(GetInfoResponse, Vec<u8>)>);

/// authenticatorGetInfo: the encoded response (CBOR, without the status byte).
pub(super) fn get_info(auth: &mut Authenticator, params: &[u8]) -> CtapResult<Vec<u8>> {
    no_parameters(params)?;
    let now = GetInfoResponse::of(auth);
    match &auth.info_cache.0 {
        Some((made_of, encoded)) if *made_of == now => Ok(encoded.clone()),
        _ => {
            let encoded = now.encode().map(cbor::encode_owned).unwrap_or_default();
            auth.info_cache.0 = Some((now, encoded.clone()));
            Ok(encoded)
        }
    }
}

fn array<T: Into<Value>>(items: impl IntoIterator<Item = T>) -> Value {
    Value::Array(items.into_iter().map(Into::into).collect())
}

impl Response for GetInfoResponse {
    fn encode(self) -> Option<Value> {
        // FIDO_2_1: clientPIN with both protocols, pinUvAuthToken, credential management
        // and authenticatorConfig are complete. Never FIDO_2_1_PRE (it broke iPhones).
        // U2F_V2: CTAP1/U2F over CTAPHID_MSG (§6.4), unless it is off.
        let u2f = self.u2f.then_some("U2F_V2");
        let versions = array(u2f.into_iter().chain(["FIDO_2_0", "FIDO_2_1"]));
        let options = self
            .options()
            .into_iter()
            .fold(MapBuilder::new(), |m, (name, on)| m.text(name, on));
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
            .int(0x0c, self.force_pin_change)
            .int(0x0d, self.min_pin_length)
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
