//! storage-api's error dialect: HTTP 400 (500 for internal errors) with the semantic status
//! as a string in the body, `{"statusCode":"404","code":"NoSuchKey","error":"not_found",
//! "message":"Object not found"}`. storage-js reads `statusCode` and `message`.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;
use tokio_postgres::error::SqlState;

use crate::caller::CallerError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError {
    /// The semantic status, rendered as a string in the body.
    pub status: u16,
    pub code: &'static str,
    /// storage-api's backwards-compatible `error` field.
    pub error: &'static str,
    pub message: String,
    /// The HTTP status actually sent; storage-api sends 400 for everything but 500s, while
    /// the API gateway in front of it answers 401 itself for a missing or unknown apikey.
    pub http: StatusCode,
}

impl StorageError {
    fn new(
        status: u16,
        code: &'static str,
        error: &'static str,
        message: impl Into<String>,
    ) -> Self {
        let http = if status == 500 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        };
        StorageError {
            status,
            code,
            error,
            message: message.into(),
            http,
        }
    }

    pub fn no_such_key() -> Self {
        Self::new(404, "NoSuchKey", "not_found", "Object not found")
    }
    pub fn no_such_bucket() -> Self {
        Self::new(404, "NoSuchBucket", "Bucket not found", "Bucket not found")
    }
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(403, "AccessDenied", "Unauthorized", message)
    }
    pub fn duplicate() -> Self {
        Self::new(409, "Duplicate", "Duplicate", "The resource already exists")
    }
    pub fn invalid_key(key: &str) -> Self {
        Self::new(
            400,
            "InvalidKey",
            "InvalidKey",
            format!("Invalid key: {key}"),
        )
    }
    pub fn invalid_bucket_name() -> Self {
        Self::new(
            400,
            "InvalidBucketName",
            "Invalid Input",
            "Bucket name invalid",
        )
    }
    pub fn entity_too_large() -> Self {
        Self::new(
            413,
            "EntityTooLarge",
            "Payload too large",
            "The object exceeded the maximum allowed size",
        )
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidRequest", "InvalidRequest", message)
    }
    pub fn internal() -> Self {
        Self::new(500, "InternalError", "Internal", "Internal server error")
    }

    /// The gateway and JWT checks, as Kong and storage-api's JWT plugin answer them.
    pub fn from_caller(e: &CallerError) -> Self {
        match e {
            CallerError::NoApiKey | CallerError::InvalidApiKey => StorageError {
                http: StatusCode::UNAUTHORIZED,
                ..Self::new(401, "AccessDenied", "Unauthorized", e.to_string())
            },
            CallerError::Expired => Self::access_denied("jwt expired"),
            CallerError::BadJwt(detail) => {
                let message = if detail.contains("Signature") {
                    "invalid signature"
                } else {
                    "jwt malformed"
                };
                Self::access_denied(message)
            }
        }
    }

    /// Maps a database error the way storage-api's `DBError.fromDBError` does; anything
    /// unexpected is logged and becomes a generic 500.
    pub fn from_pg(e: &tokio_postgres::Error) -> Self {
        match e.code() {
            Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => {
                Self::access_denied("new row violates row-level security policy")
            }
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => Self::duplicate(),
            _ => {
                tracing::error!(error = %e, "storage: database error");
                Self::internal()
            }
        }
    }
}

impl From<tokio_postgres::Error> for StorageError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::from_pg(&e)
    }
}

impl From<deadpool_postgres::PoolError> for StorageError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::error!(error = %e, "storage: no database connection");
        Self::internal()
    }
}

impl IntoResponse for StorageError {
    fn into_response(self) -> Response {
        let body = json!({
            "statusCode": self.status.to_string(),
            "code": self.code,
            "error": self.error,
            "message": self.message,
        });
        (self.http, Json(body)).into_response()
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semantic_status_goes_in_the_body() {
        let e = StorageError::no_such_key();
        assert_eq!(e.http, StatusCode::BAD_REQUEST);
        assert_eq!(e.status, 404);
        assert_eq!(
            StorageError::internal().http,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            StorageError::from_caller(&CallerError::NoApiKey).http,
            StatusCode::UNAUTHORIZED
        );
        let jwt = StorageError::from_caller(&CallerError::Expired);
        assert_eq!(
            (jwt.status, jwt.error, jwt.message.as_str()),
            (403, "Unauthorized", "jwt expired")
        );
    }
}
