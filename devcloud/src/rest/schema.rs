//! PostgREST's schema cache: the tables of schema `public` with their columns, keys and
//! foreign keys, read from `pg_catalog` once after migrations.
//!
//! Every identifier that reaches SQL text comes from here: the request names a table or a
//! column, the plan looks it up, and only the cache's own string (wrapped in [`Ident`]) is
//! ever quoted into a statement.

use std::collections::BTreeMap;

use deadpool_postgres::Pool;

/// The schema PostgREST exposes.
pub const SCHEMA: &str = "public";

/// Bookkeeping tables that live in `public` but are not part of the API.
const HIDDEN_TABLES: &[&str] = &["devcloud_migrations"];

/// An identifier taken from the catalog. It can only be created by this module, so SQL built
/// from `Ident`s cannot contain a name the request made up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ident<'a>(&'a str);

impl<'a> Ident<'a> {
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// The identifier as a quoted SQL identifier (`"a""b"`); NULs cannot occur in catalog names.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0.replace('"', "\"\""))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type()` of the column, for messages and defaults.
    pub type_name: String,
    pub nullable: bool,
    /// The default expression as the catalog prints it (`pg_get_expr`), if any.
    pub default: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub name: String,
    pub table: String,
    pub columns: Vec<String>,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub is_view: bool,
    /// In catalog order (`attnum`), which is also the order of `select=*`.
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    /// Unique constraints and unique indexes other than the primary key.
    pub unique: Vec<Vec<String>>,
}

impl Table {
    pub fn ident(&self) -> Ident<'_> {
        Ident(&self.name)
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The catalog's spelling of a column the request named, if the table has it.
    pub fn column_ident(&self, name: &str) -> Option<Ident<'_>> {
        self.column(name).map(|c| Ident(&c.name))
    }

    pub fn column_idents(&self) -> impl Iterator<Item = Ident<'_>> {
        self.columns.iter().map(|c| Ident(&c.name))
    }

    /// True when `cols` (in any order) is the primary key or a unique key, so that at most one
    /// row can match a value of them.
    pub fn is_unique_key(&self, cols: &[String]) -> bool {
        let same = |key: &[String]| key.len() == cols.len() && key.iter().all(|k| cols.contains(k));
        (!self.primary_key.is_empty() && same(&self.primary_key))
            || self.unique.iter().any(|u| same(u))
    }
}

/// The relationship used to embed `target` in `origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relationship<'a> {
    /// The foreign key behind it.
    pub constraint: &'a str,
    /// Pairs of (target column, origin column) joined by equality.
    pub join: Vec<(Ident<'a>, Ident<'a>)>,
    /// Many-to-one or one-to-one: embedded as an object (or null) instead of an array.
    pub to_one: bool,
}

#[derive(Debug, Default)]
pub struct SchemaCache {
    tables: BTreeMap<String, Table>,
    foreign_keys: Vec<ForeignKey>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RelError {
    None,
    Ambiguous(Vec<String>),
}

impl SchemaCache {
    pub fn new(tables: Vec<Table>, foreign_keys: Vec<ForeignKey>) -> SchemaCache {
        let tables: BTreeMap<String, Table> =
            tables.into_iter().map(|t| (t.name.clone(), t)).collect();
        // A foreign key is only useful for embedding when both ends are exposed.
        let foreign_keys = foreign_keys
            .into_iter()
            .filter(|fk| tables.contains_key(&fk.table) && tables.contains_key(&fk.ref_table))
            .collect();
        SchemaCache {
            tables,
            foreign_keys,
        }
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    pub fn table_names(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }

    /// Finds the one foreign key joining `origin` and `target` in either direction, narrowed by
    /// an optional `!hint` (a constraint name or a column of the key), as PostgREST does.
    pub fn relationship<'a>(
        &'a self,
        origin: &str,
        target: &str,
        hint: Option<&str>,
    ) -> Result<Relationship<'a>, RelError> {
        let Some(target_table) = self.tables.get(target) else {
            return Err(RelError::None);
        };
        let mut found = Vec::new();
        for fk in &self.foreign_keys {
            let matches_hint = |fk: &ForeignKey| match hint {
                None => true,
                Some(h) => fk.name == h || fk.columns.iter().chain(&fk.ref_columns).any(|c| c == h),
            };
            if !matches_hint(fk) {
                continue;
            }
            // Many-to-one: origin holds the key, target is referenced.
            if fk.table == origin && fk.ref_table == target {
                let join = pair_idents(&fk.ref_columns, &fk.columns);
                found.push(Relationship {
                    constraint: &fk.name,
                    join,
                    to_one: true,
                });
            }
            // One-to-many (or one-to-one when the key is unique on the target side).
            if fk.ref_table == origin && fk.table == target {
                let join = pair_idents(&fk.columns, &fk.ref_columns);
                let to_one = target_table.is_unique_key(&fk.columns);
                found.push(Relationship {
                    constraint: &fk.name,
                    join,
                    to_one,
                });
            }
        }
        match found.len() {
            0 => Err(RelError::None),
            1 => Ok(found.remove(0)),
            _ => Err(RelError::Ambiguous(
                found.iter().map(|r| r.constraint.to_string()).collect(),
            )),
        }
    }

