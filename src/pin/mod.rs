//! PIN and user verification: the PIN/UV auth protocols, the pinUvAuthToken with its
//! permissions, and the PIN policy (CTAP 2.1 §6.5).

pub mod policy;
pub mod protocol;
pub mod token;

pub use protocol::{KeyAgreement, Protocol, SharedSecret};
pub use token::{Permissions, PinUvAuthToken};
