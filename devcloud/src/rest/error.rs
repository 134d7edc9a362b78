//! PostgREST's errors: a stable code, an HTTP status and the body
//! `{"code","details","hint","message"}` (PostgREST v13 wording). PostgreSQL errors keep their
//! SQLSTATE as the code and get PostgREST's status for it.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{json, Value};

use crate::caller::CallerError;

#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The API gateway's answers, which are not in PostgREST's shape.
    NoApiKey,
    InvalidApiKey,
    /// PGRST301.
    BadJwt(String),
    /// PGRST303.
    JwtExpired,
    /// PGRST100: a query parameter that does not parse.
    QueryParam {
        message: String,
        details: String,
    },
    /// PGRST102.
    InvalidBody(String),
    /// PGRST103 (416).
    InvalidRange(String),
    /// PGRST106 (406).
    UnacceptableSchema(String),
    /// PGRST107 (406).
    MediaType(String),
    /// PGRST108.
    NotEmbedded(String),
    /// PGRST116 (406): `application/vnd.pgrst.object+json` with this many rows.
    Singularity(i64),
    /// PGRST117 (405).
    UnsupportedMethod(String),
    /// PGRST118.
    RelatedOrderNotToOne {
        origin: String,
        target: String,
    },
    /// PGRST123.
    AggregatesNotAllowed,
    /// PGRST125 (404).
    InvalidPath,
    /// PGRST126 (404).
    OpenApiDisabled,
    /// PGRST127.
    NotImplemented(String),
    /// PGRST200.
    NoRelationship {
        origin: String,
        target: String,
        hint: Option<String>,
    },
    /// PGRST201 (300).
    AmbiguousRelationship {
        origin: String,
        target: String,
        constraints: Vec<String>,
    },
    /// PGRST202 (404).
    NoFunction(String),
    /// PGRST204: a payload or `columns=` column the table does not have.
    ColumnNotFound {
        table: String,
        column: String,
    },
    /// PGRST205 (404).
    TableNotFound {
        table: String,
        hint: Option<String>,
    },
    /// 42703 as PostgreSQL words it; raised before any SQL runs for select/filter/order columns.
    UndefinedColumn {
        table: String,
        column: String,
    },
    /// 42704: an unknown `::type` cast in `select`.
    UndefinedType(String),
    /// 413: the body is over `max_body_bytes`.
    PayloadTooLarge,
    /// A PostgreSQL error raised while running the statement.
    Pg {
        authenticated: bool,
        code: String,
        message: String,
        details: Option<String>,
        hint: Option<String>,
    },
    /// The database could not be reached.
    Unavailable,
    /// A bug or an unexpected failure; the cause has been logged.
    Internal,
}

impl ApiError {
    pub fn query_param(
        what: &str,
        input: &str,
        column: usize,
        details: impl Into<String>,
    ) -> ApiError {
        ApiError::QueryParam {
            message: format!("\"failed to parse {what} ({input})\" (line 1, column {column})"),
            details: details.into(),
        }
    }

    pub fn from_caller(e: CallerError) -> ApiError {
        match e {
            CallerError::NoApiKey => ApiError::NoApiKey,
            CallerError::InvalidApiKey => ApiError::InvalidApiKey,
            CallerError::Expired => ApiError::JwtExpired,
            // The verifier's own text may describe the token; say only what PostgREST says.
            CallerError::BadJwt(_) => ApiError::BadJwt("JWT cryptographic operation failed".into()),
        }
    }

