//! Row-level security per subscriber, in batches: for one batch of changes, each distinct
//! identity (role + claims) among the subscribers runs one `SELECT` per table for all the
//! batch's candidate rows, as that identity (`role` and `request.jwt.claims` set locally, as
//! `/rest/v1` does), in one read-only transaction. Like Realtime's `apply_rls`, the check
//! reads the row as it is now, by primary key.

use std::collections::{BTreeMap, HashMap, HashSet};

use deadpool_postgres::Pool;

use super::changes::TableMeta;

/// Which rows one identity asks about: `(schema, table)` → primary keys as text.
pub type Wanted = BTreeMap<(String, String), HashSet<String>>;

/// One identity's question and, after [`check`], its answer.
pub struct Group {
    pub role: String,
    pub claims: String,
    pub wanted: Wanted,
    pub visible: HashSet<(String, String, String)>,
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The probe for one table: identifiers come from the catalog, values are bound.
fn probe_sql(meta: &TableMeta) -> Option<String> {
    let (pk, pk_type) = meta.single_pk()?;
    Some(format!(
        "SELECT {pk}::text FROM {}.{} WHERE {pk} = ANY($1::text[]::{pk_type}[])",
        quote(&meta.schema),
        quote(&meta.table),
        pk = quote(pk),
    ))
}

/// Fills each group's `visible`. A failing probe (say, a role without `SELECT`) shows that
/// identity nothing of that table.
pub async fn check(
    pool: &Pool,
    tables: &HashMap<(String, String), TableMeta>,
    groups: &mut [Group],
) -> Result<(), crate::db::DbError> {
    let mut client = pool.get().await?;
    let mut i = 0;
    while i < groups.len() {
        let tx = client.build_transaction().read_only(true).start().await?;
        let mut failed = false;
        while i < groups.len() && !failed {
            let g = &mut groups[i];
            i += 1;
            tx.query_one(
                "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)",
                &[&g.role, &g.claims],
            )
            .await?;
            for ((schema, table), pks) in &g.wanted {
                let Some(sql) = tables
                    .get(&(schema.clone(), table.clone()))
                    .and_then(probe_sql)
                else {
                    continue;
                };
                let pks: Vec<&str> = pks.iter().map(String::as_str).collect();
                match tx.query(sql.as_str(), &[&pks]).await {
                    Ok(rows) => {
                        for row in rows {
                            let pk: Option<String> = row.get(0);
                            if let Some(pk) = pk {
                                g.visible.insert((schema.clone(), table.clone(), pk));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, %table, "realtime RLS probe failed");
                        // The transaction is aborted: go on with the next identity in a new one.
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
