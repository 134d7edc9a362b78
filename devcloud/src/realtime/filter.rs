//! postgres_changes filters, `col=op.value` (Realtime's `subscriptions.ex`): operators
//! `eq neq lt lte gt gte in`, and commas joining several filters with AND.
//!
//! Values are compared the way PostgreSQL compares the column's type as far as the row's JSON
//! shows it: numbers numerically, booleans and strings (uuid, text, timestamps in one format)
//! as text. A filter on a column the record lacks never matches.

use std::cmp::Ordering;

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub column: String,
    pub op: Op,
    /// One value, or the list of `in.(a,b)`.
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

/// Filters per entry and values per `in` list (Realtime's `subscription_check_filters`
/// allows 100 values): each change is matched against every one of them.
const MAX_FILTERS: usize = 16;
const MAX_IN_VALUES: usize = 100;

/// Parses a whole `filter` string; empty means no filter.
pub fn parse(filter: &str) -> Result<Vec<Filter>, FilterError> {
    if filter.trim().is_empty() {
        return Ok(Vec::new());
    }
    let parts = split_top(filter);
    if parts.len() > MAX_FILTERS {
        return Err(FilterError(format!(
            "too many filters (at most {MAX_FILTERS})"
        )));
    }
    parts.into_iter().map(parse_one).collect()
}

/// Splits on commas outside `in.( … )` lists.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_one(s: &str) -> Result<Filter, FilterError> {
    let bad = || FilterError(format!("invalid format for filter {s:?}"));
    let (column, rest) = s.split_once('=').ok_or_else(bad)?;
    let (op, value) = rest.split_once('.').ok_or_else(bad)?;
    let column = column.trim();
    if column.is_empty() {
        return Err(bad());
    }
    let op = match op {
        "eq" => Op::Eq,
        "neq" => Op::Neq,
        "lt" => Op::Lt,
        "lte" => Op::Lte,
        "gt" => Op::Gt,
        "gte" => Op::Gte,
        "in" => Op::In,
        other => return Err(FilterError(format!("{other} is not a valid operator"))),
    };
    let values = if op == Op::In {
        let inner = value
            .strip_prefix('(')
            .and_then(|v| v.strip_suffix(')'))
            .ok_or_else(bad)?;
        let list: Vec<String> = inner
            .split(',')
            .map(|v| unquote(v.trim()).to_string())
            .collect();
        if list.len() > MAX_IN_VALUES {
            return Err(FilterError(format!(
                "too many values for `in` filter. Maximum {MAX_IN_VALUES}"
            )));
        }
        list
    } else {
        vec![value.to_string()]
    };
    Ok(Filter {
        column: column.to_string(),
        op,
        values,
    })
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// Whether `record` passes every filter.
pub fn matches(filters: &[Filter], record: &Value) -> bool {
    filters.iter().all(|f| f.matches(record))
}

impl Filter {
    pub fn matches(&self, record: &Value) -> bool {
        let Some(field) = record.get(&self.column) else {
            return false;
        };
        if field.is_null() {
            // SQL: a comparison with NULL is never true.
            return false;
        }
        let cmp = |v: &String| compare(field, v);
        match self.op {
            Op::Eq => cmp(&self.values[0]) == Some(Ordering::Equal),
            Op::Neq => matches!(cmp(&self.values[0]), Some(o) if o != Ordering::Equal),
            Op::Lt => cmp(&self.values[0]) == Some(Ordering::Less),
            Op::Lte => matches!(cmp(&self.values[0]), Some(Ordering::Less | Ordering::Equal)),
            Op::Gt => cmp(&self.values[0]) == Some(Ordering::Greater),
            Op::Gte => matches!(
                cmp(&self.values[0]),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            Op::In => self.values.iter().any(|v| cmp(v) == Some(Ordering::Equal)),
        }
    }
}

/// The field compared with the filter's literal; `None` when they cannot be compared.
fn compare(field: &Value, literal: &str) -> Option<Ordering> {
    match field {
        Value::Number(n) => {
            let lit: f64 = literal.trim().parse().ok()?;
            n.as_f64()?.partial_cmp(&lit)
        }
        Value::Bool(b) => {
            let lit = match literal.to_ascii_lowercase().as_str() {
                "true" | "t" | "1" | "yes" | "on" => true,
                "false" | "f" | "0" | "no" | "off" => false,
                _ => return None,
            };
            Some(b.cmp(&lit))
        }
        Value::String(s) => {
            // uuids compare case-insensitively in PostgreSQL.
            if s.len() == 36 && literal.len() == 36 && s.as_bytes()[8] == b'-' {
                return Some(s.to_ascii_lowercase().cmp(&literal.to_ascii_lowercase()));
            }
            Some(s.as_str().cmp(literal))
        }
        // jsonb/array columns: compare their JSON text.
        other => Some(other.to_string().as_str().cmp(literal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_ops_and_lists() {
        let f = parse("id=eq.1").unwrap();
        assert_eq!(
            f,
            vec![Filter {
                column: "id".into(),
                op: Op::Eq,
                values: vec!["1".into()]
            }]
        );
        let f = parse("status=in.(a,\"b c\",d)").unwrap();
        assert_eq!(f[0].values, vec!["a", "b c", "d"]);
        let f = parse("a=gt.1,b=in.(x,y),c=neq.z").unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f[1].op, Op::In);
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_filters() {
        assert!(parse("id").is_err());
        assert!(parse("id=1").is_err());
        assert!(parse("id=like.x").is_err());
        assert!(parse("=eq.1").is_err());
        assert!(parse("id=in.1,2").is_err());
    }

    #[test]
    fn bounds_what_one_entry_costs() {
        let list = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        assert_eq!(
            parse(&format!("id=in.({})", list(100))).unwrap()[0]
                .values
                .len(),
            100
        );
        assert_eq!(
            parse(&format!("id=in.({})", list(101))).unwrap_err().0,
            "too many values for `in` filter. Maximum 100"
        );
        let filters = |n: usize| vec!["id=eq.1"; n].join(",");
        assert_eq!(parse(&filters(16)).unwrap().len(), 16);
        assert!(parse(&filters(17)).is_err());
    }

    #[test]
    fn evaluates_like_sql() {
        let row = json!({"n": 5, "s": "b", "ok": true, "nul": null,
                         "u": "6F9619FF-8B86-D011-B42D-00C04FC964FF"});
        let m = |f: &str| matches(&parse(f).unwrap(), &row);
        assert!(m("n=eq.5") && m("n=eq.5.0") && !m("n=eq.6"));
        assert!(m("n=neq.6") && !m("n=neq.5"));
        assert!(m("n=lt.10") && !m("n=lt.5") && m("n=lte.5"));
        assert!(m("n=gt.4") && m("n=gte.5") && !m("n=gt.5"));
        assert!(!m("n=gt.40"), "numeric, not text, order");
        assert!(m("n=in.(1,5)") && !m("n=in.(1,2)"));
        assert!(m("s=eq.b") && m("s=lt.c") && m("s=in.(a,b)"));
        assert!(m("ok=eq.true") && !m("ok=eq.false"));
        assert!(!m("nul=eq.x") && !m("nul=neq.x"));
        assert!(!m("missing=eq.1") && !m("missing=neq.1"));
        assert!(m("u=eq.6f9619ff-8b86-d011-b42d-00c04fc964ff"));
        assert!(m("n=gt.1,s=eq.b") && !m("n=gt.1,s=eq.c"));
        assert!(!m("n=eq.abc"));
    }
}
