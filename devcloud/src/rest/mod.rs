//! PostgREST (`/rest/v1`).

use axum::Router;
use deadpool_postgres::Pool;

use crate::state::SharedState;

/// The schema cache: tables, columns and foreign keys of the exposed schema.
pub struct RestState {}

impl RestState {
    pub async fn load(_pool: &Pool) -> Result<RestState, crate::db::DbError> {
        Ok(RestState {})
    }
}

pub fn router() -> Router<SharedState> {
    Router::new()
}
