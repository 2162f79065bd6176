//! authenticatorClientPIN (0x06), CTAP 2.1 §6.5.5: PIN retries, key agreement, set and
//! change the PIN, and the pinUvAuthToken (by PIN, legacy or with permissions, or by
//! built-in UV).

use ciborium::Value;

use super::Authenticator;
use super::cbor::{MapBuilder, RequestMap, read};
use super::dispatcher::Response;
use super::params::{self, pin_uv_auth_protocol};
use super::presence::{RequestContext, Touch};
use super::status::{CtapResult, StatusCode};
use crate::pin::policy::{self, MAX_CONSECUTIVE_PIN_FAILURES, PinError};
use crate::pin::{KeyAgreement, Permissions, Protocol, SharedSecret};

#[derive(Clone, Copy, PartialEq, Eq)]
enum SubCommand {
    GetPinRetries,
    GetKeyAgreement,
    SetPin,
    ChangePin,
    GetPinToken,
    GetPinUvAuthTokenUsingUvWithPermissions,
    GetUvRetries,
    GetPinUvAuthTokenUsingPinWithPermissions,
}

impl SubCommand {
    fn from_code(code: u64) -> CtapResult<SubCommand> {
        Ok(match code {
            0x01 => SubCommand::GetPinRetries,
            0x02 => SubCommand::GetKeyAgreement,
            0x03 => SubCommand::SetPin,
            0x04 => SubCommand::ChangePin,
            0x05 => SubCommand::GetPinToken,
            0x06 => SubCommand::GetPinUvAuthTokenUsingUvWithPermissions,
            0x07 => SubCommand::GetUvRetries,
            0x09 => SubCommand::GetPinUvAuthTokenUsingPinWithPermissions,
            _ => return Err(StatusCode::InvalidSubcommand),
        })
    }
}

pub(super) struct ClientPinRequest {
    pin_uv_auth_protocol: Option<u64>,
    sub_command: SubCommand,
    key_agreement: Option<Value>,
    pin_uv_auth_param: Option<Vec<u8>>,
    new_pin_enc: Option<Vec<u8>>,
    pin_hash_enc: Option<Vec<u8>>,
    permissions: Option<u64>,
    rp_id: Option<String>,
}

impl ClientPinRequest {
    pub fn parse(params: &[u8]) -> CtapResult<Self> {
        let mut m = RequestMap::parse(params)?;
        let pin_uv_auth_protocol = m.take(0x01).map(read::unsigned).transpose()?;
        let sub_command = read::unsigned(m.required(0x02)?)?;
        let key_agreement = m.take(0x03).map(read::map).transpose()?;
        let req = ClientPinRequest {
            pin_uv_auth_protocol,
            key_agreement: key_agreement.map(Value::Map),
            pin_uv_auth_param: m.take(0x04).map(read::bytes).transpose()?,
            new_pin_enc: m.take(0x05).map(read::bytes).transpose()?,
            pin_hash_enc: m.take(0x06).map(read::bytes).transpose()?,
            permissions: m.take(0x09).map(read::unsigned).transpose()?,
            rp_id: m.take(0x0a).map(params::rp_id).transpose()?,
            sub_command: SubCommand::from_code(sub_command)?,
        };
        Ok(req)
    }

    fn protocol(&self) -> CtapResult<Protocol> {
        pin_uv_auth_protocol(self.pin_uv_auth_protocol)
    }

    /// permissions: present, not 0 (INVALID_PARAMETER), and only what this key grants
    /// (UNAUTHORIZED_PERMISSION).
    fn permissions(&self) -> CtapResult<Permissions> {
        let bits = self.permissions.ok_or(StatusCode::MissingParameter)?;
        Permissions::from_request(bits).map_err(|unsupported| match unsupported {
            None => StatusCode::InvalidParameter,
            Some(()) => StatusCode::UnauthorizedPermission,
        })
    }
}

#[derive(Default)]
pub(super) struct ClientPinResponse {
    key_agreement: Option<Value>,
    /// pinUvAuthToken, encrypted with the shared secret.
    pin_uv_auth_token: Option<Vec<u8>>,
    pin_retries: Option<u8>,
    power_cycle_state: Option<bool>,
    uv_retries: Option<u8>,
}

impl Response for ClientPinResponse {
    fn encode(self) -> Option<Value> {
        MapBuilder::new()
            .int_opt(0x01, self.key_agreement)
            .int_opt(0x02, self.pin_uv_auth_token.map(Value::Bytes))
            .int_opt(0x03, self.pin_retries)
            .int_opt(0x04, self.power_cycle_state)
            .int_opt(0x05, self.uv_retries)
            .build_non_empty()
    }
}

