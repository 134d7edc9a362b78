//! Phoenix's two serializers as Supabase Realtime speaks them.
//!
//! - `1.0.0`: one JSON object per text message; the server's frames carry no `join_ref`.
//! - `2.0.0`: one JSON array `[join_ref, ref, topic, event, payload]` per text message, plus
//!   binary user broadcasts: kind 3 from the client, kind 4 to it.
//!
//! Decoding takes untrusted bytes and returns a typed frame or an error; the socket drops
//! frames that fail, as Realtime does.

use bytes::Bytes;
use serde_json::Value;

/// The `vsn` query parameter of the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vsn {
    V1,
    V2,
}

impl Vsn {
    /// Phoenix defaults to 1.0.0; any other unknown value is refused at upgrade.
    pub fn parse(v: Option<&str>) -> Option<Vsn> {
        match v {
            None | Some("1.0.0") => Some(Vsn::V1),
            Some("2.0.0") => Some(Vsn::V2),
            _ => None,
        }
    }
}

/// The body of a user broadcast: JSON, or raw bytes (kind 3 with encoding 0).
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Value),
    Raw(Bytes),
}

/// A frame from the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub join_ref: Option<String>,
    pub reference: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Json(Value),
    /// A kind-3 binary broadcast: the user event and its body.
    Broadcast {
        event: String,
        body: Body,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a JSON frame")]
    Json,
    #[error("a frame field has the wrong type")]
    Shape,
    #[error("binary frames need vsn 2.0.0")]
    BinaryOnV1,
    #[error("unknown binary kind {0}")]
    Kind(u8),
    #[error("binary frame truncated")]
    Truncated,
    #[error("binary frame field is not UTF-8")]
    Utf8,
}

/// Refs are strings, but a number is tolerated (some clients count with integers).
fn reference(v: Option<&Value>) -> Result<Option<String>, DecodeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(DecodeError::Shape),
    }
}

fn string(v: Option<&Value>) -> Result<String, DecodeError> {
    match v {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(DecodeError::Shape),
    }
}

pub fn decode_text(vsn: Vsn, text: &str) -> Result<Incoming, DecodeError> {
    let value: Value = serde_json::from_str(text).map_err(|_| DecodeError::Json)?;
    match (vsn, value) {
        (Vsn::V2, Value::Array(mut a)) if a.len() == 5 => {
            let payload = a.pop().unwrap_or(Value::Null);
            Ok(Incoming {
                join_ref: reference(a.first())?,
                reference: reference(a.get(1))?,
                topic: string(a.get(2))?,
                event: string(a.get(3))?,
                payload: Payload::Json(payload),
            })
        }
        (Vsn::V1, Value::Object(mut o)) => Ok(Incoming {
            join_ref: reference(o.get("join_ref"))?,
            reference: reference(o.get("ref"))?,
            topic: string(o.get("topic"))?,
            event: string(o.get("event"))?,
            payload: Payload::Json(o.remove("payload").unwrap_or(Value::Null)),
        }),
        _ => Err(DecodeError::Shape),
    }
}

/// Kind 3: `3, len(join_ref), len(ref), len(topic), len(event), len(meta), encoding`, then
/// those fields and the payload.
pub fn decode_binary(vsn: Vsn, data: &[u8]) -> Result<Incoming, DecodeError> {
    if vsn != Vsn::V2 {
        return Err(DecodeError::BinaryOnV1);
    }
    let kind = *data.first().ok_or(DecodeError::Truncated)?;
    if kind != 3 {
        return Err(DecodeError::Kind(kind));
    }
    let header = data.get(1..7).ok_or(DecodeError::Truncated)?;
    let mut offset = 7usize;
    let mut field = |len: u8| -> Result<String, DecodeError> {
        let end = offset + len as usize;
        let bytes = data.get(offset..end).ok_or(DecodeError::Truncated)?;
        offset = end;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Utf8)
    };
    let join_ref = field(header[0])?;
    let reference = field(header[1])?;
    let topic = field(header[2])?;
    let event = field(header[3])?;
    let _meta = field(header[4])?;
    let rest = &data[offset..];
    let body = match header[5] {
        1 => Body::Json(serde_json::from_slice(rest).map_err(|_| DecodeError::Json)?),
        _ => Body::Raw(Bytes::copy_from_slice(rest)),
    };
    let opt = |s: String| (!s.is_empty()).then_some(s);
    Ok(Incoming {
        join_ref: opt(join_ref),
        reference: opt(reference),
        topic,
        event: "broadcast".into(),
        payload: Payload::Broadcast { event, body },
    })
}

/// A text frame. `payload` is already JSON (shared payloads are serialized once per fan-out).
pub fn encode_text(
    vsn: Vsn,
    join_ref: Option<&str>,
    reference: Option<&str>,
    topic: &str,
    event: &str,
    payload: &str,
) -> String {
    let s = |v: &str| Value::String(v.to_string()).to_string();
    let opt = |v: Option<&str>| v.map(s).unwrap_or_else(|| "null".into());
    match vsn {
        Vsn::V2 => format!(
            "[{},{},{},{},{}]",
            opt(join_ref),
            opt(reference),
            s(topic),
            s(event),
            payload
        ),
        Vsn::V1 => format!(
            "{{\"topic\":{},\"event\":{},\"payload\":{},\"ref\":{}}}",
            s(topic),
            s(event),
            payload,
            opt(reference)
        ),
    }
}

