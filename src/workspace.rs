//! Workspace rows: list, pull and push the shared state, with the fields and ordering of
//! cloud-api.md. Ids are validated before they reach a URL.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{
    error::{Error, Result},
    rest::{pages, query, raw_rows, Checked, Client, Request},
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

// The rows as `LIST_SELECT`, `find` and `STATE_SELECT` ask for them; the schema's NOT NULL
// columns are required, nullable ones may be null.
#[derive(Deserialize)]
#[allow(dead_code)]
struct ListRow {
    id: Uuid,
    name: String,
    slug: String,
    description: Option<String>,
    status: String,
    task_goal: Option<String>,
    current_step: Option<String>,
    last_active_at: Option<String>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct FoundRow {
    id: Uuid,
    name: String,
    updated_at: String,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct StateRow {
    task_goal: Option<String>,
    current_step: Option<String>,
    status: String,
    progress_data: Value,
    next_steps: Value,
    shared_memory: Value,
    updated_at: String,
    name: String,
    slug: String,
}

/// The organization's workspaces, most recently active first (never active last, ties by
/// id); `[]` without an organization. Read by id, page by page, and ordered here: activity
/// times change while a listing is read, and a row moving across a page boundary would be
/// read twice or not at all.
pub async fn list(client: &Client, org: Option<Uuid>) -> Result<Value> {
    let Some(org) = org else {
        return Ok(Value::Array(vec![]));
    };
    let org = format!("eq.{org}");
    let listing = pages::Listing {
        path: "/rest/v1/workspaces",
        params: &[
            ("org_id", &org),
            ("select", LIST_SELECT),
            ("order", "id.asc"),
        ],
        what: "workspaces",
        after: |w: &ListRow| Some(("id", format!("gt.{}", w.id))),
    };
    let rows = pages::read_all(client, &listing, pages::PAGE, pages::MAX_ROWS).await?;
    let mut keyed = rows
        .into_iter()
        .map(|r| {
            let at = match &r.typed.last_active_at {
                None => None,
                Some(t) => Some(chrono::DateTime::parse_from_rfc3339(t).map_err(|_| {
                    Error::unexpected_reply("/rest/v1/workspaces", "unreadable last_active_at")
                })?),
            };
            Ok((
                (
                    std::cmp::Reverse(at.is_some()),
                    std::cmp::Reverse(at),
                    r.typed.id,
                ),
                r,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    keyed.sort_by_key(|a| a.0);
    Ok(raw_rows(keyed.into_iter().map(|(_, r)| r).collect()))
}

/// `id`, `name` and `updated_at` of a workspace the user can see, or `None`.
pub async fn find(client: &Client, id: &str) -> Result<Option<Value>> {
    get_one::<FoundRow>(client, id, "id,name,updated_at").await
}

/// The state row, or `None` when the workspace is gone or not visible.
pub async fn pull(client: &Client, id: &str) -> Result<Option<Value>> {
    get_one::<StateRow>(client, id, STATE_SELECT).await
}

async fn get_one<T: serde::de::DeserializeOwned>(
    client: &Client,
    id: &str,
    select: &str,
) -> Result<Option<Value>> {
    let id = query::uuid("workspace id", id)?;
    let path = format!(
        "/rest/v1/workspaces?id={}&select={select}",
        query::eq(&id.to_string())
    );
    let reply = client.send(&Request::new(Method::GET, path)).await?;
    first::<T>(reply)
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
    client: &Client,
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
    let reply = client.send(&req).await?;
    first::<StateRow>(reply)
}

/// The one row asked for by id: `None` for `[]` (gone, not visible, or — for a conditional
/// PATCH — changed since); more than one row for a primary key is not an answer to trust.
fn first<T: serde::de::DeserializeOwned>(reply: crate::rest::Reply) -> Result<Option<Value>> {
    let invalid = reply.invalid("more than one row for one id".into());
    let mut rows: Vec<Checked<T>> = reply.json()?;
    if rows.len() > 1 {
        return Err(invalid);
    }
    Ok(rows.pop().map(|r| r.raw))
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
