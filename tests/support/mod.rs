//! Helpers shared by the integration tests. Each `tests/*.rs` is a crate of its own and
//! takes this in with `mod support;`; no crate uses every helper, hence the allow.
#![allow(dead_code)]

pub mod cbor;
pub mod ctaphid;
pub mod process;
pub mod usbip;
