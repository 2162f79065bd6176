//! The pinUvAuthToken and its state (CTAP 2.1 §6.5.2.1): permissions, the permissions
//! RP ID, the usage timer and the userPresent / userVerified flags. A token that is not
//! in use has no state at all, so "in use" and its attributes cannot disagree.

use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::protocol::Protocol;
use crate::crypto::random_bytes;

/// If a token is not used within this time after it was issued, it expires
/// (pinUvAuthTokenUsageTimer's initial usage time limit for a USB key).
pub const INITIAL_USAGE_LIMIT: Duration = Duration::from_secs(30);
/// A token never lives longer than this (maximum usage time period).
pub const MAX_USAGE_PERIOD: Duration = Duration::from_secs(600);
/// userPresent is true for at most this long after the token was issued.
pub const USER_PRESENT_LIMIT: Duration = Duration::from_secs(30);

/// Permissions a token may carry (§6.5.5.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permissions(u8);

impl Permissions {
    pub const MAKE_CREDENTIAL: Permissions = Permissions(0x01);
    pub const GET_ASSERTION: Permissions = Permissions(0x02);
    pub const CREDENTIAL_MANAGEMENT: Permissions = Permissions(0x04);
    pub const BIO_ENROLLMENT: Permissions = Permissions(0x08);
    pub const LARGE_BLOB_WRITE: Permissions = Permissions(0x10);
    pub const AUTHENTICATOR_CONFIG: Permissions = Permissions(0x20);
    /// What this key can grant: everything but bioEnrollment (it has no biometrics).
    const SUPPORTED: u8 = 0x01 | 0x02 | 0x04 | 0x10 | 0x20;

    /// The permissions of a request. `Err(None)` for 0 (INVALID_PARAMETER), `Err(Some)`
    /// for a permission this key does not support (UNAUTHORIZED_PERMISSION).
    pub fn from_request(bits: u64) -> Result<Permissions, Option<()>> {
        if bits == 0 {
            return Err(None);
        }
        if bits > 0xff || (bits as u8) & !Self::SUPPORTED != 0 {
            return Err(Some(()));
        }
        Ok(Permissions(bits as u8))
    }

    pub fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }
}

/// State of a token in use.
struct InUse {
    protocol: Protocol,
    permissions: Permissions,
    rp_id: Option<String>,
    issued: Instant,
    used: bool,
    user_present: bool,
    user_verified: bool,
}

/// The authenticator's pinUvAuthToken.
pub struct PinUvAuthToken {
    token: Zeroizing<[u8; 32]>,
    in_use: Option<InUse>,
}

impl Default for PinUvAuthToken {
    fn default() -> Self {
        Self::new()
    }
}

impl PinUvAuthToken {
    pub fn new() -> PinUvAuthToken {
        PinUvAuthToken {
            token: Zeroizing::new(random_bytes()),
            in_use: None,
        }
    }

    /// resetPinUvAuthToken(): a new random value, not in use.
    pub fn reset(&mut self) {
        *self = PinUvAuthToken::new();
    }

    /// The token value (what getPinToken returns encrypted).
    pub fn value(&self) -> &[u8; 32] {
        &self.token
    }

    /// beginUsingPinUvAuthToken(): a fresh value with these attributes.
    pub fn begin_using(
        &mut self,
        protocol: Protocol,
        permissions: Permissions,
        rp_id: Option<String>,
        user_present: bool,
        user_verified: bool,
        now: Instant,
    ) {
        self.reset();
        self.in_use = Some(InUse {
            protocol,
            permissions,
            rp_id,
            issued: now,
            used: false,
            user_present,
            user_verified,
        });
    }

    /// The usage timer: ends a token past its limits; clears userPresent after its limit.
    fn tick(&mut self, now: Instant) {
        if let Some(t) = &mut self.in_use {
            let age = now.saturating_duration_since(t.issued);
            if age > MAX_USAGE_PERIOD || (!t.used && age > INITIAL_USAGE_LIMIT) {
                self.reset();
            } else if age > USER_PRESENT_LIMIT {
                t.user_present = false;
            }
        }
    }

