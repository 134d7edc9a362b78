//! Who the logged-in user is to Oboto: the profile row and the first organization
//! membership with its organization embedded.

use serde_json::{json, Map, Value};

use crate::{
    error::Result,
    rest::{query, Http},
};

#[derive(Debug, Clone, Default)]
pub struct UserContext {
    pub user: Option<Value>,
    pub profile: Option<Value>,
    /// The membership row without its embedded organization.
    pub membership: Option<Value>,
    pub org: Option<Value>,
}

impl UserContext {
    /// Fetches profile and membership concurrently with the given access token.
    pub async fn fetch(
        http: &Http,
        token: &str,
        user: Value,
    ) -> (UserContext, Option<crate::error::Error>) {
        // Even the server's own answer goes into a URL only as a checked UUID.
        let uid = match user
            .get("id")
            .and_then(Value::as_str)
            .map(|id| query::uuid("user id", id))
        {
            Some(Ok(uid)) => uid,
            other => {
                let failure = match other {
                    Some(Err(e)) => Some(e),
                    _ => None,
                };
                let ctx = UserContext {
                    user: Some(user),
                    ..Default::default()
                };
                return (ctx, failure);
            }
        };
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
            get_first(http, token, &profile_path),
            get_first(http, token, &membership_path)
        );
        let mut ctx = UserContext {
            user: Some(user),
            ..Default::default()
        };
        let mut failure = None;
        match profile {
            Ok(p) => ctx.profile = p,
            Err(e) => failure = Some(e),
        }
        match membership {
            Ok(Some(Value::Object(mut m))) => {
                ctx.org = m.remove("organizations").filter(|o| o.is_object());
                ctx.membership = Some(Value::Object(m));
            }
            Ok(_) => {}
            Err(e) => failure = failure.or(Some(e)),
        }
        (ctx, failure)
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

async fn get_first(http: &Http, token: &str, path: &str) -> Result<Option<Value>> {
    let call = crate::rest::http::Call {
        method: reqwest::Method::GET,
        path,
        body: None,
        headers: &[],
        bearer: Some(token),
        timeout: None,
    };
    let reply = http.send(&call).await?;
    Ok(match reply.body {
        Value::Array(mut rows) if !rows.is_empty() => Some(rows.swap_remove(0)),
        _ => None,
    })
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
