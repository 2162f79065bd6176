//! Command and response APDUs as CTAP1/U2F carries them (FIDO U2F Raw Message Formats
//! v1.2 §3, ISO/IEC 7816-4 §5.1), in both encodings:
//!
//! ```text
//! short:     CLA INS P1 P2 [Lc data] [Le]              Lc 1..=255, Le 1 byte (0 = 256)
//! extended:  CLA INS P1 P2 [00 Lc1 Lc2 data] [Le1 Le2]  Le after Lc: 2 bytes (0 = 65536)
//!            CLA INS P1 P2 00 Le1 Le2                   no data, Le only: 3 bytes
//! ```
//!
//! Two forms real clients send are accepted too: python-fido2 writes every APDU as
//! extended with an empty data field (`00 00 00` ‖ `00 00`, an Lc of zero that ISO
//! 7816-4 has no use for), and libfido2 writes U2F_VERSION as `00 00 00` alone (read
//! as an extended Le). The expected response length (Le) is read, shown in the trace
//! and otherwise ignored: over CTAPHID the whole response always fits one message.

/// The status word that ends every response APDU (U2F Raw Message Formats §3.3; the
/// CTAP 2.1 additions are noted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum StatusWord {
    NoError = 0x9000,
    /// The user has not touched the key (yet): the client asks again.
    ConditionsNotSatisfied = 0x6985,
    /// ISO 7816-4 "command not allowed": U2F is switched off while alwaysUv is on
    /// (CTAP 2.1 §7.2.2, vkey's reading: see the README).
    CommandNotAllowed = 0x6986,
    /// Not our key handle for this application parameter (or an unknown control byte).
    WrongData = 0x6a80,
    /// The APDU's length fields do not add up, or a command's data has the wrong size.
    WrongLength = 0x6700,
    ClaNotSupported = 0x6e00,
    InsNotSupported = 0x6d00,
    /// ISO 7816-4 "no precise diagnosis": the store failed.
    Unknown = 0x6f00,
}

impl StatusWord {
    pub fn bytes(self) -> [u8; 2] {
        (self as u16).to_be_bytes()
    }

    /// The spec's name (`SW_NO_ERROR`, …).
    pub fn name(self) -> &'static str {
        match self {
            StatusWord::NoError => "SW_NO_ERROR",
            StatusWord::ConditionsNotSatisfied => "SW_CONDITIONS_NOT_SATISFIED",
            StatusWord::CommandNotAllowed => "SW_COMMAND_NOT_ALLOWED",
            StatusWord::WrongData => "SW_WRONG_DATA",
            StatusWord::WrongLength => "SW_WRONG_LENGTH",
            StatusWord::ClaNotSupported => "SW_CLA_NOT_SUPPORTED",
            StatusWord::InsNotSupported => "SW_INS_NOT_SUPPORTED",
            StatusWord::Unknown => "SW_UNKNOWN",
        }
    }

    pub fn from_u16(sw: u16) -> Option<StatusWord> {
        [
            StatusWord::NoError,
            StatusWord::ConditionsNotSatisfied,
            StatusWord::CommandNotAllowed,
            StatusWord::WrongData,
            StatusWord::WrongLength,
            StatusWord::ClaNotSupported,
            StatusWord::InsNotSupported,
            StatusWord::Unknown,
        ]
        .into_iter()
        .find(|s| *s as u16 == sw)
    }
}

/// How the lengths of a command APDU were encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// No Lc, no Le: the four header bytes alone.
    HeaderOnly,
    Short,
    Extended,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::HeaderOnly => "header only",
            Encoding::Short => "short",
            Encoding::Extended => "extended",
        }
    }
}

/// A parsed command APDU; `data` borrows from the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandApdu<'a> {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: &'a [u8],
    /// Ne, the response length the client expects at most (Le 0 means the largest).
    pub ne: Option<u32>,
    pub encoding: Encoding,
}

impl<'a> CommandApdu<'a> {
    /// Parses one command APDU; any length that does not add up is SW_WRONG_LENGTH.
    pub fn parse(msg: &'a [u8]) -> Result<CommandApdu<'a>, StatusWord> {
        let (&[cla, ins, p1, p2], body) = msg
            .split_first_chunk::<4>()
            .ok_or(StatusWord::WrongLength)?;
        let (data, ne, encoding) = lengths(body)?;
        Ok(CommandApdu {
            cla,
            ins,
            p1,
            p2,
            data,
            ne,
            encoding,
        })
    }
}

/// The body after the header: (data, Ne, encoding).
fn lengths(body: &[u8]) -> Result<(&[u8], Option<u32>, Encoding), StatusWord> {
    const WRONG: StatusWord = StatusWord::WrongLength;
    let short_le = |b: u8| if b == 0 { 256 } else { u32::from(b) };
    let extended_le = |hi: u8, lo: u8| match u16::from_be_bytes([hi, lo]) {
        0 => 65536,
        n => u32::from(n),
    };
    match *body {
        // Case 1.
        [] => Ok((&[], None, Encoding::HeaderOnly)),
        // Case 2S: Le only.
        [le] => Ok((&[], Some(short_le(le)), Encoding::Short)),
        // Case 2E: 00 Le1 Le2.
        [0, hi, lo] => Ok((&[], Some(extended_le(hi, lo)), Encoding::Extended)),
        // Extended with Lc (cases 3E, 4E), or python-fido2's Lc of zero.
        [0, lc1, lc2, ref rest @ ..] => {
            let lc = usize::from(u16::from_be_bytes([lc1, lc2]));
            match (lc, rest.len()) {
                (0, 2) => Ok((&[], Some(extended_le(rest[0], rest[1])), Encoding::Extended)),
                (lc, n) if lc > 0 && n == lc => Ok((rest, None, Encoding::Extended)),
                (lc, n) if lc > 0 && n == lc + 2 => Ok((
                    &rest[..lc],
                    Some(extended_le(rest[lc], rest[lc + 1])),
                    Encoding::Extended,
                )),
                _ => Err(WRONG),
            }
        }
        // Short with Lc (cases 3S, 4S).
        [lc, ref rest @ ..] if lc != 0 => {
            let lc = usize::from(lc);
            match rest.len() {
                n if n == lc => Ok((rest, None, Encoding::Short)),
                n if n == lc + 1 => Ok((&rest[..lc], Some(short_le(rest[lc])), Encoding::Short)),
                _ => Err(WRONG),
            }
        }
        _ => Err(WRONG),
    }
}

/// A response APDU: the data, then the status word.
pub fn response(data: &[u8], sw: StatusWord) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 2);
    out.extend_from_slice(data);
    out.extend_from_slice(&sw.bytes());
    out
}