    /// verify(pinUvAuthToken, message, signature) with the protocol of the request.
    /// False if no token is in use or it expired. The protocol must be the one the token
    /// was issued under.
    pub fn verify(
        &mut self,
        protocol: Protocol,
        message: &[u8],
        signature: &[u8],
        now: Instant,
    ) -> bool {
        self.tick(now);
        let Some(t) = &mut self.in_use else {
            return false;
        };
        if t.protocol != protocol || !protocol.verify(&*self.token, message, signature) {
            return false;
        }
        t.used = true;
        true
    }

    pub fn has_permission(&self, p: Permissions) -> bool {
        self.in_use
            .as_ref()
            .is_some_and(|t| t.permissions.contains(p))
    }

    /// The permissions RP ID, if the token is bound to one.
    pub fn rp_id(&self) -> Option<&str> {
        self.in_use.as_ref().and_then(|t| t.rp_id.as_deref())
    }

    /// Binds a token without a permissions RP ID to `rp_id` (§6.1.2 step 7).
    pub fn bind_rp_id(&mut self, rp_id: &str) {
        if let Some(t) = &mut self.in_use
            && t.rp_id.is_none()
        {
            t.rp_id = Some(rp_id.to_string());
        }
    }

    /// Whether the token may act for `rp_id`: bound to it, or not bound at all.
    pub fn allows_rp(&self, rp_id: &str) -> bool {
        self.in_use
            .as_ref()
            .is_some_and(|t| t.rp_id.as_deref().is_none_or(|r| r == rp_id))
    }

    pub fn user_present(&self) -> bool {
        self.in_use.as_ref().is_some_and(|t| t.user_present)
    }

    pub fn user_verified(&self) -> bool {
        self.in_use.as_ref().is_some_and(|t| t.user_verified)
    }

    /// After a makeCredential / getAssertion that used the token's user presence
    /// (§6.1.2 step 15, §6.2.2 step 9): the flags and all permissions but lbw go.
    pub fn consume(&mut self) {
        if let Some(t) = &mut self.in_use {
            t.user_present = false;
            t.user_verified = false;
            t.permissions = Permissions(t.permissions.0 & Permissions::LARGE_BLOB_WRITE.0);
        }
    }

    pub fn stop_using(&mut self) {
        self.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_from_request() {
        assert_eq!(Permissions::from_request(0), Err(None));
        assert_eq!(
            Permissions::from_request(0x08),
            Err(Some(())),
            "bio enrollment unsupported"
        );
        assert!(
            Permissions::from_request(0x10)
                .unwrap()
                .contains(Permissions::LARGE_BLOB_WRITE)
        );
        assert_eq!(Permissions::from_request(0x100), Err(Some(())));
        let p = Permissions::from_request(0x03).unwrap();
        assert!(p.contains(Permissions::MAKE_CREDENTIAL) && p.contains(Permissions::GET_ASSERTION));
        assert!(!p.contains(Permissions::CREDENTIAL_MANAGEMENT));
    }

    #[test]
    fn verify_usage_timer_and_consume() {
        let t0 = Instant::now();
        let mut t = PinUvAuthToken::new();
        assert!(!t.verify(Protocol::Two, b"m", &[0; 32], t0), "not in use");
        t.begin_using(
            Protocol::Two,
            Permissions::MAKE_CREDENTIAL,
            None,
            false,
            true,
            t0,
        );
        let sig = Protocol::Two.authenticate(t.value(), b"m");
        assert!(
            !t.verify(Protocol::One, b"m", &sig[..16], t0),
            "other protocol"
        );
        assert!(!t.verify(Protocol::Two, b"x", &sig, t0));
        assert!(t.verify(Protocol::Two, b"m", &sig, t0));
        assert!(t.user_verified());
        t.bind_rp_id("a.example");
        assert!(t.allows_rp("a.example") && !t.allows_rp("b.example"));
        t.consume();
        assert!(!t.user_verified() && !t.has_permission(Permissions::MAKE_CREDENTIAL));
        // Used once: lives up to the maximum usage period.
        assert!(t.verify(Protocol::Two, b"m", &sig, t0 + Duration::from_secs(300)));
        assert!(!t.verify(Protocol::Two, b"m", &sig, t0 + Duration::from_secs(601)));
        // Never used: expires after the initial usage limit.
        t.begin_using(
            Protocol::One,
            Permissions::GET_ASSERTION,
            None,
            true,
            true,
            t0,
        );
        let sig = Protocol::One.authenticate(t.value(), b"m");
        assert!(!t.verify(Protocol::One, b"m", &sig, t0 + Duration::from_secs(31)));
    }
}
