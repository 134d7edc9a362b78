//! postgres_changes: reads `realtime.changes` (filled by the triggers of migration 0007) in
//! commit order, matches each change against the subscribers' bindings and filters, asks
//! [`rls`](super::rls) which subscriber may see which row, and queues one frame per channel
//! per change. A dedicated connection LISTENs for the commit-time NOTIFY that wakes it; a slow
//! poll covers a lost connection. What has been dispatched is pruned.

use std::{
    borrow::Cow,
    collections::{hash_map::Entry, BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::StreamExt as _;
use serde_json::{json, Map, Value};
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{
    filter,
    rls::{self, literal, Group},
    wire_topic, ChangeFrame, Push, Subscriber,
};
use crate::{db::DbError, state::SharedState};

const BATCH: i64 = 1000;
/// The `type` of the marker that DDL leaves in `realtime.changes` (migration 0010).
const CATALOG: &str = "CATALOG";
const POLL: Duration = Duration::from_secs(5);
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// Realtime's `max_record_bytes`: larger records go out trimmed, with an error.
const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// What a frame needs to know of a captured table.
#[derive(Debug, Clone)]
pub struct TableMeta {
    pub schema: String,
    pub table: String,
    /// `[{"name","type"}]` as JSON, in column order.
    pub columns: Value,
    /// Primary key columns with their SQL types.
    pub pk: Vec<(String, String)>,
    pub rls: bool,
    pub replica_full: bool,
    /// The table's SELECT policies as one boolean expression over a row named like the
    /// table (`true` without RLS), for [`rls`](super::rls).
    pub select_policy: String,
}

impl TableMeta {
    fn pk_only(&self, row: &Value) -> Value {
        let mut out = Map::new();
        for (name, _) in &self.pk {
            if let Some(v) = row.get(name) {
                out.insert(name.clone(), v.clone());
            }
        }
        Value::Object(out)
    }
}

type Tables = HashMap<(String, String), TableMeta>;

async fn load_tables(pool: &deadpool_postgres::Pool) -> Result<Tables, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT DISTINCT c.oid, n.nspname::text, c.relname::text, c.relrowsecurity,
                    c.relreplident = 'f'
               FROM pg_trigger t
               JOIN pg_class c ON c.oid = t.tgrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE t.tgname = 'realtime_capture_insert'",
            &[],
        )
        .await?;
    let mut tables = Tables::new();
    for row in rows {
        let oid: u32 = row.get(0);
        let schema: String = row.get(1);
        let table: String = row.get(2);
        let columns = client
            .query(
                "SELECT a.attname::text, t.typname::text FROM pg_attribute a
                   JOIN pg_type t ON t.oid = a.atttypid
                  WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
                  ORDER BY a.attnum",
                &[&oid],
            )
            .await?;
        let pk = client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_index i
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                  WHERE i.indrelid = $1 AND i.indisprimary ORDER BY a.attnum",
                &[&oid],
            )
            .await?;
        let policies = client
            .query(
                "SELECT p.polpermissive, pg_get_expr(p.polqual, p.polrelid),
                        ARRAY(SELECT CASE WHEN r = 0::oid THEN 'public' ELSE r::regrole::text END
                                FROM unnest(p.polroles) r)
                   FROM pg_policy p WHERE p.polrelid = $1 AND p.polcmd IN ('r', '*')",
                &[&oid],
            )
            .await?;
        let policies: Vec<Policy> = policies
            .iter()
            .map(|r| Policy {
                permissive: r.get(0),
                qual: r.get(1),
                roles: r.get(2),
            })
            .collect();
        let rls: bool = row.get(3);
        let columns: Vec<Value> = columns
            .iter()
            .map(|c| json!({"name": c.get::<_, String>(0), "type": c.get::<_, String>(1)}))
            .collect();
        tables.insert(
            (schema.clone(), table.clone()),
            TableMeta {
                schema,
                table,
                columns: Value::Array(columns),
                pk: pk.iter().map(|r| (r.get(0), r.get(1))).collect(),
                rls,
                replica_full: row.get(4),
                select_policy: if rls {
                    policy_expr(&policies)
                } else {
                    "true".into()
                },
            },
        );
    }
    Ok(tables)
}

