//! The `workspace_files` rows: what exists in the cloud, at which version and checksum. The
//! rows, not the storage objects, are the truth; an object without a live row does not exist.
//!
//! Every change of an existing row is a compare-and-set on its `version`
//! (`PATCH …&version=eq.N` setting `N+1`), so two machines writing the same path can never
//! both believe they won: the loser sees zero rows updated.

use std::collections::{HashMap, HashSet};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::paths::RelPath;
use crate::{
    error::{Error, Result},
    rest::{pages, query, range, Client, Request},
};

const TABLE: &str = "/rest/v1/workspace_files";
const COLUMNS: &str = "id,file_path,file_size,checksum,mime_type,file_type,version,updated_at";
/// PostgREST returns at most this many rows per request.
const PAGE: usize = 1000;
/// A workspace with more live files than this is refused rather than listed without end.
pub const MAX_FILES: usize = 100_000;

/// One live file, as `listFiles` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRow {
    pub id: Uuid,
    pub file_path: String,
    pub file_size: i64,
    pub checksum: Option<String>,
    pub mime_type: Option<String>,
    pub file_type: Option<String>,
    pub version: i64,
    pub updated_at: Option<String>,
}

/// A row whatever its state (for writes, which must know the version of a deleted row too).
#[derive(Debug, Clone, Deserialize)]
pub struct RowState {
    pub id: Uuid,
    pub version: i64,
    pub is_deleted: bool,
    pub checksum: Option<String>,
    pub file_size: i64,
}

/// Rows of a 2xx reply from `path`, as `T`.
pub fn parse<T: serde::de::DeserializeOwned>(path: &str, body: Value) -> Result<T> {
    serde_json::from_value(body)
        .map_err(|e| Error::unexpected_reply(path, format!("unexpected rows ({e})")))
}

/// Every live file of the workspace, ordered by path. A row whose path this client would
/// refuse to write locally (another client's backslash, say) is still listed; the delta
/// leaves it out.
pub async fn list(client: &Client, ws: &Uuid) -> Result<Vec<FileRow>> {
    let mut all: Vec<FileRow> = Vec::new();
    let mut seen = HashSet::new();
    // The first page counts the workspace's live files, which are all read anyway: a
    // workspace whose files fit in one page is listed in one request.
    let mut counting = range::Counting::default();
    loop {
        // Keyset pages (`file_path > last`, on the unique index) rather than offsets: each
        // page then reads only its own rows, where an offset re-reads (and re-checks the
        // row-level policy of) every row before it.
        let after = all
            .last()
            .map(|r| format!("&file_path=gt.{}", query::encode(&r.file_path)))
            .unwrap_or_default();
        let path = format!(
            "{TABLE}?workspace_id={}&is_deleted=eq.false{after}&select={COLUMNS}&order=file_path.asc&limit={PAGE}",
            query::eq(&ws.to_string()),
        );
        let mut req = Request::new(Method::GET, &path);
        if counting.asks() {
            req = req.header("Prefer", range::COUNT_EXACT);
        }
        let reply = client.send(&req).await?;
        let page: Vec<FileRow> = parse(&path, reply.body)?;
        // Only an empty page, or one whose count shows it holds every row left, ends the
        // listing: a server may return fewer rows than asked for (PostgREST's `db-max-rows`
        // below `limit`), and a listing cut short would make every file past the cut look
        // deleted in the cloud.
        if page.is_empty() {
            return Ok(all);
        }
        // The order is the database's collation, not ours to check; a repeated path would
        // mean the keyset does not move.
        if !page.iter().all(|r| seen.insert(r.file_path.clone())) {
            return Err(Error::unexpected_reply(&path, "a path listed twice"));
        }
        let received = page.len();
        all.extend(page);
        if all.len() >= MAX_FILES {
            return Err(Error::unexpected_reply(
                &path,
                format!("more than {MAX_FILES} files"),
            ));
        }
        if counting.page(&reply.headers, received) {
            return Ok(all);
        }
    }
}

