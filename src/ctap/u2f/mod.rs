//! CTAP1/U2F: U2F_REGISTER, U2F_AUTHENTICATE and U2F_VERSION (FIDO U2F Raw Message
//! Formats v1.2), the APDUs a client sends in CTAPHID_MSG (CTAP 2.1 §11.2.9.1.1), in
//! short or extended encoding. One file per command; `apdu` parses and encodes.
//!
//! One credential, two protocols (CTAP 2.1 §8, "Interoperating with CTAP1/U2F
//! authenticators"): a U2F key handle is a CTAP2 credential ID, non-discoverable and
//! ES256, sealed under the application parameter as its RP ID hash. So getAssertion
//! accepts it for an RP ID whose SHA-256 is that application parameter (the `appid`
//! extension: the platform sends the appid as the RP ID), U2F_AUTHENTICATE accepts an
//! ES256 CTAP2 credential, and both count on the credential's one signature counter.
//!
//! U2F never blocks: a command that needs a touch is answered at once with
//! SW_CONDITIONS_NOT_SATISFIED until the user has given it, and the client asks again
//! (`Presence::poll`). While alwaysUv is on, U2F (which cannot verify the user) is
//! switched off: every APDU is answered SW_COMMAND_NOT_ALLOWED and getInfo leaves
//! U2F_V2 out (CTAP 2.1 §7.2.2).

pub mod apdu;
mod authenticate;
pub(super) mod describe;
mod register;
mod version;

use super::Authenticator;
use super::events::Event;
use super::presence::{Poll, PresenceMode, Touch};
use apdu::{CommandApdu, StatusWord};
use authenticate::AuthenticateRequest;
use register::RegisterRequest;

/// The instructions of U2F Raw Message Formats v1.2 §4–§6.
const INS_REGISTER: u8 = 0x01;
const INS_AUTHENTICATE: u8 = 0x02;
const INS_VERSION: u8 = 0x03;

/// A U2F command, parsed from its APDU.
enum Command<'a> {
    Register(RegisterRequest),
    Authenticate(AuthenticateRequest<'a>),
    Version,
}

impl<'a> Command<'a> {
    /// The command of a well-formed APDU: SW_CLA_NOT_SUPPORTED unless CLA is 0,
    /// SW_INS_NOT_SUPPORTED for an unknown INS, SW_WRONG_LENGTH for data of the wrong
    /// size.
    fn parse(apdu: &CommandApdu<'a>) -> Result<Command<'a>, StatusWord> {
        if apdu.cla != 0 {
            return Err(StatusWord::ClaNotSupported);
        }
        match apdu.ins {
            INS_REGISTER => RegisterRequest::parse(apdu.data).map(Command::Register),
            INS_AUTHENTICATE => {
                AuthenticateRequest::parse(apdu.p1, apdu.data).map(Command::Authenticate)
            }
            INS_VERSION => version::parse(apdu.data).map(|()| Command::Version),
            _ => Err(StatusWord::InsNotSupported),
        }
    }
}

/// The spec name of a U2F instruction.
fn ins_name(ins: u8) -> String {
    match ins {
        INS_REGISTER => "U2F_REGISTER".into(),
        INS_AUTHENTICATE => "U2F_AUTHENTICATE".into(),
        INS_VERSION => "U2F_VERSION".into(),
        other => format!("U2F INS {other:#04x}"),
    }
}

impl Authenticator {
    /// Processes one CTAPHID_MSG message: a U2F request APDU. Returns the response
    /// APDU: data ‖ status word. Never blocks for the user.
    pub fn process_u2f(&mut self, msg: &[u8]) -> Vec<u8> {
        match self.u2f(msg) {
            Ok(data) => apdu::response(&data, StatusWord::NoError),
            Err(sw) => apdu::response(&[], sw),
        }
    }

    /// Whether U2F is served now: switched on, and alwaysUv off (§7.2.2).
    pub(super) fn u2f_serves(&self) -> bool {
        self.config.u2f && !self.store.pin_status().always_uv
    }

    fn u2f(&mut self, msg: &[u8]) -> Result<Vec<u8>, StatusWord> {
        // Like every command, a U2F one ends the stateful command in progress (§6.3).
        let now = self.now();
        let _ = self.state.take_stateful(now);
        if !self.config.u2f {
            // CTAPHID does not pass MSG on then (NMSG); should it, nothing is served.
            return Err(StatusWord::InsNotSupported);
        }
        let apdu = CommandApdu::parse(msg)?;
        let command = Command::parse(&apdu)?;
        if !self.u2f_serves() {
            return Err(StatusWord::CommandNotAllowed);
        }
        match command {
            Command::Register(req) => register::register(self, req).map(|r| r.encode()),
            Command::Authenticate(req) => authenticate::authenticate(self, req).map(|r| r.encode()),
            Command::Version => Ok(version::VERSION.as_bytes().to_vec()),
        }
    }

    /// The user's touch for a U2F command, without waiting: `true` if it is given now
    /// (and so used up). See `Presence::poll`.
    fn u2f_touch(&mut self, command: &'static str) -> bool {
        let touch = Touch {
            command,
            rp_id: None,
            user_name: None,
        };
        let presence = &self.config.presence;
        let waits = matches!(presence.mode(), PresenceMode::Prompt | PresenceMode::Manual);
        let events = &self.config.events;
        let outcome = presence.poll(&mut self.state.polled_touch, touch, |p| {
            events.emit(Event::PresenceRequested {
                id: p.id,
                command: p.command,
                rp_id: None,
                waits,
            })
        });
        outcome == Poll::Given
    }
}

#[cfg(test)]
mod tests;
