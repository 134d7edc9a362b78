//! `agent-chat`: a cloud agent of the caller's organization answers, deterministically from
//! its persona (no network). With a conversation, both the user's message and the reply are
//! stored, as the caller, so RLS decides whether they may post there.

use axum::{
    body::Body,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::{error, internal, json_body, tiers::ECHO_MODEL, Call, FnResult};
use crate::db::{begin_as, RequestInfo};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChatRequest {
    agent_slug: String,
    conversation_id: Option<String>,
    user_message: String,
    #[serde(default)]
    message_history: Vec<Value>,
}

#[derive(Debug, Clone)]
pub struct Agent {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub slug: String,
    pub agent_type: String,
    pub description: Option<String>,
}

/// The reply, chosen by persona: reviewers review, summarizers summarize, others echo.
pub fn reply(agent: &Agent, user_message: &str, history_len: usize) -> String {
    let message = user_message.trim();
    let persona = |needle: &str| agent.agent_type.contains(needle) || agent.slug.contains(needle);
    if persona("review") {
        format!(
            "{name} reviewed: \"{message}\"\n\
             1. Correctness: check the edge cases and the error paths.\n\
             2. Tests: cover the change with a test that fails without it.\n\
             3. Risk: keep the change small and reversible.",
            name = agent.name
        )
    } else if persona("summar") {
        format!(
            "{name} summary: {history_len} earlier message(s); the latest request is \"{message}\".",
            name = agent.name
        )
    } else {
        let about = agent
            .description
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        format!("{name}{about}: you said \"{message}\".", name = agent.name)
    }
}

pub async fn handle(call: Call, body: Body) -> FnResult {
    let req: ChatRequest = json_body(&call, body).await?;
    let conversation = match req.conversation_id.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match c.parse::<Uuid>() {
            Ok(id) => Some(id),
            Err(_) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "conversationId must be a UUID",
                ))
            }
        },
    };
    chat(&call, &req, conversation).await
}

async fn chat(call: &Call, req: &ChatRequest, conversation: Option<Uuid>) -> FnResult {
    let mut conn = call.state.db.get().await.map_err(internal)?;
    let info = RequestInfo {
        method: call.method.as_str(),
        path: call.uri.path(),
    };
    let tx = begin_as(&mut conn, &call.caller, false, &info)
        .await
        .map_err(internal)?;
    // RLS limits the agents to the caller's organizations; the first joined wins a tie.
    let row = tx
        .query_opt(
            "SELECT a.id, a.org_id, a.name, a.slug, a.agent_type, a.description, \
                    coalesce(a.model_config ->> 'model', $2) AS model \
             FROM public.cloud_agents a \
             JOIN public.org_memberships m ON m.org_id = a.org_id AND m.user_id = auth.uid() \
             WHERE a.slug = $1 AND a.status = 'active' \
             ORDER BY m.joined_at ASC LIMIT 1",
            &[&req.agent_slug, &ECHO_MODEL],
        )
        .await
        .map_err(internal)?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "Agent not found"))?;
    let agent = Agent {
        id: row.try_get(0).map_err(internal)?,
        org_id: row.try_get(1).map_err(internal)?,
        name: row.try_get(2).map_err(internal)?,
        slug: row.try_get(3).map_err(internal)?,
        agent_type: row.try_get(4).map_err(internal)?,
        description: row.try_get(5).map_err(internal)?,
    };
    let model: String = row.try_get(6).map_err(internal)?;
    let content = reply(&agent, &req.user_message, req.message_history.len());

    let Some(conversation) = conversation else {
        tx.commit().await.map_err(internal)?;
        return Ok(answer(&content, Uuid::new_v4(), &agent.name));
    };
    let org = tx
        .query_opt(
            "SELECT w.org_id FROM public.conversations c JOIN public.workspaces w ON w.id = c.workspace_id \
             WHERE c.id = $1",
            &[&conversation],
        )
        .await
        .map_err(internal)?
        .map(|r| r.try_get::<_, Uuid>(0))
        .transpose()
        .map_err(internal)?;
    if org != Some(agent.org_id) {
        return Err(error(StatusCode::NOT_FOUND, "Conversation not found"));
    }
    let denied = |e: tokio_postgres::Error| {
        if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
            error(
                StatusCode::FORBIDDEN,
                "Not allowed to post in this conversation",
            )
        } else {
            internal(e)
        }
    };
    tx.execute(
        "INSERT INTO public.messages (conversation_id, role, content, sender_user_id) VALUES ($1, 'user', $2, $3)",
        &[&conversation, &req.user_message, &call.user],
    )
    .await
    .map_err(denied)?;
    let reply_id: Uuid = tx
        .query_one(
            "INSERT INTO public.messages (conversation_id, role, content, sender_agent_id, model_used) \
             VALUES ($1, 'assistant', $2, $3, $4) RETURNING id",
            &[&conversation, &content, &agent.id, &model],
        )
        .await
        .map_err(denied)?
        .try_get(0)
        .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    Ok(answer(&content, reply_id, &agent.name))
}

fn answer(content: &str, message_id: Uuid, agent_name: &str) -> Response {
    Json(json!({"content": content, "messageId": message_id, "agentName": agent_name}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(slug: &str, agent_type: &str) -> Agent {
        Agent {
            id: Uuid::nil(),
            org_id: Uuid::nil(),
            name: "Bot".into(),
            slug: slug.into(),
            agent_type: agent_type.into(),
            description: Some("Helps".into()),
        }
    }

    #[test]
    fn personas() {
        let r = reply(&agent("code-reviewer", "reviewer"), " fix the bug ", 0);
        assert!(r.starts_with("Bot reviewed: \"fix the bug\"\n1. Correctness"));
        let s = reply(&agent("summarizer", "assistant"), "sum up", 3);
        assert_eq!(
            s,
            "Bot summary: 3 earlier message(s); the latest request is \"sum up\"."
        );
        let g = reply(&agent("globex-bot", "assistant"), "hi", 0);
        assert_eq!(g, "Bot (Helps): you said \"hi\".");
        // Deterministic.
        assert_eq!(
            reply(&agent("x", "y"), "a", 1),
            reply(&agent("x", "y"), "a", 1)
        );
    }
}