/// Kind 4: `4, len(topic), len(event), len(meta), encoding`, the fields, then the payload.
/// `None` when a field is longer than a length byte can say.
pub fn encode_broadcast_binary(topic: &str, event: &str, body: &Body) -> Option<Vec<u8>> {
    let (encoding, bytes): (u8, std::borrow::Cow<'_, [u8]>) = match body {
        Body::Json(v) => (1, v.to_string().into_bytes().into()),
        Body::Raw(b) => (0, b.as_ref().into()),
    };
    let topic_len = u8::try_from(topic.len()).ok()?;
    let event_len = u8::try_from(event.len()).ok()?;
    let mut out = Vec::with_capacity(5 + topic.len() + event.len() + bytes.len());
    out.extend_from_slice(&[4, topic_len, event_len, 0, encoding]);
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(&bytes);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v2_text_round_trip() {
        let f = decode_text(Vsn::V2, r#"["6","7","realtime:room1","phx_join",{"a":1}]"#).unwrap();
        assert_eq!(f.join_ref.as_deref(), Some("6"));
        assert_eq!(f.reference.as_deref(), Some("7"));
        assert_eq!(f.topic, "realtime:room1");
        assert_eq!(f.event, "phx_join");
        assert_eq!(f.payload, Payload::Json(json!({"a":1})));
        let out = encode_text(Vsn::V2, Some("6"), None, "realtime:room1", "system", "{}");
        assert_eq!(out, r#"["6",null,"realtime:room1","system",{}]"#);
    }

    #[test]
    fn v1_frames_omit_join_ref() {
        let f = decode_text(
            Vsn::V1,
            r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":9}"#,
        )
        .unwrap();
        assert_eq!(f.reference.as_deref(), Some("9"));
        assert_eq!(f.join_ref, None);
        let out = encode_text(Vsn::V1, Some("1"), Some("9"), "phoenix", "phx_reply", "{}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            json!({"topic":"phoenix","event":"phx_reply","payload":{},"ref":"9"})
        );
    }

    #[test]
    fn wrong_shapes_are_errors() {
        assert_eq!(decode_text(Vsn::V2, "nope"), Err(DecodeError::Json));
        assert_eq!(
            decode_text(Vsn::V2, r#"{"topic":"x"}"#),
            Err(DecodeError::Shape)
        );
        assert_eq!(
            decode_text(Vsn::V1, r#"[null,null,"t","e",{}]"#),
            Err(DecodeError::Shape)
        );
        assert_eq!(
            decode_text(Vsn::V2, r#"[null,null,1,"e",{}]"#),
            Err(DecodeError::Shape)
        );
        assert_eq!(
            decode_text(Vsn::V2, r#"[null,null,"t","e"]"#),
            Err(DecodeError::Shape)
        );
    }

    #[test]
    fn kind3_as_realtime_js_sends_it() {
        // Captured from realtime-js: header [3,1,1,14,6,0,1], body `68realtime:room1cursor{"x":2}`.
        let mut frame = vec![3, 1, 1, 14, 6, 0, 1];
        frame.extend_from_slice(b"68realtime:room1cursor{\"x\":2}");
        let f = decode_binary(Vsn::V2, &frame).unwrap();
        assert_eq!(f.join_ref.as_deref(), Some("6"));
        assert_eq!(f.reference.as_deref(), Some("8"));
        assert_eq!(f.topic, "realtime:room1");
        assert_eq!(f.event, "broadcast");
        assert_eq!(
            f.payload,
            Payload::Broadcast {
                event: "cursor".into(),
                body: Body::Json(json!({"x":2}))
            }
        );
        assert_eq!(decode_binary(Vsn::V1, &frame), Err(DecodeError::BinaryOnV1));
        assert_eq!(
            decode_binary(Vsn::V2, &frame[..12]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(decode_binary(Vsn::V2, &[9]), Err(DecodeError::Kind(9)));
        assert_eq!(decode_binary(Vsn::V2, &[]), Err(DecodeError::Truncated));
    }

    #[test]
    fn kind3_raw_body_and_empty_refs() {
        let mut frame = vec![3, 0, 0, 1, 1, 0, 0];
        frame.extend_from_slice(b"te\x00\xff");
        let f = decode_binary(Vsn::V2, &frame).unwrap();
        assert_eq!(f.join_ref, None);
        assert_eq!(f.reference, None);
        assert_eq!(
            f.payload,
            Payload::Broadcast {
                event: "e".into(),
                body: Body::Raw(Bytes::from_static(b"\x00\xff"))
            }
        );
    }

    #[test]
    fn kind4_layout() {
        let out =
            encode_broadcast_binary("realtime:r", "cursor", &Body::Json(json!({"x":1}))).unwrap();
        let mut want = vec![4, 10, 6, 0, 1];
        want.extend_from_slice(b"realtime:rcursor{\"x\":1}");
        assert_eq!(out, want);
        let long = "x".repeat(256);
        assert!(encode_broadcast_binary(&long, "e", &Body::Raw(Bytes::new())).is_none());
    }

    #[test]
    fn vsn_parse() {
        assert_eq!(Vsn::parse(None), Some(Vsn::V1));
        assert_eq!(Vsn::parse(Some("2.0.0")), Some(Vsn::V2));
        assert_eq!(Vsn::parse(Some("3.0.0")), None);
    }
}
