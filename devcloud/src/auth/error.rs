//! GoTrue's error responses, in both of its dialects.
//!
//! GoTrue picks the body shape from the request header `X-Supabase-Api-Version`: from
//! `2024-01-01` on it answers `{"code":"<error code>","message":"…"}` and echoes the version,
//! otherwise the legacy `{"code":<status>,"error_code":"…","msg":"…"}`. auth-js reads the code
//! from `code` only when the response carries the version header, else from `error_code`, so
//! both halves must agree. Handlers return an [`AuthError`]; [`render`] (a middleware on the
//! auth router) knows the request and writes the body in the dialect the caller asked for.

use axum::{
    extract::Request,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

pub const API_VERSION_HEADER: &str = "x-supabase-api-version";
const ERROR_CODE_HEADER: &str = "x-sb-error-code";
const API_VERSION_2024_01_01: &str = "2024-01-01";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `weak_password.reasons`, which auth-js turns into `AuthWeakPasswordError.reasons`.
    pub weak_password: Option<Vec<&'static str>>,
}

pub type AuthResult<T> = Result<T, AuthError>;

impl AuthError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> AuthError {
        AuthError {
            status,
            code,
            message: message.into(),
            weak_password: None,
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> AuthError {
        AuthError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn validation(message: impl Into<String>) -> AuthError {
        AuthError::bad_request("validation_failed", message)
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> AuthError {
        AuthError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> AuthError {
        AuthError::new(StatusCode::FORBIDDEN, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> AuthError {
        AuthError::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn invalid_credentials() -> AuthError {
        AuthError::bad_request("invalid_credentials", "Invalid login credentials")
    }
    pub fn no_authorization() -> AuthError {
        AuthError::new(
            StatusCode::UNAUTHORIZED,
            "no_authorization",
            "This endpoint requires a valid Bearer token",
        )
    }
    pub fn weak_password(message: impl Into<String>, reasons: Vec<&'static str>) -> AuthError {
        AuthError {
            weak_password: Some(reasons),
            ..AuthError::unprocessable("weak_password", message)
        }
    }

    /// A failure of ours, not of the request: logged in full, answered generically.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> AuthError {
        tracing::error!(error = %err, "auth: {context}");
        AuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected_failure",
            "Unexpected failure, please check server logs for more information",
        )
    }

    /// The body and headers of this error in the given dialect.
    pub fn to_response(&self, dialect: Dialect) -> Response {
        let mut body = match dialect {
            Dialect::V20240101 => json!({"code": self.code, "message": self.message}),
            Dialect::Legacy => {
                json!({"code": self.status.as_u16(), "error_code": self.code, "msg": self.message})
            }
        };
        if let (Some(reasons), Value::Object(map)) = (&self.weak_password, &mut body) {
            map.insert("weak_password".into(), json!({ "reasons": reasons }));
        }
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            HeaderName::from_static(ERROR_CODE_HEADER),
            HeaderValue::from_static(self.code),
        );
        if dialect == Dialect::V20240101 {
            headers.insert(
                HeaderName::from_static(API_VERSION_HEADER),
                HeaderValue::from_static(API_VERSION_2024_01_01),
            );
        }
        response
    }
}

impl IntoResponse for AuthError {
    /// Legacy body by default; [`render`] swaps in the requested dialect.
    fn into_response(self) -> Response {
        let mut response = self.to_response(Dialect::Legacy);
        response.extensions_mut().insert(self);
        response
    }
}

impl From<tokio_postgres::Error> for AuthError {
    fn from(e: tokio_postgres::Error) -> AuthError {
        AuthError::internal("database", e)
    }
}

impl From<deadpool_postgres::PoolError> for AuthError {
    fn from(e: deadpool_postgres::PoolError) -> AuthError {
        AuthError::internal("database pool", e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Legacy,
    V20240101,
}

impl Dialect {
    /// GoTrue's rule: a date (`YYYY-MM-DD`) on or after 2024-01-01 selects the new dialect;
    /// a missing or malformed header selects the legacy one.
    pub fn from_headers(headers: &HeaderMap) -> Dialect {
        let Some(value) = headers
            .get(API_VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return Dialect::Legacy;
        };
        let first = chrono::NaiveDate::from_ymd_opt(2024, 1, 1);
        match chrono::NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d") {
            Ok(date) if Some(date) >= first => Dialect::V20240101,
            _ => Dialect::Legacy,
        }
    }
}

/// Middleware: renders any [`AuthError`] a handler returned in the caller's dialect.
///
/// It also exposes GoTrue's response headers to browsers (its CORS setup does the same):
/// auth-js only trusts `error.code` from a body whose response carries a readable
/// `X-Supabase-Api-Version`, and `listUsers` pages with `X-Total-Count` and `Link`.
pub async fn render(req: Request, next: Next) -> Response {
    let dialect = Dialect::from_headers(req.headers());
    let mut response = next.run(req).await;
    if let Some(err) = response.extensions_mut().remove::<AuthError>() {
        if dialect != Dialect::Legacy {
            response = err.to_response(dialect);
        }
    }
    response.headers_mut().insert(
        axum::http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("X-Total-Count, Link, X-Supabase-Api-Version, X-Sb-Error-Code"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn headers(version: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = version {
            h.insert(API_VERSION_HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn dialect_follows_the_version_header() {
        assert_eq!(Dialect::from_headers(&headers(None)), Dialect::Legacy);
        assert_eq!(
            Dialect::from_headers(&headers(Some("2024-01-01"))),
            Dialect::V20240101
        );
        assert_eq!(
            Dialect::from_headers(&headers(Some("2025-06-30"))),
            Dialect::V20240101
        );
        assert_eq!(
            Dialect::from_headers(&headers(Some("2023-12-31"))),
            Dialect::Legacy
        );
        assert_eq!(
            Dialect::from_headers(&headers(Some("yesterday"))),
            Dialect::Legacy
        );
    }

    #[tokio::test]
    async fn new_dialect_has_string_code_and_echoes_the_version() {
        let r = AuthError::invalid_credentials().to_response(Dialect::V20240101);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[API_VERSION_HEADER], "2024-01-01");
        assert_eq!(r.headers()[ERROR_CODE_HEADER], "invalid_credentials");
        assert_eq!(
            body_of(r).await,
            json!({"code": "invalid_credentials", "message": "Invalid login credentials"})
        );
    }

    #[tokio::test]
    async fn legacy_dialect_has_numeric_code_and_error_code() {
        let r = AuthError::forbidden("bad_jwt", "invalid JWT").to_response(Dialect::Legacy);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().get(API_VERSION_HEADER).is_none());
        assert_eq!(r.headers()[ERROR_CODE_HEADER], "bad_jwt");
        assert_eq!(
            body_of(r).await,
            json!({"code": 403, "error_code": "bad_jwt", "msg": "invalid JWT"})
        );
    }

    #[tokio::test]
    async fn weak_password_carries_reasons_in_both_dialects() {
        let e =
            AuthError::weak_password("Password should be at least 6 characters.", vec!["length"]);
        let new = body_of(e.to_response(Dialect::V20240101)).await;
        assert_eq!(new["code"], "weak_password");
        assert_eq!(new["weak_password"]["reasons"], json!(["length"]));
        let old = body_of(e.to_response(Dialect::Legacy)).await;
        assert_eq!(old["code"], 422);
        assert_eq!(old["weak_password"]["reasons"], json!(["length"]));
    }

    #[tokio::test]
    async fn internal_errors_do_not_leak_details() {
        let r = AuthError::internal("test", "password=hunter2").to_response(Dialect::V20240101);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_of(r).await;
        assert_eq!(body["code"], "unexpected_failure");
        assert!(!body.to_string().contains("hunter2"));
    }
}
