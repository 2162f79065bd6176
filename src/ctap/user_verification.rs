//! User verification: [`authorize`](Authenticator::authorize), the one check of a
//! pinUvAuthParam against the pinUvAuthToken that every command uses, and the flow
//! makeCredential and getAssertion share (CTAP 2.1 §6.1.2 steps 1–11, §6.2.2 steps 1–6):
//! the zero-length pinUvAuthParam probe, the token, the "uv" option with built-in UV,
//! alwaysUv and makeCredUvNotRqd. One place, so the commands cannot drift apart.

use super::Authenticator;
use super::params::pin_uv_auth_protocol;
use super::presence::{RequestContext, Touch};
use super::status::{CtapResult, StatusCode};
use crate::crypto::sha256;
use crate::pin::{Permissions, Protocol};

/// The RP a request acts for, checked against the token's permissions RP ID.
pub(super) enum RpScope<'a> {
    /// makeCredential / getAssertion for this RP ID: a token without a permissions RP ID
    /// is bound to it (§6.1.2 step 11, §6.2.2 step 6).
    Bind(&'a str),
    /// credentialManagement on the credentials of this RP ID (§6.8.5, §6.8.6).
    Id(&'a str),
    /// enumerateCredentials of the RP with this RP ID hash (§6.8.4).
    IdHash(&'a [u8]),
    /// Every RP (getCredsMetadata, enumerateRPs): the token must not be bound to one.
    All,
    /// Not about an RP (authenticatorConfig).
    None,
}

impl Authenticator {
    /// Authorizes a request with its pinUvAuthParam: verify(pinUvAuthToken, message,
    /// pinUvAuthParam) under the token's usage timer, the `permission`, the RP scope,
    /// and for makeCredential / getAssertion the token's userVerified flag. Any failure
    /// is PIN_AUTH_INVALID.
    pub(super) fn authorize(
        &mut self,
        protocol: Protocol,
        pin_uv_auth_param: &[u8],
        message: &[u8],
        permission: Permissions,
        rp: RpScope<'_>,
    ) -> CtapResult<()> {
        let now = self.now();
        let token = &mut self.state.token;
        let needs_uv =
            permission == Permissions::MAKE_CREDENTIAL || permission == Permissions::GET_ASSERTION;
        let ok = token.verify(protocol, message, pin_uv_auth_param, now)
            && token.has_permission(permission)
            && (!needs_uv || token.user_verified())
            && match rp {
                RpScope::Bind(id) | RpScope::Id(id) => token.allows_rp(id),
                RpScope::IdHash(hash) => token.rp_id().is_none_or(|r| sha256(r.as_bytes()) == hash),
                RpScope::All => token.rp_id().is_none(),
                RpScope::None => true,
            };
        if !ok {
            return Err(StatusCode::PinAuthInvalid);
        }
        if let RpScope::Bind(id) = rp {
            token.bind_rp_id(id);
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    MakeCredential { rk: bool },
    GetAssertion,
}

/// How the request was verified.
pub(super) struct Verification {
    /// The UV flag of authenticator data.
    pub uv: bool,
    /// A pinUvAuthToken authorised the request (consumed after use).
    pub token: bool,
    /// Built-in UV was performed; it includes the user's touch.
    pub builtin: bool,
}

pub(super) struct UvRequest<'a> {
    pub rp_id: &'a str,
    pub client_data_hash: &'a [u8],
    pub pin_uv_auth_param: Option<&'a [u8]>,
    pub pin_uv_auth_protocol: Option<u64>,
    pub uv_option: Option<bool>,
    /// makeCredential's user.name, for the prompt.
    pub user_name: Option<&'a str>,
}

impl Authenticator {
    pub(super) fn verify_user(
        &mut self,
        op: Operation,
        req: &UvRequest<'_>,
        ctx: &RequestContext,
    ) -> CtapResult<Verification> {
        // Step 1: the zero-length pinUvAuthParam probe (Windows: "which key?").
        if req.pin_uv_auth_param.is_some_and(<[u8]>::is_empty) {
            let command = match op {
                Operation::MakeCredential { .. } => "makeCredential",
                Operation::GetAssertion => "getAssertion",
            };
            self.user_presence(
                ctx,
                Touch {
                    command,
                    rp_id: Some(req.rp_id),
                    user_name: None,
                },
            )?;
            return Err(if self.pin_is_set() {
                StatusCode::PinInvalid
            } else {
                StatusCode::PinNotSet
            });
        }
        // Step 2: the protocol must be given and supported.
        let protocol = req
            .pin_uv_auth_param
            .map(|_| pin_uv_auth_protocol(req.pin_uv_auth_protocol))
            .transpose()?;
        // Step 5: "uv" counts only without a pinUvAuthParam, and needs built-in UV.
        let mut uv = req.uv_option.unwrap_or(false) && req.pin_uv_auth_param.is_none();
        if uv && self.config.uv.is_none() {
            return Err(StatusCode::InvalidOption);
        }
        let always_uv = self.store.pin_status().always_uv;
        // Step 6: alwaysUv. Built-in UV is used when there is one; else a token is needed.
        if always_uv && req.pin_uv_auth_param.is_none() && !uv {
            if self.config.uv.is_some() {
                uv = true;
            } else if self.pin_is_set() {
                return Err(StatusCode::PuatRequired);
            } else {
                return Err(StatusCode::PinNotSet);
            }
        }
        // Step 7 (makeCredential): a protected key makes a credential without UV only
        // if it is not discoverable (makeCredUvNotRqd) — this is what makes UV set up
        // before creation count: passkeys on a PIN-protected key need the PIN.
        if let Operation::MakeCredential { rk } = op
            && self.is_protected()
            && req.pin_uv_auth_param.is_none()
            && !uv
            && (rk || always_uv)
        {
            return Err(StatusCode::PuatRequired);
        }
        // Steps 10–11: verify the token, or perform built-in UV.
        if let (Some(param), Some(protocol)) = (req.pin_uv_auth_param, protocol) {
            let permission = match op {
                Operation::MakeCredential { .. } => Permissions::MAKE_CREDENTIAL,
                Operation::GetAssertion => Permissions::GET_ASSERTION,
            };
            let rp = RpScope::Bind(req.rp_id);
            self.authorize(protocol, param, req.client_data_hash, permission, rp)?;
            return Ok(Verification {
                uv: true,
                token: true,
                builtin: false,
            });
        }
        if uv {
            let command = match op {
                Operation::MakeCredential { .. } => "makeCredential",
                Operation::GetAssertion => "getAssertion",
            };
            let touch = Touch {
                command,
                rp_id: Some(req.rp_id),
                user_name: req.user_name,
            };
            self.perform_builtin_uv(ctx, touch)?;
        }
        Ok(Verification {
            uv,
            token: false,
            builtin: uv,
        })
    }

    /// Collects user presence for a request verified as `v` (§6.1.2 step 14): built-in
    /// UV included a touch; a token whose userPresent flag is set stands in for one.
    pub(super) fn presence_for(
        &self,
        v: &Verification,
        ctx: &RequestContext,
        touch: Touch<'_>,
    ) -> CtapResult<()> {
        if v.builtin || (v.token && self.state.token.user_present()) {
            return Ok(());
        }
        self.user_presence(ctx, touch)
    }

    /// performBuiltInUv(): a touch on the (simulated) sensor, then the configured result.
    /// Failures count down the UV retries; at 0, UV_BLOCKED until reset.
    pub(super) fn perform_builtin_uv(
        &mut self,
        ctx: &RequestContext,
        touch: Touch<'_>,
    ) -> CtapResult<()> {
        let uv = self.config.uv.clone().ok_or(StatusCode::InvalidOption)?;
        if self.store.pin_status().uv_retries == 0 {
            return Err(StatusCode::UvBlocked);
        }
        self.user_presence(ctx, touch)?;
        if uv.result() {
            self.store.uv_matched()?;
            return Ok(());
        }
        Err(if self.store.record_uv_failure()? == 0 {
            StatusCode::UvBlocked
        } else {
            StatusCode::UvInvalid
        })
    }
}
