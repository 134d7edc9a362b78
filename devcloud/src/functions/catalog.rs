//! `cloud-models` and `cloud-usage`: what the caller's organization may use and has used.

use axum::{response::IntoResponse, Json};
use chrono::{SecondsFormat, Utc};
use serde_json::json;

use super::{internal, tiers, usage, Call, FnResult};

/// `GET cloud-models` → `{models:[…]}` for the organization's tier.
pub async fn models(call: Call) -> FnResult {
    let org = match usage::org_of(&call.state.db, call.user).await {
        Ok(org) => org,
        Err(e) => return Err(internal(e)),
    };
    let tier = org.map(|o| o.tier).unwrap_or(tiers::TIERS[0]);
    Ok(Json(json!({"models": tiers::models_for(tier)})).into_response())
}

/// `GET cloud-usage` → today's tokens and requests against the tier's daily limit.
pub async fn usage(call: Call) -> FnResult {
    let org = match usage::org_of(&call.state.db, call.user).await {
        Ok(Some(org)) => org,
        Ok(None) => {
            return Err(super::error(
                axum::http::StatusCode::FORBIDDEN,
                "No organization",
            ))
        }
        Err(e) => return Err(internal(e)),
    };
    let today = match usage::today(&call.state.db, org.id).await {
        Ok(t) => t,
        Err(e) => return Err(internal(e)),
    };
    let (start, end) = usage::day_bounds(Utc::now());
    let iso = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    Ok(Json(json!({
        "today": {
            "tokens_used": today.tokens,
            "tokens_limit": org.tier.daily_tokens,
            "request_count": today.requests,
            "models_used": today.models,
        },
        "tier": org.tier.name,
        "subscription_status": org.subscription_status,
        "period": {"start": iso(start), "end": iso(end)},
    }))
    .into_response())
}
