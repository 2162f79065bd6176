//! authenticatorCredentialManagement (0x0A, and 0x41 credentialMgmtPreview), CTAP 2.1
//! §6.8: metadata, enumerate RPs and credentials, delete, update user information.
//! Every subcommand but the GetNext ones needs a pinUvAuthToken with the cm permission;
//! an RP-bound token acts only on its RP.

use std::collections::VecDeque;

use ciborium::Value;

use super::Authenticator;
use super::cbor::{self, MapBuilder, RequestMap, read};
use super::params::{CredentialDescriptor, UserEntity};
use super::runtime::StatefulCommand;
use super::status::{CtapResult, StatusCode};
use crate::crypto;
use crate::pin::{Permissions, Protocol};
use crate::store::RpInfo;

const GET_CREDS_METADATA: u64 = 0x01;
const ENUMERATE_RPS_BEGIN: u64 = 0x02;
const ENUMERATE_RPS_NEXT: u64 = 0x03;
const ENUMERATE_CREDENTIALS_BEGIN: u64 = 0x04;
const ENUMERATE_CREDENTIALS_NEXT: u64 = 0x05;
const DELETE_CREDENTIAL: u64 = 0x06;
const UPDATE_USER_INFORMATION: u64 = 0x07;

pub(super) fn credential_management(
    auth: &mut Authenticator,
    params: &[u8],
    enumeration: Option<StatefulCommand>,
) -> CtapResult<Option<Value>> {
    if params.is_empty() {
        return Err(StatusCode::MissingParameter);
    }
    let mut m = RequestMap::parse(params)?;
    let sub = read::unsigned(read::required(m.take(0x01))?)?;
    let sub_params = m
        .take(0x02)
        .map(|v| read::map(v).map(Value::Map))
        .transpose()?;
    let protocol = m.take(0x03).map(read::unsigned).transpose()?;
    let param = m.take(0x04).map(read::bytes).transpose()?;

    match sub {
        ENUMERATE_RPS_NEXT => return next_rp(auth, enumeration).map(Some),
        ENUMERATE_CREDENTIALS_NEXT => return next_credential(auth, enumeration).map(Some),
        GET_CREDS_METADATA
        | ENUMERATE_RPS_BEGIN
        | ENUMERATE_CREDENTIALS_BEGIN
        | DELETE_CREDENTIAL
        | UPDATE_USER_INFORMATION => {}
        _ => return Err(StatusCode::InvalidSubcommand),
    }
    // Authorisation: verify(token, subCommand ‖ subCommandParams) with the cm permission.
    let param = param.ok_or(StatusCode::PuatRequired)?;
    let protocol = Protocol::from_param(protocol.ok_or(StatusCode::MissingParameter)?)
        .ok_or(StatusCode::InvalidParameter)?;
    let mut message = vec![sub as u8];
    if let Some(sp) = &sub_params {
        message.extend_from_slice(&cbor::encode(sp));
    }
    if !auth
        .state
        .token
        .verify(protocol, &message, &param, auth.now())
        || !auth
            .state
            .token
            .has_permission(Permissions::CREDENTIAL_MANAGEMENT)
    {
        return Err(StatusCode::PinAuthInvalid);
    }
    let mut sp = match sub_params {
        Some(Value::Map(m)) => Some(RequestMap::from_entries(m)),
        _ => None,
    };
    match sub {
        GET_CREDS_METADATA => {
            require_unbound(auth)?;
            let n = auth.store.discoverable_count();
            let left = auth.store.remaining_capacity();
            Ok(Some(
                MapBuilder::new()
                    .int(0x01, Value::Integer((n as u64).into()))
                    .int(0x02, Value::Integer((left as u64).into()))
                    .build(),
            ))
        }
        ENUMERATE_RPS_BEGIN => {
            require_unbound(auth)?;
            let rps = auth.store.rps();
            let total = rps.len();
            let mut remaining: VecDeque<_> = rps.into();
            let first = remaining.pop_front().ok_or(StatusCode::NoCredentials)?;
            if !remaining.is_empty() {
                let now = auth.now();
                auth.state
                    .begin_stateful(StatefulCommand::EnumerateRps(remaining), now);
            }
            Ok(Some(rp_response(&first, Some(total))))
        }
        ENUMERATE_CREDENTIALS_BEGIN => {
            let sp = sp.as_mut().ok_or(StatusCode::MissingParameter)?;
            let rp_id_hash = read::bytes(read::required(sp.take(0x01))?)?;
            if let Some(bound) = auth.state.token.rp_id()
                && crypto::sha256(bound.as_bytes())[..] != rp_id_hash[..]
            {
                return Err(StatusCode::PinAuthInvalid);
            }
            let creds = match <[u8; 32]>::try_from(&rp_id_hash[..]) {
                Ok(hash) => auth.store.discoverable_for_rp(&hash),
                Err(_) => Vec::new(),
            };
            let total = creds.len();
            let mut remaining: VecDeque<Vec<u8>> = creds.into_iter().map(|c| c.id).collect();
            let first = remaining.pop_front().ok_or(StatusCode::NoCredentials)?;
            if !remaining.is_empty() {
                let now = auth.now();
                auth.state
                    .begin_stateful(StatefulCommand::EnumerateCredentials(remaining), now);
            }
            credential_response(auth, &first, Some(total)).map(Some)
        }
        DELETE_CREDENTIAL => {
            let sp = sp.as_mut().ok_or(StatusCode::MissingParameter)?;
            let d = CredentialDescriptor::parse(read::required(sp.take(0x02))?)?;
            let rp_id = auth
                .store
                .get_credential(&d.id)
                .filter(|c| c.discoverable)
                .map(|c| c.rp_id)
                .ok_or(StatusCode::NoCredentials)?;
            if !auth.state.token.allows_rp(&rp_id) {
                return Err(StatusCode::PinAuthInvalid);
            }
            auth.store.delete_credential(&d.id)?;
            Ok(None)
        }
        UPDATE_USER_INFORMATION => {
            let sp = sp.as_mut().ok_or(StatusCode::MissingParameter)?;
            let d = CredentialDescriptor::parse(read::required(sp.take(0x02))?)?;
            let user = UserEntity::parse(read::required(sp.take(0x03))?)?;
            let c = auth
                .store
                .get_credential(&d.id)
                .filter(|c| c.discoverable)
                .ok_or(StatusCode::NoCredentials)?;
            if !auth.state.token.allows_rp(&c.rp_id) {
                return Err(StatusCode::PinAuthInvalid);
            }
            // The user handle is the account's identity: it cannot change.
            if c.user_id != user.id {
                return Err(StatusCode::InvalidParameter);
            }
            auth.store
                .update_user(&d.id, user.name, user.display_name)?;
            Ok(None)
        }
        _ => Err(StatusCode::InvalidSubcommand),
    }
}

