//! A 2xx answer read as the type the call asked for. A reply of any other shape (HTML, an
//! empty body, `null`, `{"data": …}` instead of rows) is `INVALID_RESPONSE` with the URL and
//! status, never a half-filled result.

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::http::{is_json, Reply};
use crate::error::{Error, Result};

/// serde names the first mismatch; the rest of a long message (or a long value) adds nothing.
const MAX_REASON_CHARS: usize = 200;

impl Reply {
    /// The body as `T`, when it is JSON of that shape.
    pub fn json<T: DeserializeOwned>(self) -> Result<T> {
        if !is_json(&self.headers) {
            let kind = self
                .headers
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|ct| format!("{ct:?}"))
                .unwrap_or_else(|| "no content type".into());
            let reason = if self.body.is_null() {
                "expected JSON, got an empty body".to_string()
            } else {
                format!(
                    "expected JSON, got {}",
                    kind.chars().take(60).collect::<String>()
                )
            };
            return Err(self.invalid(reason));
        }
        match T::deserialize(&self.body) {
            Ok(v) => Ok(v),
            Err(e) => {
                let reason = format!("unexpected shape ({e})")
                    .chars()
                    .take(MAX_REASON_CHARS)
                    .collect();
                Err(self.invalid(reason))
            }
        }
    }

    pub fn invalid(&self, reason: String) -> Error {
        Error::InvalidResponse {
            url: self.url.clone(),
            status: self.status,
            reason,
        }
    }
}

/// A row checked against `T` and kept whole, for callers that hand the server's row on
/// (`cloudSync.auth.org`, workspace rows) but must not hand on a row of the wrong shape.
#[derive(Debug, Clone)]
pub struct Checked<T> {
    pub typed: T,
    pub raw: Value,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = Value::deserialize(d)?;
        let typed = T::deserialize(&raw).map_err(serde::de::Error::custom)?;
        Ok(Checked { typed, raw })
    }
}

impl<T> Serialize for Checked<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

/// Rows of `T`, kept whole, as one JSON array.
pub fn raw_rows<T>(rows: Vec<Checked<T>>) -> Value {
    Value::Array(rows.into_iter().map(|r| r.raw).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Row {
        id: uuid::Uuid,
        name: String,
    }

    fn reply(content_type: Option<&'static str>, body: Value) -> Reply {
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        Reply {
            status: 200,
            headers,
            body,
            url: "http://h/rest/v1/rows".into(),
        }
    }

    const JSON: Option<&str> = Some("application/json; charset=utf-8");

    #[test]
    fn rows_of_the_right_shape_are_kept_whole() {
        let id = "bbbbbbbb-0000-4000-8000-000000000001";
        let rows: Vec<Checked<Row>> = reply(JSON, json!([{"id": id, "name": "n", "extra": 1}]))
            .json()
            .unwrap();
        assert_eq!(rows[0].typed.name, "n");
        assert_eq!(raw_rows(rows), json!([{"id": id, "name": "n", "extra": 1}]));
    }

    #[test]
    fn anything_else_is_invalid_response_with_url_and_status() {
        let id = "bbbbbbbb-0000-4000-8000-000000000001";
        for (ct, body) in [
            (Some("text/html"), json!("<html>hi</html>")),
            (None, Value::Null),
            (JSON, Value::Null),
            (JSON, json!({"data": [{"id": id, "name": "n"}]})),
            (JSON, json!("[]")),
            (JSON, json!([{"id": "not-a-uuid&x=1", "name": "n"}])),
            (JSON, json!([{"id": id}])),
            (JSON, json!([{"id": id, "name": 5}])),
        ] {
            let e = reply(ct, body.clone())
                .json::<Vec<Checked<Row>>>()
                .unwrap_err();
            assert_eq!(e.code(), "INVALID_RESPONSE", "{body}");
            assert_eq!(
                (e.status(), e.url()),
                (Some(200), Some("http://h/rest/v1/rows"))
            );
        }
    }
}
