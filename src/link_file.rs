//! `.cloud-link.json`: which cloud workspace a local working directory is linked to, and the
//! per-conversation sync state. The old JavaScript modules read and write the same file, so
//! every key we do not know is kept on rewrite, and files they wrote (no `version`, a
//! conversation mapped straight to its id) are read as they are.
//!
//! A write goes to a temporary file in the same directory that is synced and then renamed
//! over the old one: a crash leaves either the old or the new file, never a truncated one.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

pub const FILE_NAME: &str = ".cloud-link.json";

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The parsed file: the JSON object itself, so unknown keys survive a rewrite.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    map: Map<String, Value>,
}

/// The toggles of `syncConfig`; a missing key means the default (on, files off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConfig {
    pub auto_sync: bool,
    pub sync_conversations: bool,
    pub sync_workspace_state: bool,
    pub sync_files: bool,
}

impl Link {
    pub fn new(workspace_id: &str, name: &str, now: &str, sync_interval_ms: u32) -> Link {
        let v = json!({
            "version": 1,
            "cloudWorkspaceId": workspace_id,
            "cloudWorkspaceName": name,
            "linkedAt": now,
            "lastSyncAt": null,
            "conversations": {},
            "syncConfig": {
                "autoSync": true, "syncIntervalMs": sync_interval_ms, "syncConversations": true,
                "syncWorkspaceState": true, "syncFiles": false
            }
        });
        match v {
            Value::Object(map) => Link { map },
            _ => unreachable!("a json! object literal"),
        }
    }

    /// Parses the file's text. `Err(reason)` when it is not a link (not JSON, not an object,
    /// no workspace id, an id that is not a UUID).
    pub fn parse(text: &str) -> std::result::Result<Link, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(map) = value else {
            return Err("not a JSON object".into());
        };
        let link = Link { map };
        let id = link
            .workspace_id()
            .ok_or_else(|| "no cloudWorkspaceId".to_string())?;
        uuid::Uuid::parse_str(id).map_err(|_| "cloudWorkspaceId is not a UUID".to_string())?;
        Ok(link)
    }

    /// `cloudWorkspaceId`, or `workspaceId` in files written by early versions of the modules.
    pub fn workspace_id(&self) -> Option<&str> {
        ["cloudWorkspaceId", "workspaceId"]
            .iter()
            .find_map(|k| self.map.get(*k).and_then(Value::as_str))
    }

    pub fn workspace_name(&self) -> &str {
        ["cloudWorkspaceName", "workspaceName"]
            .iter()
            .find_map(|k| self.map.get(*k).and_then(Value::as_str))
            .unwrap_or("")
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.map.insert(key.to_string(), value);
    }

    pub fn sync_config(&self) -> SyncConfig {
        let cfg = self.map.get("syncConfig");
        let flag = |k: &str, default: bool| {
            cfg.and_then(|c| c.get(k))
                .and_then(Value::as_bool)
                .unwrap_or(default)
        };
        SyncConfig {
            auto_sync: flag("autoSync", true),
            sync_conversations: flag("syncConversations", true),
            sync_workspace_state: flag("syncWorkspaceState", true),
            sync_files: flag("syncFiles", false),
        }
    }

    /// The conversation entry for `cloud_conv_id`, if any local name maps to it.
    pub fn conversation(&self, cloud_conv_id: &str) -> Option<&Map<String, Value>> {
        let convs = self.map.get("conversations")?.as_object()?;
        convs
            .values()
            .filter_map(Value::as_object)
            .find(|e| e.get("cloudConvId").and_then(Value::as_str) == Some(cloud_conv_id))
    }

    /// The entry for `cloud_conv_id`, created under the id itself when no local name maps to
    /// it yet. Old-format entries (a bare id string) become objects here.
    pub fn conversation_mut(&mut self, cloud_conv_id: &str) -> &mut Map<String, Value> {
        let convs = self.conversations_mut();
        let key = convs
            .iter()
            .find(|(_, e)| match e {
                Value::Object(o) => {
                    o.get("cloudConvId").and_then(Value::as_str) == Some(cloud_conv_id)
                }
                Value::String(s) => s == cloud_conv_id,
                _ => false,
            })
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| cloud_conv_id.to_string());
        let entry = convs
            .entry(key)
            .or_insert_with(|| json!({ "cloudConvId": cloud_conv_id }));
        if !entry.is_object() {
            *entry = json!({ "cloudConvId": cloud_conv_id });
        }
        match entry {
            Value::Object(o) => o,
            _ => unreachable!("made an object above"),
        }
    }

    /// Maps a local conversation name to a cloud conversation, keeping its sync state when
    /// the entry already existed under another key.
    pub fn link_conversation(&mut self, local_name: &str, cloud_conv_id: &str) {
        let convs = self.conversations_mut();
        let existing = convs
            .iter()
            .find(|(_, e)| {
                e.get("cloudConvId").and_then(Value::as_str) == Some(cloud_conv_id)
                    || e.as_str() == Some(cloud_conv_id)
            })
            .map(|(k, _)| k.clone());
        let mut entry = existing
            .and_then(|k| convs.remove(&k))
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        entry["cloudConvId"] = json!(cloud_conv_id);
        convs.insert(local_name.to_string(), entry);
    }

    fn conversations_mut(&mut self) -> &mut Map<String, Value> {
        let convs = self.map.entry("conversations").or_insert_with(|| json!({}));
        if !convs.is_object() {
            *convs = json!({});
        }
        match convs {
            Value::Object(o) => o,
            _ => unreachable!("made an object above"),
        }
    }

    /// What `getLinkData()` returns: the file's object, with old bare-id conversation
    /// entries shown as `{cloudConvId}`.
    pub fn to_value(&self) -> Value {
        let mut map = self.map.clone();
        if let Some(Value::Object(convs)) = map.get_mut("conversations") {
            for e in convs.values_mut() {
                if let Value::String(id) = e {
                    *e = json!({ "cloudConvId": id.clone() });
                }
            }
        }
        Value::Object(map)
    }

    fn to_file_text(&self) -> String {
        let mut map = self.map.clone();
        map.entry("version").or_insert(json!(1));
        let mut text =
            serde_json::to_string_pretty(&Value::Object(map)).unwrap_or_else(|_| "{}".into());
        text.push('\n');
        text
    }
}

