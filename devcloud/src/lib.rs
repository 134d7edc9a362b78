//! `oboto-devcloud`: a local Oboto Cloud. It serves the Supabase HTTP surface that Oboto
//! Cloud uses (GoTrue, PostgREST, Storage, Edge Functions) on a real PostgreSQL with the
//! Oboto schema and row-level security. `../shared/design/devcloud.md` is its specification.

pub mod auth;
pub mod body;
pub mod caller;
pub mod config;
pub mod db;
pub mod functions;
pub mod jwt;
pub mod realtime;
pub mod rest;
pub mod state;
pub mod stats;
pub mod storage;

use std::{sync::Arc, time::Duration};

use axum::{
    http::StatusCode, middleware, response::IntoResponse, serve::ListenerExt as _, Json, Router,
};
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::cors::CorsLayer;

use crate::{
    config::{Args, Seed},
    db::cluster::Cluster,
    jwt::JwtKeys,
    state::{AppState, Settings, SharedState},
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Cluster(#[from] db::cluster::ClusterError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Every route of the local cloud.
pub fn app(state: SharedState) -> Router {
    Router::new()
        .nest("/auth/v1", auth::router())
        .nest("/rest/v1", rest::router())
        .nest("/storage/v1", storage::router())
        .nest("/functions/v1", functions::router())
        .nest("/realtime/v1", realtime::router())
        .nest("/devcloud/v1", stats::router())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), stats::count))
        .layer(CorsLayer::very_permissive())
        .with_state(state)
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"message": "no Route matched with those values"})),
    )
}

/// Builds the state on an already migrated database.
pub async fn state(
    pool: deadpool_postgres::Pool,
    secret: &[u8],
    settings: Settings,
) -> Result<SharedState, StartError> {
    let rest = rest::RestState::load(&pool).await?;
    Ok(Arc::new(AppState {
        db: pool,
        keys: JwtKeys::new(secret),
        settings,
        stats: Default::default(),
        realtime: Default::default(),
        rest,
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default(),
    }))
}

/// The JWT secret: `DEVCLOUD_JWT_SECRET`, else kept in a persistent data dir, else random.
fn jwt_secret(data_dir: Option<&std::path::Path>) -> std::io::Result<Vec<u8>> {
    if let Ok(s) = std::env::var("DEVCLOUD_JWT_SECRET") {
        if s.len() >= 32 {
            return Ok(s.into_bytes());
        }
        tracing::warn!("DEVCLOUD_JWT_SECRET is shorter than 32 bytes; using a random secret");
    }
    let random = || {
        use rand::Rng;
        let bytes: [u8; 32] = rand::thread_rng().gen();
        hex::encode(bytes).into_bytes()
    };
    let Some(dir) = data_dir else {
        return Ok(random());
    };
    let path = dir.join("jwt-secret");
    match std::fs::read(&path) {
        Ok(s) if s.len() >= 32 => Ok(s),
        _ => {
            let s = random();
            std::fs::write(&path, &s)?;
            Ok(s)
        }
    }
}

/// Runs the server until SIGINT/SIGTERM; the private cluster is stopped and removed on return.
pub fn run(args: Args) -> Result<(), StartError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Started on this thread (not a runtime worker) so that postgres' parent-death signal is
    // tied to the life of the process's main thread.
    let cluster = match &args.database_url {
        Some(_) => None,
        None => Some(Cluster::start(args.data_dir.as_deref())?),
    };
    let storage_root = match (&args.data_dir, &cluster) {
        (Some(d), _) => d.join("storage"),
        (None, Some(c)) => c.root().join("storage"),
        (None, None) => {
            std::env::temp_dir().join(format!("oboto-devcloud-storage-{}", std::process::id()))
        }
    };
    let conn = args
        .database_url
        .clone()
        .or_else(|| cluster.as_ref().map(Cluster::connection_string))
        .unwrap_or_default();
    let result = runtime.block_on(serve(args, conn, storage_root.clone()));
    if cluster.is_none() && storage_root.starts_with(std::env::temp_dir()) {
        let _ = std::fs::remove_dir_all(&storage_root);
    }
    // The server has stopped; a blocking stdin read (--exit-on-stdin-eof) must not hold us.
    runtime.shutdown_background();
    drop(cluster);
    result
}

async fn serve(
    args: Args,
    conn: String,
    storage_dir: std::path::PathBuf,
) -> Result<(), StartError> {
    let pool = db::pool(&conn, 32)?;
    db::migrate(&pool).await?;
    if args.seed == Seed::Demo {
        db::seed_demo(&pool).await?;
    }
    std::fs::create_dir_all(&storage_dir)?;
    let settings = Settings {
        jwt_exp: Duration::from_secs(args.jwt_exp),
        refresh_reuse_interval: Duration::from_secs(args.refresh_reuse_interval),
        max_body_bytes: args.max_body_bytes,
        max_upload_bytes: args.max_upload_bytes,
        db_max_rows: args.db_max_rows,
        realtime_timeout: Duration::from_millis(args.realtime_timeout_ms),
        realtime_max_channels: usize::try_from(args.realtime_max_channels).unwrap_or(usize::MAX),
        realtime_max_postgres_changes: usize::try_from(args.realtime_max_postgres_changes)
            .unwrap_or(usize::MAX),
        storage_dir,
        ai_upstream: std::env::var("DEVCLOUD_AI_UPSTREAM")
            .ok()
            .filter(|s| !s.is_empty()),
    };
    let secret = jwt_secret(args.data_dir.as_deref())?;
    let state = state(pool, &secret, settings).await?;
    realtime::start(&state, conn).await?;
    let listener = TcpListener::bind((args.host.as_str(), args.port)).await?;
    let addr = listener.local_addr()?;
    // axum leaves Nagle on: a streamed response's last small segment would then wait for
    // the client's delayed ACK (40 ms on Linux) before it leaves, stalling SSE and every
    // response written in more than one piece.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let ready = json!({
        "url": format!("http://{}:{}", args.host, addr.port()),
        "anonKey": state.keys.anon_key,
        "serviceRoleKey": state.keys.service_role_key,
    });
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{ready}")?;
        out.flush()?;
    }
    tracing::info!(%addr, "ready");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watch_stdin = args.exit_on_stdin_eof;
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = stdin_closed(), if watch_stdin => tracing::info!("standard input closed"),
        }
        let _ = stop_tx.send(true);
    });
    let mut stop_rx2 = stop_rx.clone();
    tokio::select! {
        r = server => r?,
        // Streams (SSE, WebSockets) may hold graceful shutdown open; give them a moment only.
        _ = async {
            let _ = stop_rx2.wait_for(|s| *s).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        } => {}
    }
    drop(stop_rx);
    tracing::info!("stopped");
    Ok(())
}

/// Resolves once standard input reaches end of file (or fails).
async fn stdin_closed() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers we can only run until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
