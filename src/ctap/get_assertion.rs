//! authenticatorGetAssertion (0x02), CTAP 2.1 §6.2.

use std::collections::VecDeque;

use ciborium::Value;

use super::Authenticator;
use super::auth_data::{self, FLAG_UP, FLAG_UV};
use super::cbor::{MapBuilder, RequestMap, read};
use super::credential_id::CredentialSource;
use super::get_next_assertion::PendingAssertions;
use super::params::{CredentialDescriptor, Options};
use super::presence::RequestContext;
use super::runtime::StatefulCommand;
use super::status::{CtapResult, StatusCode};
use super::user_verification::{Operation, UvRequest};
use crate::crypto;

pub(super) fn get_assertion(
    auth: &mut Authenticator,
    params: &[u8],
    ctx: &RequestContext,
) -> CtapResult<Value> {
    if params.is_empty() {
        return Err(StatusCode::MissingParameter);
    }
    let mut m = RequestMap::parse(params)?;
    let rp_id = read::text(read::required(m.take(0x01))?)?;
    let client_data_hash = read::bytes(read::required(m.take(0x02))?)?;
    let allow_list = m
        .take(0x03)
        .map(CredentialDescriptor::parse_list)
        .transpose()?;
    let _extensions = m.take(0x04).map(read::map).transpose()?;
    let options = Options::parse(m.take(0x05))?;
    let pin_uv_auth_param = m.take(0x06).map(read::bytes).transpose()?;
    let pin_uv_auth_protocol = m.take(0x07).map(read::unsigned).transpose()?;

    // Step 5: "rk" is not an option of getAssertion.
    if options.rk.is_some() {
        return Err(StatusCode::UnsupportedOption);
    }
    // Steps 1–2, 4–6: pinUvAuthParam / built-in UV / alwaysUv.
    let v = auth.verify_user(
        Operation::GetAssertion,
        &UvRequest {
            rp_id: &rp_id,
            client_data_hash: &client_data_hash,
            pin_uv_auth_param: pin_uv_auth_param.as_deref(),
            pin_uv_auth_protocol,
            uv_option: options.uv,
        },
        ctx,
    )?;
    let up = options.up.unwrap_or(true);
    let rp_id_hash = crypto::sha256(rp_id.as_bytes());

    // Step 7: locate credentials. With an allowList: the listed ones that are ours for
    // this RP. Without: the RP's discoverable credentials, most recent first. credProtect
    // (§12.1): level 3 needs UV; level 2 without UV only through an allowList.
    let from_allow_list = allow_list.as_ref().is_some_and(|l| !l.is_empty());
    let ids: Vec<Vec<u8>> = match &allow_list {
        Some(list) if from_allow_list => list
            .iter()
            .filter(|d| {
                d.public_key
                    && auth
                        .find_credential(&rp_id_hash, &d.id)
                        .is_some_and(|c| c.cred_protect < 3 || v.uv)
            })
            .map(|d| d.id.clone())
            .take(1) // §6.2.2 step 11: with an allowList the authenticator picks one
            .collect(),
        _ => auth
            .store
            .discoverable_for_rp(&rp_id_hash)
            .into_iter()
            .filter(|c| c.cred_protect < 2 || v.uv)
            .map(|c| c.id)
            .collect(),
    };
    if ids.is_empty() {
        return Err(StatusCode::NoCredentials);
    }

    // Step 9: user presence unless up=false (a "silent" assertion); a token used for it
    // is used up.
    if up {
        auth.presence_for(&v, ctx, &format!("sign in to {rp_id}"))?;
        if v.token {
            auth.state.token.consume();
        }
    }
    let flags = if up { FLAG_UP } else { 0 } | if v.uv { FLAG_UV } else { 0 } | auth.backup_flags();

    let count = ids.len();
    let mut ids: VecDeque<Vec<u8>> = ids.into();
    let first = ids.pop_front().ok_or(StatusCode::NoCredentials)?;
    let number = (!from_allow_list).then_some(count);
    let resp = assertion(
        auth,
        &rp_id_hash,
        &client_data_hash,
        flags,
        &first,
        number,
        count > 1,
    )?;
    if !ids.is_empty() {
        let pending = PendingAssertions {
            rp_id_hash,
            client_data_hash,
            flags,
            remaining: ids,
        };
        let now = auth.now();
        auth.state
            .begin_stateful(StatefulCommand::GetNextAssertion(pending), now);
    }
    Ok(resp)
}

/// Builds one assertion response for credential `id`: bumps its counter (durably),
/// signs authenticatorData ‖ clientDataHash.
pub(super) fn assertion(
    auth: &mut Authenticator,
    rp_id_hash: &[u8; 32],
    client_data_hash: &[u8],
    flags: u8,
    id: &[u8],
    number_of_credentials: Option<usize>,
    several_accounts: bool,
) -> CtapResult<Value> {
    let source: CredentialSource = auth
        .find_credential(rp_id_hash, id)
        .ok_or(StatusCode::NoCredentials)?;
    let key = source.key().ok_or(StatusCode::Other)?;
    let counter = auth.store.bump_counter(id)?;
    let auth_data = auth_data::build(rp_id_hash, flags, counter, None, None);
    let mut signed = auth_data.clone();
    signed.extend_from_slice(client_data_hash);
    let signature = key.sign(&signed);
    // §6.2.2 "user": for a discoverable credential the user handle. Name and display
    // name only when the user was verified and the RP has several accounts here (the
    // platform then shows an account chooser); for a single account only the id, or
    // Chrome asks the user to confirm an account nobody needs to choose.
    let verified = flags & FLAG_UV != 0 && several_accounts;
    let user = if source.discoverable {
        auth.store.get_credential(id).map(|c| {
            let mut u = MapBuilder::new().text("id", Value::Bytes(c.user_id));
            if verified {
                u = u
                    .text_opt("name", c.user_name.as_deref())
                    .text_opt("displayName", c.user_display_name.as_deref());
            }
            u.build()
        })
    } else {
        None
    };
    let credential = MapBuilder::new()
        .text("id", Value::Bytes(id.to_vec()))
        .text("type", "public-key")
        .build();
    Ok(MapBuilder::new()
        .int(0x01, credential)
        .int(0x02, Value::Bytes(auth_data))
        .int(0x03, Value::Bytes(signature))
        .int_opt(0x04, user)
        .int_opt(
            0x05,
            number_of_credentials.map(|n| Value::Integer((n as u64).into())),
        )
        .build())
}
