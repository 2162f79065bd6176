//! authenticatorGetAssertion (0x02), CTAP 2.1 §6.2.

use std::collections::VecDeque;

use ciborium::Value;
use zeroize::Zeroizing;

use super::Authenticator;
use super::auth_data::{self, FLAG_UP, FLAG_UV};
use super::cbor::{MapBuilder, RequestMap, read};
use super::dispatcher::Response;
use super::events::{CredentialInfo, Event};
use super::extensions::{AssertionExtensions, CredProtect, GetAssertionExtensions};
use super::get_next_assertion::PendingAssertions;
use super::params::{CredentialDescriptor, Options, UserEntity, client_data_hash, rp_id};
use super::presence::{RequestContext, Touch};
use super::runtime::StatefulCommand;
use super::status::{CtapResult, StatusCode};
use super::user_verification::{Operation, UvRequest};
use crate::crypto;

pub(super) struct GetAssertionRequest {
    rp_id: String,
    client_data_hash: [u8; 32],
    allow_list: Vec<CredentialDescriptor>,
    /// Parsed with the request; an error in them is reported at step 10, where the
    /// extensions are processed.
    extensions: CtapResult<GetAssertionExtensions>,
    options: Options,
    pin_uv_auth_param: Option<Vec<u8>>,
    pin_uv_auth_protocol: Option<u64>,
}

impl GetAssertionRequest {
    pub fn parse(params: &[u8]) -> CtapResult<Self> {
        let mut m = RequestMap::parse(params)?;
        let rp_id = rp_id(m.required(0x01)?)?;
        let client_data_hash = client_data_hash(m.required(0x02)?)?;
        let allow_list = CredentialDescriptor::parse_list(m.take(0x03))?;
        let extensions = m.take(0x04).map(read::map).transpose()?;
        Ok(GetAssertionRequest {
            rp_id,
            client_data_hash,
            allow_list,
            extensions: GetAssertionExtensions::parse(extensions.unwrap_or_default()),
            options: Options::parse(m.take(0x05))?,
            pin_uv_auth_param: m.take(0x06).map(read::bytes).transpose()?,
            pin_uv_auth_protocol: m.take(0x07).map(read::unsigned).transpose()?,
        })
    }
}

/// One assertion: getAssertion's response, and getNextAssertion's.
pub(super) struct GetAssertionResponse {
    credential_id: Vec<u8>,
    auth_data: Vec<u8>,
    signature: Vec<u8>,
    /// For a discoverable credential.
    user: Option<UserEntity>,
    /// Without an allowList, in the first response only.
    number_of_credentials: Option<usize>,
    /// largeBlobKey (§12.3), when the extension asked for it and the credential has one.
    large_blob_key: Option<Zeroizing<[u8; 32]>>,
}

impl Response for GetAssertionResponse {
    fn encode(self) -> Option<Value> {
        MapBuilder::new()
            .int(
                0x01,
                CredentialDescriptor::encode_public_key(self.credential_id),
            )
            .int(0x02, Value::Bytes(self.auth_data))
            .int(0x03, Value::Bytes(self.signature))
            .int_opt(0x04, self.user.map(UserEntity::encode))
            .int_opt(0x05, self.number_of_credentials.map(|n| n as u64))
            .int_opt(0x07, self.large_blob_key.map(|k| Value::Bytes(k.to_vec())))
            .build()
            .into()
    }
}

/// What every assertion of one getAssertion shares; getNextAssertion keeps it.
pub(super) struct AssertionContext {
    pub rp_id: String,
    pub rp_id_hash: [u8; 32],
    pub client_data_hash: [u8; 32],
    /// UP and UV; BE and BS are each credential's.
    pub flags: u8,
    pub extensions: AssertionExtensions,
    /// The RP has several accounts here: user names may be shown (§6.2.2 "user").
    pub several_accounts: bool,
}

