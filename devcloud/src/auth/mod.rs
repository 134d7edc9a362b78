//! GoTrue (`/auth/v1`).

pub mod password;

use axum::Router;

use crate::state::SharedState;

pub fn router() -> Router<SharedState> {
    Router::new()
}
