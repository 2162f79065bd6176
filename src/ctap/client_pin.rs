//! authenticatorClientPIN (0x06), CTAP 2.1 §6.5.5: PIN retries, key agreement, set and
//! change the PIN, and the pinUvAuthToken (by PIN, legacy or with permissions, or by
//! built-in UV).

use ciborium::Value;

use super::Authenticator;
use super::cbor::{MapBuilder, RequestMap, read};
use super::presence::RequestContext;
use super::status::{CtapResult, StatusCode};
use crate::pin::policy::{self, MAX_CONSECUTIVE_PIN_FAILURES, PinError};
use crate::pin::{Permissions, Protocol, SharedSecret};

const GET_PIN_RETRIES: u64 = 0x01;
const GET_KEY_AGREEMENT: u64 = 0x02;
const SET_PIN: u64 = 0x03;
const CHANGE_PIN: u64 = 0x04;
const GET_PIN_TOKEN: u64 = 0x05;
const GET_TOKEN_USING_UV: u64 = 0x06;
const GET_UV_RETRIES: u64 = 0x07;
const GET_TOKEN_USING_PIN: u64 = 0x09;

struct Params {
    protocol: Option<u64>,
    key_agreement: Option<Value>,
    pin_uv_auth_param: Option<Vec<u8>>,
    new_pin_enc: Option<Vec<u8>>,
    pin_hash_enc: Option<Vec<u8>>,
    permissions: Option<u64>,
    rp_id: Option<String>,
}

pub(super) fn client_pin(
    auth: &mut Authenticator,
    params: &[u8],
    ctx: &RequestContext,
) -> CtapResult<Option<Value>> {
    if params.is_empty() {
        return Err(StatusCode::MissingParameter);
    }
    let mut m = RequestMap::parse(params)?;
    let protocol = m.take(0x01).map(read::unsigned).transpose()?;
    let sub = read::unsigned(read::required(m.take(0x02))?)?;
    let key_agreement = m
        .take(0x03)
        .map(|v| read::map(v).map(Value::Map))
        .transpose()?;
    let p = Params {
        protocol,
        key_agreement,
        pin_uv_auth_param: m.take(0x04).map(read::bytes).transpose()?,
        new_pin_enc: m.take(0x05).map(read::bytes).transpose()?,
        pin_hash_enc: m.take(0x06).map(read::bytes).transpose()?,
        permissions: m.take(0x09).map(read::unsigned).transpose()?,
        rp_id: m.take(0x0a).map(read::text).transpose()?,
    };
    match sub {
        GET_PIN_RETRIES => Ok(Some(
            MapBuilder::new()
                .int(0x03, Value::Integer(auth.store.pin_status().retries.into()))
                .int(
                    0x04,
                    auth.state.pin_failures >= MAX_CONSECUTIVE_PIN_FAILURES,
                )
                .build(),
        )),
        GET_KEY_AGREEMENT => {
            let protocol = protocol_of(&p)?;
            Ok(Some(
                MapBuilder::new()
                    .int(0x01, auth.key_agreement(protocol).public_cose())
                    .build(),
            ))
        }
        SET_PIN => set_pin(auth, &p).map(|()| None),
        CHANGE_PIN => change_pin(auth, &p).map(|()| None),
        GET_PIN_TOKEN => {
            // The legacy subcommand knows no permissions: mc and ga, not RP-bound.
            if p.permissions.is_some() || p.rp_id.is_some() {
                return Err(StatusCode::InvalidParameter);
            }
            let perms = Permissions::MAKE_CREDENTIAL.union(Permissions::GET_ASSERTION);
            token_using_pin(auth, &p, perms, None).map(Some)
        }
        GET_TOKEN_USING_PIN => {
            let perms = permissions_of(&p)?;
            token_using_pin(auth, &p, perms, p.rp_id.clone()).map(Some)
        }
        GET_TOKEN_USING_UV => token_using_uv(auth, &p, ctx).map(Some),
        GET_UV_RETRIES => {
            if auth.config.uv.is_none() {
                return Err(StatusCode::InvalidSubcommand);
            }
            Ok(Some(
                MapBuilder::new()
                    .int(
                        0x05,
                        Value::Integer(auth.store.pin_status().uv_retries.into()),
                    )
                    .build(),
            ))
        }
        _ => Err(StatusCode::InvalidSubcommand),
    }
}

fn protocol_of(p: &Params) -> CtapResult<Protocol> {
    Protocol::from_param(p.protocol.ok_or(StatusCode::MissingParameter)?)
        .ok_or(StatusCode::InvalidParameter)
}

fn permissions_of(p: &Params) -> CtapResult<Permissions> {
    match Permissions::from_request(p.permissions.ok_or(StatusCode::MissingParameter)?) {
        Ok(perms) => Ok(perms),
        Err(None) => Err(StatusCode::InvalidParameter),
        Err(Some(())) => Err(StatusCode::UnauthorizedPermission),
    }
}