/// Splits a response APDU into its data and status word (for the trace).
pub fn split_response(msg: &[u8]) -> (&[u8], Option<u16>) {
    match msg.split_last_chunk::<2>() {
        Some((data, sw)) => (data, Some(u16::from_be_bytes(*sw))),
        None => (msg, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Result<(Vec<u8>, Option<u32>, Encoding), StatusWord> {
        CommandApdu::parse(b).map(|a| (a.data.to_vec(), a.ne, a.encoding))
    }

    #[test]
    fn every_iso_case_in_both_encodings() {
        use Encoding::*;
        assert_eq!(parse(&[0, 3, 0, 0]), Ok((vec![], None, HeaderOnly)));
        assert_eq!(parse(&[0, 3, 0, 0, 0]), Ok((vec![], Some(256), Short)));
        assert_eq!(parse(&[0, 3, 0, 0, 7]), Ok((vec![], Some(7), Short)));
        assert_eq!(
            parse(&[0, 3, 0, 0, 0, 0, 0]),
            Ok((vec![], Some(65536), Extended))
        );
        assert_eq!(
            parse(&[0, 3, 0, 0, 0, 1, 0]),
            Ok((vec![], Some(256), Extended))
        );
        // python-fido2's U2F_VERSION: an extended Lc of zero, then Le.
        assert_eq!(
            parse(&[0, 3, 0, 0, 0, 0, 0, 0, 0]),
            Ok((vec![], Some(65536), Extended))
        );
        assert_eq!(parse(&[0, 1, 0, 0, 2, 9, 9]), Ok((vec![9, 9], None, Short)));
        assert_eq!(
            parse(&[0, 1, 0, 0, 2, 9, 9, 0]),
            Ok((vec![9, 9], Some(256), Short))
        );
        assert_eq!(
            parse(&[0, 1, 0, 0, 0, 0, 2, 9, 9]),
            Ok((vec![9, 9], None, Extended))
        );
        assert_eq!(
            parse(&[0, 1, 0, 0, 0, 0, 2, 9, 9, 0, 0]),
            Ok((vec![9, 9], Some(65536), Extended))
        );
        assert_eq!(
            parse(&[0, 1, 0, 0, 0, 0, 2, 9, 9, 1, 0]),
            Ok((vec![9, 9], Some(256), Extended))
        );
    }

    #[test]
    fn lengths_that_do_not_add_up_are_wrong_length() {
        for bad in [
            &[][..],
            &[0, 1, 0],
            &[0, 1, 0, 0, 0, 5],
            &[0, 1, 0, 0, 3, 1, 2],
            &[0, 1, 0, 0, 1, 1, 2, 3],
            &[0, 1, 0, 0, 0, 0, 3, 1, 2],
            &[0, 1, 0, 0, 0, 0, 1, 1, 2],
            &[0, 1, 0, 0, 0, 0, 0, 1],
            &[0, 1, 0, 0, 0, 0, 0, 1, 2, 3],
        ] {
            assert_eq!(
                CommandApdu::parse(bad),
                Err(StatusWord::WrongLength),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn no_input_panics() {
        // Every message up to 7 bytes of a few interesting values, and long ones.
        let vals = [0u8, 1, 2, 0xff];
        for len in 0..=7 {
            let mut idx = vec![0usize; len];
            loop {
                let msg: Vec<u8> = idx.iter().map(|&i| vals[i]).collect();
                let _ = CommandApdu::parse(&msg);
                let mut k = 0;
                while k < len && idx[k] == vals.len() - 1 {
                    idx[k] = 0;
                    k += 1;
                }
                if k == len {
                    break;
                }
                idx[k] += 1;
            }
        }
        let big = vec![0u8; 70000];
        assert_eq!(CommandApdu::parse(&big), Err(StatusWord::WrongLength));
    }

    #[test]
    fn status_words_and_responses() {
        assert_eq!(StatusWord::ConditionsNotSatisfied.bytes(), [0x69, 0x85]);
        assert_eq!(response(b"U2F_V2", StatusWord::NoError), b"U2F_V2\x90\x00");
        assert_eq!(split_response(&[1, 0x6a, 0x80]), (&[1u8][..], Some(0x6a80)));
        assert_eq!(split_response(&[1]), (&[1u8][..], None));
        assert_eq!(
            StatusWord::from_u16(0x6d00),
            Some(StatusWord::InsNotSupported)
        );
        assert_eq!(StatusWord::WrongData.name(), "SW_WRONG_DATA");
    }
}
