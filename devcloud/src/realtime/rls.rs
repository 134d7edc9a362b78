//! Row-level security per subscriber, in batches: for one batch of changes, each distinct
//! identity (role + the claims the policies can read, see [`claims`](super::claims)) runs one
//! query per table over all of the batch's candidate rows,
//! as that identity (`role` and `request.jwt.claims` set locally, as `/rest/v1` does), in one
//! read-only transaction.
//!
//! The query evaluates the table's SELECT policies (and the role's SELECT privilege) over
//! each row *as it was committed*, rebuilt from the change's JSON. Realtime's `apply_rls`
//! instead re-reads the row by primary key, so an insert deleted a moment later is lost there.
//! A DELETE is asked about by neither (see `changes`): Realtime sends it, the primary key
//! only, to every subscriber whose filters pass.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use deadpool_postgres::Pool;
use serde_json::Value;

use super::changes::TableMeta;

/// `(schema, table)`.
type Table = (String, String);

/// One identity's question and, after [`check`], its answer.
pub struct Group {
    pub role: String,
    pub claims: String,
    /// `(schema, table)` → (change index, row).
    pub wanted: BTreeMap<(String, String), Vec<(usize, Value)>>,
    visible: HashSet<usize>,
}

impl Group {
    pub fn new(role: &str, claims: &str) -> Group {
        Group {
            role: role.to_string(),
            claims: claims.to_string(),
            wanted: Default::default(),
            visible: Default::default(),
        }
    }

    /// Whether this identity may see the row of change `index`.
    pub fn sees(&self, index: usize) -> bool {
        self.visible.contains(&index)
    }
}

pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Which of `$1` (a JSON array of rows, as text: serialized once for all identities that ask
/// about the same rows) the current role may read. The row is named like
/// the table so that the policies' column references resolve; identifiers and policies come
/// from the catalog, the rows are bound. The probe's own names are ones no table or column
/// of the schema should use: a policy naming a column `n` must not find two.
pub fn probe_sql(meta: &TableMeta) -> String {
    let alias = quote(&meta.table);
    let qualified = format!("{}.{alias}", quote(&meta.schema));
    format!(
        "SELECT realtime_probe__.ordinal__ \
         FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY \
              AS realtime_probe__(row__, ordinal__) \
         CROSS JOIN LATERAL jsonb_populate_record(NULL::{qualified}, realtime_probe__.row__) AS {alias} \
         WHERE (SELECT has_table_privilege({}, 'SELECT')) AND ({})",
        literal(&qualified),
        meta.select_policy
    )
}

fn rows_json(rows: &[(usize, Value)]) -> String {
    let rows: Vec<&Value> = rows.iter().map(|(_, r)| r).collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into())
}

pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Identities per connection before the work is spread over more connections (each
/// identity costs PostgreSQL a policy evaluation, which runs on one core per connection).
const PER_CONNECTION: usize = 16;
const MAX_CONNECTIONS: usize = 4;

/// Fills each group's answer, the identities spread over a few connections.
pub async fn check(
    pool: &Pool,
    tables: &HashMap<(String, String), TableMeta>,
    groups: &mut [Group],
) -> Result<(), crate::db::DbError> {
    let connections = groups
        .len()
        .div_ceil(PER_CONNECTION)
        .clamp(1, MAX_CONNECTIONS);
    let size = groups.len().div_ceil(connections).max(1);
    let results = futures_util::future::join_all(
        groups
            .chunks_mut(size)
            .map(|chunk| check_chunk(pool, tables, chunk)),
    )
    .await;
    results.into_iter().collect()
}

/// All of a chunk's queries pipelined in one transaction, BEGIN and ROLLBACK included (one
/// round trip: this sits between a commit and its frames), or, when one of them fails,
/// [`check_each`].
async fn check_chunk(
    pool: &Pool,
    tables: &HashMap<(String, String), TableMeta>,
    groups: &mut [Group],
) -> Result<(), crate::db::DbError> {
    let mut client = pool.get().await?;
    let pipelined = {
        let set = client.prepare_cached(SET_IDENTITY).await?;
        let mut probes = HashMap::new();
        for g in groups.iter() {
            for key in g.wanted.keys() {
                if let (false, Some(meta)) = (probes.contains_key(key), tables.get(key)) {
                    probes.insert(key.clone(), client.prepare_cached(&probe_sql(meta)).await?);
                }
            }
        }
        let mut texts: HashMap<(&Table, Vec<usize>), Arc<String>> = HashMap::new();
        let mut args: Vec<Vec<(&Table, Arc<String>)>> = Vec::new();
        for g in groups.iter() {
            let mut mine = Vec::new();
            for (key, rows) in g.wanted.iter().filter(|(k, _)| probes.contains_key(*k)) {
                let indices = rows.iter().map(|(i, _)| *i).collect();
                let text = texts
                    .entry((key, indices))
                    .or_insert_with(|| Arc::new(rows_json(rows)))
                    .clone();
                mine.push((key, text));
            }
            args.push(mine);
        }
        // tokio-postgres sends requests in the order their futures are first polled, and
        // join_all polls in order: BEGIN, then each identity set before its probes, then
        // ROLLBACK, which also ends a transaction that a failed statement aborted.
        type Answer<'a> = (
            Option<(usize, &'a (String, String))>,
            Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>,
        );
        let mut calls: Vec<
            std::pin::Pin<Box<dyn std::future::Future<Output = Answer<'_>> + Send + '_>>,
        > = Vec::new();
        let db: &tokio_postgres::Client = &client;
        calls.push(Box::pin(async move {
            (
                None,
                db.batch_execute("BEGIN READ ONLY")
                    .await
                    .map(|_| Vec::new()),
            )
        }));
        for (gi, g) in groups.iter().enumerate() {
            let set = &set;
            calls.push(Box::pin(async move {
                (None, db.query(set, &[&g.role, &g.claims]).await)
            }));
            for (key, arg) in &args[gi] {
                let stmt = &probes[*key];
                calls.push(Box::pin(async move {
                    let text: &str = arg.as_str();
                    (Some((gi, *key)), db.query(stmt, &[&text]).await)
                }));
            }
        }
        calls.push(Box::pin(async move {
            (None, db.batch_execute("ROLLBACK").await.map(|_| Vec::new()))
        }));
        let answers = futures_util::future::join_all(calls).await;
        let mut found: Vec<(usize, usize)> = Vec::new();
        let mut ok = true;
        for (probe, result) in answers {
            match (probe, result) {
                (_, Err(e)) => {
                    tracing::debug!(error = %e, "realtime RLS pipeline failed; checking one by one");
                    ok = false;
                    break;
                }
                (None, Ok(_)) => {}
                (Some((gi, key)), Ok(rows)) => {
                    let wanted = &groups[gi].wanted[key];
                    for row in rows {
                        let n: i64 = row.get(0);
                        if let Some((index, _)) =
                            usize::try_from(n - 1).ok().and_then(|k| wanted.get(k))
                        {
                            found.push((gi, *index));
                        }
                    }
                }
            }
        }
        ok.then_some(found)
    };
    match pipelined {
        Some(found) => {
            for (gi, index) in found {
                groups[gi].visible.insert(index);
            }
            Ok(())
        }
        None => check_each(&mut client, tables, groups).await,
    }
}

const SET_IDENTITY: &str =
    "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)";

/// One identity after the other: a failing probe (say, a role without `SELECT`) shows that
/// identity nothing more of the batch, and the others go on in a new transaction.
async fn check_each(
    client: &mut deadpool_postgres::Object,
    tables: &HashMap<(String, String), TableMeta>,
    groups: &mut [Group],
) -> Result<(), crate::db::DbError> {
    let mut i = 0;
    while i < groups.len() {
        let tx = client.build_transaction().read_only(true).start().await?;
        let mut failed = false;
        while i < groups.len() && !failed {
            let g = &mut groups[i];
            i += 1;
            tx.query_one(SET_IDENTITY, &[&g.role, &g.claims]).await?;
            for (key, rows) in &g.wanted {
                let Some(meta) = tables.get(key) else {
                    continue;
                };
                let arg = rows_json(rows);
                match tx.query(probe_sql(meta).as_str(), &[&arg]).await {
                    Ok(found) => {
                        for row in found {
                            let n: i64 = row.get(0);
                            if let Some((index, _)) =
                                usize::try_from(n - 1).ok().and_then(|k| rows.get(k))
                            {
                                g.visible.insert(*index);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, table = %key.1, "realtime RLS probe failed");
                        failed = true;
                        break;
                    }
                }
            }
        }
        let _ = tx.rollback().await;
    }
    Ok(())
}