    /// Maps a driver error. PostgreSQL's own errors are shown as PostgREST shows them; anything
    /// else (a dropped connection) is logged and answered generically.
    pub fn from_pg(e: &tokio_postgres::Error, authenticated: bool) -> ApiError {
        match e.as_db_error() {
            Some(db) => ApiError::Pg {
                authenticated,
                code: db.code().code().to_string(),
                message: db.message().to_string(),
                details: db.detail().map(str::to_string),
                hint: db.hint().map(str::to_string),
            },
            None => {
                tracing::error!(error = %e, "rest: database error");
                ApiError::Unavailable
            }
        }
    }

    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            NoApiKey | InvalidApiKey | BadJwt(_) | JwtExpired => StatusCode::UNAUTHORIZED,
            QueryParam { .. } | InvalidBody(_) | NotEmbedded(_) | RelatedOrderNotToOne { .. } => {
                StatusCode::BAD_REQUEST
            }
            AggregatesNotAllowed
            | NotImplemented(_)
            | NoRelationship { .. }
            | ColumnNotFound { .. } => StatusCode::BAD_REQUEST,
            UndefinedColumn { .. } | UndefinedType(_) => StatusCode::BAD_REQUEST,
            InvalidRange(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            UnacceptableSchema(_) | MediaType(_) | Singularity(_) => StatusCode::NOT_ACCEPTABLE,
            UnsupportedMethod(_) => StatusCode::METHOD_NOT_ALLOWED,
            InvalidPath | OpenApiDisabled | NoFunction(_) | TableNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            AmbiguousRelationship { .. } => StatusCode::MULTIPLE_CHOICES,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Pg {
                authenticated,
                code,
                ..
            } => pg_status(code, *authenticated),
            Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &str {
        use ApiError::*;
        match self {
            NoApiKey | InvalidApiKey => "",
            BadJwt(_) => "PGRST301",
            JwtExpired => "PGRST303",
            QueryParam { .. } => "PGRST100",
            InvalidBody(_) => "PGRST102",
            InvalidRange(_) => "PGRST103",
            UnacceptableSchema(_) => "PGRST106",
            MediaType(_) => "PGRST107",
            NotEmbedded(_) => "PGRST108",
            Singularity(_) => "PGRST116",
            UnsupportedMethod(_) => "PGRST117",
            RelatedOrderNotToOne { .. } => "PGRST118",
            AggregatesNotAllowed => "PGRST123",
            InvalidPath => "PGRST125",
            OpenApiDisabled => "PGRST126",
            NotImplemented(_) => "PGRST127",
            NoRelationship { .. } => "PGRST200",
            AmbiguousRelationship { .. } => "PGRST201",
            NoFunction(_) => "PGRST202",
            ColumnNotFound { .. } => "PGRST204",
            TableNotFound { .. } => "PGRST205",
            UndefinedColumn { .. } => "42703",
            UndefinedType(_) => "42704",
            PayloadTooLarge => "PGRST413",
            Pg { code, .. } => code,
            Unavailable => "PGRST001",
            Internal => "XX000",
        }
    }

    fn message(&self) -> String {
        use ApiError::*;
        match self {
            NoApiKey => "No API key found in request".into(),
            InvalidApiKey => "Invalid API key".into(),
            BadJwt(m) => m.clone(),
            JwtExpired => "JWT expired".into(),
            QueryParam { message, .. } => message.clone(),
            InvalidBody(m) => m.clone(),
            InvalidRange(_) => "Requested range not satisfiable".into(),
            UnacceptableSchema(s) => format!("Invalid schema: {s}"),
            MediaType(m) => format!("None of these media types are available: {m}"),
            NotEmbedded(r) => format!("'{r}' is not an embedded resource in this request"),
            Singularity(_) => "Cannot coerce the result to a single JSON object".into(),
            UnsupportedMethod(m) => format!("Unsupported HTTP method: {m}"),
            RelatedOrderNotToOne { target, .. } => {
                format!("A related order on '{target}' is not possible")
            }
            AggregatesNotAllowed => "Use of aggregate functions is not allowed".into(),
            InvalidPath => "Invalid path specified in request URL".into(),
            OpenApiDisabled => "Root endpoint metadata is disabled".into(),
            NotImplemented(_) => "Feature not implemented".into(),
            NoRelationship { origin, target, .. } => {
                format!("Could not find a relationship between '{origin}' and '{target}' in the schema cache")
            }
            AmbiguousRelationship { origin, target, .. } => {
                format!("Could not embed because more than one relationship was found for '{origin}' and '{target}'")
            }
            NoFunction(f) => format!(
                "Could not find the function public.{f} without parameters in the schema cache"
            ),
            ColumnNotFound { table, column } => {
                format!("Could not find the '{column}' column of '{table}' in the schema cache")
            }
            TableNotFound { table, .. } => {
                format!("Could not find the table 'public.{table}' in the schema cache")
            }
            UndefinedColumn { table, column } => format!("column {table}.{column} does not exist"),
            UndefinedType(t) => format!("type \"{t}\" does not exist"),
            PayloadTooLarge => "Payload Too Large".into(),
            Pg { code, message, .. } => {
                if pg_status(code, true).is_server_error() {
                    "Internal server error".into()
                } else {
                    message.clone()
                }
            }
            Unavailable => "Database client error. Retrying the connection.".into(),
            Internal => "Internal server error".into(),
        }
    }

    fn details(&self) -> Value {
        use ApiError::*;
        match self {
            QueryParam { details, .. } => json!(details),
            InvalidRange(d) => json!(d),
            Singularity(n) => json!(format!("The result contains {n} rows")),
            RelatedOrderNotToOne { origin, target } => {
                json!(format!("'{origin}' and '{target}' do not form a many-to-one or one-to-one relationship"))
            }
            NotImplemented(d) => json!(d),
            NoRelationship {
                origin,
                target,
                hint,
            } => {
                let using = hint
                    .as_ref()
                    .map(|h| format!("' using the hint '{h}"))
                    .unwrap_or_default();
                json!(format!(
                    "Searched for a foreign key relationship between '{origin}' and '{target}{using}' in the schema 'public', but no matches were found."
                ))
            }
            AmbiguousRelationship { constraints, .. } => {
                json!(constraints
                    .iter()
                    .map(|c| json!({"relationship": c}))
                    .collect::<Vec<_>>())
            }
            Pg { code, details, .. } if !pg_status(code, true).is_server_error() => json!(details),
            _ => Value::Null,
        }
    }

    fn hint(&self) -> Value {
        use ApiError::*;
        match self {
            NotEmbedded(r) => json!(format!("Verify that '{r}' is included in the 'select' query parameter.")),
            UnacceptableSchema(_) => json!("Only the following schemas are exposed: public"),
            AmbiguousRelationship { target, constraints, .. } => json!(format!(
                "Try changing '{target}' to one of the following: {}. Find the desired relationship in the 'details' key.",
                constraints.iter().map(|c| format!("'{target}!{c}'")).collect::<Vec<_>>().join(", ")
            )),
            TableNotFound { hint: Some(t), .. } => json!(format!("Perhaps you meant the table 'public.{t}'")),
            Pg { code, hint, .. } if !pg_status(code, true).is_server_error() => json!(hint),
            _ => Value::Null,
        }
    }

    pub fn body(&self) -> Value {
        match self {
            ApiError::NoApiKey | ApiError::InvalidApiKey => json!({"message": self.message()}),
            _ => json!({
                "code": self.code(),
                "details": self.details(),
                "hint": self.hint(),
                "message": self.message(),
            }),
        }
    }
}

/// PostgREST's status for a SQLSTATE (`pgErrorStatus`).
fn pg_status(code: &str, authenticated: bool) -> StatusCode {
    let class = code.get(..2).unwrap_or("");
    match code {
        "23503" | "23505" => return StatusCode::CONFLICT,
        "25006" => return StatusCode::METHOD_NOT_ALLOWED,
        "21000" | "53400" | "42P17" => return StatusCode::INTERNAL_SERVER_ERROR,
        "57P01" => return StatusCode::SERVICE_UNAVAILABLE,
        "P0001" => return StatusCode::BAD_REQUEST,
        "42883" | "42P01" => return StatusCode::NOT_FOUND,
        "42501" => {
            return if authenticated {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            };
        }
        _ => {}
    }
    match class {
        "08" | "53" => StatusCode::SERVICE_UNAVAILABLE,
        "0L" | "0P" | "28" => StatusCode::FORBIDDEN,
        "09" | "25" | "2D" | "38" | "39" | "3B" | "40" | "54" | "55" | "57" | "58" | "F0"
        | "HV" | "P0" | "XX" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Pg { code, message, .. } = &self {
            if status.is_server_error() {
                tracing::error!(%code, %message, "rest: statement failed");
            }
        }
        let mut res = (status, self.body().to_string()).into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        let www = match &self {
            ApiError::JwtExpired | ApiError::BadJwt(_) => Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                self.message()
            )),
            _ if status == StatusCode::UNAUTHORIZED && !self.code().is_empty() => {
                Some("Bearer".to_string())
            }
            _ => None,
        };
        if let Some(v) = www.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(code: &str, authenticated: bool) -> ApiError {
        ApiError::Pg {
            authenticated,
            code: code.into(),
            message: "m".into(),
            details: Some("d".into()),
            hint: None,
        }
    }

