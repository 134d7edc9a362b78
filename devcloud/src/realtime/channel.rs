//! The `phx_join` payload (Realtime's `channels/payloads/*.ex`) and the postgres_changes
//! bindings it asks for. Parsing is lenient as Realtime's is: booleans may be strings, an
//! invalid config is taken as the defaults.

use serde_json::{json, Map, Value};

use super::filter::{self, Filter, FilterError};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinConfig {
    pub broadcast_ack: bool,
    pub broadcast_self: bool,
    /// `broadcast.replication_ready`: the client waits for "Replication connection established".
    pub replication_ready: bool,
    pub presence_key: String,
    pub presence_enabled: bool,
    pub private: bool,
    /// The entries as the client sent them, echoed in the reply in this order.
    pub postgres_changes: Vec<Map<String, Value>>,
    /// `access_token` (or the legacy `user_token`).
    pub access_token: Option<String>,
}

fn boolish(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

impl JoinConfig {
    pub fn parse(payload: &Value) -> JoinConfig {
        let config = payload.get("config").cloned().unwrap_or(Value::Null);
        let broadcast = config.get("broadcast");
        let presence = config.get("presence");
        let token = ["access_token", "user_token"]
            .iter()
            .find_map(|k| payload.get(*k).and_then(Value::as_str))
            .map(str::to_string);
        JoinConfig {
            broadcast_ack: boolish(broadcast.and_then(|b| b.get("ack"))),
            broadcast_self: boolish(broadcast.and_then(|b| b.get("self"))),
            replication_ready: boolish(broadcast.and_then(|b| b.get("replication_ready"))),
            presence_key: presence
                .and_then(|p| p.get("key"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            presence_enabled: boolish(presence.and_then(|p| p.get("enabled"))),
            private: boolish(config.get("private")),
            postgres_changes: config
                .get("postgres_changes")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|e| e.as_object().cloned()).collect())
                .unwrap_or_default(),
            access_token: token,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    All,
    Insert,
    Update,
    Delete,
}

impl EventKind {
    pub fn accepts(self, change_type: &str) -> bool {
        match self {
            EventKind::All => true,
            EventKind::Insert => change_type == "INSERT",
            EventKind::Update => change_type == "UPDATE",
            EventKind::Delete => change_type == "DELETE",
        }
    }
}

/// One postgres_changes entry, ready to match changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub id: i64,
    pub event: EventKind,
    pub schema: String,
    /// `*` for every table of the schema.
    pub table: String,
    pub filters: Vec<Filter>,
}

impl Binding {
    /// `event` `*|INSERT|UPDATE|DELETE` (anything else means `*`); schema only → table `*`;
    /// table only → schema `public`.
    pub fn parse(entry: &Map<String, Value>) -> Result<Binding, FilterError> {
        let text = |k: &str| entry.get(k).and_then(Value::as_str).unwrap_or("");
        let event = match text("event").to_ascii_uppercase().as_str() {
            "INSERT" => EventKind::Insert,
            "UPDATE" => EventKind::Update,
            "DELETE" => EventKind::Delete,
            _ => EventKind::All,
        };
        let schema = match text("schema") {
            "" => "public",
            s => s,
        };
        let table = match text("table") {
            "" => "*",
            t => t,
        };
        Ok(Binding {
            id: binding_id(entry),
            event,
            schema: schema.to_string(),
            table: table.to_string(),
            filters: filter::parse(text("filter"))?,
        })
    }

    pub fn accepts(&self, schema: &str, table: &str, change_type: &str) -> bool {
        self.event.accepts(change_type)
            && self.schema == schema
            && (self.table == "*" || self.table == table)
    }
}

/// A stable integer id for an entry (Realtime uses `:erlang.phash2(params)`, a value below
/// 2^27): FNV-1a over the entry's canonical JSON, so equal entries get equal ids.
pub fn binding_id(entry: &Map<String, Value>) -> i64 {
    // Sorted keys: the text is canonical whatever order the client sent.
    let sorted: std::collections::BTreeMap<&String, &Value> = entry.iter().collect();
    let text = serde_json::to_string(&sorted).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i64::from(h & 0x07ff_ffff)
}

/// The ok reply's response: the entries echoed in order, each with its id.
pub fn join_response(config: &JoinConfig) -> Value {
    let entries: Vec<Value> = config
        .postgres_changes
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.insert("id".into(), json!(binding_id(&e)));
            Value::Object(e)
        })
        .collect();
    json!({ "postgres_changes": entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_join_realtime_js_sends() {
        let p = json!({"config":{"broadcast":{"ack":false,"self":"true"},"presence":{"key":"u1","enabled":true},
            "postgres_changes":[{"event":"INSERT","schema":"public","table":"todos","filter":"id=eq.1"}],"private":false},
            "access_token":"tok"});
        let c = JoinConfig::parse(&p);
        assert!(!c.broadcast_ack && c.broadcast_self && c.presence_enabled && !c.private);
        assert_eq!(c.presence_key, "u1");
        assert_eq!(c.access_token.as_deref(), Some("tok"));
        let reply = join_response(&c);
        let e = &reply["postgres_changes"][0];
        assert_eq!(e["table"], "todos");
        assert_eq!(e["filter"], "id=eq.1");
        assert!(e["id"].is_i64());
        let b = Binding::parse(&c.postgres_changes[0]).unwrap();
        assert_eq!(b.id, e["id"].as_i64().unwrap());
        assert!(b.accepts("public", "todos", "INSERT"));
        assert!(!b.accepts("public", "todos", "UPDATE"));
        assert!(!b.accepts("public", "other", "INSERT"));
    }

    #[test]
    fn defaults_and_wildcards() {
        let c = JoinConfig::parse(&json!({}));
        assert_eq!(c, JoinConfig::default());
        assert_eq!(join_response(&c), json!({"postgres_changes": []}));
        let b =
            Binding::parse(json!({"event":"whatever","table":"t"}).as_object().unwrap()).unwrap();
        assert_eq!((b.event, b.schema.as_str()), (EventKind::All, "public"));
        let b =
            Binding::parse(json!({"event":"*","schema":"public"}).as_object().unwrap()).unwrap();
        assert!(b.accepts("public", "anything", "DELETE"));
        assert!(Binding::parse(json!({"filter":"bad"}).as_object().unwrap()).is_err());
    }

    #[test]
    fn ids_are_stable_and_bounded() {
        let a = json!({"event":"*","schema":"public","table":"messages"});
        let b = json!({"table":"messages","schema":"public","event":"*"});
        let id = binding_id(a.as_object().unwrap());
        assert_eq!(id, binding_id(b.as_object().unwrap()));
        assert!((0..(1 << 27)).contains(&id));
        let c = json!({"event":"INSERT","schema":"public","table":"messages"});
        assert_ne!(id, binding_id(c.as_object().unwrap()));
    }
}
