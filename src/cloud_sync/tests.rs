//! The host-call rules, without a server: nothing here may need one (the base URL is a port
//! no one listens on, so a call that did reach out would fail with `NETWORK_ERROR`).

use std::{sync::Arc, time::Duration};

use serde_json::json;

use super::*;
use crate::config::ConfigInput;

fn core() -> Arc<CloudSync> {
    Arc::new(CloudSync::new(Arc::new(Events::default()), None))
}

fn configured() -> Arc<CloudSync> {
    let core = core();
    let input = ConfigInput {
        base_url: "http://127.0.0.1:9".into(),
        anon_key: "anon".into(),
        token_store: Some("memory".into()),
        ..ConfigInput::default()
    };
    core.initialize(Some(input)).expect("a valid configuration");
    core
}

#[tokio::test]
async fn logged_out_reads_answer_nothing_and_actions_reject() {
    for core in [core(), configured()] {
        assert_eq!(core.list_workspaces().await.ok(), Some(json!([])));
        assert_eq!(core.list_conversations().await.ok(), Some(json!([])));
        assert_eq!(core.list_agents().await.ok(), Some(json!([])));
        assert_eq!(core.list_models().await.ok(), Some(json!([])));
        assert_eq!(core.usage().await.ok(), Some(json!(null)));
        assert_eq!(core.pull_workspace_state().await.ok(), Some(json!(null)));
        assert_eq!(
            core.push_workspace_state(json!({})).await.ok(),
            Some(json!(null))
        );
        let conv = "00000000-0000-4000-8000-000000000001";
        assert_eq!(
            core.push_conversation(conv, &json!([])).await.ok(),
            Some(Default::default())
        );
        assert_eq!(
            core.pull_conversation(conv, None).await.ok(),
            Some(Default::default())
        );
        assert!(core.link_workspace(conv, None).await.is_ok());
        assert!(core.unlink_workspace().is_ok());
        assert!(core.broadcast("typing".into(), json!({})).is_ok());
        assert!(core.presence().is_empty());
        assert!(!core.has_session());
        for e in [
            core.invoke_agent("a", "hi", None, None).await.err(),
            core.ai_request("p", "m", json!([]), None).await.err(),
            core.create_conversation("n", None).await.err(),
        ] {
            let code = e.expect("rejected").code();
            assert!(
                code == "NOT_LOGGED_IN" || code == "NOT_INITIALIZED",
                "{code}"
            );
        }
    }
}

#[tokio::test]
async fn after_destroy_every_call_rejects_destroyed_but_try_auto_login() {
    let core = configured();
    core.destroy();
    let destroyed = |r: Result<serde_json::Value>| r.err().map(|e| e.code());
    let d = Some("DESTROYED".to_string());
    assert_eq!(destroyed(core.list_workspaces().await), d);
    assert_eq!(destroyed(core.list_agents().await), d);
    assert_eq!(destroyed(core.usage().await), d);
    assert_eq!(destroyed(core.push_workspace_state(json!({})).await), d);
    assert_eq!(core.logout().await.err().map(|e| e.code()), d);
    assert_eq!(
        core.broadcast("e".into(), json!({}))
            .err()
            .map(|e| e.code()),
        d
    );
    assert!(!core.try_auto_login().await);
    assert!(core.presence().is_empty());
    assert!(!core.is_configured());
}

#[tokio::test]
async fn logout_when_unconfigured_is_a_no_op() {
    assert!(core().logout().await.is_ok());
}

#[tokio::test]
async fn destroy_fails_a_pending_call_at_once() {
    let core = core();
    let call = {
        let core = core.clone();
        tokio::spawn(async move {
            core.until_destroyed(std::future::pending::<Result<()>>())
                .await
        })
    };
    tokio::task::yield_now().await;
    core.destroy();
    let outcome = tokio::time::timeout(Duration::from_secs(1), call)
        .await
        .expect("settled at once")
        .expect("joined");
    assert!(matches!(outcome, Err(Error::Destroyed)));
}

#[tokio::test]
async fn a_call_that_is_ready_settles_its_own_way_even_after_destroy() {
    let core = core();
    core.destroy();
    assert_eq!(core.until_destroyed(async { Ok(7) }).await.ok(), Some(7));
    assert!(matches!(
        core.until_destroyed(std::future::pending::<Result<()>>())
            .await,
        Err(Error::Destroyed)
    ));
}
