//! authenticatorCredentialManagement (0x0A, and 0x41 credentialMgmtPreview), CTAP 2.1
//! §6.8: metadata, enumerate RPs and credentials, delete, update user information.
//! Every subcommand but the GetNext ones needs a pinUvAuthToken with the cm permission;
//! an RP-bound token acts only on its RP.

use std::collections::VecDeque;

use ciborium::Value;

use super::Authenticator;
use super::cbor::{MapBuilder, RequestMap, read};
use super::dispatcher::Response;
use super::events::Event;
use super::params::{CredentialDescriptor, SubCommandRequest, UserEntity, pin_uv_auth_protocol};
use super::runtime::StatefulCommand;
use super::status::{CtapResult, StatusCode};
use super::user_verification::RpScope;
use crate::crypto;
use crate::pin::Permissions;
use crate::store::{Credential, RpInfo};

enum SubCommand {
    GetCredsMetadata,
    EnumerateRpsBegin,
    EnumerateRpsGetNextRp,
    EnumerateCredentialsBegin {
        rp_id_hash: Vec<u8>,
    },
    EnumerateCredentialsGetNextCredential,
    DeleteCredential {
        credential_id: Vec<u8>,
    },
    UpdateUserInformation {
        credential_id: Vec<u8>,
        user: UserEntity,
    },
}

impl SubCommand {
    /// The subcommand `code` with its subCommandParams. An unknown code is an error at
    /// once; an error in the parameters is for after the token check (§6.8: verify
    /// first), so it comes back inside.
    fn parse(code: u64, params: Option<RequestMap>) -> CtapResult<CtapResult<SubCommand>> {
        Ok(match code {
            0x01 => Ok(SubCommand::GetCredsMetadata),
            0x02 => Ok(SubCommand::EnumerateRpsBegin),
            0x03 => Ok(SubCommand::EnumerateRpsGetNextRp),
            0x05 => Ok(SubCommand::EnumerateCredentialsGetNextCredential),
            0x04 | 0x06 | 0x07 => Self::with_params(code, params),
            _ => return Err(StatusCode::InvalidSubcommand),
        })
    }

    fn with_params(code: u64, params: Option<RequestMap>) -> CtapResult<SubCommand> {
        let mut p = params.ok_or(StatusCode::MissingParameter)?;
        Ok(match code {
            0x04 => SubCommand::EnumerateCredentialsBegin {
                rp_id_hash: read::bytes(p.required(0x01)?)?,
            },
            0x06 => SubCommand::DeleteCredential {
                credential_id: CredentialDescriptor::parse(p.required(0x02)?)?.id,
            },
            _ => SubCommand::UpdateUserInformation {
                credential_id: CredentialDescriptor::parse(p.required(0x02)?)?.id,
                user: UserEntity::parse(p.required(0x03)?)?,
            },
        })
    }
}

pub(super) struct CredentialManagementRequest {
    sub_command: CtapResult<SubCommand>,
    /// What the token authenticates: subCommand ‖ subCommandParams, the latter in its
    /// canonical encoding (platforms must send canonical CBOR, so it is what they sent).
    message: Vec<u8>,
    pin_uv_auth_protocol: Option<u64>,
    pin_uv_auth_param: Option<Vec<u8>>,
}

impl CredentialManagementRequest {
    pub fn parse(params: &[u8]) -> CtapResult<Self> {
        let req = SubCommandRequest::parse(params)?;
        let message = req.message(&[]);
        let sub_params = req.sub_command_params.map(RequestMap::from_entries);
        Ok(CredentialManagementRequest {
            sub_command: SubCommand::parse(req.sub_command, sub_params)?,
            message,
            pin_uv_auth_protocol: req.pin_uv_auth_protocol,
            pin_uv_auth_param: req.pin_uv_auth_param,
        })
    }
}

#[derive(Default)]
pub(super) struct CredentialManagementResponse {
    existing_resident_credentials_count: Option<usize>,
    max_possible_remaining_resident_credentials_count: Option<usize>,
    rp: Option<RpInfo>,
    total_rps: Option<usize>,
    user: Option<UserEntity>,
    credential_id: Option<Vec<u8>>,
    public_key: Option<Value>,
    total_credentials: Option<usize>,
    cred_protect: Option<u8>,
    large_blob_key: Option<zeroize::Zeroizing<[u8; 32]>>,
}

