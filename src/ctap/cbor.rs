//! CBOR in and out (CTAP 2.1 §8 "Message Encoding").
//!
//! Requests are parsed with ciborium into a `Value` and then read field by field with
//! the exact CTAP error for each problem. Responses go through [`encode`], the one place
//! that produces CTAP2 canonical CBOR (§8: map keys sorted by encoded length, then
//! bytewise; shortest integers; definite lengths). Firefox rejects anything else.

use ciborium::Value;

use super::status::{CtapResult, StatusCode};

/// CBOR nesting deeper than this is refused. No CTAP request nests more than ~5 levels
/// (extensions inside a map inside the request map); the bound keeps hostile input from
/// costing stack.
const MAX_DEPTH: usize = 16;

/// Parses one CBOR data item that must fill `bytes` exactly.
pub fn decode(bytes: &[u8]) -> CtapResult<Value> {
    let mut cursor = std::io::Cursor::new(bytes);
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut cursor, MAX_DEPTH)
        .map_err(|_| StatusCode::InvalidCbor)?;
    // ciborium stops after one item; trailing bytes make the message invalid.
    if cursor.position() as usize != bytes.len() {
        return Err(StatusCode::InvalidCbor);
    }
    check_no_duplicate_keys(&value)?;
    Ok(value)
}

fn check_no_duplicate_keys(v: &Value) -> CtapResult<()> {
    match v {
        Value::Map(entries) => {
            let mut keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| encode_raw(k)).collect();
            keys.sort();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                return Err(StatusCode::InvalidCbor);
            }
            entries.iter().try_for_each(|(k, v)| {
                check_no_duplicate_keys(k)?;
                check_no_duplicate_keys(v)
            })
        }
        Value::Array(items) => items.iter().try_for_each(check_no_duplicate_keys),
        Value::Tag(_, inner) => check_no_duplicate_keys(inner),
        _ => Ok(()),
    }
}

