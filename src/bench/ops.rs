//! The operations `vkey bench` measures, by name.

use std::fmt;

/// What one timed operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// CTAPHID_PING echoing this many bytes.
    Ping(usize),
    GetInfo,
    /// makeCredential, discoverable if `rk`.
    MakeCredential {
        rk: bool,
    },
    /// getAssertion with an allowList, or for a discoverable credential if `rk`.
    GetAssertion {
        rk: bool,
    },
    /// makeCredential (non-discoverable) then getAssertion with the new credential,
    /// timed as one operation: the register + sign cycle of a test suite.
    Mixed,
}

/// An operation, with or without a fresh pinUvAuthToken for each CTAP2 request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Op {
    pub kind: Kind,
    pub pin: bool,
}

/// The base names; each CTAP2 credential operation also exists as `NAME-pin`.
const BASE: [(&str, Kind); 9] = [
    ("ping-64", Kind::Ping(64)),
    ("ping-1k", Kind::Ping(1024)),
    ("ping-7609", Kind::Ping(7609)),
    ("getinfo", Kind::GetInfo),
    ("mc", Kind::MakeCredential { rk: false }),
    ("mc-rk", Kind::MakeCredential { rk: true }),
    ("ga", Kind::GetAssertion { rk: false }),
    ("ga-rk", Kind::GetAssertion { rk: true }),
    ("mixed", Kind::Mixed),
];

impl Kind {
    fn takes_pin(self) -> bool {
        matches!(
            self,
            Kind::MakeCredential { .. } | Kind::GetAssertion { .. } | Kind::Mixed
        )
    }
}

impl Op {
    pub fn name(&self) -> String {
        let base = BASE
            .iter()
            .find(|(_, k)| *k == self.kind)
            .map_or("?", |(n, _)| n);
        if self.pin {
            format!("{base}-pin")
        } else {
            base.to_string()
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        let (base, pin) = match s.strip_suffix("-pin") {
            Some(b) => (b, true),
            None => (s, false),
        };
        let kind = BASE.iter().find(|(n, _)| *n == base)?.1;
        (!pin || kind.takes_pin()).then_some(Op { kind, pin })
    }

    /// Every operation, in the order tables list them.
    pub fn all() -> Vec<Op> {
        let mut v: Vec<Op> = BASE
            .iter()
            .map(|&(_, kind)| Op { kind, pin: false })
            .collect();
        v.extend(
            BASE.iter()
                .filter(|(_, k)| k.takes_pin())
                .map(|&(_, kind)| Op { kind, pin: true }),
        );
        v
    }

    /// Every name `--op` accepts, for help and errors.
    pub fn names() -> Vec<String> {
        Op::all().iter().map(Op::name).collect()
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for op in Op::all() {
            assert_eq!(Op::parse(&op.name()), Some(op));
        }
        assert_eq!(Op::all().len(), 14);
        assert_eq!(Op::parse("ping-64-pin"), None);
        assert_eq!(Op::parse("getinfo-pin"), None);
        assert_eq!(Op::parse("nope"), None);
    }
}
