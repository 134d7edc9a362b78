//! The `Range` header (PostgREST's `RangeQuery.hs`); `limit`/`offset` are in the query.

/// `Range: 0-9` (PostgREST's items range; a leading `items=` is tolerated). `None` when the
/// header is absent or not a range (then it is ignored, as PostgREST ignores it).
pub fn parse_range_header(v: &str) -> Option<(u64, Option<u64>)> {
    let v = v.trim();
    let v = v.strip_prefix("items=").unwrap_or(v);
    let (lo, hi) = v.split_once('-')?;
    if lo.is_empty()
        || !lo.bytes().all(|b| b.is_ascii_digit())
        || !hi.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let lo = lo.parse().ok()?;
    let hi = if hi.is_empty() {
        None
    } else {
        Some(hi.parse().ok()?)
    };
    Some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::request::test_inputs::hostile_inputs;

    #[test]
    fn range_header() {
        assert_eq!(parse_range_header("0-9"), Some((0, Some(9))));
        assert_eq!(parse_range_header("items=5-"), Some((5, None)));
        assert_eq!(parse_range_header("bytes"), None);
        assert_eq!(parse_range_header("-5"), None);
    }

    /// Random strings must never panic the range parser.
    #[test]
    fn parsers_never_panic() {
        for text in hostile_inputs() {
            let _ = parse_range_header(&text);
        }
    }
}
