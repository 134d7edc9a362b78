//! PostgREST (`/rest/v1`), split the way PostgREST splits itself:
//! `request` (query string and headers → typed request) → `plan` (checked against the
//! `schema` cache) → `sql` (one statement, values bound) → `response`; `error` renders
//! PostgREST's error bodies.
//!
//! Each request runs as the caller's role in one transaction (read-only for GET/HEAD), so
//! row-level security decides what is visible, and the JSON body is built by PostgreSQL.

pub mod error;
pub mod plan;
pub mod request;
pub mod response;
pub mod schema;
pub mod sql;

use axum::{
    body::Body,
    extract::{Path, RawQuery, State},
    http::{header, HeaderMap, Method, Response},
    response::IntoResponse,
    routing::any,
    Router,
};
use deadpool_postgres::Pool;

use self::{
    error::ApiError,
    plan::{MutationKind, Planner},
    request::{Accept, Preferences, QueryParams, Resolution},
    response::{Outcome, Shape, Write},
    schema::SchemaCache,
    sql::{BodyShape, Statement},
};
use crate::{
    caller::{self, Caller, Role},
    db,
    state::SharedState,
};

/// The schema cache: tables, columns and foreign keys of the exposed schema.
pub struct RestState {
    pub schema: SchemaCache,
}

impl RestState {
    pub async fn load(pool: &Pool) -> Result<RestState, crate::db::DbError> {
        Ok(RestState {
            schema: SchemaCache::load(pool).await?,
        })
    }
}

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/", any(root))
        .route("/rpc/{function}", any(rpc))
        .route("/{table}", any(table))
}

type Res = Response<Body>;