/// getCredsMetadata and enumerateRPs need a token that is not bound to one RP.
fn require_unbound(auth: &Authenticator) -> CtapResult<()> {
    if auth.state.token.rp_id().is_some() {
        Err(StatusCode::PinAuthInvalid)
    } else {
        Ok(())
    }
}

fn rp_response(rp: &RpInfo, total: Option<usize>) -> Value {
    let entity = MapBuilder::new()
        .text("id", rp.id.as_str())
        .text_opt("name", rp.name.as_deref())
        .build();
    MapBuilder::new()
        .int(0x03, entity)
        .int(
            0x04,
            Value::Bytes(crypto::sha256(rp.id.as_bytes()).to_vec()),
        )
        .int_opt(0x05, total.map(|t| Value::Integer((t as u64).into())))
        .build()
}

fn credential_response(auth: &Authenticator, id: &[u8], total: Option<usize>) -> CtapResult<Value> {
    let c = auth
        .store
        .get_credential(id)
        .ok_or(StatusCode::NoCredentials)?;
    let rp_id_hash = crypto::sha256(c.rp_id.as_bytes());
    let src = auth
        .find_credential(&rp_id_hash, id)
        .ok_or(StatusCode::Other)?;
    let user = MapBuilder::new()
        .text("id", Value::Bytes(c.user_id))
        .text_opt("name", c.user_name.as_deref())
        .text_opt("displayName", c.user_display_name.as_deref())
        .build();
    Ok(MapBuilder::new()
        .int(0x06, user)
        .int(
            0x07,
            MapBuilder::new()
                .text("id", Value::Bytes(id.to_vec()))
                .text("type", "public-key")
                .build(),
        )
        .int(0x08, src.key().ok_or(StatusCode::Other)?.cose_public_key())
        .int_opt(0x09, total.map(|t| Value::Integer((t as u64).into())))
        .int(0x0a, Value::Integer(c.cred_protect.into()))
        .build())
}

fn next_rp(auth: &mut Authenticator, state: Option<StatefulCommand>) -> CtapResult<Value> {
    let Some(StatefulCommand::EnumerateRps(mut remaining)) = state else {
        return Err(StatusCode::NotAllowed);
    };
    let rp = remaining.pop_front().ok_or(StatusCode::NotAllowed)?;
    if !remaining.is_empty() {
        let now = auth.now();
        auth.state
            .begin_stateful(StatefulCommand::EnumerateRps(remaining), now);
    }
    Ok(rp_response(&rp, None))
}

fn next_credential(auth: &mut Authenticator, state: Option<StatefulCommand>) -> CtapResult<Value> {
    let Some(StatefulCommand::EnumerateCredentials(mut remaining)) = state else {
        return Err(StatusCode::NotAllowed);
    };
    let id = remaining.pop_front().ok_or(StatusCode::NotAllowed)?;
    if !remaining.is_empty() {
        let now = auth.now();
        auth.state
            .begin_stateful(StatefulCommand::EnumerateCredentials(remaining), now);
    }
    credential_response(auth, &id, None)
}
