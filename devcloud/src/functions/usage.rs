//! AI usage metering. This is the server's own bookkeeping (users cannot insert into
//! `ai_usage`), so it runs on a plain superuser connection; the organization is always the
//! caller's own.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::Pool;
use uuid::Uuid;

use super::tiers::{self, Tier};

pub struct Org {
    pub id: Uuid,
    pub tier: Tier,
    pub subscription_status: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Pg(#[from] tokio_postgres::Error),
}

/// The caller's organization: their first membership by `joined_at`.
pub async fn org_of(pool: &Pool, user: Uuid) -> Result<Option<Org>, UsageError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT o.id, o.subscription_tier, o.subscription_status FROM public.org_memberships m \
             JOIN public.organizations o ON o.id = m.org_id \
             WHERE m.user_id = $1 ORDER BY m.joined_at ASC, m.id ASC LIMIT 1",
            &[&user],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let tier: String = row.try_get(1)?;
    Ok(Some(Org {
        id: row.try_get(0)?,
        tier: tiers::tier(&tier),
        subscription_status: row.try_get(2)?,
    }))
}

/// Today's UTC day, `[start, end)`.
pub fn day_bounds(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(now);
    (start, start + Duration::days(1))
}

pub struct Today {
    pub tokens: i64,
    pub requests: i64,
    pub models: Vec<String>,
}

pub async fn today(pool: &Pool, org: Uuid) -> Result<Today, UsageError> {
    let (start, end) = day_bounds(Utc::now());
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT coalesce(sum(total_tokens), 0)::bigint, count(*), \
                    coalesce(array_agg(DISTINCT model ORDER BY model) FILTER (WHERE model IS NOT NULL), '{}') \
             FROM public.ai_usage WHERE org_id = $1 AND created_at >= $2 AND created_at < $3",
            &[&org, &start, &end],
        )
        .await?;
    Ok(Today {
        tokens: row.try_get(0)?,
        requests: row.try_get(1)?,
        models: row.try_get(2)?,
    })
}

#[derive(Debug, Clone)]
pub struct Record {
    pub org: Uuid,
    pub user: Uuid,
    pub workspace: Option<Uuid>,
    pub provider: String,
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

pub async fn record(pool: &Pool, r: &Record) -> Result<(), UsageError> {
    let client = pool.get().await?;
    let clamp = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    let total = clamp(r.prompt_tokens.saturating_add(r.completion_tokens));
    client
        .execute(
            "INSERT INTO public.ai_usage (org_id, user_id, workspace_id, provider, model, \
                                          prompt_tokens, completion_tokens, total_tokens) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &r.org,
                &r.user,
                &r.workspace,
                &r.provider,
                &r.model,
                &clamp(r.prompt_tokens),
                &clamp(r.completion_tokens),
                &total,
            ],
        )
        .await?;
    Ok(())
}

/// A workspace id from the request, kept only when it belongs to the organization.
pub async fn workspace_in_org(
    pool: &Pool,
    org: Uuid,
    workspace: Option<&str>,
) -> Result<Option<Uuid>, UsageError> {
    let Some(ws) = workspace.and_then(|w| w.parse::<Uuid>().ok()) else {
        return Ok(None);
    };
    let client = pool.get().await?;
    let found = client
        .query_opt(
            "SELECT 1 FROM public.workspaces WHERE id = $1 AND org_id = $2",
            &[&ws, &org],
        )
        .await?;
    Ok(found.map(|_| ws))
}

/// `{tokens_used_today, daily_limit, remaining}` as `ai-proxy` reports it.
pub fn cloud_usage_json(tier: Tier, used: i64) -> serde_json::Value {
    serde_json::json!({
        "tokens_used_today": used,
        "daily_limit": tier.daily_tokens,
        "remaining": tier.daily_tokens.map(|l| (l - used).max(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_is_utc() {
        let now = DateTime::parse_from_rfc3339("2024-03-05T23:59:59+00:00")
            .unwrap()
            .to_utc();
        let (s, e) = day_bounds(now);
        assert_eq!(s.to_rfc3339(), "2024-03-05T00:00:00+00:00");
        assert_eq!(e.to_rfc3339(), "2024-03-06T00:00:00+00:00");
    }

    #[test]
    fn remaining_never_negative() {
        let v = cloud_usage_json(tiers::tier("free"), 12_000);
        assert_eq!(v["remaining"], 0);
        assert!(cloud_usage_json(tiers::tier("enterprise"), 5)["daily_limit"].is_null());
    }
}
