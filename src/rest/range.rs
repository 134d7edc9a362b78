//! What a read's `Content-Range` proves: that its page holds every row the request matched,
//! so that the empty page which otherwise ends a paged read need not be asked for.
//!
//! PostgREST answers `Prefer: count=exact` with `Content-Range: <first>-<last>/<total>`
//! (`*/<total>` for no rows), the total counted in the same statement as the page. A page
//! that starts at the first row and whose total is its own number of rows is therefore as
//! good as the empty page after it, and better (it is the same snapshot). Any other header
//! (missing, malformed, a range that is not the rows received, a total below them) proves
//! nothing and the read goes on to an empty page: a listing cut short would make files look
//! deleted in the cloud.

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_RANGE};

/// The `Prefer` value that asks for the count.
pub const COUNT_EXACT: &str = "count=exact";

/// Longest `Content-Range` value read: two ranges and a total of 20 digits each.
const MAX_HEADER_CHARS: usize = 64;

/// A read's `Content-Range`, parsed strictly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// `first..=last`, or `None` for `*` (no rows).
    pub rows: Option<(u64, u64)>,
    /// `None` for `*` (not counted).
    pub total: Option<u64>,
}

/// A decimal number as PostgREST writes one: digits only, no sign, no leading zero.
fn number(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

/// `value` as `first-last/total` or `*/total` (`total` may be `*`), or `None`.
pub fn parse(value: &str) -> Option<ContentRange> {
    if value.len() > MAX_HEADER_CHARS {
        return None;
    }
    let (range, total) = value.split_once('/')?;
    let total = match total {
        "*" => None,
        t => Some(number(t)?),
    };
    let rows = match range {
        "*" => None,
        r => {
            let (first, last) = r.split_once('-')?;
            let (first, last) = (number(first)?, number(last)?);
            if first > last || total.is_some_and(|t| last >= t) {
                return None;
            }
            Some((first, last))
        }
    };
    Some(ContentRange { rows, total })
}

/// The rows the request matched beyond the `received` of its page (read without an offset),
/// when the reply's `Content-Range` is consistent with them: zero means the page holds them
/// all. `None` when the header is missing, malformed, uncounted or does not describe exactly
/// the rows received.
pub fn rows_left(headers: &HeaderMap, received: usize) -> Option<u64> {
    let value: &HeaderValue = headers.get(CONTENT_RANGE)?;
    let range = parse(value.to_str().ok()?)?;
    let received = u64::try_from(received).ok()?;
    let total = range.total?;
    let described = match range.rows {
        None => 0,
        Some((0, last)) => last.checked_add(1)?,
        Some(_) => return None,
    };
    // No rows of a non-zero total, without an offset, is no answer either.
    if described != received || (received == 0 && total != 0) {
        return None;
    }
    total.checked_sub(received)
}

/// Decides, page after page, whether the next request asks for the count and whether the
/// read is over.
///
/// The first page asks: a read whose rows all fit in it then costs one request. A later page
/// asks only when the last count says the rows left fit in about one page (as many as the
/// page before brought), so that each count covers about a page of rows; asking on every
/// page of a server that caps pages would count the rest of the read again and again.
#[derive(Debug, Clone)]
pub struct Counting {
    ask: bool,
    /// Rows left after the pages read, by the last count, while that count is usable.
    left: Option<u64>,
}

impl Default for Counting {
    fn default() -> Self {
        Counting {
            ask: true,
            left: None,
        }
    }
}

impl Counting {
    /// Whether the next request asks for the count.
    pub fn asks(&self) -> bool {
        self.ask
    }

    /// Takes in a page of `received` rows and its reply's headers; true when the page holds
    /// every row its request matched, so that the read is over.
    pub fn page(&mut self, headers: &HeaderMap, received: usize) -> bool {
        let counted = rows_left(headers, received);
        if counted == Some(0) {
            return true;
        }
        let received = u64::try_from(received).unwrap_or(u64::MAX);
        self.left = match counted {
            Some(left) => Some(left),
            // Asked and not answered in full: the server does not count, or not usably.
            None if self.ask => None,
            None => self.left.map(|left| left.saturating_sub(received)),
        };
        self.ask = self.left.is_some_and(|left| left <= received);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            h.insert(CONTENT_RANGE, v);
        }
        h
    }

    /// The one header that proves a page of `n` rows holds them all.
    fn whole(n: usize) -> String {
        match n {
            0 => "*/0".into(),
            n => format!("0-{}/{n}", n - 1),
        }
    }

    #[test]
    fn postgrest_ranges_parse() {
        let r = |rows, total| Some(ContentRange { rows, total });
        assert_eq!(parse("0-24/3573458"), r(Some((0, 24)), Some(3573458)));
        assert_eq!(parse("0-2/*"), r(Some((0, 2)), None));
        assert_eq!(parse("*/0"), r(None, Some(0)));
        assert_eq!(parse("*/*"), r(None, None));
        for bad in [
            "",
            "0-2",
            "0-2/",
            "/3",
            "2-0/3",
            "0-3/3",
            "0-2/3/4",
            " 0-2/3",
            "0-2/3 ",
            "00-2/3",
            "0-02/3",
            "+0-2/3",
            "-1-2/3",
            "0--2/3",
            "0-2/-3",
            "0-2/3.0",
            "0x0-2/3",
            "*-2/3",
            "0-*/3",
            "0-2/18446744073709551616",
            "bytes 0-2/3",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_a_page_that_is_all_its_rows_ends_the_read() {
        assert_eq!(rows_left(&headers(Some("0-2/3")), 3), Some(0));
        assert_eq!(rows_left(&headers(Some("*/0")), 0), Some(0));
        assert_eq!(rows_left(&headers(Some("0-2/10")), 3), Some(7));
        for (h, n) in [
            (None, 3),
            (Some("0-2/*"), 3),
            (Some("0-2/3"), 2),
            (Some("0-2/3"), 4),
            (Some("1-3/4"), 3),
            (Some("*/3"), 0),
            (Some("*/0"), 3),
            (Some("0-0/1"), 0),
            (Some("garbage"), 3),
        ] {
            assert_eq!(rows_left(&headers(h), n), None, "{h:?} with {n} rows");
        }
    }

    /// Pages of `cap` rows over `total` rows, each reply counted when asked for: the requests
    /// made before the read ends, and the counts asked for.
    fn capped(total: usize, cap: usize) -> (usize, usize) {
        let mut c = Counting::default();
        let (mut read, mut requests, mut counts) = (0, 0, 0);
        loop {
            requests += 1;
            let n = cap.min(total - read);
            let h = if c.asks() {
                counts += 1;
                headers(Some(&match n {
                    0 => format!("*/{}", total - read),
                    n => format!("0-{}/{}", n - 1, total - read),
                }))
            } else {
                headers(Some(&format!("0-{}/*", n.max(1) - 1)))
            };
            if n == 0 || c.page(&h, n) {
                return (requests, counts);
            }
            read += n;
        }
    }

    #[test]
    fn a_capped_server_costs_a_request_per_page_and_two_counts() {
        assert_eq!(capped(0, 3), (1, 1));
        assert_eq!(capped(3, 1000), (1, 1));
        assert_eq!(capped(6, 3), (2, 2));
        assert_eq!(capped(7, 3), (3, 2));
        assert_eq!(capped(10_000, 1000), (10, 2));
    }

    #[test]
    fn a_server_that_does_not_count_is_read_to_the_empty_page_and_asked_once() {
        let mut c = Counting::default();
        assert!(c.asks());
        assert!(!c.page(&headers(None), 3));
        assert!(!c.asks());
        assert!(!c.page(&headers(Some("0-2/*")), 3));
        assert!(!c.asks());
    }

    fn any_header() -> impl Strategy<Value = Option<String>> {
        let num = prop_oneof![
            (0u64..12).prop_map(|n| n.to_string()),
            Just("*".to_string()),
            "[0-9+ -]{0,4}",
            Just(u64::MAX.to_string()),
        ];
        prop_oneof![
            Just(None),
            "[ -~]{0,12}".prop_map(Some),
            (num.clone(), num.clone(), num.clone())
                .prop_map(|(a, b, t)| Some(format!("{a}-{b}/{t}"))),
            num.prop_map(|t| Some(format!("*/{t}"))),
        ]
    }

    proptest! {
        /// Whatever the server sends, a page ends the read only with the one header that
        /// says it holds all of its rows.
        #[test]
        fn no_header_ends_a_read_unless_it_is_the_pages_rows(
            pages in prop::collection::vec((any_header(), 0usize..12), 1..8),
        ) {
            let mut c = Counting::default();
            for (h, n) in pages {
                if c.page(&headers(h.as_deref()), n) {
                    prop_assert_eq!(h, Some(whole(n)));
                    break;
                }
            }
        }

        #[test]
        fn rows_left_is_the_total_beyond_a_range_of_exactly_the_rows(
            h in any_header(), n in 0usize..12,
        ) {
            if let Some(left) = rows_left(&headers(h.as_deref()), n) {
                let total = n as u64 + left;
                let expected = match n {
                    0 => "*/0".to_string(),
                    n => format!("0-{}/{total}", n - 1),
                };
                prop_assert_eq!(h, Some(expected));
            }
        }
    }
}
