//! The database: the private cluster, the pool, migrations, the seed, and the per-request
//! transaction that runs as the caller's role (PostgREST's model, which RLS relies on).

pub mod cluster;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Transaction};
use tokio_postgres::NoTls;

use crate::caller::Caller;

pub use tokio_postgres::Error as PgError;

static MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_roles_and_auth",
        include_str!("../../migrations/0001_roles_and_auth.sql"),
    ),
    (
        "0002_oboto_schema",
        include_str!("../../migrations/0002_oboto_schema.sql"),
    ),
    ("0003_rls", include_str!("../../migrations/0003_rls.sql")),
    (
        "0004_storage",
        include_str!("../../migrations/0004_storage.sql"),
    ),
    (
        "0005_storage_version",
        include_str!("../../migrations/0005_storage_version.sql"),
    ),
    (
        "0006_message_policies",
        include_str!("../../migrations/0006_message_policies.sql"),
    ),
    (
        "0007_realtime",
        include_str!("../../migrations/0007_realtime.sql"),
    ),
    (
        "0008_file_policies_fast",
        include_str!("../../migrations/0008_file_policies_fast.sql"),
    ),
    (
        "0009_policy_helpers_plpgsql",
        include_str!("../../migrations/0009_policy_helpers_plpgsql.sql"),
    ),
    (
        "0010_realtime_catalog",
        include_str!("../../migrations/0010_realtime_catalog.sql"),
    ),
    (
        "0011_realtime_capture_rows",
        include_str!("../../migrations/0011_realtime_capture_rows.sql"),
    ),
];

static DEMO_SEED: &str = include_str!("../../seed/demo.sql");
pub const DEMO_PASSWORD: &str = "oboto-demo-pass";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("bad database url: {0}")]
    Config(String),
    #[error("database: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("migration {name}: {source}")]
    Migration {
        name: &'static str,
        source: tokio_postgres::Error,
    },
}

pub fn pool(conn: &str, size: usize) -> Result<Pool, DbError> {
    let pg: tokio_postgres::Config = conn
        .parse()
        .map_err(|e: PgError| DbError::Config(e.to_string()))?;
    let mgr = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(size)
        .build()
        .map_err(|e| DbError::Config(e.to_string()))
}

/// Applies the migrations not yet recorded in `devcloud_migrations`, each in its own transaction.
pub async fn migrate(pool: &Pool) -> Result<(), DbError> {
    let mut client = pool.get().await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS public.devcloud_migrations (
               name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
             REVOKE ALL ON public.devcloud_migrations FROM PUBLIC;",
        )
        .await?;
    for (name, sql) in MIGRATIONS {
        let tx = client.transaction().await?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM public.devcloud_migrations WHERE name = $1",
                &[name],
            )
            .await?
            .is_some();
        if done {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|source| DbError::Migration { name, source })?;
        tx.execute(
            "INSERT INTO public.devcloud_migrations (name) VALUES ($1)",
            &[name],
        )
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Loads the demo seed once (a kept `--data-dir` is not seeded twice).
pub async fn seed_demo(pool: &Pool) -> Result<(), DbError> {
    let client = pool.get().await?;
    let seeded = client
        .query_opt(
            "SELECT 1 FROM auth.users WHERE email = 'alice@acme.test'",
            &[],
        )
        .await?
        .is_some();
    if seeded {
        return Ok(());
    }
    let hash = crate::auth::password::hash(DEMO_PASSWORD);
    let sql = DEMO_SEED.replace("{{PASSWORD_HASH}}", &hash);
    client
        .batch_execute(&format!("BEGIN; {sql}; COMMIT;"))
        .await
        .map_err(|source| DbError::Migration {
            name: "demo seed",
            source,
        })?;
    Ok(())
}

/// What PostgREST exposes to SQL about the request (`request.method`, `request.path`).
pub struct RequestInfo<'a> {
    pub method: &'a str,
    pub path: &'a str,
}

const SET_CALLER: &str =
    "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true), \
     set_config('request.method', $3, true), set_config('request.path', $4, true)";

/// Opens a transaction that runs as the caller's role with `request.jwt.claims` set, so that
/// `auth.uid()` and the RLS policies see the caller. `read_only` for GET/HEAD.
pub async fn begin_as<'a>(
    client: &'a mut Object,
    caller: &Caller,
    read_only: bool,
    req: &RequestInfo<'_>,
) -> Result<Transaction<'a>, PgError> {
    let tx = client
        .build_transaction()
        .read_only(read_only)
        .start()
        .await?;
    let stmt = tx.prepare_cached(SET_CALLER).await?;
    let claims = caller.claims.to_string();
    tx.query_one(
        &stmt,
        &[&caller.role.as_str(), &claims, &req.method, &req.path],
    )
    .await?;
    Ok(tx)
}

/// How a [`pipeline_as`] transaction ends.
#[derive(Clone, Copy)]
pub enum End {
    Commit,
    /// A dry run: the statements' effects are discarded.
    Rollback,
}

pub type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// Statements run as the caller (as [`begin_as`] sets it up) in one round trip: BEGIN, the
/// caller, the statements and the end are pipelined, where a transaction opened step by step
/// costs a round trip each. `statements` must send its requests when first polled (as
/// tokio-postgres's queries, joined, do). A failed statement aborts the transaction, so the
/// end rolls it back and the connection goes back to the pool clean; even a dropped future
/// has already sent the end. The statements' result is returned only if BEGIN, the identity
/// and the end succeeded (never rows read without the caller's identity).
pub async fn pipeline_as<'c, T, F>(
    client: &'c Object,
    caller: &Caller,
    read_only: bool,
    req: &RequestInfo<'_>,
    end: End,
    statements: impl FnOnce(&'c tokio_postgres::Client) -> F,
) -> Result<T, PgError>
where
    F: std::future::Future<Output = Result<T, PgError>>,
{
    let set = client.prepare_cached(SET_CALLER).await?;
    let claims = caller.claims.to_string();
    let role = caller.role.as_str();
    let identity: [Param<'_>; 4] = [&role, &claims, &req.method, &req.path];
    let db: &tokio_postgres::Client = client;
    let begin = if read_only {
        "BEGIN READ ONLY"
    } else {
        "BEGIN"
    };
    let end = match end {
        End::Commit => "COMMIT",
        End::Rollback => "ROLLBACK",
    };
    // join4 polls in order, and tokio-postgres sends each request when it is first polled.
    let (begin, identity, result, end) = futures_util::future::join4(
        db.batch_execute(begin),
        db.query_one(&set, &identity),
        statements(db),
        db.batch_execute(end),
    )
    .await;
    begin?;
    identity?;
    end?;
    result
}
