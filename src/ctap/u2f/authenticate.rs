//! U2F_AUTHENTICATE (U2F Raw Message Formats v1.2 §5): a signature with the credential
//! of a key handle. Any ES256 credential of ours for the application parameter works:
//! one made by U2F_REGISTER, or by makeCredential for the RP ID whose SHA-256 is that
//! parameter (CTAP 2.1 §8). Its signature counter is the credential's own, the one
//! getAssertion counts with.
//!
//! Response (§5.4): user presence (1) ‖ counter (4, big-endian) ‖ ECDSA signature over
//! application ‖ user presence ‖ counter ‖ challenge.

use super::super::Authenticator;
use super::super::auth_data::FLAG_UP;
use super::super::events::{CredentialInfo, Event};
use super::apdu::StatusWord;
use crate::crypto::Algorithm;

/// The control byte (P1, §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Control {
    /// 0x03: sign only with the user's touch.
    EnforceUserPresenceAndSign,
    /// 0x07: only say whether the key handle is ours for the application.
    CheckOnly,
    /// 0x08: sign without a touch (user presence byte 0).
    DontEnforceUserPresenceAndSign,
}

impl Control {
    pub fn from_byte(p1: u8) -> Option<Control> {
        match p1 {
            0x03 => Some(Control::EnforceUserPresenceAndSign),
            0x07 => Some(Control::CheckOnly),
            0x08 => Some(Control::DontEnforceUserPresenceAndSign),
            _ => None,
        }
    }

    /// The spec's name.
    pub fn name(self) -> &'static str {
        match self {
            Control::EnforceUserPresenceAndSign => "enforce-user-presence-and-sign",
            Control::CheckOnly => "check-only",
            Control::DontEnforceUserPresenceAndSign => "dont-enforce-user-presence-and-sign",
        }
    }
}

pub(super) struct AuthenticateRequest<'a> {
    pub control: Control,
    pub challenge: [u8; 32],
    pub application: [u8; 32],
    pub key_handle: &'a [u8],
}

/// Where the key handle's length byte sits in the request data.
const KEY_HANDLE_LENGTH_AT: usize = 64;

impl<'a> AuthenticateRequest<'a> {
    /// challenge (32) ‖ application (32) ‖ L (1) ‖ key handle (L), nothing more (§5.1);
    /// SW_WRONG_LENGTH if the sizes differ, SW_WRONG_DATA for an unknown control byte.
    pub fn parse(p1: u8, data: &'a [u8]) -> Result<AuthenticateRequest<'a>, StatusWord> {
        let (head, key_handle) = data
            .split_first_chunk::<65>()
            .ok_or(StatusWord::WrongLength)?;
        if key_handle.len() != usize::from(head[KEY_HANDLE_LENGTH_AT]) {
            return Err(StatusWord::WrongLength);
        }
        let control = Control::from_byte(p1).ok_or(StatusWord::WrongData)?;
        let mut req = AuthenticateRequest {
            control,
            challenge: [0; 32],
            application: [0; 32],
            key_handle,
        };
        req.challenge.copy_from_slice(&head[..32]);
        req.application.copy_from_slice(&head[32..64]);
        Ok(req)
    }
}

pub(super) struct AuthenticateResponse {
    user_presence: u8,
    counter: u32,
    signature: Vec<u8>,
}

impl AuthenticateResponse {
    pub fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.signature.len());
        out.push(self.user_presence);
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(&self.signature);
        out
    }
}

pub(super) fn authenticate(
    auth: &mut Authenticator,
    req: AuthenticateRequest<'_>,
) -> Result<AuthenticateResponse, StatusWord> {
    // §5.2: a key handle that is not ours for this application is SW_WRONG_DATA, before
    // any touch is asked for. U2F has no user verification, so a credential that needs
    // it (credProtect level 3, §12.1) is not ours here; an allowList-only one (level 2)
    // is, as the key handle is named. U2F signs with ECDSA P-256 only.
    let source = auth
        .find_credential(&req.application, req.key_handle)
        .filter(|c| c.props.cred_protect.allows(false, true))
        .ok_or(StatusWord::WrongData)?;
    if source.algorithm() != Algorithm::Es256 {
        return Err(StatusWord::WrongData);
    }
    let user_presence = match req.control {
        // §5.1: "success" for check-only is this status word.
        Control::CheckOnly => return Err(StatusWord::ConditionsNotSatisfied),
        Control::EnforceUserPresenceAndSign => {
            if !auth.u2f_touch("U2F_AUTHENTICATE") {
                return Err(StatusWord::ConditionsNotSatisfied);
            }
            FLAG_UP
        }
        Control::DontEnforceUserPresenceAndSign => 0,
    };
    let id = req.key_handle;
    let counter = auth
        .store
        .bump_counter(id)
        .map_err(|_| StatusWord::Unknown)?;
    let overrides = auth.config.overrides.get();
    let user_presence = overrides.flags(user_presence);
    let mut signed = Vec::with_capacity(32 + 1 + 4 + 32);
    signed.extend_from_slice(&req.application);
    signed.push(user_presence);
    signed.extend_from_slice(&counter.to_be_bytes());
    signed.extend_from_slice(&req.challenge);
    let signature = overrides.signature(source.sign(&signed).ok_or(StatusWord::Unknown)?);

    let backup = auth.backup_of(id);
    let stored = auth.store.get_credential(id);
    // U2F names the application only by its hash; a stored credential knows.
    let rp_id = stored.as_ref().map(|c| c.rp_id.clone()).unwrap_or_default();
    auth.config
        .events
        .emit(Event::CredentialAsserted(CredentialInfo::asserted(
            id,
            source.props.discoverable,
            rp_id,
            stored,
            counter,
            backup,
        )));
    Ok(AuthenticateResponse {
        user_presence,
        counter,
        signature,
    })
}
