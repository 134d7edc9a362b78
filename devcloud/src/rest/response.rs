//! Turns the main query's result into PostgREST's response: status, `Content-Range`,
//! `Preference-Applied` and the body (PostgREST's `Response.hs`).

use axum::{
    body::Body,
    http::{header, HeaderValue, Response, StatusCode},
};

use super::{error::ApiError, request::Preferences};

/// The one row every main query returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The total when a count was asked for (reads: all matching rows; writes: rows written).
    pub total: Option<i64>,
    /// Rows in this response (reads) or written (writes).
    pub page: i64,
    pub body: String,
    /// Rows inserted rather than updated by a merge-duplicates upsert.
    pub inserted: Option<i64>,
}

/// `Content-Range: lower-upper/total`, with `*` for an empty range or an unknown total.
pub fn content_range(lower: i64, upper: i64, total: Option<i64>) -> String {
    let total_s = total.map_or("*".to_string(), |t| t.to_string());
    if total != Some(0) && lower <= upper {
        format!("{lower}-{upper}/{total_s}")
    } else {
        format!("*/{total_s}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Insert { resolution_applies: bool },
    Update,
    Delete,
}

pub struct Shape {
    pub single: bool,
    pub head: bool,
}

fn content_type(single: bool) -> HeaderValue {
    if single {
        HeaderValue::from_static("application/vnd.pgrst.object+json; charset=utf-8")
    } else {
        HeaderValue::from_static("application/json; charset=utf-8")
    }
}

fn build(
    status: StatusCode,
    headers: Vec<(header::HeaderName, String)>,
    body: Option<(String, bool)>,
) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = status;
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            res.headers_mut().insert(name, v);
        }
    }
    if let Some((text, single)) = body {
        res.headers_mut()
            .insert(header::CONTENT_TYPE, content_type(single));
        *res.body_mut() = Body::from(text);
    }
    res
}

fn preference_applied() -> header::HeaderName {
    header::HeaderName::from_static("preference-applied")
}

/// GET/HEAD: 200, or 206 when a count shows the page is partial; 416 past the end.
pub fn read(
    outcome: Outcome,
    offset: u64,
    prefs: &Preferences,
    shape: Shape,
) -> Result<Response<Body>, ApiError> {
    let lower = i64::try_from(offset).unwrap_or(i64::MAX);
    let upper = lower.saturating_add(outcome.page) - 1;
    let status = match outcome.total {
        None => StatusCode::OK,
        Some(total) if lower > total => {
            return Err(ApiError::InvalidRange(format!(
                "An offset of {lower} was requested, but there are only {total} rows."
            )))
        }
        Some(total) if 1 + upper - lower < total => StatusCode::PARTIAL_CONTENT,
        Some(_) => StatusCode::OK,
    };
    let mut headers = vec![(
        header::CONTENT_RANGE,
        content_range(lower, upper, outcome.total),
    )];
    if let Some(p) = prefs.applied(false, false, false) {
        headers.push((preference_applied(), p));
    }
    let body = if shape.head {
        None
    } else {
        Some((outcome.body, shape.single))
    };
    let mut res = build(status, headers, body);
    if shape.head {
        res.headers_mut()
            .insert(header::CONTENT_TYPE, content_type(shape.single));
    }
    Ok(res)
}

/// POST 201 (200 when a merge upsert inserted nothing), PATCH/DELETE 204, or 200 with the
/// representation.
pub fn write(kind: Write, outcome: Outcome, prefs: &Preferences, shape: Shape) -> Response<Body> {
    let total = prefs.counts().then_some(outcome.page);
    let range = match kind {
        Write::Update => content_range(0, outcome.page - 1, total),
        Write::Insert { .. } | Write::Delete => content_range(1, 0, total),
    };
    let mut headers = vec![(header::CONTENT_RANGE, range)];
    let applied = match kind {
        Write::Insert { resolution_applies } => prefs.applied(resolution_applies, true, true),
        Write::Update => prefs.applied(false, true, true),
        Write::Delete => prefs.applied(false, false, true),
    };
    if let Some(p) = applied {
        headers.push((preference_applied(), p));
    }
    let representation = prefs.representation();
    let status = match kind {
        Write::Insert { .. } => match outcome.inserted {
            Some(0) => StatusCode::OK,
            _ => StatusCode::CREATED,
        },
        Write::Update | Write::Delete if representation => StatusCode::OK,
        Write::Update | Write::Delete => StatusCode::NO_CONTENT,
    };
    let body = (representation && !shape.head).then_some((outcome.body, shape.single));
    build(status, headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::request::{Count, Resolution, Return};

    fn outcome(page: i64, total: Option<i64>) -> Outcome {
        Outcome {
            total,
            page,
            body: "[]".into(),
            inserted: None,
        }
    }

    fn header(res: &Response<Body>, name: &str) -> String {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range(0, 14, None), "0-14/*");
        assert_eq!(content_range(0, -1, None), "*/*");
        assert_eq!(content_range(0, -1, Some(0)), "*/0");
        assert_eq!(content_range(0, 2, Some(3)), "0-2/3");
        assert_eq!(content_range(1, 0, Some(5)), "*/5");
    }

    #[test]
    fn reads_are_200_206_or_416() {
        let p = Preferences::default();
        let shape = || Shape {
            single: false,
            head: false,
        };
        let r = read(outcome(15, None), 0, &p, shape()).unwrap();
        assert_eq!(
            (r.status(), header(&r, "content-range")),
            (StatusCode::OK, "0-14/*".to_string())
        );
        let p = Preferences {
            count: Some(Count::Exact),
            ..Preferences::default()
        };
        let r = read(outcome(2, Some(5)), 1, &p, shape()).unwrap();
        assert_eq!(
            (r.status(), header(&r, "content-range")),
            (StatusCode::PARTIAL_CONTENT, "1-2/5".to_string())
        );
        assert_eq!(header(&r, "preference-applied"), "count=exact");
        let r = read(outcome(0, Some(0)), 0, &p, shape()).unwrap();
        assert_eq!(
            (r.status(), header(&r, "content-range")),
            (StatusCode::OK, "*/0".to_string())
        );
        assert_eq!(
            read(outcome(0, Some(3)), 10, &p, shape())
                .unwrap_err()
                .code(),
            "PGRST103"
        );
    }

    #[test]
    fn writes() {
        let minimal = Preferences::default();
        let r = write(
            Write::Insert {
                resolution_applies: false,
            },
            outcome(3, None),
            &minimal,
            Shape {
                single: false,
                head: false,
            },
        );
        assert_eq!(
            (r.status(), header(&r, "content-range")),
            (StatusCode::CREATED, "*/*".to_string())
        );
        assert!(r.headers().get("content-type").is_none());
        let rep = Preferences {
            ret: Some(Return::Representation),
            resolution: Some(Resolution::MergeDuplicates),
            ..Preferences::default()
        };
        let mut o = outcome(1, None);
        o.inserted = Some(0);
        let r = write(
            Write::Insert {
                resolution_applies: true,
            },
            o,
            &rep,
            Shape {
                single: false,
                head: false,
            },
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header(&r, "preference-applied"),
            "resolution=merge-duplicates, return=representation"
        );
        let r = write(
            Write::Update,
            outcome(2, None),
            &rep,
            Shape {
                single: false,
                head: false,
            },
        );
        assert_eq!(
            (r.status(), header(&r, "content-range")),
            (StatusCode::OK, "0-1/*".to_string())
        );
        let r = write(
            Write::Delete,
            outcome(2, None),
            &minimal,
            Shape {
                single: false,
                head: false,
            },
        );
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
}
