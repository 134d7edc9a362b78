//! Who the logged-in user is to Oboto: the profile row and the first organization
//! membership with its organization embedded.

use serde::{Deserialize, Serialize};
use serde_json::Value;
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
    pub fn snapshot(&self, logged_in: bool) -> Snapshot {
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(String::from);
        Snapshot {
            logged_in,
            user: self.user.as_ref().map(|u| SnapshotUser {
                id: text(u, "id").unwrap_or_default(),
                email: text(u, "email"),
            }),
            profile: self.profile.as_ref().map(|p| SnapshotProfile {
                display_name: text(p, "display_name"),
                avatar_url: text(p, "avatar_url"),
            }),
            org: self.org.as_ref().map(|o| SnapshotOrg {
                id: text(o, "id").unwrap_or_default(),
                name: text(o, "name").unwrap_or_default(),
                slug: text(o, "slug").unwrap_or_default(),
                tier: text(o, "subscription_tier").unwrap_or_default(),
            }),
            role: self.role().map(String::from),
        }
    }
}

/// Who is logged in, as the status and the UI show it: never a token.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub logged_in: bool,
    pub user: Option<SnapshotUser>,
    pub profile: Option<SnapshotProfile>,
    pub org: Option<SnapshotOrg>,
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotUser {
    pub id: String,
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotProfile {
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotOrg {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub tier: String,
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
    use serde_json::json;

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
        let s = serde_json::to_value(ctx.snapshot(true)).unwrap();
        assert_eq!(
            s,
            json!({"loggedIn": true, "user": {"id": "u1", "email": "a@b.c"},
                   "profile": {"displayName": "Alice", "avatarUrl": null},
                   "org": {"id": "o1", "name": "Acme", "slug": "acme", "tier": "pro"}, "role": "owner"})
        );
        let empty = serde_json::to_value(UserContext::default().snapshot(false)).unwrap();
        assert_eq!(
            empty,
            json!({"loggedIn": false, "user": null, "profile": null, "org": null, "role": null})
        );
    }
}
