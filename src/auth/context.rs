//! Who the logged-in user is to Oboto: the profile row and the first organization
//! membership with its organization embedded.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::{
    error::{Error, Result},
    rest::{http::Call, query, Checked, Http},
};

#[derive(Debug, Clone, Default)]
pub struct UserContext {
    pub user: Option<Value>,
    pub profile: Option<Value>,
    /// The membership row without its embedded organization.
    pub membership: Option<Value>,
    pub org: Option<Value>,
}

// The rows as cloud-api.md selects them; kept whole (`cloudSync.auth.*` hands them on), but
// only once the columns the client reads have the schema's types.
#[derive(Deserialize)]
#[allow(dead_code)]
struct ProfileRow {
    id: Uuid,
    display_name: Option<String>,
    avatar_url: Option<String>,
}

#[derive(Deserialize)]
struct MembershipRow {
    org_id: Uuid,
    #[allow(dead_code)]
    role: String,
    /// Required: a membership whose organization did not come along is a half answer.
    organizations: Checked<OrgRow>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct OrgRow {
    id: Uuid,
    name: String,
    slug: String,
    subscription_tier: String,
}

impl UserContext {
    /// Fetches profile and membership concurrently with the given access token. All or
    /// nothing: a context with a user but a missing organization would look like "in no
    /// organization" and stay so, so any failure is returned instead.
    pub async fn fetch(http: &Http, token: &str, user: Value, uid: Uuid) -> Result<UserContext> {
        let profile_path = query::build(
            "/rest/v1/profiles",
            &[("id", &format!("eq.{uid}")), ("select", "*")],
        );
        let membership_path = query::build(
            "/rest/v1/org_memberships",
            &[
                ("user_id", &format!("eq.{uid}")),
                ("select", "org_id,role,organizations(*)"),
                ("order", "joined_at.asc"),
                ("limit", "1"),
            ],
        );
        let (profile, membership) = tokio::join!(
            get_first::<ProfileRow>(http, token, &profile_path),
            get_first::<MembershipRow>(http, token, &membership_path)
        );
        let profile = profile?;
        let mut ctx = UserContext {
            user: Some(user),
            profile: profile.map(|(p, _)| p.raw),
            ..Default::default()
        };
        if let Some((m, url)) = membership? {
            if m.typed.organizations.typed.id != m.typed.org_id {
                return Err(Error::InvalidResponse {
                    url,
                    status: 200,
                    reason: "the membership's organization is another one".into(),
                });
            }
            let mut raw = m.raw;
            if let Value::Object(o) = &mut raw {
                o.remove("organizations");
            }
            ctx.membership = Some(raw);
            ctx.org = Some(m.typed.organizations.raw);
        }
        Ok(ctx)
    }

    /// The organization's id (checked to be a UUID when the context was fetched).
    pub fn org_id(&self) -> Option<Uuid> {
        self.org.as_ref()?.get("id")?.as_str()?.parse().ok()
    }

    pub fn user_id(&self) -> Option<&str> {
        self.user.as_ref()?.get("id")?.as_str()
    }

    pub fn role(&self) -> Option<&str> {
        self.membership.as_ref()?.get("role")?.as_str()
    }

    /// The auth part of `getStatus()` (also the `cloud:auth:logged-in` payload).
    pub fn snapshot(&self, logged_in: bool) -> Map<String, Value> {
        let pick = |v: &Option<Value>, f: &dyn Fn(&Value) -> Value| {
            v.as_ref().map(f).unwrap_or(Value::Null)
        };
        let field = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
        let mut m = Map::new();
        m.insert("loggedIn".into(), Value::Bool(logged_in));
        m.insert(
            "user".into(),
            pick(
                &self.user,
                &|u| json!({"id": field(u, "id"), "email": field(u, "email")}),
            ),
        );
        m.insert(
            "profile".into(),
            pick(&self.profile, &|p| json!({"displayName": field(p, "display_name"), "avatarUrl": field(p, "avatar_url")})),
        );
        m.insert(
            "org".into(),
            pick(&self.org, &|o| {
                json!({"id": field(o, "id"), "name": field(o, "name"), "slug": field(o, "slug"), "tier": field(o, "subscription_tier")})
            }),
        );
        m.insert(
            "role".into(),
            self.role()
                .map(|r| Value::String(r.into()))
                .unwrap_or(Value::Null),
        );
        m
    }
}

/// The first row of a query asking for at most one, with the URL for errors about it.
async fn get_first<T: serde::de::DeserializeOwned>(
    http: &Http,
    token: &str,
    path: &str,
) -> Result<Option<(Checked<T>, String)>> {
    let call = Call {
        method: reqwest::Method::GET,
        path,
        body: None,
        headers: &[],
        bearer: Some(token),
        timeout: None,
    };
    let reply = http.send(&call).await?;
    let url = reply.url.clone();
    let rows: Vec<Checked<T>> = reply.json()?;
    Ok(rows.into_iter().next().map(|r| (r, url)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_has_the_status_shape() {
        let ctx = UserContext {
            user: Some(json!({"id": "u1", "email": "a@b.c", "app_metadata": {}})),
            profile: Some(json!({"id": "u1", "display_name": "Alice", "avatar_url": null})),
            membership: Some(json!({"org_id": "o1", "role": "owner"})),
            org: Some(
                json!({"id": "o1", "name": "Acme", "slug": "acme", "subscription_tier": "pro"}),
            ),
        };
        let s = Value::Object(ctx.snapshot(true));
        assert_eq!(
            s,
            json!({"loggedIn": true, "user": {"id": "u1", "email": "a@b.c"},
                   "profile": {"displayName": "Alice", "avatarUrl": null},
                   "org": {"id": "o1", "name": "Acme", "slug": "acme", "tier": "pro"}, "role": "owner"})
        );
        let empty = Value::Object(UserContext::default().snapshot(false));
        assert_eq!(
            empty,
            json!({"loggedIn": false, "user": null, "profile": null, "org": null, "role": null})
        );
    }
}