impl Response for CredentialManagementResponse {
    fn encode(self) -> Option<Value> {
        let count = |n: Option<usize>| n.map(|n| n as u64);
        let rp_id_hash = self
            .rp
            .as_ref()
            .map(|rp| Value::Bytes(crypto::sha256(rp.id.as_bytes()).to_vec()));
        let rp = self.rp.map(|rp| {
            MapBuilder::new()
                .text("id", rp.id)
                .text_opt("name", rp.name)
                .build()
        });
        MapBuilder::new()
            .int_opt(0x01, count(self.existing_resident_credentials_count))
            .int_opt(
                0x02,
                count(self.max_possible_remaining_resident_credentials_count),
            )
            .int_opt(0x03, rp)
            .int_opt(0x04, rp_id_hash)
            .int_opt(0x05, count(self.total_rps))
            .int_opt(0x06, self.user.map(UserEntity::encode))
            .int_opt(
                0x07,
                self.credential_id
                    .map(CredentialDescriptor::encode_public_key),
            )
            .int_opt(0x08, self.public_key)
            .int_opt(0x09, count(self.total_credentials))
            .int_opt(0x0a, self.cred_protect)
            .int_opt(0x0b, self.large_blob_key.map(|k| Value::Bytes(k.to_vec())))
            .build_non_empty()
    }
}

pub(super) fn credential_management(
    auth: &mut Authenticator,
    req: CredentialManagementRequest,
    enumeration: Option<StatefulCommand>,
) -> CtapResult<CredentialManagementResponse> {
    let sub = match req.sub_command {
        Ok(SubCommand::EnumerateRpsGetNextRp) => return next_rp(auth, enumeration),
        Ok(SubCommand::EnumerateCredentialsGetNextCredential) => {
            return next_credential(auth, enumeration);
        }
        sub => sub,
    };
    // The discoverable credential a delete or update names: the token must allow its RP.
    let named = match &sub {
        Ok(
            SubCommand::DeleteCredential { credential_id }
            | SubCommand::UpdateUserInformation { credential_id, .. },
        ) => auth.store.get_credential(credential_id),
        _ => None,
    }
    .filter(|c| c.discoverable);
    let rp = match (&sub, &named) {
        (Ok(SubCommand::GetCredsMetadata | SubCommand::EnumerateRpsBegin), _) => RpScope::All,
        (Ok(SubCommand::EnumerateCredentialsBegin { rp_id_hash }), _) => {
            RpScope::IdHash(rp_id_hash)
        }
        (_, Some(c)) => RpScope::Id(&c.rp_id),
        _ => RpScope::None,
    };
    let param = req.pin_uv_auth_param.ok_or(StatusCode::PuatRequired)?;
    let protocol = pin_uv_auth_protocol(req.pin_uv_auth_protocol)?;
    let cm = Permissions::CREDENTIAL_MANAGEMENT;
    auth.authorize(protocol, &param, &req.message, cm, rp)?;

    match sub? {
        SubCommand::GetCredsMetadata => Ok(CredentialManagementResponse {
            existing_resident_credentials_count: Some(auth.store.discoverable_count()),
            max_possible_remaining_resident_credentials_count: Some(
                auth.store.remaining_capacity(),
            ),
            ..Default::default()
        }),
        SubCommand::EnumerateRpsBegin => enumerate_rps_begin(auth),
        SubCommand::EnumerateCredentialsBegin { rp_id_hash } => {
            enumerate_credentials_begin(auth, &rp_id_hash)
        }
        SubCommand::DeleteCredential { .. } => {
            let c = named.ok_or(StatusCode::NoCredentials)?;
            auth.store.delete_credential(&c.id)?;
            auth.config.events.emit(Event::CredentialDeleted {
                credential_id: c.id,
            });
            Ok(CredentialManagementResponse::default())
        }
        SubCommand::UpdateUserInformation { user, .. } => {
            let c = named.ok_or(StatusCode::NoCredentials)?;
            // The user handle is the account's identity: it cannot change.
            if c.user_id != user.id {
                return Err(StatusCode::InvalidParameter);
            }
            auth.store
                .update_user(&c.id, user.name, user.display_name)?;
            if let Some(updated) = auth.credential(&c.id, None) {
                auth.config
                    .events
                    .emit(Event::CredentialUpdated(updated.info));
            }
            Ok(CredentialManagementResponse::default())
        }
        // Answered above, without a token.
        SubCommand::EnumerateRpsGetNextRp | SubCommand::EnumerateCredentialsGetNextCredential => {
            Err(StatusCode::NotAllowed)
        }
    }
}

