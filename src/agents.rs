//! Cloud agents: the organization's list (cached for a minute) and a conversation turn with
//! one of them (`/functions/v1/agent-chat`).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    connection::Connection,
    error::{Error, Result},
    events::Event,
    rest::{pages, query, raw_rows, Request},
};

/// An agent row as `list` selects it (NOT NULL columns required).
#[derive(Deserialize)]
#[allow(dead_code)]
struct AgentRow {
    id: Uuid,
    name: String,
    slug: String,
    agent_type: String,
    description: Option<String>,
    status: String,
    avatar_url: Option<String>,
}

/// `agent-chat`'s answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AgentReply {
    content: String,
    message_id: Option<Uuid>,
    agent_name: Option<String>,
}

const TTL: Duration = Duration::from_secs(60);
/// The agent sees this many of the latest history messages.
pub const HISTORY_LIMIT: usize = 20;

#[derive(Default)]
struct AgentCache {
    /// (fetched at, for which user, the rows)
    entry: Mutex<Option<(Instant, String, Value)>>,
}

impl AgentCache {
    fn clear(&self) {
        *self.entry.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn get(&self, user: &str) -> Option<Value> {
        let entry = self.entry.lock().unwrap_or_else(|p| p.into_inner());
        match &*entry {
            Some((at, who, rows)) if who == user && at.elapsed() < TTL => Some(rows.clone()),
            _ => None,
        }
    }

    fn put(&self, user: &str, rows: Value) {
        *self.entry.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), user.to_string(), rows));
    }
}

/// The organization's agents and their cache (per user, dropped on logout).
pub struct Agents {
    conn: Arc<Connection>,
    cache: AgentCache,
}

impl Agents {
    pub fn new(conn: Arc<Connection>) -> Agents {
        Agents {
            conn,
            cache: AgentCache::default(),
        }
    }

    pub fn clear_cache(&self) {
        self.cache.clear();
    }

    /// The caller's organization's agents, ordered by name (then id), read page by page.
    pub async fn list(&self) -> Result<Value> {
        let cloud = &self.conn;
        let ctx = cloud.auth.context();
        let (Some(user), Some(org)) = (ctx.user_id(), ctx.org_id()) else {
            return Ok(json!([]));
        };
        if let Some(rows) = self.cache.get(user) {
            return Ok(rows);
        }
        let org = format!("eq.{org}");
        let listing = pages::Listing {
            path: "/rest/v1/cloud_agents",
            params: &[
                ("org_id", &org),
                (
                    "select",
                    "id,name,slug,agent_type,description,status,avatar_url",
                ),
                // The cloud's collation orders names; the id makes the order unique, so a
                // page continues exactly after the last row of the one before.
                ("order", "name.asc,id.asc"),
            ],
            what: "agents",
            after: |a: &AgentRow| {
                let name = pages::quoted(&a.name);
                Some((
                    "or",
                    format!("(name.gt.{name},and(name.eq.{name},id.gt.{}))", a.id),
                ))
            },
        };
        let rows = pages::read_all(&cloud.client, &listing, pages::PAGE, pages::MAX_ROWS).await?;
        let rows = raw_rows(rows);
        self.cache.put(user, rows.clone());
        Ok(rows)
    }

    /// One turn with an agent: `{ content, messageId, agentName }`. With a conversation id the
    /// cloud stores both messages there.
    pub async fn invoke(
        &self,
        slug: &str,
        message: &str,
        history: Value,
        conversation_id: Option<&str>,
    ) -> Result<Value> {
        let cloud = &self.conn;
        if slug.trim().is_empty() {
            return Err(Error::InvalidArgument("An agent slug is required".into()));
        }
        let conversation_id = conversation_id
            .map(|c| query::uuid("conversation id", c))
            .transpose()?;
        let history = match history {
            Value::Array(mut h) => {
                let skip = h.len().saturating_sub(HISTORY_LIMIT);
                Value::Array(h.drain(skip..).collect())
            }
            Value::Null => json!([]),
            _ => {
                return Err(Error::InvalidArgument(
                    "history must be an array of messages".into(),
                ))
            }
        };
        let body = json!({
            "agentSlug": slug,
            "conversationId": conversation_id,
            "userMessage": message,
            "messageHistory": history,
        });
        let req = Request::new(Method::POST, "/functions/v1/agent-chat")
            .json(body)
            .timeout(cloud.config.ai_timeout);
        let reply: AgentReply = cloud.client.send(&req).await?.json()?;
        let message_id = reply.message_id.map(|id| id.to_string());
        cloud.events.emit(Event::AgentInvoked {
            slug: slug.to_string(),
            agent_name: reply.agent_name.clone(),
            message_id: message_id.clone(),
        });
        Ok(
            json!({"content": reply.content, "messageId": message_id, "agentName": reply.agent_name}),
        )
    }
}
