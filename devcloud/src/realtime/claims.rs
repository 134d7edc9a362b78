//! Which JWT claims the database's SQL can read, so that subscribers whose claims differ only
//! in what no policy can see (a session id, `iat`, `exp`) share one RLS evaluation: a hundred
//! sessions of two users cost two policy checks per batch, not a hundred.
//!
//! The answer comes from the catalog, read conservatively: the claims reach SQL through
//! `request.jwt.claims`, read whole by a function such as `auth.jwt()`; every other use of
//! such a function must pick a literal top-level key (`auth.jwt() ->> 'sub'`). Anything this
//! reading does not understand (a policy reading the setting itself, a claims function used
//! whole, a `current_setting` of a computed name) means every claim counts, which is always
//! correct.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::db::DbError;

/// The claims an RLS decision can depend on (besides the role, which is always part of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClaimsRead {
    /// Unknown: the whole claims set is the identity.
    #[default]
    All,
    Keys(BTreeSet<String>),
}

impl ClaimsRead {
    /// What subscribers must agree on to share an RLS evaluation. Claims that are not a
    /// JSON object stay whole.
    pub fn identity(&self, claims: &str) -> String {
        let ClaimsRead::Keys(keys) = self else {
            return claims.to_string();
        };
        match serde_json::from_str::<Map<String, Value>>(claims) {
            Ok(all) => {
                let kept: std::collections::BTreeMap<&String, &Value> =
                    all.iter().filter(|(k, _)| keys.contains(*k)).collect();
                serde_json::to_string(&kept).unwrap_or_else(|_| claims.to_string())
            }
            Err(_) => claims.to_string(),
        }
    }
}

/// One SQL text the server's RLS checks may run: a function body or a policy expression.
pub struct Source {
    pub is_function: bool,
    /// The function's name without schema (`jwt`), empty for a policy.
    pub name: String,
    pub text: String,
}

const SETTING: &str = "request.jwt.claims";

/// The analysis itself, over every non-catalog function and every policy. SQL keywords,
/// unquoted names and setting names are case-insensitive, so everything but a key is matched
/// on a lowercase copy (ASCII lowering keeps byte offsets, so keys are cut from the original).
pub fn analyze(sources: &[Source]) -> ClaimsRead {
    let lowered: Vec<String> = sources
        .iter()
        .map(|s| s.text.to_ascii_lowercase())
        .collect();
    // Functions that hand out the whole claims object (auth.jwt()).
    let mut readers = Vec::new();
    for (s, lower) in sources.iter().zip(&lowered) {
        if has_dynamic_setting(lower) {
            return ClaimsRead::All;
        }
        if !lower.contains("request.jwt") {
            continue;
        }
        let whole = lower.contains(&format!("'{SETTING}'"))
            && !lower.contains("->")
            && lower.matches("request.jwt").count() == 1;
        if !(s.is_function && whole && !s.name.is_empty()) {
            return ClaimsRead::All;
        }
        readers.push(s.name.to_ascii_lowercase());
    }
    let mut keys = BTreeSet::from(["role".to_string()]);
    for (s, lower) in sources.iter().zip(&lowered) {
        if lower.contains("request.jwt") {
            continue;
        }
        for reader in &readers {
            match literal_keys(&s.text, lower, reader) {
                Some(found) => keys.extend(found),
                None => return ClaimsRead::All,
            }
        }
    }
    ClaimsRead::Keys(keys)
}

/// The literal keys picked from every call of `reader()` in `text` (`lower` is its lowercase
/// copy), or `None` when a call is used otherwise.
fn literal_keys(text: &str, lower: &str, reader: &str) -> Option<Vec<String>> {
    let mut keys = Vec::new();
    let mut at = 0;
    while let Some(found) = lower[at..].find(reader) {
        let start = at + found;
        at = start + reader.len();
        let before = lower[..start].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        // A quoted name (`auth."jwt"()`) is the same call.
        let rest = lower[at..].strip_prefix('"').unwrap_or(&lower[at..]);
        let rest = rest.trim_start();
        let Some(rest) = rest.strip_prefix('(') else {
            // The name, not a call (say, a column called `jwt`): harmless only if it is not
            // followed by `(` at all.
            continue;
        };
        let rest = rest.trim_start().strip_prefix(')')?.trim_start();
        let rest = rest
            .strip_prefix("->>")
            .or_else(|| rest.strip_prefix("->"))?
            .trim_start();
        let rest = rest.strip_prefix('\'')?;
        let end = rest.find('\'')?;
        let offset = text.len() - rest.len();
        keys.push(text[offset..offset + end].to_string());
    }
    Some(keys)
}

/// `current_setting(` with anything but one string literal as the name (`lower`: lowercase).
fn has_dynamic_setting(lower: &str) -> bool {
    lower.match_indices("current_setting").any(|(i, m)| {
        let rest = lower[i + m.len()..].trim_start();
        let Some(arg) = rest.strip_prefix('(') else {
            return false;
        };
        let literal_name = arg
            .trim_start()
            .strip_prefix('\'')
            .and_then(|a| a.find('\'').map(|end| a[end + 1..].trim_start()))
            .is_some_and(|after| after.starts_with(',') || after.starts_with(')'));
        !literal_name
    })
}

