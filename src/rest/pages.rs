//! Listings read whole, page by page with a keyset cursor.
//!
//! A PostgREST server returns at most `db-max-rows` rows per request (Supabase projects
//! often cap at 1,000 or lower) whatever the request's `limit`, so one request is not a
//! listing: only an empty page ends one. Each page continues after the last row of the one
//! before through a filter the caller derives from that row (a unique order, so no row is
//! skipped or read twice, and none moves between pages because of an offset). A page whose
//! count shows it holds every row left ends the listing too ([`range`]), so a listing that
//! fits in one page costs one request.

use reqwest::Method;
use serde::de::DeserializeOwned;

use super::{query, range, Checked, Client, Request};
use crate::error::{Error, Result};

/// Rows asked for per page.
pub const PAGE: usize = 1000;
/// Rows of one listing at most: far more workspaces, agents or members than an organization
/// has. Beyond it the listing fails with `TOO_MANY_ROWS` rather than return part of it as
/// the whole.
pub const MAX_ROWS: usize = 10_000;

/// What to list and how to continue it.
pub struct Listing<'a, T> {
    /// The table's path, such as `/rest/v1/workspaces`.
    pub path: &'a str,
    /// Filters, `select` and `order` (the keyset's order, unique).
    pub params: &'a [(&'a str, &'a str)],
    /// The rows, in words, for errors.
    pub what: &'a str,
    /// The parameter that selects the rows after `row` in the listing's order, or `None`
    /// when `row` cannot serve as a cursor.
    pub after: fn(&T) -> Option<(&'static str, String)>,
}

/// Every row of `listing`, in its order, checked against `T`.
pub async fn read_all<T: DeserializeOwned>(
    client: &Client,
    listing: &Listing<'_, T>,
    page: usize,
    max_rows: usize,
) -> Result<Vec<Checked<T>>> {
    let limit = page.to_string();
    let mut out: Vec<Checked<T>> = Vec::new();
    let mut cursor: Option<(&'static str, String)> = None;
    // Listings are an organization's or a workspace's rows, a few pages at most: the count
    // the first page asks for covers little more than the rows it returns.
    let mut counting = range::Counting::default();
    loop {
        let mut params: Vec<(&str, &str)> = listing.params.to_vec();
        params.push(("limit", &limit));
        if let Some((k, v)) = &cursor {
            params.push((k, v));
        }
        let path = query::build(listing.path, &params);
        let mut req = Request::new(Method::GET, path.clone());
        if counting.asks() {
            req = req.header("Prefer", range::COUNT_EXACT);
        }
        let reply = client.send(&req).await?;
        let headers = reply.headers.clone();
        let rows: Vec<Checked<T>> = reply.json()?;
        let Some(last) = rows.last() else {
            return Ok(out);
        };
        let next = (listing.after)(&last.typed).ok_or_else(|| {
            Error::unexpected_reply(&path, format!("{} row without its key", listing.what))
        })?;
        // A server that ignores the cursor would send the same page for ever.
        if cursor.as_ref() == Some(&next) {
            return Err(Error::unexpected_reply(
                &path,
                "the page did not move past the last one",
            ));
        }
        cursor = Some(next);
        if out.len() + rows.len() > max_rows {
            return Err(Error::TooManyRows {
                what: listing.what.to_string(),
                limit: max_rows.to_string(),
            });
        }
        let received = rows.len();
        out.extend(rows);
        if counting.page(&headers, received) {
            return Ok(out);
        }
    }
}

/// A value for a PostgREST logic tree (`or=(…)`): quoted, so that a comma, a parenthesis,
/// a dot or a quote in it cannot end it or change the tree.
pub fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_escape_quotes_and_backslashes() {
        assert_eq!(quoted("a, b (c)"), r#""a, b (c)""#);
        assert_eq!(quoted(r#"Quote "q" \ x"#), r#""Quote \"q\" \\ x""#);
    }
}
