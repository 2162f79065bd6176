//! CTAPHID (CTAP 2.1 §11.2): the framing of CTAP messages in 64-byte HID reports.
//!
//! Independent of USB (it sees reports, not URBs) and of CTAP commands (it sees opaque
//! CBOR / MSG payloads). [`CtapHid`] is the whole protocol state of one USB session.

pub mod packet;
pub mod transport;

pub use packet::{Command, HidError, KeepaliveStatus, MAX_MESSAGE_LEN, REPORT_LEN, Report};
pub use transport::{Config, CtapHid, Event, RequestKind, TxnId};

#[cfg(test)]
mod tests;
