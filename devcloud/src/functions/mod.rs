//! Edge Functions (`/functions/v1/{name}`).

use axum::Router;

use crate::state::SharedState;

pub fn router() -> Router<SharedState> {
    Router::new()
}