/// One SELECT (or ALL) policy from `pg_policy`.
pub struct Policy {
    pub permissive: bool,
    pub qual: Option<String>,
    pub roles: Vec<String>,
}

/// PostgreSQL's rule: any applicable permissive policy, and every applicable restrictive
/// one. The expressions come from the catalog (`pg_get_expr`), never from a request.
pub fn policy_expr(policies: &[Policy]) -> String {
    let applies = |p: &Policy| {
        if p.roles.iter().any(|r| r == "public") {
            "true".to_string()
        } else {
            let roles: Vec<String> = p.roles.iter().map(|r| literal(r)).collect();
            format!("current_user::text = ANY (ARRAY[{}])", roles.join(", "))
        }
    };
    let qual = |p: &Policy| p.qual.clone().unwrap_or_else(|| "false".into());
    let permissive: Vec<String> = policies
        .iter()
        .filter(|p| p.permissive)
        .map(|p| format!("(({}) AND ({}))", applies(p), qual(p)))
        .collect();
    let mut expr = if permissive.is_empty() {
        "false".to_string()
    } else {
        format!("({})", permissive.join(" OR "))
    };
    for p in policies.iter().filter(|p| !p.permissive) {
        expr.push_str(&format!(" AND (NOT ({}) OR ({}))", applies(p), qual(p)));
    }
    expr
}

pub async fn start(state: SharedState, conn: String) -> Result<(), DbError> {
    let tables = load_catalog(&state).await?;
    // Start after the newest change: a (re)started server replays nothing older, and what was
    // left behind is pruned.
    let client = state.db.get().await?;
    let last: i64 = client
        .query_one("SELECT last_seq FROM realtime.commit_counter", &[])
        .await?
        .get(0);
    client
        .execute("DELETE FROM realtime.changes WHERE seq <= $1", &[&last])
        .await?;
    drop(client);
    let wake = Arc::new(Notify::new());
    tokio::spawn(listen(conn, wake.clone()));
    tokio::spawn(dispatch_loop(state, tables, last, wake));
    Ok(())
}

/// Reads what dispatching depends on from the catalog: the captured tables with their
/// policies, and the claims the policies can read.
async fn load_catalog(state: &SharedState) -> Result<Tables, DbError> {
    let tables = load_tables(&state.db).await?;
    state
        .realtime
        .set_captured(tables.keys().cloned().collect::<BTreeSet<_>>());
    let read = super::claims::load(&state.db).await?;
    tracing::info!(?read, "realtime: the claims RLS can read");
    state.realtime.set_claims_read(read);
    Ok(tables)
}

/// Holds a connection that LISTENs, and reconnects when it drops.
async fn listen(conn: String, wake: Arc<Notify>) {
    loop {
        match tokio_postgres::connect(&conn, NoTls).await {
            Ok((client, mut connection)) => {
                let w = wake.clone();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(_)) => w.notify_one(),
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                match client.batch_execute("LISTEN realtime_changes").await {
                    Ok(()) => {
                        // Whatever committed before LISTEN took effect.
                        wake.notify_one();
                        let _ = driver.await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "realtime: LISTEN failed");
                        driver.abort();
                    }
                }
                drop(client);
            }
            Err(e) => tracing::warn!(error = %e, "realtime: no LISTEN connection"),
        }
        wake.notify_one();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct Change {
    seq: i64,
    schema: String,
    table: String,
    kind: String,
    record: Option<Value>,
    old: Option<Value>,
    commit_ms: i64,
}