    /// The table name closest to a misspelt one, for PGRST205's hint.
    pub fn closest_table(&self, name: &str) -> Option<&str> {
        let limit = (name.chars().count() / 3).max(2);
        self.tables
            .keys()
            .map(|t| (edit_distance(name, t), t.as_str()))
            .filter(|(d, _)| *d <= limit)
            .min_by_key(|(d, _)| *d)
            .map(|(_, t)| t)
    }

    /// Reads the cache from the catalog.
    pub async fn load(pool: &Pool) -> Result<SchemaCache, crate::db::DbError> {
        let client = pool.get().await?;
        let column_rows = client
            .query(
                "SELECT c.relname::text, c.relkind IN ('v', 'm') AS is_view, a.attname::text,
                        format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
                        pg_get_expr(d.adbin, d.adrelid)
                 FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
                   AND NOT (c.relname = ANY($2))
                 ORDER BY c.relname, a.attnum",
                &[&SCHEMA, &HIDDEN_TABLES],
            )
            .await?;
        let mut tables: BTreeMap<String, Table> = BTreeMap::new();
        for row in column_rows {
            let table: String = row.get(0);
            let entry = tables.entry(table.clone()).or_insert_with(|| Table {
                name: table,
                is_view: row.get(1),
                ..Table::default()
            });
            entry.columns.push(Column {
                name: row.get(2),
                type_name: row.get(3),
                nullable: row.get(4),
                default: row.get(5),
            });
        }
        // Keys, with their columns in key order.
        let key_rows = client
            .query(
                "SELECT con.conname::text, con.contype::text, c.relname::text,
                        ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
                              JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num
                              ORDER BY k.ord),
                        coalesce(f.relname::text, ''), coalesce(fn.nspname::text, ''),
                        ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
                              JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num
                              ORDER BY k.ord)
                 FROM pg_constraint con
                 JOIN pg_class c ON c.oid = con.conrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 LEFT JOIN pg_class f ON f.oid = con.confrelid
                 LEFT JOIN pg_namespace fn ON fn.oid = f.relnamespace
                 WHERE n.nspname = $1 AND con.contype IN ('p', 'u', 'f')
                 ORDER BY c.relname, con.conname",
                &[&SCHEMA],
            )
            .await?;
        let mut foreign_keys = Vec::new();
        for row in key_rows {
            let name: String = row.get(0);
            let kind: String = row.get(1);
            let table: String = row.get(2);
            let columns: Vec<String> = row.get(3);
            let Some(t) = tables.get_mut(&table) else {
                continue;
            };
            match kind.as_str() {
                "p" => t.primary_key = columns,
                "u" => t.unique.push(columns),
                _ => {
                    let ref_schema: String = row.get(5);
                    if ref_schema == SCHEMA {
                        foreign_keys.push(ForeignKey {
                            name,
                            table,
                            columns,
                            ref_table: row.get(4),
                            ref_columns: row.get(6),
                        });
                    }
                }
            }
        }
        Ok(SchemaCache::new(
            tables.into_values().collect(),
            foreign_keys,
        ))
    }
}

