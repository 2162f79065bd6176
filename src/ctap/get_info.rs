//! authenticatorGetInfo (CTAP 2.1 §6.4): advertises exactly what this key implements,
//! because clients pick their code paths from it.

use ciborium::Value;

use super::authenticator_config::MAX_MIN_PIN_LENGTH_RP_IDS;
use super::cbor::MapBuilder;
use super::{
    AAGUID, Authenticator, MAX_CREDENTIAL_COUNT_IN_LIST, MAX_CREDENTIAL_ID_LENGTH, MAX_MSG_SIZE,
    firmware_version,
};
use crate::crypto::Algorithm;

fn int(i: i64) -> Value {
    Value::Integer(i.into())
}

pub(super) fn get_info(auth: &Authenticator) -> Value {
    // FIDO_2_1: clientPIN with both protocols, pinUvAuthToken, credential management and
    // authenticatorConfig are complete. Never FIDO_2_1_PRE (it broke iPhones).
    let versions = vec![
        Value::Text("FIDO_2_0".into()),
        Value::Text("FIDO_2_1".into()),
    ];
    let extensions = vec![
        Value::Text("credProtect".into()),
        Value::Text("minPinLength".into()),
    ];
    let pin = auth.store.pin_status();
    let mut options = MapBuilder::new()
        .text("rk", true)
        .text("up", true)
        .text("plat", false)
        .text("clientPin", auth.pin_is_set())
        .text("credMgmt", true)
        .text("credentialMgmtPreview", true)
        .text("authnrCfg", true)
        .text("setMinPINLength", true)
        .text("pinUvAuthToken", true)
        .text("makeCredUvNotRqd", !pin.always_uv)
        .text("alwaysUv", pin.always_uv);
    if auth.config.uv.is_some() {
        // Built-in UV, configured from the start.
        options = options.text("uv", true);
    }
    let algorithms = [Algorithm::Es256, Algorithm::EdDsa]
        .iter()
        .map(|a| {
            MapBuilder::new()
                .text("alg", int(a.cose_id()))
                .text("type", "public-key")
                .build()
        })
        .collect();
    let remaining = auth.store.remaining_capacity();
    MapBuilder::new()
        .int(0x01, Value::Array(versions))
        .int(0x02, Value::Array(extensions))
        .int(0x03, Value::Bytes(AAGUID.to_vec()))
        .int(0x04, options.build())
        .int(0x05, int(MAX_MSG_SIZE as i64))
        .int(0x06, Value::Array(vec![int(2), int(1)]))
        .int(0x07, int(MAX_CREDENTIAL_COUNT_IN_LIST as i64))
        .int(0x08, int(MAX_CREDENTIAL_ID_LENGTH as i64))
        .int(0x09, Value::Array(vec![Value::Text("usb".into())]))
        .int(0x0a, Value::Array(algorithms))
        .int(0x0c, pin.force_change)
        .int(0x0d, int(pin.min_pin_length.into()))
        .int(0x0e, int(firmware_version() as i64))
        .int(0x10, int(MAX_MIN_PIN_LENGTH_RP_IDS as i64))
        .int_opt(0x11, auth.config.uv.as_ref().map(|_| int(1)))
        // uvModality: USER_VERIFY_FINGERPRINT_INTERNAL (FIDO Registry §3.1).
        .int_opt(0x12, auth.config.uv.as_ref().map(|_| int(2)))
        .int(0x14, int(remaining as i64))
        .build()
}
