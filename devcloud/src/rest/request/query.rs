//! The query string: form decoding and the split of its pairs into `select`, filters,
//! `or`/`and` trees, `order`, `limit`/`offset` (per embedding), `columns` and `on_conflict`
//! (PostgREST's `ApiRequest/QueryParams.hs`, `qsParams`).

use std::collections::HashMap;

use super::{
    grammar::{
        parse_columns, parse_embed_path, parse_filter_value, parse_logic_param, parse_logic_path,
        parse_order, parse_select, parse_tree_path,
    },
    types::{Filter, QueryParams},
};
use crate::rest::error::ApiError;

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space, as in PostgREST).
/// Keys without `=` are dropped, as PostgREST ignores them.
pub fn decode_pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    let decode = |s: &str| -> Result<String, ApiError> {
        let spaced = s.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| {
                ApiError::query_param(
                    "query string",
                    s,
                    1,
                    "invalid UTF-8 in a percent-encoded value",
                )
            })
    };
    let mut out = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        if let Some((k, v)) = pair.split_once('=') {
            out.push((decode(k)?, decode(v)?));
        }
    }
    Ok(out)
}

const EMBEDDABLE: &[&str] = &["order", "limit", "offset", "and", "or"];

pub fn parse_query(raw: &str) -> Result<QueryParams, ApiError> {
    let pairs = decode_pairs(raw)?;
    let first = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let select = parse_select(first("select").unwrap_or("*"))?;
    let columns = first("columns")
        .map(|c| parse_columns("columns parameter", c))
        .transpose()?;
    let on_conflict = first("on_conflict")
        .map(|c| parse_columns("on_conflict parameter", c))
        .transpose()?;
    let mut q = QueryParams {
        select,
        filters: Vec::new(),
        logic: Vec::new(),
        order: Vec::new(),
        windows: HashMap::new(),
        columns,
        on_conflict,
        apikey: first("apikey").map(str::to_string),
    };
    for (key, value) in &pairs {
        if matches!(
            key.as_str(),
            "select" | "columns" | "on_conflict" | "apikey"
        ) {
            continue;
        }
        let last = key.rsplit('.').next().unwrap_or(key);
        if EMBEDDABLE.contains(&last) {
            match last {
                "order" => {
                    let path = parse_embed_path(key)?;
                    q.order.push((path, parse_order(value)?));
                }
                "limit" | "offset" => {
                    let path = parse_embed_path(key)?;
                    let n: u64 = value.trim().parse().map_err(|_| {
                        ApiError::query_param(
                            &format!("{last} parameter"),
                            value,
                            1,
                            "expecting a non-negative integer",
                        )
                    })?;
                    let w = q.windows.entry(path).or_default();
                    if last == "limit" {
                        w.limit = Some(n);
                    } else {
                        w.offset = Some(n);
                    }
                }
                _ => {
                    let (path, op) = parse_logic_path(key)?;
                    q.logic.push((path, parse_logic_param(&op, value)?));
                }
            }
            continue;
        }
        let (path, field) = parse_tree_path(key)?;
        let (negate, op) = parse_filter_value(value)?;
        q.filters.push((path, Filter { field, negate, op }));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::request::{
        test_inputs::{cmp, hostile_inputs},
        types::*,
    };

    #[test]
    fn simple_filters() {
        let q =
            parse_query("id=eq.5&name=ilike.*ac*&x=not.is.null&y=gte.2024-01-01T00:00:00%2B00:00")
                .unwrap();
        assert_eq!(q.filters.len(), 4);
        assert_eq!(
            q.filters[0].1,
            Filter {
                field: Field::plain("id"),
                negate: false,
                op: cmp(CmpOp::Eq, "5")
            }
        );
        assert_eq!(q.filters[1].1.op, cmp(CmpOp::ILike, "*ac*"));
        assert_eq!(
            q.filters[2].1,
            Filter {
                field: Field::plain("x"),
                negate: true,
                op: Operation::Is(IsVal::Null)
            }
        );
        // `%2B` is a plus sign; a bare `+` would be a space.
        assert_eq!(
            q.filters[3].1.op,
            cmp(CmpOp::Gte, "2024-01-01T00:00:00+00:00")
        );
        assert_eq!(
            parse_query("a=eq.x+y").unwrap().filters[0].1.op,
            cmp(CmpOp::Eq, "x y")
        );
    }

    #[test]
    fn nested_logic() {
        let q =
            parse_query("or=(a.eq.1,and(b.gt.2,c.is.null),not.or(d.in.(1,2),e.like.x*))").unwrap();
        let (path, tree) = &q.logic[0];
        assert!(path.is_empty());
        let Logic::Expr {
            negate: false,
            or: true,
            children,
        } = tree
        else {
            panic!("{tree:?}")
        };
        assert_eq!(children.len(), 3);
        assert_eq!(
            children[0],
            Logic::Filter(Filter {
                field: Field::plain("a"),
                negate: false,
                op: cmp(CmpOp::Eq, "1")
            })
        );
        let Logic::Expr {
            negate: false,
            or: false,
            children: and,
        } = &children[1]
        else {
            panic!()
        };
        assert_eq!(
            and[1],
            Logic::Filter(Filter {
                field: Field::plain("c"),
                negate: false,
                op: Operation::Is(IsVal::Null)
            })
        );
        let Logic::Expr {
            negate: true,
            or: true,
            children: not_or,
        } = &children[2]
        else {
            panic!()
        };
        assert_eq!(
            not_or[0],
            Logic::Filter(Filter {
                field: Field::plain("d"),
                negate: false,
                op: Operation::In(vec!["1".into(), "2".into()])
            })
        );

        let q = parse_query("not.and=(a.eq.1,b.eq.2)&organizations.or=(slug.eq.acme)").unwrap();
        assert!(
            matches!(q.logic[0], (ref p, Logic::Expr { negate: true, or: false, .. }) if p.is_empty())
        );
        assert_eq!(q.logic[1].0, vec!["organizations".to_string()]);
    }

    #[test]
    fn reserved_params_and_windows() {
        let q = parse_query("select=id&limit=10&offset=5&messages.limit=3&columns=%22a%22,%22b%22&on_conflict=org_id,slug&apikey=k").unwrap();
        assert_eq!(
            q.windows[&vec![]],
            Window {
                offset: Some(5),
                limit: Some(10)
            }
        );
        assert_eq!(
            q.windows[&vec!["messages".to_string()]],
            Window {
                offset: None,
                limit: Some(3)
            }
        );
        assert_eq!(q.columns, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(
            q.on_conflict,
            Some(vec!["org_id".to_string(), "slug".to_string()])
        );
        assert_eq!(q.apikey.as_deref(), Some("k"));
        assert!(q.filters.is_empty());
        assert!(parse_query("limit=ten").is_err());
        assert!(parse_query("limit=-1").is_err());
    }

    #[test]
    fn encoded_ampersands_stay_in_the_value() {
        let q = parse_query("org_id=eq.x%26org_id%3Dneq.0").unwrap();
        assert_eq!(q.filters.len(), 1);
        assert_eq!(q.filters[0].1.op, cmp(CmpOp::Eq, "x&org_id=neq.0"));
    }

    #[test]
    fn hostile_keys_are_rejected_or_kept_whole() {
        assert!(parse_query("x'%29%3B%20drop%20table%20workspaces%3B--=eq.1").is_err());
        assert!(parse_query("a;b=eq.1").is_err());
        // A quoted key is one name; the planner then fails to find it in the cache.
        let q = parse_query("%22x%5C%22y%22=eq.1").unwrap();
        assert_eq!(q.filters[0].1.field.name, "x\"y");
        let q = parse_query("organizations.slug=eq.acme&metadata->>kind=eq.a").unwrap();
        assert_eq!(q.filters[0].0, vec!["organizations".to_string()]);
        assert_eq!(q.filters[1].1.field.json_path.len(), 1);
    }

    /// Random strings over the grammar's special characters must never panic the parser.
    #[test]
    fn parsers_never_panic() {
        for text in hostile_inputs() {
            let _ = parse_query(&text);
            let _ = parse_query(&format!("a={text}&select={text}"));
        }
    }
}