fn pair_idents<'a>(left: &'a [String], right: &'a [String]) -> Vec<(Ident<'a>, Ident<'a>)> {
    left.iter()
        .zip(right)
        .map(|(l, r)| (Ident(l), Ident(r)))
        .collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn col(name: &str, ty: &str) -> Column {
        Column {
            name: name.into(),
            type_name: ty.into(),
            nullable: true,
            default: None,
        }
    }

    fn table(name: &str, cols: &[(&str, &str)], pk: &[&str], unique: &[&[&str]]) -> Table {
        Table {
            name: name.into(),
            is_view: false,
            columns: cols.iter().map(|(n, t)| col(n, t)).collect(),
            primary_key: pk.iter().map(|s| s.to_string()).collect(),
            unique: unique
                .iter()
                .map(|u| u.iter().map(|s| s.to_string()).collect())
                .collect(),
        }
    }

    fn fk(
        name: &str,
        table: &str,
        cols: &[&str],
        ref_table: &str,
        ref_cols: &[&str],
    ) -> ForeignKey {
        ForeignKey {
            name: name.into(),
            table: table.into(),
            columns: cols.iter().map(|s| s.to_string()).collect(),
            ref_table: ref_table.into(),
            ref_columns: ref_cols.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A small copy of the Oboto schema for planner and SQL tests.
    pub(crate) fn demo() -> SchemaCache {
        SchemaCache::new(
            vec![
                table(
                    "organizations",
                    &[
                        ("id", "uuid"),
                        ("name", "text"),
                        ("slug", "text"),
                        ("subscription_tier", "text"),
                    ],
                    &["id"],
                    &[&["slug"]],
                ),
                table(
                    "profiles",
                    &[
                        ("id", "uuid"),
                        ("display_name", "text"),
                        ("avatar_url", "text"),
                        ("preferences", "jsonb"),
                    ],
                    &["id"],
                    &[],
                ),
                table(
                    "org_memberships",
                    &[
                        ("id", "uuid"),
                        ("org_id", "uuid"),
                        ("user_id", "uuid"),
                        ("role", "text"),
                        ("joined_at", "timestamptz"),
                    ],
                    &["id"],
                    &[&["org_id", "user_id"]],
                ),
                table(
                    "workspaces",
                    &[
                        ("id", "uuid"),
                        ("org_id", "uuid"),
                        ("name", "text"),
                        ("slug", "text"),
                        ("status", "text"),
                        ("last_active_at", "timestamptz"),
                        ("created_by", "uuid"),
                        ("progress_data", "jsonb"),
                    ],
                    &["id"],
                    &[&["org_id", "slug"]],
                ),
                table(
                    "workspace_members",
                    &[
                        ("id", "uuid"),
                        ("workspace_id", "uuid"),
                        ("user_id", "uuid"),
                        ("role", "text"),
                    ],
                    &["id"],
                    &[&["workspace_id", "user_id"]],
                ),
                table(
                    "messages",
                    &[
                        ("id", "uuid"),
                        ("conversation_id", "uuid"),
                        ("content", "text"),
                        ("sender_user_id", "uuid"),
                    ],
                    &["id"],
                    &[],
                ),
                table("weird\"name", &[("a\"b", "text")], &[], &[]),
            ],
            vec![
                fk(
                    "org_memberships_org_id_fkey",
                    "org_memberships",
                    &["org_id"],
                    "organizations",
                    &["id"],
                ),
                fk(
                    "org_memberships_user_id_fkey",
                    "org_memberships",
                    &["user_id"],
                    "profiles",
                    &["id"],
                ),
                fk(
                    "workspaces_org_id_fkey",
                    "workspaces",
                    &["org_id"],
                    "organizations",
                    &["id"],
                ),
                fk(
                    "workspaces_created_by_fkey",
                    "workspaces",
                    &["created_by"],
                    "profiles",
                    &["id"],
                ),
                fk(
                    "workspace_members_workspace_id_fkey",
                    "workspace_members",
                    &["workspace_id"],
                    "workspaces",
                    &["id"],
                ),
                fk(
                    "workspace_members_user_id_fkey",
                    "workspace_members",
                    &["user_id"],
                    "profiles",
                    &["id"],
                ),
                fk(
                    "messages_sender_user_id_fkey",
                    "messages",
                    &["sender_user_id"],
                    "profiles",
                    &["id"],
                ),
                fk("profiles_id_fkey", "profiles", &["id"], "users", &["id"]),
            ],
        )
    }

    #[test]
    fn many_to_one_is_to_one() {
        let s = demo();
        let r = s
            .relationship("org_memberships", "organizations", None)
            .unwrap();
        assert!(r.to_one);
        assert_eq!(r.join, vec![(Ident("id"), Ident("org_id"))]);
    }

    #[test]
    fn one_to_many_is_an_array() {
        let s = demo();
        let r = s.relationship("organizations", "workspaces", None).unwrap();
        assert!(!r.to_one);
        assert_eq!(r.join, vec![(Ident("org_id"), Ident("id"))]);
    }

    #[test]
    fn hints_pick_a_key_and_unknown_pairs_fail() {
        let s = demo();
        assert_eq!(
            s.relationship("organizations", "profiles", None),
            Err(RelError::None)
        );
        let r = s
            .relationship("workspaces", "profiles", Some("created_by"))
            .unwrap();
        assert_eq!(r.constraint, "workspaces_created_by_fkey");
        assert_eq!(
            s.relationship("workspaces", "profiles", Some("nope")),
            Err(RelError::None)
        );
        // Keys into tables outside the cache are dropped.
        assert_eq!(
            s.relationship("profiles", "users", None),
            Err(RelError::None)
        );
    }

    #[test]
    fn quoting_doubles_quotes() {
        let s = demo();
        let t = s.table("weird\"name").unwrap();
        assert_eq!(t.ident().quoted(), "\"weird\"\"name\"");
        assert_eq!(t.column_ident("a\"b").unwrap().quoted(), "\"a\"\"b\"");
        assert!(t.column_ident("a\"\"b").is_none());
    }

    #[test]
    fn closest_table_suggests_typos_only() {
        let s = demo();
        assert_eq!(s.closest_table("workspace"), Some("workspaces"));
        assert_eq!(s.closest_table("zzzzzzzzzzzz"), None);
    }
}
