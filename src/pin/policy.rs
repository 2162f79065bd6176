//! PIN rules (CTAP 2.1 §6.5.1, §6.5.5.5): at least minPINLength Unicode code points, at
//! most 63 bytes, sent padded with zeros to 64 bytes, no NUL inside; 8 retries, three
//! wrong PINs in a row block PIN use until the next power cycle.

use crate::crypto::sha256;

pub const MAX_PIN_RETRIES: u8 = 8;
pub const MAX_UV_RETRIES: u8 = 8;
/// Wrong PINs in a row that block PIN use until power cycle (PIN_AUTH_BLOCKED).
pub const MAX_CONSECUTIVE_PIN_FAILURES: u8 = 3;
pub const DEFAULT_MIN_PIN_LENGTH: u8 = 4;
pub const MAX_PIN_BYTES: usize = 63;
pub const PADDED_PIN_LEN: usize = 64;

/// LEFT(SHA-256(pin), 16): what is stored and what pinHashEnc carries.
pub fn pin_hash(pin: &[u8]) -> [u8; 16] {
    let h = sha256(pin);
    let mut out = [0u8; 16];
    out.copy_from_slice(&h[..16]);
    out
}

/// Why a new PIN is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PinError {
    /// The padded block is not 64 bytes (CTAP1_ERR_INVALID_PARAMETER).
    BadPadding,
    /// Too short, too long, NUL inside, not UTF-8 (CTAP2_ERR_PIN_POLICY_VIOLATION).
    Policy,
}

/// Unpads a decrypted newPin block and checks it against the policy. Returns the PIN and
/// its length in code points.
pub fn check_padded_pin(padded: &[u8], min_code_points: u8) -> Result<(&[u8], u8), PinError> {
    if padded.len() != PADDED_PIN_LEN {
        return Err(PinError::BadPadding);
    }
    let end = padded.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    check_pin(&padded[..end], min_code_points).map(|n| (&padded[..end], n))
}

/// Checks an unpadded PIN against the policy; returns its length in code points.
pub fn check_pin(pin: &[u8], min_code_points: u8) -> Result<u8, PinError> {
    if pin.len() > MAX_PIN_BYTES || pin.contains(&0) {
        return Err(PinError::Policy);
    }
    let s = std::str::from_utf8(pin).map_err(|_| PinError::Policy)?;
    let n = s.chars().count();
    if n < usize::from(min_code_points) {
        return Err(PinError::Policy);
    }
    Ok(n as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pad(pin: &[u8]) -> Vec<u8> {
        let mut v = pin.to_vec();
        v.resize(64, 0);
        v
    }

    #[test]
    fn policy() {
        assert_eq!(check_padded_pin(&pad(b"1234"), 4), Ok((&b"1234"[..], 4)));
        assert_eq!(check_padded_pin(&pad(b"123"), 4), Err(PinError::Policy));
        // Four code points, eight bytes: long enough.
        assert_eq!(
            check_padded_pin(&pad("ääää".as_bytes()), 4).map(|r| r.1),
            Ok(4)
        );
        assert_eq!(
            check_padded_pin(&pad(b"12\x0034"), 4),
            Err(PinError::Policy)
        );
        assert_eq!(
            check_padded_pin(&pad(&[0xff, 0xfe, 0x41, 0x42]), 4),
            Err(PinError::Policy)
        );
        assert_eq!(check_padded_pin(&pad(&[b'1'; 63]), 4).map(|r| r.1), Ok(63));
        assert_eq!(
            check_padded_pin(&[b'1'; 64], 4),
            Err(PinError::Policy),
            "64 bytes: no room for padding"
        );
        assert_eq!(
            check_padded_pin(&pad(b"1234")[..32], 4),
            Err(PinError::BadPadding)
        );
    }
}