    #[test]
    fn sqlstates_map_like_postgrest() {
        assert_eq!(pg("42501", true).status(), StatusCode::FORBIDDEN);
        assert_eq!(pg("42501", false).status(), StatusCode::UNAUTHORIZED);
        assert_eq!(pg("23505", true).status(), StatusCode::CONFLICT);
        assert_eq!(pg("23503", true).status(), StatusCode::CONFLICT);
        for c in ["22P02", "22007", "23502", "23514", "P0001", "42703"] {
            assert_eq!(pg(c, true).status(), StatusCode::BAD_REQUEST, "{c}");
        }
        assert_eq!(
            pg("XX000", true).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn server_errors_hide_their_text() {
        let body = pg("XX001", true).body();
        assert_eq!(body["message"], "Internal server error");
        assert_eq!(body["details"], Value::Null);
        let body = pg("23505", true).body();
        assert_eq!(body["message"], "m");
        assert_eq!(body["details"], "d");
    }

    #[test]
    fn expired_jwt_has_the_www_authenticate_header() {
        let res = ApiError::JwtExpired.into_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer error=\"invalid_token\", error_description=\"JWT expired\""
        );
    }

    #[test]
    fn gateway_errors_are_bare_messages() {
        assert_eq!(
            ApiError::NoApiKey.body(),
            json!({"message": "No API key found in request"})
        );
        assert_eq!(ApiError::NoApiKey.status(), StatusCode::UNAUTHORIZED);
    }
}
