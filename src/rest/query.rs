//! Safe pieces of PostgREST URLs: every value is percent-encoded and every id is a UUID, so
//! a value such as `x&org_id=neq.0` can never change the query it is placed in.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use uuid::Uuid;

use crate::error::{Error, Result};

/// Everything but RFC 3986 unreserved characters is encoded.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes one query-string value (or path segment).
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, VALUE).to_string()
}

/// Parses a caller-supplied id; anything but a UUID is refused before it reaches a URL.
pub fn uuid(what: &str, value: &str) -> Result<Uuid> {
    Uuid::parse_str(value.trim()).map_err(|_| {
        let shown: String = value.chars().take(40).collect();
        Error::InvalidArgument(format!("Invalid {what}: {shown:?} is not a UUID"))
    })
}

/// `eq.<value>` for a PostgREST filter, encoded.
pub fn eq(value: &str) -> String {
    format!("eq.{}", encode(value))
}

/// `?a=b&c=d` from already-safe names and raw values.
pub fn build(path: &str, params: &[(&str, &str)]) -> String {
    let mut out = String::from(path);
    for (i, (k, v)) in params.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_inject_parameters() {
        assert_eq!(encode("x&org_id=neq.0"), "x%26org_id%3Dneq.0");
        assert_eq!(encode("a b/c?d#e"), "a%20b%2Fc%3Fd%23e");
        assert_eq!(encode("ünï"), "%C3%BCn%C3%AF");
        assert_eq!(eq("1,2)"), "eq.1%2C2%29");
    }

    #[test]
    fn build_encodes_every_value() {
        let q = build("/rest/v1/messages", &[("created_at", "gt.2024-01-01T00:00:00+00:00"), ("limit", "200")]);
        assert_eq!(q, "/rest/v1/messages?created_at=gt.2024-01-01T00%3A00%3A00%2B00%3A00&limit=200");
    }

    #[test]
    fn ids_must_be_uuids() {
        assert!(uuid("workspace id", "bbbbbbbb-0000-4000-8000-000000000001").is_ok());
        for bad in ["", "1", "x&org_id=neq.0", "bbbbbbbb-0000-4000-8000-00000000000g", "../etc"] {
            let err = uuid("workspace id", bad).unwrap_err();
            assert_eq!(err.code(), "INVALID_ARGUMENT", "{bad}");
        }
    }
}