async fn root(State(state): State<SharedState>, RawQuery(q): RawQuery, headers: HeaderMap) -> Res {
    let result = authenticate(&state, &headers, q.as_deref()).and(Err(ApiError::OpenApiDisabled));
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn rpc(
    State(state): State<SharedState>,
    Path(function): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Res {
    let result =
        authenticate(&state, &headers, q.as_deref()).and(Err(ApiError::NoFunction(function)));
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn table(
    State(state): State<SharedState>,
    Path(table): Path<String>,
    method: Method,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Res {
    handle(
        &state,
        &table,
        &method,
        q.as_deref().unwrap_or(""),
        &headers,
        body,
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// The gateway's apikey check, then the bearer token (PGRST301/303).
fn authenticate(
    state: &SharedState,
    headers: &HeaderMap,
    raw_query: Option<&str>,
) -> Result<Caller, ApiError> {
    // The apikey may come as a query parameter; find it without parsing anything else yet.
    let query_key = raw_query.and_then(|q| {
        request::decode_pairs(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "apikey")
            .map(|(_, v)| v)
    });
    caller::resolve(&state.keys, headers, query_key.as_deref()).map_err(|e| match e {
        caller::CallerError::BadJwt(_) => ApiError::BadJwt(bad_jwt_message(headers)),
        other => ApiError::from_caller(other),
    })
}

/// PostgREST's words for a token it cannot use.
fn bad_jwt_message(headers: &HeaderMap) -> String {
    match caller::bearer(headers) {
        Some(t) if t.split('.').count() != 3 => {
            format!("Expected 3 parts in JWT; got {}", t.split('.').count())
        }
        _ => "JWT cryptographic operation failed".to_string(),
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(
    state: &SharedState,
    table_name: &str,
    method: &Method,
    raw_query: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Res, ApiError> {
    let caller = authenticate(state, headers, Some(raw_query))?;
    let is_read = *method == Method::GET || *method == Method::HEAD;
    if !is_read && *method != Method::POST && *method != Method::PATCH && *method != Method::DELETE
    {
        return Err(ApiError::UnsupportedMethod(method.as_str().to_string()));
    }
    let profile = if is_read {
        "accept-profile"
    } else {
        "content-profile"
    };
    if let Some(p) = header_str(headers, profile).filter(|p| *p != schema::SCHEMA) {
        return Err(ApiError::UnacceptableSchema(p.to_string()));
    }
    let query = request::parse_query(raw_query)?;
    let prefs = Preferences::from_headers(headers);
    if prefs.handling == Some(request::Handling::Strict) && !prefs.invalid.is_empty() {
        return Err(ApiError::QueryParam {
            message: "Invalid preferences given with handling=strict".into(),
            details: format!("Invalid preferences: {}", prefs.invalid.join(", ")),
        });
    }
    let accept = request::negotiate(header_str(headers, "accept"))?;
    let info = db::RequestInfo {
        method: method.as_str(),
        path: &format!("/{table_name}"),
    };
    let ctx = Ctx {
        state,
        caller: &caller,
        info,
        headers,
        accept,
    };
    if is_read {
        read(&ctx, table_name, &query, &prefs, *method == Method::HEAD).await
    } else {
        let body = if *method == Method::DELETE {
            Vec::new()
        } else {
            read_body(state, headers, body).await?
        };
        write(&ctx, table_name, method, &query, &prefs, &body).await
    }
}

struct Ctx<'r> {
    state: &'r SharedState,
    caller: &'r Caller,
    info: db::RequestInfo<'r>,
    headers: &'r HeaderMap,
    accept: Accept,
}

async fn read_body(
    state: &SharedState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<u8>, ApiError> {
    let limit = state.settings.max_body_bytes;
    // No early 413 on a declared Content-Length: answering before the body is read closes
    // the connection under a client still sending it, which then sees a reset instead of
    // the 413 (CI saw `fetch failed`). `read_limited` reads and drops a bounded excess.
    if let Some(ct) = header_str(headers, "content-type") {
        let media = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !media.is_empty() && media != "application/json" && !media.ends_with("+json") {
            return Err(ApiError::InvalidBody(format!(
                "Content-Type not acceptable: {media}"
            )));
        }
    }
    // A dropped client never reads the answer; 413 is as good as any.
    let bytes = crate::body::read_limited(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    Ok(bytes.to_vec())
}

async fn read(
    ctx: &Ctx<'_>,
    table_name: &str,
    q: &QueryParams,
    prefs: &Preferences,
    head: bool,
) -> Result<Res, ApiError> {
    let range_header = header_str(ctx.headers, "range").and_then(request::parse_range_header);
    let root_window = q.windows.get(&Vec::new()).copied().unwrap_or_default();
    let window = plan::top_window(root_window, range_header, ctx.state.settings.db_max_rows)?;
    let mut planner = Planner::new(&ctx.state.rest.schema);
    let table = planner.table(table_name)?;
    let node = planner.read(table, q, window)?;
    let shape = BodyShape {
        single: ctx.accept.single,
        strip_nulls: ctx.accept.strip_nulls,
    };
    let stmt = sql::read_statement(&node, prefs.counts(), shape);
    let outcome = run(ctx, true, &stmt).await?;
    response::read(
        outcome,
        window.offset.unwrap_or(0),
        prefs,
        Shape {
            single: ctx.accept.single,
            head,
        },
    )
}

async fn write(
    ctx: &Ctx<'_>,
    table_name: &str,
    method: &Method,
    q: &QueryParams,
    prefs: &Preferences,
    body: &[u8],
) -> Result<Res, ApiError> {
    let mut planner = Planner::new(&ctx.state.rest.schema);
    let table = planner.table(table_name)?;
    let (kind, write_kind, payload) = match *method {
        Method::POST => {
            let payload = request::parse_payload(body, true, q.columns.is_some())?;
            let resolution_applies = prefs.resolution.is_some()
                && (!table.primary_key.is_empty() || q.on_conflict.is_some());
            let kind = MutationKind::Insert {
                resolution: prefs.resolution.filter(|_| resolution_applies),
                missing: prefs.missing,
            };
            (kind, Write::Insert { resolution_applies }, Some(payload))
        }
        Method::PATCH => (
            MutationKind::Update,
            Write::Update,
            Some(request::parse_payload(body, false, q.columns.is_some())?),
        ),
        _ => (MutationKind::Delete, Write::Delete, None),
    };
    let keys = payload.as_ref().map(|p| p.keys.as_slice()).unwrap_or(&[]);
    let plan = planner.mutate(table, q, kind, keys, prefs.representation())?;
    let track_inserted = matches!(
        kind,
        MutationKind::Insert {
            resolution: Some(Resolution::MergeDuplicates),
            ..
        }
    );
    let shape = BodyShape {
        single: ctx.accept.single,
        strip_nulls: ctx.accept.strip_nulls,
    };
    let json = payload.as_ref().map(|p| p.json.as_str()).unwrap_or("");
    let stmt = sql::mutate_statement(&plan, json, shape, track_inserted);
    let outcome = run(ctx, false, &stmt).await?;
    Ok(response::write(
        write_kind,
        outcome,
        prefs,
        Shape {
            single: ctx.accept.single,
            head: false,
        },
    ))
}

/// Runs the statement in the caller's transaction. For `.single()` a result other than one
/// row is a 406 and, for writes, the transaction is rolled back (dropped uncommitted).
async fn run(ctx: &Ctx<'_>, read_only: bool, stmt: &Statement) -> Result<Outcome, ApiError> {
    let authenticated = ctx.caller.role != Role::Anon;
    let pg = |e: tokio_postgres::Error| ApiError::from_pg(&e, authenticated);
    let mut client = ctx.state.db.get().await.map_err(|e| {
        tracing::error!(error = %e, "rest: no database connection");
        ApiError::Unavailable
    })?;
    let headers_json = request_headers_json(ctx.headers);
    let set_headers = [(
        &headers_json as &(dyn postgres_types::ToSql + Sync),
        postgres_types::Type::TEXT,
    )];
    let params = stmt.param_refs();
    let sql = stmt.sql.as_str();
    // One round trip, the transaction opened and committed in the same pipeline, unless a
    // write must first pass the `.single()` check: then it commits only after it.
    let (row, tx) = if read_only || !ctx.accept.single {
        let row = db::pipeline_as(
            &client,
            ctx.caller,
            read_only,
            &ctx.info,
            db::End::Commit,
            |db| statement(db, &set_headers, sql, &params),
        )
        .await
        .map_err(pg)?;
        (row, None)
    } else {
        let tx = db::begin_as(&mut client, ctx.caller, false, &ctx.info)
            .await
            .map_err(pg)?;
        let row = statement(tx.client(), &set_headers, sql, &params)
            .await
            .map_err(pg)?;
        (row, Some(tx))
    };
    let outcome = Outcome {
        total: row.try_get(0).map_err(pg)?,
        page: row.try_get(1).map_err(pg)?,
        body: row.try_get(2).map_err(pg)?,
        inserted: row.try_get(3).map_err(pg)?,
    };
    if ctx.accept.single && outcome.page != 1 {
        return Err(ApiError::Singularity(outcome.page));
    }
    if let Some(tx) = tx {
        tx.commit().await.map_err(pg)?;
    }
    Ok(outcome)
}

type Typed<'a> = (&'a (dyn postgres_types::ToSql + Sync), postgres_types::Type);

/// `request.headers`, then the statement: pipelined, both go out before either answer is
/// awaited, in this order.
async fn statement(
    db: &tokio_postgres::Client,
    headers: &[Typed<'_>],
    sql: &str,
    params: &[Typed<'_>],
) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
    let (_, row) = futures_util::future::try_join(
        db.query_typed("SELECT set_config('request.headers', $1, true)", headers),
        db.query_typed_one(sql, params),
    )
    .await?;
    Ok(row)
}

/// `request.headers` as PostgREST sets it: lower-case names, one value each.
fn request_headers_json(headers: &HeaderMap) -> String {
    let map: serde_json::Map<String, serde_json::Value> = headers
        .keys()
        .filter(|k| *k != header::COOKIE)
        .filter_map(|k| {
            let v = headers.get(k)?.to_str().ok()?;
            Some((
                k.as_str().to_string(),
                serde_json::Value::String(v.to_string()),
            ))
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}
