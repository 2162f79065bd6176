//! User verification for makeCredential and getAssertion (CTAP 2.1 §6.1.2 steps 1–11,
//! §6.2.2 steps 1–6): the zero-length pinUvAuthParam probe, the pinUvAuthToken, the
//! "uv" option with built-in UV, alwaysUv and makeCredUvNotRqd. One place, so the two
//! commands cannot drift apart.

use super::Authenticator;
use super::presence::RequestContext;
use super::status::{CtapResult, StatusCode};
use crate::pin::{Permissions, Protocol};

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
            self.user_presence(ctx, &format!("select this key for {}", req.rp_id))?;
            return Err(if self.pin_is_set() {
                StatusCode::PinInvalid
            } else {
                StatusCode::PinNotSet
            });
        }
        // Step 2: the protocol must be given and supported.
        let protocol = match req.pin_uv_auth_param {
            Some(_) => Some(
                Protocol::from_param(
                    req.pin_uv_auth_protocol
                        .ok_or(StatusCode::MissingParameter)?,
                )
                .ok_or(StatusCode::InvalidParameter)?,
            ),
            None => None,
        };
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
            if !self
                .state
                .token
                .verify(protocol, req.client_data_hash, param, self.now())
                || !self.state.token.has_permission(permission)
                || !self.state.token.allows_rp(req.rp_id)
                || !self.state.token.user_verified()
            {
                return Err(StatusCode::PinAuthInvalid);
            }
            self.state.token.bind_rp_id(req.rp_id);
            return Ok(Verification {
                uv: true,
                token: true,
                builtin: false,
            });
        }
        if uv {
            self.perform_builtin_uv(ctx, &format!("verify the user for {}", req.rp_id))?;
            return Ok(Verification {
                uv: true,
                token: false,
                builtin: true,
            });
        }
        Ok(Verification {
            uv: false,
            token: false,
            builtin: false,
        })
    }

    /// Collects user presence for a request verified as `v` (§6.1.2 step 14): built-in
    /// UV included a touch; a token whose userPresent flag is set stands in for one.
    pub(super) fn presence_for(
        &self,
        v: &Verification,
        ctx: &RequestContext,
        what: &str,
    ) -> CtapResult<()> {
        if v.builtin || (v.token && self.state.token.user_present()) {
            return Ok(());
        }
        self.user_presence(ctx, what)
    }

    /// performBuiltInUv(): a touch on the (simulated) sensor, then the configured result.
    /// Failures count down the UV retries; at 0, UV_BLOCKED until reset.
    pub(super) fn perform_builtin_uv(
        &mut self,
        ctx: &RequestContext,
        what: &str,
    ) -> CtapResult<()> {
        let uv = self.config.uv.clone().ok_or(StatusCode::InvalidOption)?;
        if self.store.pin_status().uv_retries == 0 {
            return Err(StatusCode::UvBlocked);
        }
        self.user_presence(ctx, what)?;
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
