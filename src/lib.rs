//! vkey: a software FIDO2 security key (CTAP 2.1) exposed over USB/IP.
//!
//! The layers a request travels through, top to bottom; a lower layer never imports
//! an upper one:
//!
//! - [`usbip`]: TCP, URBs, USB descriptors, endpoint 0.
//! - [`ctaphid`]: 64-byte HID reports, channels, message framing (CTAP 2.1 §11.2).
//! - [`ctap`]: the authenticator core, one module per CTAP command (CTAP 2.1 §6).
//! - [`store`]: the key's persistent state.
//!
//! [`key`], [`control`] and [`cli`] are the edge that wires them together; [`bench`] (the
//! `vkey bench` host that measures USB/IP keys) is edge too: a client of the wire format.
//! `cli`, `control` and `bench` are the `edge` feature (on by default), which the fuzz
//! targets leave out.
#![forbid(unsafe_code)]

/// vkey's version (major, minor, patch), from Cargo.toml. Every layer that reports a
/// version (INIT, bcdDevice, getInfo firmwareVersion) derives it from here.
pub fn version() -> (u8, u8, u8) {
    let p = |s: &str| s.parse::<u8>().unwrap_or(0);
    (
        p(env!("CARGO_PKG_VERSION_MAJOR")),
        p(env!("CARGO_PKG_VERSION_MINOR")),
        p(env!("CARGO_PKG_VERSION_PATCH")),
    )
}

#[cfg(feature = "edge")]
pub mod bench;
#[cfg(feature = "edge")]
pub mod cli;
#[cfg(feature = "edge")]
pub mod control;
pub mod crypto;
pub mod ctap;
pub mod ctaphid;
pub mod key;
pub mod pin;
pub mod store;
pub mod usbip;