/// The row of `rel`, deleted or not.
pub async fn state(client: &Client, ws: &Uuid, rel: &RelPath) -> Result<Option<RowState>> {
    let path = format!(
        "{TABLE}?workspace_id={}&file_path={}&select=id,version,is_deleted,checksum,file_size",
        query::eq(&ws.to_string()),
        query::eq(rel.as_str())
    );
    let reply = client.send(&Request::new(Method::GET, &path)).await?;
    let rows: Vec<RowState> = parse(&path, reply.body)?;
    if rows.len() > 1 {
        return Err(Error::unexpected_reply(&path, "two rows for one path"));
    }
    Ok(rows.into_iter().next())
}

/// What an upload recorded.
#[derive(Clone, Copy)]
pub struct NewContent<'a> {
    pub size: u64,
    pub checksum: &'a str,
    pub user_id: Option<&'a str>,
}

/// The columns an upload sets, whatever the version.
fn content_body(ws: &Uuid, rel: &RelPath, content: &NewContent<'_>) -> Value {
    let mut body = json!({
        "file_size": content.size,
        "checksum": content.checksum,
        "mime_type": mime_type(rel),
        "file_type": file_type(rel),
        "storage_path": rel.storage_key(ws),
        "is_deleted": false,
    });
    if let Some(u) = content.user_id {
        body["uploaded_by"] = json!(u);
    }
    body
}

/// A new path's row: its content at version 1.
fn new_row(ws: &Uuid, rel: &RelPath, content: &NewContent<'_>) -> Value {
    let mut row = content_body(ws, rel, content);
    row["workspace_id"] = json!(ws);
    row["file_path"] = json!(rel.as_str());
    row["version"] = json!(1);
    row
}

/// Records new content for `rel`: inserts version 1 when there is no row (`expected` None),
/// else moves the row from `expected` to `expected + 1`. `Ok(None)` when someone else got
/// there first (the row exists, or its version moved).
pub async fn record(
    client: &Client,
    ws: &Uuid,
    rel: &RelPath,
    expected: Option<&RowState>,
    content: &NewContent<'_>,
) -> Result<Option<FileRow>> {
    let Some(row) = expected else {
        let mut rows = record_new(client, ws, &[(rel, *content)]).await?;
        return Ok(rows.remove(rel));
    };
    let mut body = content_body(ws, rel, content);
    let version = next_version(row.version)?;
    body["version"] = json!(version);
    let path = format!(
        "{TABLE}?id={}&version={}&select={COLUMNS}",
        query::eq(&row.id.to_string()),
        query::eq(&row.version.to_string())
    );
    let req = Request::new(Method::PATCH, &path)
        .json(body)
        .header("Prefer", "return=representation");
    let reply = client.send(&req).await?;
    let rows: Vec<FileRow> = parse(&path, reply.body)?;
    match rows.into_iter().next() {
        None => Ok(None),
        Some(r) if is_recorded(&r, rel, version, content) => Ok(Some(r)),
        Some(_) => Err(Error::unexpected_reply(
            &path,
            "the row written is not the one sent",
        )),
    }
}

/// The version after `v`; the cloud's number, so it may be anything.
fn next_version(v: i64) -> Result<i64> {
    v.checked_add(1)
        .ok_or_else(|| Error::Io(format!("file version {v} cannot be incremented")))
}

/// Whether `row` is what a write of `content` to `rel` at `version` returns: what goes into
/// the manifest as synced must be what was sent.
fn is_recorded(row: &FileRow, rel: &RelPath, version: i64, content: &NewContent<'_>) -> bool {
    row.file_path == rel.as_str()
        && row.version == version
        && row.checksum.as_deref() == Some(content.checksum)
        && u64::try_from(row.file_size).ok() == Some(content.size)
}