fn encode_raw(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail for a Value that came from the decoder or from us.
    if ciborium::ser::into_writer(v, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Canonical CTAP2 encoding of `v`: maps sorted recursively, length first then bytewise.
pub fn encode(v: &Value) -> Vec<u8> {
    encode_raw(&canonicalize(v.clone()))
}

fn canonicalize(v: Value) -> Value {
    match v {
        Value::Map(entries) => {
            let mut keyed: Vec<(Vec<u8>, Value, Value)> = entries
                .into_iter()
                .map(|(k, v)| {
                    let k = canonicalize(k);
                    (encode_raw(&k), k, canonicalize(v))
                })
                .collect();
            keyed.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
            Value::Map(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonicalize).collect()),
        Value::Tag(t, inner) => Value::Tag(t, Box::new(canonicalize(*inner))),
        other => other,
    }
}

/// Builds a response map with integer keys, skipping absent optional members.
#[derive(Default)]
pub struct MapBuilder(Vec<(Value, Value)>);

impl MapBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn int(mut self, key: i64, v: impl Into<Value>) -> Self {
        self.0.push((Value::Integer(key.into()), v.into()));
        self
    }
    pub fn int_opt(self, key: i64, v: Option<impl Into<Value>>) -> Self {
        match v {
            Some(v) => self.int(key, v),
            None => self,
        }
    }
    pub fn text(mut self, key: &str, v: impl Into<Value>) -> Self {
        self.0.push((Value::Text(key.into()), v.into()));
        self
    }
    pub fn text_opt(self, key: &str, v: Option<impl Into<Value>>) -> Self {
        match v {
            Some(v) => self.text(key, v),
            None => self,
        }
    }
    pub fn build(self) -> Value {
        Value::Map(self.0)
    }
    /// The map, or `None` if it has no members.
    pub fn build_non_empty(self) -> Option<Value> {
        (!self.0.is_empty()).then(|| self.build())
    }
}

/// A request's top-level map, read member by member. Integer keys per §6.
pub struct RequestMap(Vec<(Value, Value)>);

impl RequestMap {
    /// The parameters of a command that takes some: none at all is MISSING_PARAMETER,
    /// anything but a CBOR map CBOR_UNEXPECTED_TYPE.
    pub fn parse(bytes: &[u8]) -> CtapResult<RequestMap> {
        if bytes.is_empty() {
            return Err(StatusCode::MissingParameter);
        }
        match decode(bytes)? {
            Value::Map(m) => Ok(RequestMap(m)),
            _ => Err(StatusCode::CborUnexpectedType),
        }
    }

    /// A nested parameter map (subCommandParams), read the same way.
    pub fn from_entries(entries: Vec<(Value, Value)>) -> RequestMap {
        RequestMap(entries)
    }

    /// Removes and returns the member `key`, which must be there (MISSING_PARAMETER).
    pub fn required(&mut self, key: i64) -> CtapResult<Value> {
        self.take(key).ok_or(StatusCode::MissingParameter)
    }

    /// Removes and returns the member with integer key `key`.
    pub fn take(&mut self, key: i64) -> Option<Value> {
        let pos = self
            .0
            .iter()
            .position(|(k, _)| matches!(k, Value::Integer(i) if i128::from(*i) == key as i128))?;
        Some(self.0.swap_remove(pos).1)
    }
}

/// A command that takes no parameters got some: CTAP1_ERR_INVALID_LENGTH.
pub fn no_parameters(params: &[u8]) -> CtapResult<()> {
    if params.is_empty() {
        Ok(())
    } else {
        Err(StatusCode::InvalidLength)
    }
}

/// Typed readers for a member of one type (else CBOR_UNEXPECTED_TYPE).
pub mod read {
    use super::*;

    pub fn bytes(v: Value) -> CtapResult<Vec<u8>> {
        match v {
            Value::Bytes(b) => Ok(b),
            _ => Err(StatusCode::CborUnexpectedType),
        }
    }
    pub fn text(v: Value) -> CtapResult<String> {
        match v {
            Value::Text(t) => Ok(t),
            _ => Err(StatusCode::CborUnexpectedType),
        }
    }
    pub fn boolean(v: Value) -> CtapResult<bool> {
        match v {
            Value::Bool(b) => Ok(b),
            _ => Err(StatusCode::CborUnexpectedType),
        }
    }
    pub fn int(v: Value) -> CtapResult<i64> {
        match v {
            Value::Integer(i) => {
                i64::try_from(i128::from(i)).map_err(|_| StatusCode::CborUnexpectedType)
            }
            _ => Err(StatusCode::CborUnexpectedType),
        }
    }
    pub fn unsigned(v: Value) -> CtapResult<u64> {
        match v {
            Value::Integer(i) => {
                u64::try_from(i128::from(i)).map_err(|_| StatusCode::CborUnexpectedType)
            }
            _ => Err(StatusCode::CborUnexpectedType),
        }
    }
    pub fn array(v: Value) -> CtapResult<Vec<Value>> {
        match v {
            Value::Array(a) => Ok(a),
            _ => Err(StatusCode::CborUnexpectedType),
        }
    }
    pub fn map(v: Value) -> CtapResult<Vec<(Value, Value)>> {
        match v {
            Value::Map(m) => Ok(m),
            _ => Err(StatusCode::CborUnexpectedType),
        }
    }
    /// A map whose keys are all text strings (PublicKeyCredentialEntity and friends).
    pub fn text_map(v: Value) -> CtapResult<Vec<(String, Value)>> {
        map(v)?
            .into_iter()
            .map(|(k, v)| Ok((text(k)?, v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_sorts_keys_length_first_then_bytewise() {
        let v = MapBuilder::new()
            .text("up", true)
            .int(3, 1)
            .text("rk", false)
            .int(-1, 2)
            .int(24, 0)
            .text("a", 0)
            .build();
        let bytes = encode(&v);
        // keys: 3 (03), -1 (20), 24 (18 18), "a" (61 61), "rk" (62 72 6b), "up" (62 75 70)
        assert_eq!(
            hex::encode(&bytes),
            "a6\
             0301\
             2002\
             181800\
             616100\
             62726bf4\
             627570f5"
                .replace(' ', "")
        );
    }

    #[test]
    fn decode_rejects_trailing_bytes_duplicates_and_garbage() {
        assert_eq!(decode(&[0xa0, 0x00]), Err(StatusCode::InvalidCbor));
        assert_eq!(
            decode(&[0xa2, 0x01, 0x01, 0x01, 0x02]),
            Err(StatusCode::InvalidCbor)
        );
        assert_eq!(decode(&[0xff]), Err(StatusCode::InvalidCbor));
        assert_eq!(
            decode(&[0x5a, 0xff, 0xff, 0xff, 0xff]),
            Err(StatusCode::InvalidCbor)
        );
        assert_eq!(decode(&[]), Err(StatusCode::InvalidCbor));
        // Deep nesting is refused, not a stack overflow.
        let deep = vec![0x81u8; 10_000];
        assert_eq!(decode(&deep), Err(StatusCode::InvalidCbor));
        assert!(decode(&[0xa1, 0x01, 0x02]).is_ok());
    }

    #[test]
    fn request_map_requires_a_map() {
        assert!(matches!(
            RequestMap::parse(&[0x80]),
            Err(StatusCode::CborUnexpectedType)
        ));
        let mut m =
            RequestMap::parse(&[0xa2, 0x01, 0x41, 0xaa, 0x02, 0x63, b'a', b'b', b'c']).unwrap();
        assert_eq!(read::bytes(m.take(1).unwrap()), Ok(vec![0xaa]));
        assert_eq!(
            read::bytes(m.take(2).unwrap()),
            Err(StatusCode::CborUnexpectedType)
        );
        assert!(m.take(1).is_none());
    }
}
