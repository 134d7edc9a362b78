//! `POST /object/list/{bucket}`: one level under a prefix, as storage-api's `list_objects`.
//! Objects deeper than that level collapse into folder entries (null id and metadata).

use std::{cmp::Ordering, collections::BTreeSet};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::error::StorageError;

pub struct ObjectRow {
    pub name: String,
    pub id: Uuid,
    pub updated_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub last_accessed_at: DateTime<Utc>,
    pub metadata: Value,
}

#[derive(Debug, Deserialize, Default)]
pub struct ListBody {
    pub prefix: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    #[serde(rename = "sortBy")]
    pub sort_by: Option<SortBy>,
    pub search: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct SortBy {
    pub column: Option<String>,
    pub order: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    Name,
    CreatedAt,
    UpdatedAt,
    LastAccessedAt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOptions {
    /// Empty, or ending with `/`.
    pub prefix: String,
    pub limit: usize,
    pub offset: usize,
    pub column: SortColumn,
    pub descending: bool,
    pub search: String,
}

/// Most entries one list call returns.
const MAX_LIMIT: usize = 1000;

impl ListOptions {
    pub fn from_body(body: ListBody) -> Result<ListOptions, StorageError> {
        let mut prefix = body.prefix.unwrap_or_default();
        // storage-api treats the prefix as a folder.
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        if prefix.chars().any(char::is_control) {
            return Err(StorageError::invalid_request("Invalid prefix"));
        }
        let non_negative = |v: Option<i64>, default: usize, what: &str| match v {
            None => Ok(default),
            Some(n) if n >= 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            Some(_) => Err(StorageError::invalid_request(format!(
                "{what} must be >= 0"
            ))),
        };
        let limit = non_negative(body.limit, 100, "limit")?.min(MAX_LIMIT);
        let offset = non_negative(body.offset, 0, "offset")?;
        let sort = body.sort_by.unwrap_or_default();
        let column = match sort.column.as_deref().unwrap_or("name") {
            "name" => SortColumn::Name,
            "created_at" => SortColumn::CreatedAt,
            "updated_at" => SortColumn::UpdatedAt,
            "last_accessed_at" => SortColumn::LastAccessedAt,
            _ => return Err(StorageError::invalid_request("Invalid sortBy column")),
        };
        let descending = sort.order.is_some_and(|o| o.eq_ignore_ascii_case("desc"));
        Ok(ListOptions {
            prefix,
            limit,
            offset,
            column,
            descending,
            search: body.search.unwrap_or_default(),
        })
    }

    /// The `LIKE` pattern matching every key under the prefix.
    pub fn like_pattern(&self) -> String {
        let mut p = String::with_capacity(self.prefix.len() + 1);
        for c in self.prefix.chars() {
            if matches!(c, '%' | '_' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push('%');
        p
    }
}

/// Folders first (by name), then objects in the requested order; `offset`/`limit` apply to
/// the combined list.
pub fn list_level(rows: Vec<ObjectRow>, opts: &ListOptions) -> Vec<Value> {
    let search = opts.search.to_lowercase();
    let mut folders = BTreeSet::new();
    let mut files = Vec::new();
    for row in rows {
        let Some(rest) = row.name.strip_prefix(opts.prefix.as_str()) else {
            continue;
        };
        let (entry, is_folder) = match rest.split_once('/') {
            Some((folder, _)) => (folder.to_string(), true),
            None => (rest.to_string(), false),
        };
        if entry.is_empty() || !entry.to_lowercase().starts_with(&search) {
            continue;
        }
        if is_folder {
            folders.insert(entry);
        } else {
            files.push((entry, row));
        }
    }
    files.sort_by(|(a_name, a), (b_name, b)| {
        let ord = match opts.column {
            SortColumn::Name => Ordering::Equal,
            SortColumn::CreatedAt => a.created_at.cmp(&b.created_at),
            SortColumn::UpdatedAt => a.updated_at.cmp(&b.updated_at),
            SortColumn::LastAccessedAt => a.last_accessed_at.cmp(&b.last_accessed_at),
        }
        .then_with(|| a_name.cmp(b_name));
        if opts.descending {
            ord.reverse()
        } else {
            ord
        }
    });
    let mut folders: Vec<String> = folders.into_iter().collect();
    if opts.descending && opts.column == SortColumn::Name {
        folders.reverse();
    }
    let folder_entries = folders.into_iter().map(|name| {
        json!({"name": name, "id": null, "updated_at": null, "created_at": null,
               "last_accessed_at": null, "metadata": null})
    });
    let file_entries = files.into_iter().map(|(name, row)| {
        json!({
            "name": name,
            "id": row.id,
            "updated_at": super::iso(row.updated_at),
            "created_at": super::iso(row.created_at),
            "last_accessed_at": super::iso(row.last_accessed_at),
            "metadata": row.metadata,
        })
    });
    folder_entries
        .chain(file_entries)
        .skip(opts.offset)
        .take(opts.limit)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, minute: u32) -> ObjectRow {
        let t = DateTime::parse_from_rfc3339(&format!("2024-01-01T00:{minute:02}:00Z"))
            .unwrap()
            .to_utc();
        ObjectRow {
            name: name.into(),
            id: Uuid::new_v4(),
            updated_at: t,
            created_at: t,
            last_accessed_at: t,
            metadata: json!({"size": 1}),
        }
    }

    fn opts(prefix: &str) -> ListOptions {
        ListOptions::from_body(ListBody {
            prefix: Some(prefix.into()),
            ..Default::default()
        })
        .unwrap()
    }

    fn names(v: &[Value]) -> Vec<&str> {
        v.iter().map(|e| e["name"].as_str().unwrap()).collect()
    }

    fn rows() -> Vec<ObjectRow> {
        vec![
            row("ws/b.txt", 1),
            row("ws/a.txt", 3),
            row("ws/docs/x.md", 2),
            row("ws/docs/y/z.md", 4),
            row("ws/assets/i.png", 5),
        ]
    }

    #[test]
    fn collapses_deeper_paths_into_folders() {
        let out = list_level(rows(), &opts("ws"));
        assert_eq!(names(&out), ["assets", "docs", "a.txt", "b.txt"]);
        assert!(out[0]["id"].is_null() && out[0]["metadata"].is_null());
        assert!(out[2]["id"].is_string());
        let out = list_level(rows(), &opts("ws/docs/"));
        assert_eq!(names(&out), ["y", "x.md"]);
        let out = list_level(rows(), &opts(""));
        assert_eq!(names(&out), ["ws"]);
    }

    #[test]
    fn sorts_searches_and_pages() {
        let body = ListBody {
            prefix: Some("ws".into()),
            sort_by: Some(SortBy {
                column: Some("updated_at".into()),
                order: Some("desc".into()),
            }),
            ..Default::default()
        };
        let o = ListOptions::from_body(body).unwrap();
        assert_eq!(
            names(&list_level(rows(), &o)),
            ["assets", "docs", "a.txt", "b.txt"]
        );
        let o = ListOptions {
            offset: 1,
            limit: 2,
            ..opts("ws")
        };
        assert_eq!(names(&list_level(rows(), &o)), ["docs", "a.txt"]);
        let o = ListOptions {
            search: "D".into(),
            ..opts("ws")
        };
        assert_eq!(names(&list_level(rows(), &o)), ["docs"]);
        let o = ListOptions {
            descending: true,
            ..opts("ws")
        };
        assert_eq!(
            names(&list_level(rows(), &o)),
            ["docs", "assets", "b.txt", "a.txt"]
        );
    }

    #[test]
    fn options() {
        assert_eq!(opts("a_b%").like_pattern(), "a\\_b\\%/%");
        assert_eq!(opts("").like_pattern(), "%");
        let bad = ListBody {
            limit: Some(-1),
            ..Default::default()
        };
        assert!(ListOptions::from_body(bad).is_err());
        let bad = ListBody {
            sort_by: Some(SortBy {
                column: Some("size; drop".into()),
                order: None,
            }),
            ..Default::default()
        };
        assert!(ListOptions::from_body(bad).is_err());
        let big = ListBody {
            limit: Some(1 << 40),
            ..Default::default()
        };
        assert_eq!(ListOptions::from_body(big).unwrap().limit, MAX_LIMIT);
    }
}