pub(super) fn client_pin(
    auth: &mut Authenticator,
    req: ClientPinRequest,
    ctx: &RequestContext,
) -> CtapResult<ClientPinResponse> {
    match req.sub_command {
        SubCommand::GetPinRetries => {
            // Without a PIN there are no retries to count: PIN_NOT_SET, as YubiKeys
            // answer and python-fido2's device suite expects (§6.5.5.2 names no status
            // for it; libfido2 then prints "pin retries: undefined").
            let status = auth.store.pin_status();
            if !status.is_set {
                return Err(StatusCode::PinNotSet);
            }
            Ok(ClientPinResponse {
                pin_retries: Some(status.retries),
                power_cycle_state: Some(auth.state.pin_failures >= MAX_CONSECUTIVE_PIN_FAILURES),
                ..Default::default()
            })
        }
        SubCommand::GetKeyAgreement => {
            let protocol = req.protocol()?;
            Ok(ClientPinResponse {
                key_agreement: Some(auth.key_agreement(protocol).public_cose()),
                ..Default::default()
            })
        }
        SubCommand::SetPin => set_pin(auth, &req).map(|()| ClientPinResponse::default()),
        SubCommand::ChangePin => change_pin(auth, &req).map(|()| ClientPinResponse::default()),
        SubCommand::GetPinToken => {
            // The legacy subcommand knows no permissions: mc and ga, not RP-bound.
            if req.permissions.is_some() || req.rp_id.is_some() {
                return Err(StatusCode::InvalidParameter);
            }
            let perms = Permissions::MAKE_CREDENTIAL.union(Permissions::GET_ASSERTION);
            token_using_pin(auth, &req, perms, None)
        }
        SubCommand::GetPinUvAuthTokenUsingPinWithPermissions => {
            let perms = req.permissions()?;
            token_using_pin(auth, &req, perms, req.rp_id.clone())
        }
        SubCommand::GetPinUvAuthTokenUsingUvWithPermissions => token_using_uv(auth, &req, ctx),
        SubCommand::GetUvRetries => {
            if auth.config.uv.is_none() {
                return Err(StatusCode::InvalidSubcommand);
            }
            Ok(ClientPinResponse {
                uv_retries: Some(auth.store.pin_status().uv_retries),
                ..Default::default()
            })
        }
    }
}

fn shared_secret(
    auth: &mut Authenticator,
    protocol: Protocol,
    req: &ClientPinRequest,
) -> CtapResult<SharedSecret> {
    let peer = req
        .key_agreement
        .as_ref()
        .ok_or(StatusCode::MissingParameter)?;
    auth.key_agreement(protocol)
        .decapsulate(protocol, peer)
        .ok_or(StatusCode::InvalidParameter)
}

/// Decrypts newPinEnc and applies the PIN policy; returns (PIN hash, code points).
fn new_pin(
    auth: &Authenticator,
    protocol: Protocol,
    shared: &SharedSecret,
    enc: &[u8],
) -> CtapResult<([u8; 16], u8)> {
    let padded = protocol
        .decrypt(shared, enc)
        .ok_or(StatusCode::InvalidParameter)?;
    match policy::check_padded_pin(&padded, auth.store.pin_status().min_pin_length) {
        Ok((pin, n)) => Ok((policy::pin_hash(pin), n)),
        Err(PinError::BadPadding) => Err(StatusCode::InvalidParameter),
        Err(PinError::Policy) => Err(StatusCode::PinPolicyViolation),
    }
}

/// §6.5.5.5 setPIN.
fn set_pin(auth: &mut Authenticator, req: &ClientPinRequest) -> CtapResult<()> {
    let (Some(_), Some(param), Some(enc)) =
        (&req.key_agreement, &req.pin_uv_auth_param, &req.new_pin_enc)
    else {
        return Err(StatusCode::MissingParameter);
    };
    let protocol = req.protocol()?;
    if auth.pin_is_set() {
        return Err(StatusCode::PinAuthInvalid);
    }
    let shared = shared_secret(auth, protocol, req)?;
    if !protocol.verify(shared.hmac_key(), enc, param) {
        return Err(StatusCode::PinAuthInvalid);
    }
    let (hash, code_points) = new_pin(auth, protocol, &shared, enc)?;
    auth.store.set_pin(&hash, code_points)?;
    tracing::info!("PIN set");
    Ok(())
}

/// §6.5.5.6 changePIN.
fn change_pin(auth: &mut Authenticator, req: &ClientPinRequest) -> CtapResult<()> {
    let (Some(_), Some(param), Some(new_enc), Some(hash_enc)) = (
        &req.key_agreement,
        &req.pin_uv_auth_param,
        &req.new_pin_enc,
        &req.pin_hash_enc,
    ) else {
        return Err(StatusCode::MissingParameter);
    };
    let protocol = req.protocol()?;
    check_pin_usable(auth)?;
    let shared = shared_secret(auth, protocol, req)?;
    let mut message = new_enc.clone();
    message.extend_from_slice(hash_enc);
    if !protocol.verify(shared.hmac_key(), &message, param) {
        return Err(StatusCode::PinAuthInvalid);
    }
    verify_pin_hash(auth, protocol, &shared, hash_enc)?;
    let (hash, code_points) = new_pin(auth, protocol, &shared, new_enc)?;
    // A forced change must really change the PIN.
    if auth.store.pin_status().force_change && auth.store.pin_hash_matches(&hash) {
        return Err(StatusCode::PinPolicyViolation);
    }
    auth.store.set_pin(&hash, code_points)?;
    // Tokens issued under the old PIN are void.
    auth.state.token.reset();
    tracing::info!("PIN changed");
    Ok(())
}

