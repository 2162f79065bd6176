//! Routes a CTAP message to its command (§6, §8.1): the request is parsed into the
//! command's request type, the handler runs, its response type is encoded.

use ciborium::Value;

use super::authenticator_config::{ConfigRequest, authenticator_config};
use super::client_pin::{ClientPinRequest, client_pin};
use super::credential_management::{CredentialManagementRequest, credential_management};
use super::get_assertion::{GetAssertionRequest, get_assertion};
use super::get_info::get_info;
use super::get_next_assertion::get_next_assertion;
use super::large_blobs::{LargeBlobsRequest, large_blobs};
use super::make_credential::{MakeCredentialRequest, make_credential};
use super::presence::RequestContext;
use super::reset::reset;
use super::selection::selection;
use super::status::{CtapResult, StatusCode};
use super::{Authenticator, CommandCode, MAX_MSG_SIZE};

/// A command's response: its CBOR map, or `None` for a bare status (§8).
pub(super) trait Response {
    fn encode(self) -> Option<Value>;
}

impl Response for () {
    fn encode(self) -> Option<Value> {
        None
    }
}

fn respond(r: CtapResult<impl Response>) -> CtapResult<Option<Value>> {
    r.map(Response::encode)
}

/// Runs the command in `request`. `Ok(None)` is success with no response data.
pub(super) fn dispatch(
    auth: &mut Authenticator,
    request: &[u8],
    ctx: &RequestContext,
) -> CtapResult<Option<Value>> {
    let Some((&cmd, params)) = request.split_first() else {
        // A CTAPHID_CBOR message must at least hold the command byte.
        return Err(StatusCode::InvalidLength);
    };
    if request.len() > MAX_MSG_SIZE {
        return Err(StatusCode::RequestTooLarge);
    }
    const MC: u8 = CommandCode::MakeCredential as u8;
    const GA: u8 = CommandCode::GetAssertion as u8;
    const GI: u8 = CommandCode::GetInfo as u8;
    const PIN: u8 = CommandCode::ClientPin as u8;
    const RESET: u8 = CommandCode::Reset as u8;
    const GNA: u8 = CommandCode::GetNextAssertion as u8;
    const CM: u8 = CommandCode::CredentialManagement as u8;
    const SEL: u8 = CommandCode::Selection as u8;
    const LB: u8 = CommandCode::LargeBlobs as u8;
    const CONFIG: u8 = CommandCode::Config as u8;
    const CM_PREVIEW: u8 = CommandCode::CredentialManagementPreview as u8;

    // §6.3, §6.8, §6.10: every command ends the stateful command in progress; the one
    // that continues it (getNextAssertion, a credentialManagement GetNext, the next
    // large-blob fragment) gets it here and starts it again.
    let stateful = auth.state.take_stateful(auth.now());
    match cmd {
        MC => respond(make_credential(
            auth,
            MakeCredentialRequest::parse(params)?,
            ctx,
        )),
        GA => respond(get_assertion(
            auth,
            GetAssertionRequest::parse(params)?,
            ctx,
        )),
        GI => respond(get_info(auth, params)),
        PIN => respond(client_pin(auth, ClientPinRequest::parse(params)?, ctx)),
        RESET => respond(reset(auth, params, ctx)),
        GNA => respond(get_next_assertion(auth, params, stateful)),
        CM | CM_PREVIEW => {
            let req = CredentialManagementRequest::parse(params)?;
            respond(credential_management(auth, req, stateful))
        }
        SEL => respond(selection(auth, params, ctx)),
        LB => respond(large_blobs(
            auth,
            LargeBlobsRequest::parse(params)?,
            stateful,
        )),
        CONFIG => respond(authenticator_config(auth, ConfigRequest::parse(params)?)),
        _ => Err(StatusCode::InvalidCommand),
    }
}