fn shared_secret(
    auth: &mut Authenticator,
    protocol: Protocol,
    p: &Params,
) -> CtapResult<SharedSecret> {
    let peer = p
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
fn set_pin(auth: &mut Authenticator, p: &Params) -> CtapResult<()> {
    let (Some(_), Some(param), Some(enc)) =
        (&p.key_agreement, &p.pin_uv_auth_param, &p.new_pin_enc)
    else {
        return Err(StatusCode::MissingParameter);
    };
    let protocol = protocol_of(p)?;
    if auth.pin_is_set() {
        return Err(StatusCode::PinAuthInvalid);
    }
    let shared = shared_secret(auth, protocol, p)?;
    if !protocol.verify(shared.hmac_key(), enc, param) {
        return Err(StatusCode::PinAuthInvalid);
    }
    let (hash, code_points) = new_pin(auth, protocol, &shared, enc)?;
    auth.store.set_pin(&hash, code_points)?;
    tracing::info!("PIN set");
    Ok(())
}

/// §6.5.5.6 changePIN.
fn change_pin(auth: &mut Authenticator, p: &Params) -> CtapResult<()> {
    let (Some(_), Some(param), Some(new_enc), Some(hash_enc)) = (
        &p.key_agreement,
        &p.pin_uv_auth_param,
        &p.new_pin_enc,
        &p.pin_hash_enc,
    ) else {
        return Err(StatusCode::MissingParameter);
    };
    let protocol = protocol_of(p)?;
    check_pin_usable(auth)?;
    let shared = shared_secret(auth, protocol, p)?;
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

/// §6.5.5.7.2 steps: the retry counter goes down on disk before the comparison; a match
/// restores it.
fn verify_pin_hash(
    auth: &mut Authenticator,
    protocol: Protocol,
    shared: &SharedSecret,
    hash_enc: &[u8],
) -> CtapResult<()> {
    let retries = auth.store.record_pin_attempt()?;
    let given = protocol.decrypt(shared, hash_enc);
    if !given.is_some_and(|g| auth.store.pin_hash_matches(&g)) {
        // A wrong PIN makes the platform start over with a new key agreement.
        *auth.key_agreement(protocol) = crate::pin::KeyAgreement::new();
        auth.state.pin_failures = auth.state.pin_failures.saturating_add(1);
        if retries == 0 {
            tracing::warn!("PIN blocked: reset the key to use it again");
            return Err(StatusCode::PinBlocked);
        }
        if auth.state.pin_failures >= MAX_CONSECUTIVE_PIN_FAILURES {
            return Err(StatusCode::PinAuthBlocked);
        }
        return Err(StatusCode::PinInvalid);
    }
    auth.state.pin_failures = 0;
    auth.store.pin_matched()?;
    Ok(())
}

/// getPinToken / getPinUvAuthTokenUsingPinWithPermissions.
fn token_using_pin(
    auth: &mut Authenticator,
    p: &Params,
    perms: Permissions,
    rp_id: Option<String>,
) -> CtapResult<Value> {
    let (Some(_), Some(hash_enc)) = (&p.key_agreement, &p.pin_hash_enc) else {
        return Err(StatusCode::MissingParameter);
    };
    let protocol = protocol_of(p)?;
    check_pin_usable(auth)?;
    let shared = shared_secret(auth, protocol, p)?;
    verify_pin_hash(auth, protocol, &shared, hash_enc)?;
    if auth.store.pin_status().force_change {
        return Err(StatusCode::PinPolicyViolation);
    }
    // A PIN proves the user, not their presence: makeCredential still wants a touch.
    auth.state
        .token
        .begin_using(protocol, perms, rp_id, false, true, auth.now());
    Ok(MapBuilder::new()
        .int(
            0x02,
            Value::Bytes(protocol.encrypt(&shared, auth.state.token.value())),
        )
        .build())
}

/// §6.5.5.7.1 getPinUvAuthTokenUsingUvWithPermissions.
fn token_using_uv(auth: &mut Authenticator, p: &Params, ctx: &RequestContext) -> CtapResult<Value> {
    if auth.config.uv.is_none() {
        return Err(StatusCode::InvalidSubcommand);
    }
    if p.key_agreement.is_none() {
        return Err(StatusCode::MissingParameter);
    }
    let protocol = protocol_of(p)?;
    let perms = permissions_of(p)?;
    let shared = shared_secret(auth, protocol, p)?;
    auth.perform_builtin_uv(ctx, "verify the user (built-in UV)")?;
    auth.state
        .token
        .begin_using(protocol, perms, p.rp_id.clone(), true, true, auth.now());
    Ok(MapBuilder::new()
        .int(
            0x02,
            Value::Bytes(protocol.encrypt(&shared, auth.state.token.value())),
        )
        .build())
}