/// PIN set, not blocked, not auth-blocked.
fn check_pin_usable(auth: &Authenticator) -> CtapResult<()> {
    if !auth.pin_is_set() {
        return Err(StatusCode::PinNotSet);
    }
    if auth.store.pin_status().retries == 0 {
        return Err(StatusCode::PinBlocked);
    }
    if auth.state.pin_failures >= MAX_CONSECUTIVE_PIN_FAILURES {
        return Err(StatusCode::PinAuthBlocked);
    }
    Ok(())
}

/// §6.5.5.7.2: the retry counter goes down on disk before the comparison; a match
/// restores it.
fn verify_pin_hash(
    auth: &mut Authenticator,
    protocol: Protocol,
    shared: &SharedSecret,
    hash_enc: &[u8],
) -> CtapResult<()> {
    let retries = auth.store.record_pin_attempt()?;
    let given = protocol.decrypt(shared, hash_enc);
    if given.is_some_and(|g| auth.store.pin_hash_matches(&g)) {
        auth.state.pin_failures = 0;
        return Ok(auth.store.pin_matched()?);
    }
    // A wrong PIN makes the platform start over with a new key agreement.
    *auth.key_agreement(protocol) = KeyAgreement::new();
    auth.state.pin_failures = auth.state.pin_failures.saturating_add(1);
    if retries == 0 {
        tracing::warn!("PIN blocked: reset the key to use it again");
        return Err(StatusCode::PinBlocked);
    }
    if auth.state.pin_failures >= MAX_CONSECUTIVE_PIN_FAILURES {
        return Err(StatusCode::PinAuthBlocked);
    }
    Err(StatusCode::PinInvalid)
}

/// getPinToken / getPinUvAuthTokenUsingPinWithPermissions.
fn token_using_pin(
    auth: &mut Authenticator,
    req: &ClientPinRequest,
    perms: Permissions,
    rp_id: Option<String>,
) -> CtapResult<ClientPinResponse> {
    let (Some(_), Some(hash_enc)) = (&req.key_agreement, &req.pin_hash_enc) else {
        return Err(StatusCode::MissingParameter);
    };
    let protocol = req.protocol()?;
    check_pin_usable(auth)?;
    let shared = shared_secret(auth, protocol, req)?;
    verify_pin_hash(auth, protocol, &shared, hash_enc)?;
    // §6.5.5.5 / §6.5.5.7.2: while forcePINChange is set, a correct PIN still gets
    // PIN_INVALID (no token) until changePIN; python-fido2's device suite checks it.
    if auth.store.pin_status().force_change {
        return Err(StatusCode::PinInvalid);
    }
    // A PIN proves the user, not their presence: makeCredential still wants a touch.
    issue_token(auth, protocol, &shared, perms, rp_id, false)
}

/// §6.5.5.7.1 getPinUvAuthTokenUsingUvWithPermissions.
fn token_using_uv(
    auth: &mut Authenticator,
    req: &ClientPinRequest,
    ctx: &RequestContext,
) -> CtapResult<ClientPinResponse> {
    if auth.config.uv.is_none() {
        return Err(StatusCode::InvalidSubcommand);
    }
    if req.key_agreement.is_none() {
        return Err(StatusCode::MissingParameter);
    }
    let protocol = req.protocol()?;
    let perms = req.permissions()?;
    let shared = shared_secret(auth, protocol, req)?;
    let touch = Touch {
        command: "clientPin",
        rp_id: req.rp_id.as_deref(),
        user_name: None,
    };
    auth.perform_builtin_uv(ctx, touch)?;
    issue_token(auth, protocol, &shared, perms, req.rp_id.clone(), true)
}

/// beginUsingPinUvAuthToken() with a fresh token, returned encrypted.
fn issue_token(
    auth: &mut Authenticator,
    protocol: Protocol,
    shared: &SharedSecret,
    perms: Permissions,
    rp_id: Option<String>,
    user_present: bool,
) -> CtapResult<ClientPinResponse> {
    let now = auth.now();
    let token = &mut auth.state.token;
    token.begin_using(protocol, perms, rp_id, user_present, true, now);
    Ok(ClientPinResponse {
        pin_uv_auth_token: Some(protocol.encrypt(shared, token.value())),
        ..Default::default()
    })
}
