//! The JSON body of POST/PATCH, checked as PostgREST does (`ApiRequest/Payload.hs`).

use crate::rest::error::ApiError;

/// A JSON payload for POST/PATCH: the raw text (sent to PostgreSQL untouched, so numbers keep
/// their precision) and its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// For inserts always a JSON array; for updates a JSON object.
    pub json: String,
    pub keys: Vec<String>,
    pub rows: usize,
}

pub const INVALID_JSON: &str = "Empty or invalid json";

/// Checks the body as PostgREST does: an object, or an array of objects with the same keys
/// (unless `columns=` says which keys count).
pub fn parse_payload(body: &[u8], insert: bool, columns_given: bool) -> Result<Payload, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::InvalidBody(INVALID_JSON.into()))?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| ApiError::InvalidBody(INVALID_JSON.into()))?;
    let keys_of = |o: &serde_json::Map<String, serde_json::Value>| {
        let mut k: Vec<String> = o.keys().cloned().collect();
        k.sort();
        k
    };
    match value {
        serde_json::Value::Object(o) => {
            let json = if insert {
                format!("[{text}]")
            } else {
                text.to_string()
            };
            Ok(Payload {
                json,
                keys: keys_of(&o),
                rows: 1,
            })
        }
        serde_json::Value::Array(items) if insert || items.len() == 1 => {
            let mut keys: Option<Vec<String>> = None;
            for item in &items {
                let serde_json::Value::Object(o) = item else {
                    return Err(ApiError::InvalidBody("All object keys must match".into()));
                };
                let k = keys_of(o);
                match &keys {
                    None => keys = Some(k),
                    Some(first) if *first != k && !columns_given => {
                        return Err(ApiError::InvalidBody("All object keys must match".into()))
                    }
                    Some(_) => {}
                }
            }
            let json = match (insert, items.first()) {
                (true, _) => text.to_string(),
                (false, Some(one)) => one.to_string(),
                (false, None) => "{}".to_string(),
            };
            Ok(Payload {
                json,
                keys: keys.unwrap_or_default(),
                rows: items.len(),
            })
        }
        serde_json::Value::Array(_) => Err(ApiError::InvalidBody(INVALID_JSON.into())),
        // PostgREST truncates anything else to an empty array.
        _ => Ok(Payload {
            json: if insert { "[]".into() } else { "{}".into() },
            keys: Vec::new(),
            rows: 0,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        let p = parse_payload(br#"{"b":1,"a":"x"}"#, true, false).unwrap();
        assert_eq!(p.json, r#"[{"b":1,"a":"x"}]"#);
        assert_eq!(p.keys, vec!["a", "b"]);
        let p = parse_payload(br#"[{"a":1},{"a":2}]"#, true, false).unwrap();
        assert_eq!((p.rows, p.keys), (2, vec!["a".to_string()]));
        assert_eq!(
            parse_payload(br#"[{"a":1},{"b":2}]"#, true, false)
                .unwrap_err()
                .code(),
            "PGRST102"
        );
        assert!(parse_payload(br#"[{"a":1},{"b":2}]"#, true, true).is_ok());
        assert_eq!(
            parse_payload(b"{nope", true, false).unwrap_err().code(),
            "PGRST102"
        );
        assert_eq!(
            parse_payload(b"", true, false).unwrap_err().code(),
            "PGRST102"
        );
        // Big numbers reach PostgreSQL as written.
        let p = parse_payload(br#"{"n":123456789012345678901234567890.5}"#, false, false).unwrap();
        assert_eq!(p.json, r#"{"n":123456789012345678901234567890.5}"#);
    }
}
