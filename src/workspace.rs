//! Workspace rows: list, pull and push the shared state, with the fields and ordering of
//! cloud-api.md. Ids are validated before they reach a URL.

use reqwest::Method;
use serde_json::{Map, Value};

use crate::{
    cloud::Cloud,
    error::{Error, Result},
    rest::{query, Request},
};

const LIST_SELECT: &str = "id,name,slug,description,status,task_goal,current_step,last_active_at";
const STATE_SELECT: &str =
    "task_goal,current_step,status,progress_data,next_steps,shared_memory,updated_at,name,slug";
/// The columns a push may write; anything else in the host's state object is ignored.
const STATE_FIELDS: [&str; 6] = [
    "task_goal",
    "current_step",
    "status",
    "progress_data",
    "next_steps",
    "shared_memory",
];

/// The organization's workspaces, most recently active first.
pub async fn list(cloud: &Cloud) -> Result<Value> {
    let org = cloud
        .auth
        .context()
        .org
        .as_ref()
        .and_then(|o| o.get("id"))
        .and_then(Value::as_str)
        .map(String::from);
    let Some(org) = org else {
        return Ok(Value::Array(vec![]));
    };
    let org = query::uuid("organization id", &org)?;
    let path = format!(
        "/rest/v1/workspaces?org_id={}&select={LIST_SELECT}&order=last_active_at.desc.nullslast",
        query::eq(&org.to_string())
    );
    Ok(cloud
        .client
        .send(&Request::new(Method::GET, path))
        .await?
        .body)
}

/// `id`, `name` and `updated_at` of a workspace the user can see, or `None`.
pub async fn find(cloud: &Cloud, id: &str) -> Result<Option<Value>> {
    get_one(cloud, id, "id,name,updated_at").await
}

/// The state row, or `None` when the workspace is gone or not visible.
pub async fn pull(cloud: &Cloud, id: &str) -> Result<Option<Value>> {
    get_one(cloud, id, STATE_SELECT).await
}

async fn get_one(cloud: &Cloud, id: &str, select: &str) -> Result<Option<Value>> {
    let id = query::uuid("workspace id", id)?;
    let path = format!(
        "/rest/v1/workspaces?id={}&select={select}",
        query::eq(&id.to_string())
    );
    let body = cloud
        .client
        .send(&Request::new(Method::GET, path))
        .await?
        .body;
    Ok(first(body))
}

/// The PATCH body: the known state fields of `local`, plus `last_active_at`.
pub fn state_body(local: &Value, now: &str) -> Value {
    let mut out = Map::new();
    if let Some(obj) = local.as_object() {
        for k in STATE_FIELDS {
            if let Some(v) = obj.get(k) {
                out.insert(k.to_string(), v.clone());
            }
        }
    }
    out.insert("last_active_at".into(), Value::String(now.to_string()));
    Value::Object(out)
}

/// Writes the state. With `if_unchanged_since`, the row is only updated while its
/// `updated_at` is still that value (optimistic concurrency): `Ok(None)` means someone else
/// changed it since, and nothing was written.
pub async fn push(
    cloud: &Cloud,
    id: &str,
    local: &Value,
    if_unchanged_since: Option<&str>,
    now: &str,
) -> Result<Option<Value>> {
    let id = query::uuid("workspace id", id)?;
    let mut path = format!(
        "/rest/v1/workspaces?id={}&select={STATE_SELECT}",
        query::eq(&id.to_string())
    );
    if let Some(base) = if_unchanged_since {
        path.push_str("&updated_at=");
        path.push_str(&query::eq(base));
    }
    let req = Request::new(Method::PATCH, path)
        .json(state_body(local, now))
        .header("Prefer", "return=representation");
    let body = cloud.client.send(&req).await?.body;
    Ok(first(body))
}

fn first(body: Value) -> Option<Value> {
    match body {
        Value::Array(mut rows) if !rows.is_empty() => Some(rows.swap_remove(0)),
        _ => None,
    }
}

/// The row's `updated_at`, which the sync engine keeps as the last synced base.
pub fn updated_at(row: &Value) -> Option<String> {
    row.get("updated_at")
        .and_then(Value::as_str)
        .map(String::from)
}

/// Refuses anything but a JSON object as the host's workspace state.
pub fn check_state(local: &Value) -> Result<()> {
    if local.is_object() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "localState must be an object".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_state_fields_are_pushed() {
        let body = state_body(
            &json!({"task_goal": "g", "name": "renamed", "org_id": "x", "next_steps": []}),
            "now",
        );
        assert_eq!(
            body,
            json!({"task_goal": "g", "next_steps": [], "last_active_at": "now"})
        );
    }
}