/// Inserts version 1 of each new file in one request. A path that already has a row
/// (deleted, or created meanwhile by another machine) is left alone (`ignore-duplicates`,
/// never `merge-duplicates`, which would set it back to version 1): it is absent from the
/// result, and its caller goes through [`record`]'s compare-and-set instead.
pub async fn record_new(
    client: &Client,
    ws: &Uuid,
    files: &[(&RelPath, NewContent<'_>)],
) -> Result<HashMap<RelPath, FileRow>> {
    if files.is_empty() {
        return Ok(HashMap::new());
    }
    let body: Vec<Value> = files
        .iter()
        .map(|(rel, content)| new_row(ws, rel, content))
        .collect();
    let path = format!("{TABLE}?on_conflict=workspace_id,file_path&select={COLUMNS}");
    let req = Request::new(Method::POST, &path)
        .json(Value::Array(body))
        .header(
            "Prefer",
            "return=representation,resolution=ignore-duplicates",
        );
    let reply = client.send(&req).await?;
    let rows: Vec<FileRow> = parse(&path, reply.body)?;
    match_inserted(files, rows).map_err(|reason| Error::unexpected_reply(&path, reason))
}

/// Each returned row must be one of `files`, once, with the content sent.
fn match_inserted(
    files: &[(&RelPath, NewContent<'_>)],
    rows: Vec<FileRow>,
) -> std::result::Result<HashMap<RelPath, FileRow>, String> {
    let sent: HashMap<&str, (&RelPath, &NewContent<'_>)> = files
        .iter()
        .map(|(rel, c)| (rel.as_str(), (*rel, c)))
        .collect();
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let Some(&(rel, content)) = sent.get(row.file_path.as_str()) else {
            return Err(format!("a row for {:?}, which was not sent", row.file_path));
        };
        if row.version != 1
            || row.checksum.as_deref() != Some(content.checksum)
            || u64::try_from(row.file_size).ok() != Some(content.size)
        {
            return Err(format!(
                "the row for {:?} is not the one sent",
                row.file_path
            ));
        }
        if out.insert(rel.clone(), row).is_some() {
            return Err("the same row twice".into());
        }
    }
    Ok(out)
}

/// Marks the row deleted (version + 1) if it is still at `row.version`.
pub async fn soft_delete(client: &Client, row: &RowState) -> Result<bool> {
    let path = format!(
        "{TABLE}?id={}&version={}&select=id",
        query::eq(&row.id.to_string()),
        query::eq(&row.version.to_string())
    );
    let req = Request::new(Method::PATCH, &path)
        .json(json!({"is_deleted": true, "version": next_version(row.version)?}))
        .header("Prefer", "return=representation");
    let reply = client.send(&req).await?;
    let rows: Vec<Value> = parse(&path, reply.body)?;
    Ok(!rows.is_empty())
}

/// A tombstone: the version at which a path was deleted.
#[derive(Deserialize)]
struct Tombstone {
    file_path: String,
    version: i64,
}

/// Longest `in.(…)` list sent in one request, in encoded bytes (URLs stay well under the
/// 8 KiB that servers and proxies commonly accept).
const IN_LIST_BYTES: usize = 4000;

/// Of `paths`, those whose row is deleted (`is_deleted`), with the version of the deletion.
/// Only a tombstone says that a file was deleted: a row that is not listed may just be one
/// this session cannot read. Each batch is read page by page: a server may cut a reply
/// short of the batch (`db-max-rows`), and a tombstone it left out would keep the file.
pub async fn tombstones(
    client: &Client,
    ws: &Uuid,
    paths: &[&RelPath],
) -> Result<HashMap<RelPath, i64>> {
    let mut out = HashMap::new();
    let workspace = format!("eq.{ws}");
    for batch in in_lists(paths) {
        let asked: HashMap<&str, &RelPath> = batch.iter().map(|p| (p.as_str(), *p)).collect();
        let listed = in_list(&batch);
        let listing = pages::Listing {
            path: TABLE,
            params: &[
                ("workspace_id", &workspace),
                ("is_deleted", "eq.true"),
                ("file_path", &listed),
                ("select", "file_path,version"),
                ("order", "file_path.asc"),
            ],
            what: "deleted files",
            after: |t: &Tombstone| Some(("file_path", format!("gt.{}", t.file_path))),
        };
        // One row per path at most: more is no answer to this batch.
        let rows = pages::read_all(client, &listing, pages::PAGE, batch.len()).await?;
        for row in rows {
            let row = row.typed;
            let Some(rel) = asked.get(row.file_path.as_str()) else {
                return Err(Error::unexpected_reply(
                    TABLE,
                    format!("a row for {:?}, which was not asked for", row.file_path),
                ));
            };
            if out.insert((*rel).clone(), row.version).is_some() {
                return Err(Error::unexpected_reply(TABLE, "two rows for one path"));
            }
        }
    }
    Ok(out)
}

/// `paths` cut into batches whose encoded `in.(…)` lists stay under [`IN_LIST_BYTES`] (a
/// path alone is far shorter: [`super::paths::MAX_PATH_BYTES`] encoded).
fn in_lists<'a>(paths: &[&'a RelPath]) -> Vec<Vec<&'a RelPath>> {
    let mut batches: Vec<Vec<&RelPath>> = Vec::new();
    let mut size = 0;
    for p in paths {
        // The value and its separator, encoded.
        let len = query::encode(&quoted(p)).len() + 3;
        match batches.last_mut() {
            Some(b) if size + len <= IN_LIST_BYTES => b.push(p),
            _ => {
                batches.push(vec![p]);
                size = 0;
            }
        }
        size += len;
    }
    batches
}

/// A value of an `in.(…)` list, quoted, so that commas, parentheses and dots in it are data.
fn quoted(p: &RelPath) -> String {
    format!(
        "\"{}\"",
        p.as_str().replace('\\', "\\\\").replace('"', "\\\"")
    )
}

fn in_list(paths: &[&RelPath]) -> String {
    let values: Vec<String> = paths.iter().map(|p| quoted(p)).collect();
    format!("in.({})", values.join(","))
}

fn extension(rel: &RelPath) -> Option<String> {
    let name = rel.segments().last()?;
    match name.rfind('.') {
        Some(i) if i > 0 && i + 1 < name.len() => Some(name[i + 1..].to_ascii_lowercase()),
        _ => None,
    }
}

fn file_type(rel: &RelPath) -> Option<String> {
    extension(rel)
}

/// A content type from the extension; anything unknown is plain bytes.
pub fn mime_type(rel: &RelPath) -> &'static str {
    match extension(rel).as_deref() {
        Some("json") => "application/json",
        Some("txt" | "log") => "text/plain",
        Some("md" | "markdown") => "text/markdown",
        Some("html" | "htm") => "text/html",
        Some("css") => "text/css",
        Some("js" | "mjs" | "cjs") => "text/javascript",
        Some("ts" | "tsx" | "rs" | "py" | "sh" | "toml" | "yaml" | "yml" | "csv") => "text/plain",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("pdf") => "application/pdf",
        Some("zip") => "application/zip",
        Some("gz") => "application/gzip",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_at_the_end_of_the_range_is_an_error() {
        assert_eq!(next_version(1).unwrap(), 2);
        assert!(next_version(i64::MAX).is_err());
        assert_eq!(next_version(i64::MIN).unwrap(), i64::MIN + 1);
    }

    #[test]
    fn a_written_row_must_be_the_one_sent() {
        let rel = RelPath::parse("a.txt").unwrap();
        let content = NewContent {
            size: 3,
            checksum: "c",
            user_id: None,
        };
        let row = FileRow {
            id: Uuid::from_u128(1),
            file_path: "a.txt".into(),
            file_size: 3,
            checksum: Some("c".into()),
            mime_type: None,
            file_type: None,
            version: 2,
            updated_at: None,
        };
        assert!(is_recorded(&row, &rel, 2, &content));
        let other = |f: fn(&mut FileRow)| {
            let mut r = row.clone();
            f(&mut r);
            is_recorded(&r, &rel, 2, &content)
        };
        assert!(!other(|r| r.file_path = "b.txt".into()));
        assert!(!other(|r| r.version = 3));
        assert!(!other(|r| r.checksum = Some("d".into())));
        assert!(!other(|r| r.checksum = None));
        assert!(!other(|r| r.file_size = -1));
    }

    #[test]
    fn in_lists_quote_every_path_and_stay_short() {
        let odd = RelPath::parse(r#"a, (b) "c".txt"#).unwrap();
        assert_eq!(in_list(&[&odd]), r#"in.("a, (b) \"c\".txt")"#);
        let long: Vec<RelPath> = (0..40)
            .map(|i| RelPath::parse(&format!("{i}/{}", "é".repeat(120))).unwrap())
            .collect();
        let refs: Vec<&RelPath> = long.iter().collect();
        let batches = in_lists(&refs);
        assert!(batches.len() > 1);
        assert_eq!(batches.concat(), refs, "every path once, in order");
        for b in &batches {
            assert!(query::encode(&in_list(b)).len() <= IN_LIST_BYTES + 8);
        }
        assert!(in_lists(&[]).is_empty());
    }

    #[test]
    fn types_from_extensions() {
        let p = |s: &str| RelPath::parse(s).unwrap();
        assert_eq!(mime_type(&p("a/b.JSON")), "application/json");
        assert_eq!(mime_type(&p(".env")), "application/octet-stream");
        assert_eq!(file_type(&p("x.tar.gz")).as_deref(), Some("gz"));
        assert_eq!(file_type(&p("Makefile")), None);
    }

    #[test]
    fn rows_parse_strictly() {
        let row: FileRow = serde_json::from_value(json!({
            "id": "bbbbbbbb-0000-4000-8000-000000000001", "file_path": "a/b.txt", "file_size": 3,
            "checksum": "ab", "mime_type": null, "file_type": null, "version": 2, "updated_at": null
        }))
        .unwrap();
        assert_eq!(row.version, 2);
        assert!(serde_json::from_value::<FileRow>(json!({"id": "x"})).is_err());
    }

    fn row(path: &str, size: i64, checksum: &str, version: i64) -> FileRow {
        FileRow {
            id: Uuid::new_v4(),
            file_path: path.into(),
            file_size: size,
            checksum: Some(checksum.into()),
            mime_type: None,
            file_type: None,
            version,
            updated_at: None,
        }
    }

    #[test]
    fn batch_replies_must_be_rows_sent() {
        let (a, b) = (
            RelPath::parse("a.txt").unwrap(),
            RelPath::parse("d/b").unwrap(),
        );
        let content = |size, checksum| NewContent {
            size,
            checksum,
            user_id: None,
        };
        let files = [(&a, content(1, "aa")), (&b, content(2, "bb"))];
        // A path left out (it had a row) is simply absent.
        let got = match_inserted(&files, vec![row("d/b", 2, "bb", 1)]).unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), vec![&b]);
        assert!(match_inserted(&files, vec![]).unwrap().is_empty());
        for bad in [
            vec![row("c.txt", 1, "aa", 1)],
            vec![row("a.txt", 1, "zz", 1)],
            vec![row("a.txt", 9, "aa", 1)],
            vec![row("a.txt", 1, "aa", 2)],
            vec![row("a.txt", 1, "aa", 1), row("a.txt", 1, "aa", 1)],
        ] {
            assert!(match_inserted(&files, bad.clone()).is_err(), "{bad:?}");
        }
    }
}
