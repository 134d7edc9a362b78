//! The `Accept` header: a JSON array (the default) or one object, with or without nulls
//! (PostgREST's `MediaType.hs`).

use crate::rest::error::ApiError;

/// What the client accepts: a JSON array (the default) or one object (`.single()`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accept {
    pub single: bool,
    pub strip_nulls: bool,
}

pub fn negotiate(accept: Option<&str>) -> Result<Accept, ApiError> {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(Accept::default());
    };
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let strip_nulls = parts.any(|p| p.eq_ignore_ascii_case("nulls=stripped"));
        match media.as_str() {
            "application/json" | "application/*" | "*/*" => {
                return Ok(Accept {
                    single: false,
                    strip_nulls: false,
                })
            }
            "application/vnd.pgrst.array+json" | "application/vnd.pgrst.array" => {
                return Ok(Accept {
                    single: false,
                    strip_nulls,
                })
            }
            "application/vnd.pgrst.object+json" | "application/vnd.pgrst.object" => {
                return Ok(Accept {
                    single: true,
                    strip_nulls,
                })
            }
            _ => {}
        }
    }
    Err(ApiError::MediaType(accept.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::request::test_inputs::hostile_inputs;

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate(None).unwrap(), Accept::default());
        assert_eq!(negotiate(Some("*/*")).unwrap(), Accept::default());
        assert!(
            negotiate(Some("application/vnd.pgrst.object+json"))
                .unwrap()
                .single
        );
        assert_eq!(
            negotiate(Some("application/vnd.pgrst.object+json;nulls=stripped")).unwrap(),
            Accept {
                single: true,
                strip_nulls: true
            }
        );
        assert_eq!(negotiate(Some("text/csv")).unwrap_err().code(), "PGRST107");
    }

    /// Random strings must never panic the negotiation.
    #[test]
    fn parsers_never_panic() {
        for text in hostile_inputs() {
            let _ = negotiate(Some(&text));
        }
    }
}
