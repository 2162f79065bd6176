//! authenticatorConfig (0x0D), CTAP 2.1 §6.11: toggleAlwaysUv and setMinPINLength.
//! enableEnterpriseAttestation is refused: this key does not advertise "ep".

use ciborium::Value;

use super::Authenticator;
use super::cbor::{RequestMap, read};
use super::params::{self, SubCommandRequest, pin_uv_auth_protocol};
use super::status::{CtapResult, StatusCode};
use super::user_verification::RpScope;
use crate::pin::Permissions;

/// getInfo maxRPIDsForSetMinPINLength.
pub const MAX_MIN_PIN_LENGTH_RP_IDS: usize = 8;
/// The longest PIN is 63 bytes, so no minimum above 63 code points can be met.
const MAX_MIN_PIN_LENGTH: u64 = 63;

enum SubCommand {
    ToggleAlwaysUv,
    /// Its subCommandParams, read after the token check (as §6.11 orders it).
    SetMinPinLength(CtapResult<SetMinPinLength>),
}

/// setMinPINLength's subCommandParams (§6.11.4).
struct SetMinPinLength {
    new_min_pin_length: Option<u64>,
    min_pin_length_rp_ids: Option<Vec<String>>,
    force_change_pin: bool,
}

impl SetMinPinLength {
    fn parse(params: Option<Vec<(Value, Value)>>) -> CtapResult<Self> {
        let mut p = RequestMap::from_entries(params.unwrap_or_default());
        let rp_ids = |v| -> CtapResult<Vec<String>> {
            read::array(v)?.into_iter().map(params::rp_id).collect()
        };
        Ok(SetMinPinLength {
            new_min_pin_length: p.take(0x01).map(read::unsigned).transpose()?,
            min_pin_length_rp_ids: p.take(0x02).map(rp_ids).transpose()?,
            force_change_pin: p.take(0x03).map(read::boolean).transpose()? == Some(true),
        })
    }
}

/// What the token authenticates starts with 32×0xff ‖ 0x0d (authenticatorConfig's
/// command byte), §6.11.
const MESSAGE_PREFIX: [u8; 33] = {
    let mut p = [0xff; 33];
    p[32] = 0x0d;
    p
};

pub(super) struct ConfigRequest {
    sub_command: SubCommand,
    /// What the token authenticates: 32×0xff ‖ 0x0d ‖ uint8(subCommand) ‖
    /// subCommandParams (canonical encoding).
    message: Vec<u8>,
    pin_uv_auth_protocol: Option<u64>,
    pin_uv_auth_param: Option<Vec<u8>>,
}

impl ConfigRequest {
    pub fn parse(params: &[u8]) -> CtapResult<Self> {
        let req = SubCommandRequest::parse(params)?;
        let message = req.message(&MESSAGE_PREFIX);
        let sub_command = match req.sub_command {
            0x02 => SubCommand::ToggleAlwaysUv,
            0x03 => SubCommand::SetMinPinLength(SetMinPinLength::parse(req.sub_command_params)),
            // enableEnterpriseAttestation (0x01): no "ep" here; vendorPrototype, unknown.
            _ => return Err(StatusCode::InvalidSubcommand),
        };
        Ok(ConfigRequest {
            sub_command,
            message,
            pin_uv_auth_protocol: req.pin_uv_auth_protocol,
            pin_uv_auth_param: req.pin_uv_auth_param,
        })
    }
}

pub(super) fn authenticator_config(auth: &mut Authenticator, req: ConfigRequest) -> CtapResult<()> {
    // A protected key needs a token with the acfg permission.
    if let Some(param) = &req.pin_uv_auth_param {
        let protocol = pin_uv_auth_protocol(req.pin_uv_auth_protocol)?;
        let acfg = Permissions::AUTHENTICATOR_CONFIG;
        auth.authorize(protocol, param, &req.message, acfg, RpScope::None)?;
    } else if auth.is_protected() {
        return Err(StatusCode::PuatRequired);
    }
    match req.sub_command {
        SubCommand::ToggleAlwaysUv => {
            let on = auth.store.toggle_always_uv()?;
            tracing::info!("alwaysUv is now {on}");
            Ok(())
        }
        SubCommand::SetMinPinLength(params) => set_min_pin_length(auth, params?),
    }
}

/// §6.11.4: the minimum only grows; a PIN shorter than the new minimum, or
/// forceChangePin, forces a PIN change before the next use (and voids the token).
fn set_min_pin_length(auth: &mut Authenticator, p: SetMinPinLength) -> CtapResult<()> {
    let current = auth.store.pin_status().min_pin_length;
    let new_min = match p.new_min_pin_length {
        Some(n) if n > MAX_MIN_PIN_LENGTH || n < u64::from(current) => {
            return Err(StatusCode::PinPolicyViolation);
        }
        Some(n) => n as u8,
        None => current,
    };
    if p.min_pin_length_rp_ids
        .as_ref()
        .is_some_and(|r| r.len() > MAX_MIN_PIN_LENGTH_RP_IDS)
    {
        return Err(StatusCode::PinPolicyViolation);
    }
    if p.force_change_pin && !auth.pin_is_set() {
        return Err(StatusCode::PinNotSet);
    }
    let rp_ids = p.min_pin_length_rp_ids;
    if auth
        .store
        .set_min_pin_length(new_min, rp_ids, p.force_change_pin)?
    {
        auth.state.token.reset();
    }
    Ok(())
}
