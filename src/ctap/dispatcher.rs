//! Routes a CTAP message to its command handler (§6, §8.1).

use ciborium::Value;

use super::presence::RequestContext;
use super::status::{CtapResult, StatusCode};
use super::{
    Authenticator, CommandCode, MAX_MSG_SIZE, authenticator_config, client_pin,
    credential_management, get_assertion, get_info, get_next_assertion, make_credential, reset,
    selection,
};

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
    const CONFIG: u8 = CommandCode::Config as u8;
    const CM_PREVIEW: u8 = CommandCode::CredentialManagementPreview as u8;

    // §6.3, §6.8: every command ends the stateful command in progress; the one that
    // continues it (getNextAssertion, a credentialManagement GetNext) gets it here and
    // starts it again.
    let stateful = auth.state.take_stateful(auth.now());
    match cmd {
        MC => make_credential::make_credential(auth, params, ctx).map(Some),
        GA => get_assertion::get_assertion(auth, params, ctx).map(Some),
        GI => {
            // getInfo takes no parameters (§6.4).
            if !params.is_empty() {
                return Err(StatusCode::InvalidLength);
            }
            Ok(Some(get_info::get_info(auth)))
        }
        PIN => client_pin::client_pin(auth, params, ctx),
        RESET => reset::reset(auth, params, ctx).map(|()| None),
        GNA => get_next_assertion::get_next_assertion(auth, params, stateful).map(Some),
        CM | CM_PREVIEW => credential_management::credential_management(auth, params, stateful),
        SEL => selection::selection(auth, params, ctx).map(|()| None),
        CONFIG => authenticator_config::authenticator_config(auth, params).map(|()| None),
        _ => Err(StatusCode::InvalidCommand),
    }
}