/// enumerateRPsBegin (§6.8.3): the first RP and their number; the rest follow.
fn enumerate_rps_begin(auth: &mut Authenticator) -> CtapResult<CredentialManagementResponse> {
    let rps: VecDeque<RpInfo> = auth.store.rps().into();
    if rps.is_empty() {
        return Err(StatusCode::NoCredentials);
    }
    let total = rps.len();
    let mut resp = next_rp(auth, Some(StatefulCommand::EnumerateRps(rps)))?;
    resp.total_rps = Some(total);
    Ok(resp)
}

/// enumerateCredentialsBegin (§6.8.4): the RP's first credential (most recent) and
/// their number; the rest follow.
fn enumerate_credentials_begin(
    auth: &mut Authenticator,
    rp_id_hash: &[u8],
) -> CtapResult<CredentialManagementResponse> {
    let ids: VecDeque<Vec<u8>> = match <[u8; 32]>::try_from(rp_id_hash) {
        Ok(hash) => auth.store.discoverable_for_rp(&hash),
        Err(_) => Vec::new(),
    }
    .into_iter()
    .map(|c| c.id)
    .collect();
    if ids.is_empty() {
        return Err(StatusCode::NoCredentials);
    }
    let total = ids.len();
    let mut resp = next_credential(auth, Some(StatefulCommand::EnumerateCredentials(ids)))?;
    resp.total_credentials = Some(total);
    Ok(resp)
}

/// enumerateRPsGetNextRP (§6.8.3), and the first RP of enumerateRPsBegin.
fn next_rp(
    auth: &mut Authenticator,
    state: Option<StatefulCommand>,
) -> CtapResult<CredentialManagementResponse> {
    let Some(StatefulCommand::EnumerateRps(mut remaining)) = state else {
        return Err(StatusCode::NotAllowed);
    };
    let rp = remaining.pop_front().ok_or(StatusCode::NotAllowed)?;
    if !remaining.is_empty() {
        let now = auth.now();
        auth.state
            .begin_stateful(StatefulCommand::EnumerateRps(remaining), now);
    }
    Ok(CredentialManagementResponse {
        rp: Some(rp),
        ..Default::default()
    })
}

/// enumerateCredentialsGetNextCredential (§6.8.4), and the first credential of
/// enumerateCredentialsBegin.
fn next_credential(
    auth: &mut Authenticator,
    state: Option<StatefulCommand>,
) -> CtapResult<CredentialManagementResponse> {
    let Some(StatefulCommand::EnumerateCredentials(mut remaining)) = state else {
        return Err(StatusCode::NotAllowed);
    };
    let id = remaining.pop_front().ok_or(StatusCode::NotAllowed)?;
    if !remaining.is_empty() {
        let now = auth.now();
        auth.state
            .begin_stateful(StatefulCommand::EnumerateCredentials(remaining), now);
    }
    let c = auth
        .store
        .get_credential(&id)
        .ok_or(StatusCode::NoCredentials)?;
    credential_response(auth, c)
}

fn credential_response(
    auth: &Authenticator,
    c: Credential,
) -> CtapResult<CredentialManagementResponse> {
    let rp_id_hash = crypto::sha256(c.rp_id.as_bytes());
    let source = auth
        .find_credential(&rp_id_hash, &c.id)
        .ok_or(StatusCode::Other)?;
    let key = source.key().ok_or(StatusCode::Other)?;
    Ok(CredentialManagementResponse {
        user: Some(UserEntity {
            id: c.user_id,
            name: c.user_name,
            display_name: c.user_display_name,
        }),
        credential_id: Some(c.id),
        public_key: Some(key.cose_public_key()),
        cred_protect: Some(c.cred_protect),
        // §6.8.4: the credential's largeBlobKey, if it has one.
        large_blob_key: source.large_blob_key(),
        ..Default::default()
    })
}