/// `Ok(None)` when there is no file; `Err(Error::LinkFile)` when there is one we cannot use.
pub fn read(dir: &Path) -> Result<Option<Link>> {
    let p = path(dir);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::LinkFile {
                path: p.display().to_string(),
                reason: e.to_string(),
            })
        }
    };
    Link::parse(&text)
        .map(Some)
        .map_err(|reason| Error::LinkFile {
            path: p.display().to_string(),
            reason,
        })
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `contents` to `target` atomically: a temporary sibling, synced, then renamed.
pub fn write_atomic(target: &Path, contents: &[u8]) -> Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file");
    let tmp = dir.join(format!(
        "{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let io = |e: std::io::Error| Error::Io(format!("cannot write {}: {e}", target.display()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io)
}

pub fn write(dir: &Path, link: &Link) -> Result<()> {
    write_atomic(&path(dir), link.to_file_text().as_bytes())
}

pub fn remove(dir: &Path) -> Result<()> {
    match fs::remove_file(path(dir)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(format!("cannot remove the link file: {e}"))),
    }
}

/// Removes temporary files that a crash left behind (`<name>.<pid>.<n>.tmp` beside the link
/// file and the outbox). Only old ones: a younger one may belong to a writer still running.
pub fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let old = std::time::Duration::from_secs(60);
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = (name.starts_with(".cloud-link.json.")
            || name.starts_with(".cloud-outbox.jsonl."))
            && name.ends_with(".tmp");
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > old);
        if ours && stale {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Moves an unreadable link file aside (never deleted: it may hold someone's state) before an
/// explicit re-link replaces it. Returns where it went.
pub fn set_aside(dir: &Path, now_millis: i64) -> Option<PathBuf> {
    let from = path(dir);
    let to = dir.join(format!("{FILE_NAME}.corrupt-{now_millis}"));
    fs::rename(&from, &to).ok().map(|_| to)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: &str = "bbbbbbbb-0000-4000-8000-000000000001";

    #[test]
    fn reads_the_documented_format_and_keeps_unknown_keys() {
        let text = format!(
            r#"{{"version":1,"cloudWorkspaceId":"{WS}","cloudWorkspaceName":"w","linkedAt":"t",
            "lastSyncAt":null,"conversations":{{"chat":{{"cloudConvId":"c1","lastSyncAt":"t","extra":1}}}},
            "syncConfig":{{"autoSync":false}},"hostKey":{{"a":[1,2]}}}}"#
        );
        let mut link = Link::parse(&text).unwrap();
        assert_eq!(link.workspace_id(), Some(WS));
        assert!(!link.sync_config().auto_sync);
        assert!(link.sync_config().sync_conversations);
        link.conversation_mut("c1")
            .insert("lastCloudMessageAt".into(), json!("x"));
        let back: Value = serde_json::from_str(&link.to_file_text()).unwrap();
        assert_eq!(back["hostKey"], json!({"a":[1,2]}));
        assert_eq!(back["conversations"]["chat"]["extra"], json!(1));
        assert_eq!(
            back["conversations"]["chat"]["lastCloudMessageAt"],
            json!("x")
        );
    }

    #[test]
    fn reads_files_of_the_old_modules() {
        let text =
            format!(r#"{{"workspaceId":"{WS}","linkedAt":"t","conversations":{{"chat":"c1"}}}}"#);
        let mut link = Link::parse(&text).unwrap();
        assert_eq!(link.workspace_id(), Some(WS));
        assert_eq!(link.workspace_name(), "");
        assert_eq!(
            link.to_value()["conversations"]["chat"],
            json!({"cloudConvId":"c1"})
        );
        link.conversation_mut("c1").insert("n".into(), json!(1));
        assert_eq!(
            link.to_value()["conversations"]["chat"],
            json!({"cloudConvId":"c1","n":1})
        );
    }

    #[test]
    fn corrupt_files_are_refused() {
        for bad in [
            "",
            "{",
            "[]",
            "{\"cloudWorkspaceId\":1}",
            "{\"cloudWorkspaceId\":\"x&org_id=neq.0\"}",
        ] {
            assert!(Link::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn link_conversation_moves_state_to_the_local_name() {
        let mut link = Link::new(WS, "w", "t", 30000);
        link.conversation_mut("c1")
            .insert("pushedCount".into(), json!(3));
        link.link_conversation("chat", "c1");
        let v = link.to_value();
        assert_eq!(v["conversations"]["chat"]["pushedCount"], json!(3));
        assert!(v["conversations"].get("c1").is_none());
        assert_eq!(link.conversation("c1").unwrap()["pushedCount"], json!(3));
    }

    #[test]
    fn writes_atomically_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("oboto-link-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(read(&dir).unwrap(), None);
        let link = Link::new(WS, "w", "t", 30000);
        write(&dir, &link).unwrap();
        assert_eq!(read(&dir).unwrap(), Some(link));
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        fs::write(path(&dir), "{oops").unwrap();
        assert_eq!(read(&dir).unwrap_err().code(), "LINK_FILE_CORRUPT");
        remove(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