async fn dispatch_loop(state: SharedState, mut tables: Tables, mut last: i64, wake: Arc<Notify>) {
    let mut pruned = last;
    let mut pruned_at = Instant::now();
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
        loop {
            let batch = match read(&state, last).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "realtime: reading changes failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            };
            let Some(end) = batch.last().map(|c| c.seq) else {
                break;
            };
            // Cut at each catalog marker: the changes before it go out under the catalog as
            // it was, and it is re-read before those after it.
            for part in batch.split_inclusive(|c| c.kind == CATALOG) {
                let (changes, reload) = match part.split_last() {
                    Some((marker, before)) if marker.kind == CATALOG => (before, true),
                    _ => (part, false),
                };
                dispatch_retried(&state, &tables, changes).await;
                if reload {
                    tables = reload_catalog(&state).await;
                }
            }
            last = end;
            if (batch.len() as i64) < BATCH {
                break;
            }
        }
        if last > pruned && pruned_at.elapsed() >= PRUNE_EVERY {
            if let Ok(client) = state.db.get().await {
                if client
                    .execute("DELETE FROM realtime.changes WHERE seq <= $1", &[&last])
                    .await
                    .is_ok()
                {
                    pruned = last;
                    pruned_at = Instant::now();
                }
            }
        }
    }
}

/// Dispatches `changes`, trying again when the check fails (a connection lost, say): a
/// failure that persists is logged as an error and the changes are not sent, rather than
/// holding back every later change for every subscriber.
async fn dispatch_retried(state: &SharedState, tables: &Tables, changes: &[Change]) {
    const ATTEMPTS: u32 = 5;
    for attempt in 1..=ATTEMPTS {
        match dispatch(state, tables, changes).await {
            Ok(()) => return,
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "realtime: dispatching changes failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, changes = changes.len(), "realtime: changes not sent");
            }
        }
    }
}

