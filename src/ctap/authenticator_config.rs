//! authenticatorConfig (0x0D), CTAP 2.1 §6.11: toggleAlwaysUv and setMinPINLength.
//! enableEnterpriseAttestation is refused: this key does not advertise "ep".

use ciborium::Value;

use super::Authenticator;
use super::cbor::{self, RequestMap, read};
use super::status::{CtapResult, StatusCode};
use crate::pin::{Permissions, Protocol};

const ENABLE_ENTERPRISE_ATTESTATION: u64 = 0x01;
const TOGGLE_ALWAYS_UV: u64 = 0x02;
const SET_MIN_PIN_LENGTH: u64 = 0x03;
/// getInfo maxRPIDsForSetMinPINLength.
pub const MAX_MIN_PIN_LENGTH_RP_IDS: usize = 8;

pub(super) fn authenticator_config(auth: &mut Authenticator, params: &[u8]) -> CtapResult<()> {
    if params.is_empty() {
        return Err(StatusCode::MissingParameter);
    }
    let mut m = RequestMap::parse(params)?;
    let sub = read::unsigned(read::required(m.take(0x01))?)?;
    let sub_params = m.take(0x02).map(read::map).transpose()?;
    let protocol = m.take(0x03).map(read::unsigned).transpose()?;
    let param = m.take(0x04).map(read::bytes).transpose()?;

    match sub {
        TOGGLE_ALWAYS_UV | SET_MIN_PIN_LENGTH => {}
        // Not supported: this key does not advertise "ep".
        ENABLE_ENTERPRISE_ATTESTATION => return Err(StatusCode::InvalidSubcommand),
        // vendorPrototype and unknown subcommands.
        _ => return Err(StatusCode::InvalidSubcommand),
    }
    // A protected key needs a token with the acfg permission over
    // 32×0xff ‖ 0x0d ‖ uint8(subCommand) ‖ subCommandParams.
    if let Some(param) = param {
        let protocol = Protocol::from_param(protocol.ok_or(StatusCode::MissingParameter)?)
            .ok_or(StatusCode::InvalidParameter)?;
        let mut message = vec![0xff; 32];
        message.push(0x0d);
        message.push(sub as u8);
        if let Some(sp) = &sub_params {
            message.extend_from_slice(&cbor::encode(&Value::Map(sp.clone())));
        }
        if !auth
            .state
            .token
            .verify(protocol, &message, &param, auth.now())
            || !auth
                .state
                .token
                .has_permission(Permissions::AUTHENTICATOR_CONFIG)
        {
            return Err(StatusCode::PinAuthInvalid);
        }
    } else if auth.is_protected() {
        return Err(StatusCode::PuatRequired);
    }
    match sub {
        TOGGLE_ALWAYS_UV => {
            let on = auth.store.toggle_always_uv()?;
            tracing::info!("alwaysUv is now {on}");
            Ok(())
        }
        _ => {
            let mut new_min = None;
            let mut rp_ids = None;
            let mut force = false;
            for (k, v) in sub_params.unwrap_or_default() {
                match k.as_integer().map(i128::from) {
                    Some(0x01) => new_min = Some(read::unsigned(v)?),
                    Some(0x02) => {
                        let ids = read::array(v)?
                            .into_iter()
                            .map(read::text)
                            .collect::<CtapResult<Vec<_>>>()?;
                        rp_ids = Some(ids);
                    }
                    Some(0x03) => force = read::boolean(v)?,
                    _ => {}
                }
            }
            let current = auth.store.pin_status().min_pin_length;
            let new_min = match new_min {
                Some(n) if n > 63 => return Err(StatusCode::PinPolicyViolation),
                Some(n) if (n as u8) < current => return Err(StatusCode::PinPolicyViolation),
                Some(n) => n as u8,
                None => current,
            };
            if rp_ids
                .as_ref()
                .is_some_and(|r| r.len() > MAX_MIN_PIN_LENGTH_RP_IDS)
            {
                return Err(StatusCode::PinPolicyViolation);
            }
            if force && !auth.pin_is_set() {
                return Err(StatusCode::PinNotSet);
            }
            // A PIN shorter than the new minimum must be changed before its next use; a
            // forced change voids the token.
            if auth.store.set_min_pin_length(new_min, rp_ids, force)? {
                auth.state.token.reset();
            }
            Ok(())
        }
    }
}