pub(super) fn get_assertion(
    auth: &mut Authenticator,
    req: GetAssertionRequest,
    ctx: &RequestContext,
) -> CtapResult<GetAssertionResponse> {
    // Step 5: "rk" is not an option of getAssertion.
    if req.options.rk.is_some() {
        return Err(StatusCode::UnsupportedOption);
    }
    // Steps 1–2, 4–6: pinUvAuthParam / built-in UV / alwaysUv.
    let v = auth.verify_user(
        Operation::GetAssertion,
        &UvRequest {
            rp_id: &req.rp_id,
            client_data_hash: &req.client_data_hash,
            pin_uv_auth_param: req.pin_uv_auth_param.as_deref(),
            pin_uv_auth_protocol: req.pin_uv_auth_protocol,
            uv_option: req.options.uv,
            user_name: None,
        },
        ctx,
    )?;
    let up = req.options.up.unwrap_or(true);
    let rp_id_hash = crypto::sha256(req.rp_id.as_bytes());

    // Step 7: locate credentials.
    let from_allow_list = !req.allow_list.is_empty();
    let mut ids = locate_credentials(auth, &req.allow_list, &rp_id_hash, v.uv);
    if ids.is_empty() {
        return Err(StatusCode::NoCredentials);
    }

    // Step 9: user presence unless up=false (a "silent" assertion); a token used for it
    // is used up.
    if up {
        let touch = Touch {
            command: "getAssertion",
            rp_id: Some(&req.rp_id),
            user_name: None,
        };
        auth.presence_for(&v, ctx, touch)?;
        if v.token {
            auth.state.token.consume();
        }
    }
    // Step 10: extensions.
    let extensions = req.extensions?.prepare(&auth.state.key_agreement, up)?;

    let count = ids.len();
    let context = AssertionContext {
        rp_id: req.rp_id,
        rp_id_hash,
        client_data_hash: req.client_data_hash,
        flags: if up { FLAG_UP } else { 0 } | if v.uv { FLAG_UV } else { 0 },
        extensions,
        several_accounts: count > 1,
    };
    let first = ids.pop_front().ok_or(StatusCode::NoCredentials)?;
    let mut resp = assertion(auth, &context, &first)?;
    resp.number_of_credentials = (!from_allow_list).then_some(count);
    if !ids.is_empty() {
        let pending = PendingAssertions {
            context,
            remaining: ids,
        };
        let now = auth.now();
        auth.state
            .begin_stateful(StatefulCommand::GetNextAssertion(pending), now);
    }
    Ok(resp)
}

/// Step 7: with an allowList, the first listed credential that is ours for this RP
/// (step 11: the authenticator picks one); without, the RP's discoverable credentials,
/// most recent first. credProtect (§12.1) may hide them.
fn locate_credentials(
    auth: &Authenticator,
    allow_list: &[CredentialDescriptor],
    rp_id_hash: &[u8; 32],
    uv: bool,
) -> VecDeque<Vec<u8>> {
    if !allow_list.is_empty() {
        return allow_list
            .iter()
            .find(|d| {
                d.public_key
                    && auth
                        .find_credential(rp_id_hash, &d.id)
                        .is_some_and(|c| c.props.cred_protect.allows(uv, true))
            })
            .map(|d| d.id.clone())
            .into_iter()
            .collect();
    }
    auth.store
        .discoverable_for_rp(rp_id_hash)
        .into_iter()
        .filter(|c| {
            CredProtect::from_level(c.cred_protect.into()).is_some_and(|p| p.allows(uv, false))
        })
        .map(|c| c.id)
        .collect()
}

/// One assertion with credential `id` (step 12): bumps its counter (durably), signs
/// authenticatorData ‖ clientDataHash.
pub(super) fn assertion(
    auth: &mut Authenticator,
    context: &AssertionContext,
    id: &[u8],
) -> CtapResult<GetAssertionResponse> {
    let source = auth
        .find_credential(&context.rp_id_hash, id)
        .ok_or(StatusCode::NoCredentials)?;
    let counter = auth.store.bump_counter(id)?;
    // The CredRandom follows the user verification performed (not an override bit).
    let outputs = context
        .extensions
        .outputs(&source, context.flags & FLAG_UV != 0);
    let backup = auth.backup_of(id);
    let overrides = auth.config.overrides.get();
    let flags = overrides.flags(context.flags | Authenticator::backup_flags(backup));
    let auth_data = auth_data::build(
        &context.rp_id_hash,
        flags,
        counter,
        None,
        outputs.encode_auth_data(),
    );
    let mut signed = auth_data.clone();
    signed.extend_from_slice(&context.client_data_hash);
    // §6.2.2 "user": for a discoverable credential the user handle. Name and display
    // name only when the user was verified and the RP has several accounts here (the
    // platform then shows an account chooser); for a single account only the id, or
    // Chrome asks the user to confirm an account nobody needs to choose.
    let names = context.flags & FLAG_UV != 0 && context.several_accounts;
    let stored = auth.store.get_credential(id);
    let user = stored
        .as_ref()
        .filter(|_| source.props.discoverable)
        .map(|c| UserEntity {
            id: c.user_id.clone(),
            name: c.user_name.clone().filter(|_| names),
            display_name: c.user_display_name.clone().filter(|_| names),
        });
    auth.config
        .events
        .emit(Event::CredentialAsserted(CredentialInfo::asserted(
            id,
            source.props.discoverable,
            context.rp_id.clone(),
            stored,
            counter,
            backup,
        )));
    Ok(GetAssertionResponse {
        credential_id: id.to_vec(),
        signature: overrides.signature(source.sign(&signed).ok_or(StatusCode::Other)?),
        auth_data,
        user,
        number_of_credentials: None,
        large_blob_key: outputs.large_blob_key,
    })
}