/// Re-reads the catalog after DDL; until it can, nothing more is dispatched (never a change
/// checked against policies that may be gone).
async fn reload_catalog(state: &SharedState) -> Tables {
    loop {
        match load_catalog(state).await {
            Ok(tables) => {
                tracing::info!("realtime: catalog re-read after DDL");
                return tables;
            }
            Err(e) => {
                tracing::warn!(error = %e, "realtime: re-reading the catalog failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn read(state: &SharedState, after: i64) -> Result<Vec<Change>, DbError> {
    let client = state.db.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT seq, schema_name, table_name, type, record, old_record,
                    (extract(epoch FROM commit_ts) * 1000)::int8
               FROM realtime.changes WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .await?;
    let rows = client.query(&stmt, &[&after, &BATCH]).await?;
    Ok(rows
        .iter()
        .map(|r| Change {
            seq: r.get(0),
            schema: r.get(1),
            table: r.get(2),
            kind: r.get(3),
            record: r.get(4),
            old: r.get(5),
            commit_ms: r.get::<_, Option<i64>>(6).unwrap_or(0),
        })
        .collect())
}

/// The columns a change's filters are evaluated against, as Realtime's `apply_rls` does: the
/// new record of an INSERT or UPDATE; of a DELETE, the old row's replica identity (all of it
/// on a `REPLICA IDENTITY FULL` table, else only the primary key), so that a filter on a
/// column outside the identity never passes a DELETE.
fn filter_row<'a>(meta: &TableMeta, c: &'a Change) -> Option<Cow<'a, Value>> {
    match c.kind.as_str() {
        "DELETE" => c.old.as_ref().map(|old| {
            if meta.replica_full {
                Cow::Borrowed(old)
            } else {
                Cow::Owned(meta.pk_only(old))
            }
        }),
        _ => c.record.as_ref().map(Cow::Borrowed),
    }
}

/// Whether a change reaches a subscriber only when its policies let it read the row.
/// Realtime checks no DELETE: the row is gone, and the frame carries only its primary key
/// (on an RLS table), which every subscriber of the table whose filters pass receives.
fn rls_checked(c: &Change) -> bool {
    c.kind != "DELETE"
}

/// Which of a subscriber's bindings a change passes (event, table, filters on `row`).
fn matching_ids(sub: &Subscriber, c: &Change, row: &Value) -> Vec<i64> {
    sub.bindings
        .iter()
        .filter(|b| b.accepts(&c.schema, &c.table, &c.kind) && filter::matches(&b.filters, row))
        .map(|b| b.id)
        .collect()
}

async fn dispatch(state: &SharedState, tables: &Tables, batch: &[Change]) -> Result<(), DbError> {
    let subs = state.realtime.subscribers();
    if subs.is_empty() {
        return Ok(());
    }
    let metas: Vec<Option<&TableMeta>> = batch
        .iter()
        .map(|c| tables.get(&(c.schema.clone(), c.table.clone())))
        .collect();
    // (change, subscriber, ids) that pass bindings and filters.
    let mut candidates: Vec<(usize, usize, Vec<i64>)> = Vec::new();
    for (ci, c) in batch.iter().enumerate() {
        let Some(row) = metas[ci].and_then(|meta| filter_row(meta, c)) else {
            continue;
        };
        for (si, s) in subs.iter().enumerate() {
            let ids = matching_ids(s, c, &row);
            if !ids.is_empty() {
                candidates.push((ci, si, ids));
            }
        }
    }
    if candidates.is_empty() {
        return Ok(());
    }
    // Each subscriber's identity group, found once per batch (not once per candidate). Any
    // member's claims stand for the group: they agree on every claim the policies can read.
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    let sub_group: Vec<Option<usize>> = subs
        .iter()
        .map(|s| {
            (!s.auth.bypasses_rls()).then(|| {
                *group_of.entry(&s.identity).or_insert_with(|| {
                    groups.push(Group::new(&s.auth.role, &s.auth.claims));
                    groups.len() - 1
                })
            })
        })
        .collect();
    let mut asked: HashSet<(usize, usize)> = HashSet::new();
    for (ci, si, _) in &candidates {
        let c = &batch[*ci];
        let (Some(gi), Some(row), true) = (sub_group[*si], c.record.as_ref(), rls_checked(c))
        else {
            continue;
        };
        if asked.insert((gi, *ci)) {
            let table = (c.schema.clone(), c.table.clone());
            groups[gi]
                .wanted
                .entry(table)
                .or_default()
                .push((*ci, row.clone()));
        }
    }
    if !groups.is_empty() {
        let probes = groups.iter().map(|g| g.wanted.len() as u64).sum();
        state
            .realtime
            .metrics
            .rls_checks
            .fetch_add(probes, std::sync::atomic::Ordering::Relaxed);
        rls::check(&state.db, tables, &mut groups).await?;
    }
    // One frame per change, binding-id list and topic: subscribers with the same bindings
    // (the common case: ids are a hash of the binding) on one topic share its bytes instead
    // of formatting their own.
    let mut data: HashMap<usize, String> = HashMap::new();
    let mut frames: HashMap<(usize, Vec<i64>, &str), Arc<ChangeFrame>> = HashMap::new();
    for (ci, si, ids) in candidates {
        let (c, s) = (&batch[ci], &subs[si]);
        let Some(meta) = metas[ci] else {
            continue;
        };
        if let (Some(gi), true) = (sub_group[si], rls_checked(c)) {
            if !groups[gi].sees(ci) {
                continue;
            }
        }
        let frame = match frames.entry((ci, ids, s.topic.as_str())) {
            Entry::Occupied(o) => o.get().clone(),
            Entry::Vacant(v) => {
                let data = data.entry(ci).or_insert_with(|| change_data(meta, c));
                let (_, ids, key) = v.key();
                let payload = format!("{{\"ids\":{},\"data\":{}}}", json!(ids), data);
                let topic = wire_topic(key).to_string();
                v.insert(Arc::new(ChangeFrame::new(topic, payload.into())))
                    .clone()
            }
        };
        s.socket.push(
            s.member,
            Push::Change {
                frame,
                commit_ms: c.commit_ms,
            },
        );
    }
    Ok(())
}

fn commit_timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The `data` of a postgres_changes frame (Realtime's `apply_rls` output).
fn change_data(meta: &TableMeta, c: &Change) -> String {
    let mut data = Map::new();
    data.insert("schema".into(), json!(c.schema));
    data.insert("table".into(), json!(c.table));
    data.insert(
        "commit_timestamp".into(),
        json!(commit_timestamp(c.commit_ms)),
    );
    data.insert("type".into(), json!(c.kind));
    data.insert("columns".into(), meta.columns.clone());
    let mut errors = Vec::new();
    if c.kind != "DELETE" {
        let record = c.record.clone().unwrap_or(Value::Null);
        data.insert("record".into(), bounded(record, &mut errors));
    }
    if c.kind != "INSERT" {
        let old = c.old.clone().unwrap_or(Value::Null);
        // Only the replica identity; on an RLS table a DELETE gives only the primary key.
        let full = meta.replica_full && !(c.kind == "DELETE" && meta.rls);
        let old = if full { old } else { meta.pk_only(&old) };
        data.insert("old_record".into(), bounded(old, &mut errors));
    }
    data.insert(
        "errors".into(),
        if errors.is_empty() {
            Value::Null
        } else {
            json!(errors)
        },
    );
    Value::Object(data).to_string()
}

/// A record over the size limit keeps only its small fields, and the frame says why.
fn bounded(record: Value, errors: &mut Vec<&'static str>) -> Value {
    if record.to_string().len() <= MAX_RECORD_BYTES {
        return record;
    }
    if errors.is_empty() {
        errors.push("Error 413: Payload Too Large");
    }
    match record {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| v.to_string().len() <= 64)
                .collect(),
        ),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{
        self,
        cluster::{Cluster, ClusterError},
    };

    async fn last_seq(c: &tokio_postgres::Client) -> i64 {
        c.query_one("SELECT last_seq FROM realtime.commit_counter", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// The types of the changes numbered after `after`, in commit order.
    async fn types_after(c: &tokio_postgres::Client, after: i64) -> Vec<String> {
        c.query(
            "SELECT type FROM realtime.changes WHERE seq > $1 ORDER BY seq",
            &[&after],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    }

    /// Migration 0010 on a real cluster: DDL leaves a marker numbered at commit, between the
    /// changes committed before it and those after it, even inside one transaction.
    #[test]
    fn ddl_leaves_a_catalog_marker_in_commit_order() {
        let cluster = match Cluster::start(None) {
            Ok(c) => c,
            Err(ClusterError::NotFound(why)) => {
                eprintln!("skipped: {why}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let pool = db::pool(&cluster.connection_string(), 2).unwrap();
            db::migrate(&pool).await.unwrap();
            let c = pool.get().await.unwrap();
            let start = last_seq(&c).await;
            c.batch_execute(
                "INSERT INTO public.organizations (id, name, slug)
                   VALUES ('0a000000-0000-4000-8000-000000000001', 'o', 'o');
                 CREATE POLICY probe ON public.messages FOR SELECT USING (false);",
            )
            .await
            .unwrap();
            assert_eq!(types_after(&c, start).await, ["CATALOG"]);

            let start = last_seq(&c).await;
            c.batch_execute(
                "BEGIN;
                 INSERT INTO public.workspaces (org_id, name, slug)
                   VALUES ('0a000000-0000-4000-8000-000000000001', 'a', 'a');
                 DROP POLICY probe ON public.messages;
                 INSERT INTO public.workspaces (org_id, name, slug)
                   VALUES ('0a000000-0000-4000-8000-000000000001', 'b', 'b');
                 COMMIT;",
            )
            .await
            .unwrap();
            assert_eq!(
                types_after(&c, start).await,
                ["INSERT", "CATALOG", "INSERT"]
            );
        });
    }

    fn meta(rls: bool, full: bool) -> TableMeta {
        TableMeta {
            schema: "public".into(),
            table: "t".into(),
            columns: json!([{"name": "id", "type": "uuid"}, {"name": "x", "type": "int4"}]),
            pk: vec![("id".into(), "uuid".into())],
            rls,
            replica_full: full,
            select_policy: "true".into(),
        }
    }

    fn change(kind: &str) -> Change {
        Change {
            seq: 1,
            schema: "public".into(),
            table: "t".into(),
            kind: kind.into(),
            record: Some(json!({"id": "a", "x": 2})),
            old: Some(json!({"id": "a", "x": 1})),
            commit_ms: 1_735_732_800_123,
        }
    }

    #[test]
    fn frames_as_realtime_sends_them() {
        let d: Value =
            serde_json::from_str(&change_data(&meta(true, false), &change("INSERT"))).unwrap();
        assert_eq!(d["commit_timestamp"], "2025-01-01T12:00:00.123Z");
        assert_eq!(d["type"], "INSERT");
        assert_eq!(d["record"]["x"], 2);
        assert!(d.get("old_record").is_none());
        assert!(d["errors"].is_null());
        assert_eq!(d["columns"][1]["type"], "int4");

        let d: Value =
            serde_json::from_str(&change_data(&meta(true, false), &change("UPDATE"))).unwrap();
        assert_eq!(d["old_record"], json!({"id": "a"}));
        let d: Value =
            serde_json::from_str(&change_data(&meta(true, true), &change("UPDATE"))).unwrap();
        assert_eq!(d["old_record"], json!({"id": "a", "x": 1}));
        let d: Value =
            serde_json::from_str(&change_data(&meta(true, true), &change("DELETE"))).unwrap();
        assert_eq!(d["old_record"], json!({"id": "a"}));
        assert!(d.get("record").is_none());
        let d: Value =
            serde_json::from_str(&change_data(&meta(false, true), &change("DELETE"))).unwrap();
        assert_eq!(d["old_record"], json!({"id": "a", "x": 1}));
    }

    #[test]
    fn a_delete_is_filtered_on_its_replica_identity() {
        let passes = |meta: &TableMeta, kind: &str, f: &str| {
            let c = change(kind);
            let row = filter_row(meta, &c).unwrap();
            filter::matches(&filter::parse(f).unwrap(), &row)
        };
        // The primary key only: a filter on another column never passes, whatever its value.
        let pk_only = meta(true, false);
        assert!(passes(&pk_only, "DELETE", "id=eq.a"));
        assert!(!passes(&pk_only, "DELETE", "x=eq.1"));
        assert!(!passes(&pk_only, "DELETE", "x=neq.1"));
        assert!(!passes(&pk_only, "DELETE", "id=eq.a,x=eq.1"));
        assert!(passes(&pk_only, "DELETE", ""));
        // REPLICA IDENTITY FULL: the whole old row, even where the frame shows only the key.
        let full = meta(true, true);
        assert!(passes(&full, "DELETE", "x=eq.1"));
        assert!(!passes(&full, "DELETE", "x=eq.2"));
        // INSERT and UPDATE: the new record.
        assert!(passes(&pk_only, "UPDATE", "x=eq.2"));
        assert!(!passes(&pk_only, "UPDATE", "x=eq.1"));
        assert!(passes(&pk_only, "INSERT", "x=eq.2"));
        assert!(!rls_checked(&change("DELETE")));
        assert!(rls_checked(&change("UPDATE")) && rls_checked(&change("INSERT")));
    }

    #[test]
    fn policies_combine_as_postgres_does() {
        let p = |permissive, qual: &str, roles: &[&str]| Policy {
            permissive,
            qual: Some(qual.into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        assert_eq!(policy_expr(&[]), "false");
        assert_eq!(
            policy_expr(&[p(true, "a = 1", &["public"]), p(true, "b", &["authenticated"])]),
            "(((true) AND (a = 1)) OR ((current_user::text = ANY (ARRAY['authenticated'])) AND (b)))"
        );
        assert_eq!(
            policy_expr(&[p(true, "a", &["public"]), p(false, "c", &["o'k"])]),
            "(((true) AND (a))) AND (NOT (current_user::text = ANY (ARRAY['o''k'])) OR (c))"
        );
    }

    #[test]
    fn oversized_records_are_trimmed() {
        let mut errors = Vec::new();
        let big = json!({"id": "a", "blob": "x".repeat(MAX_RECORD_BYTES)});
        assert_eq!(bounded(big, &mut errors), json!({"id": "a"}));
        assert_eq!(errors, vec!["Error 413: Payload Too Large"]);
    }
}