/// Reads the sources from the catalog and analyzes them.
pub async fn load(pool: &deadpool_postgres::Pool) -> Result<ClaimsRead, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT true, p.proname::text, p.prosrc FROM pg_proc p
               JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.prosrc IS NOT NULL
             UNION ALL
             SELECT false, '', e FROM pg_policy p,
                    LATERAL unnest(ARRAY[pg_get_expr(p.polqual, p.polrelid),
                                         pg_get_expr(p.polwithcheck, p.polrelid)]) e
              WHERE e IS NOT NULL",
            &[],
        )
        .await?;
    let sources: Vec<Source> = rows
        .iter()
        .map(|r| Source {
            is_function: r.get(0),
            name: r.get(1),
            text: r.get(2),
        })
        .collect();
    Ok(analyze(&sources))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(name: &str, text: &str) -> Source {
        Source {
            is_function: true,
            name: name.into(),
            text: text.into(),
        }
    }
    fn policy(text: &str) -> Source {
        Source {
            is_function: false,
            name: String::new(),
            text: text.into(),
        }
    }
    fn jwt() -> Source {
        function(
            "jwt",
            "SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb",
        )
    }
    fn keys(k: &[&str]) -> ClaimsRead {
        ClaimsRead::Keys(k.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn literal_keys_of_the_claims_function_are_what_counts() {
        let sources = [
            jwt(),
            function("uid", "SELECT nullif(auth.jwt() ->> 'sub', '')::uuid"),
            function("email", "SELECT nullif(auth.JWT()->>'email', '')"),
            policy("(org_id = (auth.jwt() -> 'app_metadata' ->> 'org')::uuid)"),
            policy("(user_id = auth.uid())"),
        ];
        assert_eq!(
            analyze(&sources),
            keys(&["app_metadata", "email", "role", "sub"])
        );
        assert_eq!(analyze(&[]), keys(&["role"]));
    }

    #[test]
    fn anything_else_counts_every_claim() {
        let all = |extra: Source| analyze(&[jwt(), extra]);
        // The claims function used whole, or with a computed key.
        assert_eq!(
            all(policy("auth.jwt() @> '{\"aal\":\"aal2\"}'")),
            ClaimsRead::All
        );
        assert_eq!(
            all(function("f", "SELECT auth.jwt() ->> k")),
            ClaimsRead::All
        );
        assert_eq!(
            all(function("f", "SELECT jsonb_each(jwt())")),
            ClaimsRead::All
        );
        assert_eq!(
            all(function("f", "RETURN auth.\"jwt\"() #>> '{a,b}'")),
            ClaimsRead::All
        );
        assert_eq!(
            all(function("f", "c := auth.jwt(); RETURN c->>'sid';")),
            ClaimsRead::All
        );
        // The setting read anywhere but a whole-claims function.
        assert_eq!(
            all(policy(
                "current_setting('request.jwt.claims', true)::jsonb ->> 'sid' = 'x'"
            )),
            ClaimsRead::All
        );
        assert_eq!(
            all(function(
                "f",
                "SELECT current_setting('request.jwt.claims')::jsonb -> 'a'"
            )),
            ClaimsRead::All
        );
        // Setting names are case-insensitive in PostgreSQL.
        assert_eq!(
            all(policy(
                "current_setting('Request.JWT.Claims', true)::jsonb ->> 'sid' = 'x'"
            )),
            ClaimsRead::All
        );
        // A setting whose name is computed.
        assert_eq!(
            all(function(
                "f",
                "SELECT current_setting('request.' || 'jwt.claims')"
            )),
            ClaimsRead::All
        );
        assert_eq!(
            all(function("f", "SELECT current_setting(name) FROM t")),
            ClaimsRead::All
        );
    }

    #[test]
    fn names_that_only_contain_the_reader_are_not_calls() {
        let sources = [
            jwt(),
            policy("(my_jwt() = 1) AND (jwt_count > 0) AND (auth.jwt() ->> 'sub' = 'x')"),
        ];
        assert_eq!(analyze(&sources), keys(&["role", "sub"]));
    }

    #[test]
    fn identity_keeps_only_the_claims_read() {
        let read = keys(&["role", "sub"]);
        let a = r#"{"sub":"u1","role":"authenticated","session_id":"s1","exp":1}"#;
        let b = r#"{"exp":2,"session_id":"s2","role":"authenticated","sub":"u1"}"#;
        let c = r#"{"sub":"u2","role":"authenticated","session_id":"s1","exp":1}"#;
        assert_eq!(read.identity(a), read.identity(b));
        assert_ne!(read.identity(a), read.identity(c));
        assert_ne!(ClaimsRead::All.identity(a), ClaimsRead::All.identity(b));
        assert_eq!(read.identity("not json"), "not json");
    }
}
