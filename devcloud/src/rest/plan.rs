//! Resolves a parsed request against the schema cache: every table, column and relationship
//! the request names is looked up here, and the plan keeps only the cache's [`Ident`]s. What
//! comes out can be turned into SQL without looking at request text again (values excepted,
//! which are always bound).

use super::{
    error::ApiError,
    request::{
        Embed, EmbedPath, Field, JsonOp, JsonOperand, Logic, Missing, Operation, OrderTerm,
        QueryParams, Resolution, SelectItem, Window,
    },
    schema::{Ident, RelError, Relationship, SchemaCache, Table},
};

/// A column reference with an optional JSON path (whose keys are bound values).
#[derive(Debug, Clone, PartialEq)]
pub struct ColExpr<'a> {
    pub column: Ident<'a>,
    pub json_path: Vec<JsonOp>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item<'a> {
    Column {
        expr: ColExpr<'a>,
        /// A type from [`cast_type`]'s fixed list.
        cast: Option<&'static str>,
        /// The JSON key in the output (bound as a value, never spliced).
        name: String,
    },
    Embed(Box<EmbedPlan<'a>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbedPlan<'a> {
    /// The output key (alias or target name); also how filters address the embed.
    pub label: String,
    pub rel: Relationship<'a>,
    pub inner: bool,
    /// `target()` with no columns embeds nothing; it is only there to filter (`!inner`).
    pub hidden: bool,
    pub node: ReadNode<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cond<'a> {
    Filter {
        expr: ColExpr<'a>,
        negate: bool,
        op: Operation,
    },
    Expr {
        negate: bool,
        or: bool,
        children: Vec<Cond<'a>>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum OrderTarget<'a> {
    Column(ColExpr<'a>),
    /// `order=organizations(name)`: a column of a to-one embed of this node.
    Related {
        embed: usize,
        expr: ColExpr<'a>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order<'a> {
    pub target: OrderTarget<'a>,
    pub desc: Option<bool>,
    pub nulls_first: Option<bool>,
}

/// One level of a read: a table, what to output from it, and how to filter, order and cut it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadNode<'a> {
    pub table: &'a Table,
    /// Its alias in SQL is `pgrst_{alias}`; unique within a statement.
    pub alias: usize,
    pub items: Vec<Item<'a>>,
    pub conds: Vec<Cond<'a>>,
    pub order: Vec<Order<'a>>,
    pub window: Window,
}

impl<'a> ReadNode<'a> {
    pub fn embeds(&self) -> impl Iterator<Item = &EmbedPlan<'a>> {
        self.items.iter().filter_map(|i| match i {
            Item::Embed(e) => Some(&**e),
            Item::Column { .. } => None,
        })
    }
}

/// What a write does; the rows it touches are then shown through a [`ReadNode`].
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation<'a> {
    Insert {
        columns: Vec<Ident<'a>>,
        on_conflict: Option<(Resolution, Vec<Ident<'a>>)>,
        /// With `Prefer: missing=default`: each column's catalog default (None: NULL).
        defaults: Option<Vec<Option<&'a str>>>,
    },
    Update {
        columns: Vec<Ident<'a>>,
    },
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MutatePlan<'a> {
    pub table: &'a Table,
    /// The written table's alias (`pgrst_{alias}`), shared with the representation's root.
    pub alias: usize,
    pub mutation: Mutation<'a>,
    /// Conditions on the table itself (UPDATE/DELETE).
    pub conds: Vec<Cond<'a>>,
    /// The representation, read from the written rows; `None` for `return=minimal`.
    pub returning: Option<ReadNode<'a>>,
}

pub struct Planner<'a> {
    schema: &'a SchemaCache,
    next_alias: usize,
}

impl<'a> Planner<'a> {
    pub fn new(schema: &'a SchemaCache) -> Planner<'a> {
        Planner {
            schema,
            next_alias: 0,
        }
    }

    pub fn table(&self, name: &str) -> Result<&'a Table, ApiError> {
        self.schema
            .table(name)
            .ok_or_else(|| ApiError::TableNotFound {
                table: name.to_string(),
                hint: self.schema.closest_table(name).map(str::to_string),
            })
    }

    /// GET/HEAD: the whole tree with filters, order and windows in place. The root window is
    /// given separately (it merges `limit`/`offset` with the `Range` header).
    pub fn read(
        &mut self,
        table: &'a Table,
        q: &QueryParams,
        root: Window,
    ) -> Result<ReadNode<'a>, ApiError> {
        let mut node = self.node(table, &q.select)?;
        self.attach(&mut node, q, true)?;
        node.window = root;
        Ok(node)
    }

    pub fn mutate(
        &mut self,
        table: &'a Table,
        q: &QueryParams,
        kind: MutationKind,
        payload_keys: &[String],
        representation: bool,
    ) -> Result<MutatePlan<'a>, ApiError> {
        let column_list = |keys: &[String]| -> Result<Vec<Ident<'a>>, ApiError> {
            keys.iter()
                .map(|k| {
                    table
                        .column_ident(k)
                        .ok_or_else(|| ApiError::ColumnNotFound {
                            table: table.name.clone(),
                            column: k.clone(),
                        })
                })
                .collect()
        };
        let keys = q.columns.as_deref().unwrap_or(payload_keys);
        let mutation = match kind {
            MutationKind::Insert {
                resolution,
                missing,
            } => {
                let columns = column_list(keys)?;
                let on_conflict = match resolution {
                    None => None,
                    Some(res) => {
                        let target: Vec<Ident<'a>> = match &q.on_conflict {
                            Some(cols) => cols
                                .iter()
                                .map(|c| table.column_ident(c).ok_or_else(|| undefined(table, c)))
                                .collect::<Result<_, _>>()?,
                            None => table
                                .primary_key
                                .iter()
                                .filter_map(|c| table.column_ident(c))
                                .collect(),
                        };
                        (!target.is_empty()).then_some((res, target))
                    }
                };
                let defaults = (missing == Some(Missing::Default)).then(|| {
                    columns
                        .iter()
                        .map(|c| table.column(c.as_str()).and_then(|c| c.default.as_deref()))
                        .collect()
                });
                Mutation::Insert {
                    columns,
                    on_conflict,
                    defaults,
                }
            }
            MutationKind::Update => Mutation::Update {
                columns: column_list(keys)?,
            },
            MutationKind::Delete => Mutation::Delete,
        };
        // The written table is the root of both the write and the representation; alias 0.
        let alias = self.alias();
        let mut conds = Vec::new();
        for (_, f) in q.filters.iter().filter(|(p, _)| p.is_empty()) {
            conds.push(filter_cond(table, &f.field, f.negate, &f.op)?);
        }
        for (_, l) in q.logic.iter().filter(|(p, _)| p.is_empty()) {
            conds.push(logic_cond(table, l)?);
        }
        // Built even for `return=minimal`: nested filters must still name real embeds.
        let mut node = self.node_with_alias(table, &q.select, alias)?;
        self.attach(&mut node, q, false)?;
        let returning = representation.then_some(node);
        Ok(MutatePlan {
            table,
            alias,
            mutation,
            conds,
            returning,
        })
    }

    fn alias(&mut self) -> usize {
        let a = self.next_alias;
        self.next_alias += 1;
        a
    }

    fn node(&mut self, table: &'a Table, select: &[SelectItem]) -> Result<ReadNode<'a>, ApiError> {
        let alias = self.alias();
        self.node_with_alias(table, select, alias)
    }

    fn node_with_alias(
        &mut self,
        table: &'a Table,
        select: &[SelectItem],
        alias: usize,
    ) -> Result<ReadNode<'a>, ApiError> {
        let mut items = Vec::new();
        // An empty select (`select=`) means `*`; one with only embeds shows only them.
        if select.is_empty() {
            items.extend(star(table));
        }
        for s in select {
            match s {
                SelectItem::Star => items.extend(star(table)),
                SelectItem::Column {
                    field,
                    alias: out,
                    cast,
                } => {
                    let expr = col_expr(table, field)?;
                    let cast = cast.as_deref().map(cast_type).transpose()?;
                    let name = out.clone().unwrap_or_else(|| output_name(field));
                    items.push(Item::Column { expr, cast, name });
                }
                SelectItem::Embed(e) => items.push(Item::Embed(Box::new(self.embed(table, e)?))),
            }
        }
        Ok(ReadNode {
            table,
            alias,
            items,
            conds: Vec::new(),
            order: Vec::new(),
            window: Window::default(),
        })
    }

    fn embed(&mut self, parent: &'a Table, e: &Embed) -> Result<EmbedPlan<'a>, ApiError> {
        let not_found = || ApiError::NoRelationship {
            origin: parent.name.clone(),
            target: e.target.clone(),
            hint: e.hint.clone(),
        };
        let target = self.schema.table(&e.target).ok_or_else(not_found)?;
        let rel = match self
            .schema
            .relationship(&parent.name, &target.name, e.hint.as_deref())
        {
            Ok(r) => r,
            Err(RelError::None) => return Err(not_found()),
            Err(RelError::Ambiguous(constraints)) => {
                return Err(ApiError::AmbiguousRelationship {
                    origin: parent.name.clone(),
                    target: e.target.clone(),
                    constraints,
                })
            }
        };
        let hidden = e.select.is_empty();
        let node = self.node(target, &e.select)?;
        Ok(EmbedPlan {
            label: e.label().to_string(),
            rel,
            inner: e.inner,
            hidden,
            node,
        })
    }

    /// Puts filters, logic, order and windows on the nodes their embed paths name.
    fn attach(
        &mut self,
        root: &mut ReadNode<'a>,
        q: &QueryParams,
        root_conds: bool,
    ) -> Result<(), ApiError> {
        for (path, f) in &q.filters {
            if path.is_empty() && !root_conds {
                continue;
            }
            let node = find_node(root, path)?;
            let c = filter_cond(node.table, &f.field, f.negate, &f.op)?;
            node.conds.push(c);
        }
        for (path, l) in &q.logic {
            if path.is_empty() && !root_conds {
                continue;
            }
            let node = find_node(root, path)?;
            let c = logic_cond(node.table, l)?;
            node.conds.push(c);
        }
        for (path, terms) in &q.order {
            let node = find_node(root, path)?;
            for t in terms {
                let o = order(node, t)?;
                node.order.push(o);
            }
        }
        for (path, w) in &q.windows {
            if path.is_empty() {
                continue;
            }
            find_node(root, path)?.window = *w;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutationKind {
    Insert {
        resolution: Option<Resolution>,
        missing: Option<Missing>,
    },
    Update,
    Delete,
}

fn star(table: &Table) -> impl Iterator<Item = Item<'_>> {
    table.column_idents().map(|c| Item::Column {
        expr: ColExpr {
            column: c,
            json_path: Vec::new(),
        },
        cast: None,
        name: c.as_str().to_string(),
    })
}

fn undefined(table: &Table, column: &str) -> ApiError {
    ApiError::UndefinedColumn {
        table: table.name.clone(),
        column: column.to_string(),
    }
}

fn col_expr<'a>(table: &'a Table, f: &Field) -> Result<ColExpr<'a>, ApiError> {
    let column = table
        .column_ident(&f.name)
        .ok_or_else(|| undefined(table, &f.name))?;
    Ok(ColExpr {
        column,
        json_path: f.json_path.clone(),
    })
}

/// PostgREST names `data->>key` after its last key (an index keeps the column name).
fn output_name(f: &Field) -> String {
    match f.json_path.last() {
        Some(JsonOp {
            operand: JsonOperand::Key(k),
            ..
        }) => k.clone(),
        _ => f.name.clone(),
    }
}

/// The types a `::cast` in `select` may name. A fixed list keeps request text out of SQL.
pub fn cast_type(name: &str) -> Result<&'static str, ApiError> {
    let t = match name.trim().to_ascii_lowercase().as_str() {
        "text" => "text",
        "varchar" | "character varying" => "varchar",
        "char" | "character" | "bpchar" => "char",
        "int" | "integer" | "int4" => "integer",
        "smallint" | "int2" => "smallint",
        "bigint" | "int8" => "bigint",
        "numeric" | "decimal" => "numeric",
        "real" | "float4" => "real",
        "float" | "float8" | "double precision" => "double precision",
        "bool" | "boolean" => "boolean",
        "json" => "json",
        "jsonb" => "jsonb",
        "uuid" => "uuid",
        "date" => "date",
        "time" => "time",
        "timestamp" => "timestamp",
        "timestamptz" => "timestamptz",
        "interval" => "interval",
        _ => return Err(ApiError::UndefinedType(name.trim().to_string())),
    };
    Ok(t)
}

fn filter_cond<'a>(
    table: &'a Table,
    field: &Field,
    negate: bool,
    op: &Operation,
) -> Result<Cond<'a>, ApiError> {
    Ok(Cond::Filter {
        expr: col_expr(table, field)?,
        negate,
        op: op.clone(),
    })
}

fn logic_cond<'a>(table: &'a Table, l: &Logic) -> Result<Cond<'a>, ApiError> {
    match l {
        Logic::Filter(f) => filter_cond(table, &f.field, f.negate, &f.op),
        Logic::Expr {
            negate,
            or,
            children,
        } => Ok(Cond::Expr {
            negate: *negate,
            or: *or,
            children: children
                .iter()
                .map(|c| logic_cond(table, c))
                .collect::<Result<_, _>>()?,
        }),
    }
}

fn order<'a>(node: &ReadNode<'a>, t: &OrderTerm) -> Result<Order<'a>, ApiError> {
    let target = match &t.relation {
        None => OrderTarget::Column(col_expr(node.table, &t.field)?),
        Some(rel) => {
            let (idx, embed) = node
                .embeds()
                .enumerate()
                .find(|(_, e)| e.label == *rel)
                .ok_or_else(|| ApiError::NotEmbedded(rel.clone()))?;
            if !embed.rel.to_one {
                return Err(ApiError::RelatedOrderNotToOne {
                    origin: node.table.name.clone(),
                    target: rel.clone(),
                });
            }
            OrderTarget::Related {
                embed: idx,
                expr: col_expr(embed.node.table, &t.field)?,
            }
        }
    };
    Ok(Order {
        target,
        desc: t.desc,
        nulls_first: t.nulls_first,
    })
}

fn find_node<'n, 'a>(
    root: &'n mut ReadNode<'a>,
    path: &EmbedPath,
) -> Result<&'n mut ReadNode<'a>, ApiError> {
    let mut node = root;
    for name in path {
        let found = node.items.iter_mut().find_map(|i| match i {
            Item::Embed(e) if e.label == *name => Some(&mut e.node),
            _ => None,
        });
        node = found.ok_or_else(|| ApiError::NotEmbedded(name.clone()))?;
    }
    Ok(node)
}

/// The root window: `limit`/`offset` intersected with the `Range` header, then capped at
/// `max_rows` (`db-max-rows`). A limit of zero is allowed; any other empty range is a 416.
pub fn top_window(
    query: Window,
    header: Option<(u64, Option<u64>)>,
    max_rows: u64,
) -> Result<Window, ApiError> {
    let mut lower = query.offset.unwrap_or(0);
    if query.limit == Some(0) {
        return Ok(Window {
            offset: Some(lower),
            limit: Some(0),
        });
    }
    // Inclusive upper bound; None is unbounded.
    let mut upper = query.limit.map(|l| lower.saturating_add(l - 1));
    if let Some((lo, hi)) = header {
        if let Some(hi) = hi {
            if lo > hi {
                return Err(ApiError::InvalidRange(
                    "The lower boundary must be lower than or equal to the upper boundary in the Range header.".into(),
                ));
            }
            upper = Some(upper.map_or(hi, |u| u.min(hi)));
        }
        lower = lower.max(lo);
    }
    let limit = match upper {
        Some(u) if u < lower => {
            return Err(ApiError::InvalidRange(
                "The lower boundary must be lower than or equal to the upper boundary in the Range header.".into(),
            ))
        }
        Some(u) => (u - lower).saturating_add(1).min(max_rows),
        None => max_rows,
    };
    Ok(Window {
        offset: Some(lower),
        limit: Some(limit),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::{request::parse_query, schema::tests::demo};

    fn read<'a>(s: &'a SchemaCache, table: &str, qs: &str) -> Result<ReadNode<'a>, ApiError> {
        let q = parse_query(qs)?;
        let mut p = Planner::new(s);
        let t = p.table(table)?;
        p.read(t, &q, Window::default())
    }

    #[test]
    fn star_expands_from_the_cache() {
        let s = demo();
        let n = read(&s, "organizations", "select=*").unwrap();
        let names: Vec<_> = n
            .items
            .iter()
            .map(|i| match i {
                Item::Column { name, .. } => name.as_str(),
                Item::Embed(_) => "?",
            })
            .collect();
        assert_eq!(names, ["id", "name", "slug", "subscription_tier"]);
    }

    #[test]
    fn unknown_names_are_errors() {
        let s = demo();
        assert_eq!(read(&s, "nope", "").unwrap_err().code(), "PGRST205");
        assert_eq!(
            read(&s, "workspace", "").unwrap_err().body()["hint"],
            "Perhaps you meant the table 'public.workspaces'"
        );
        assert_eq!(
            read(&s, "workspaces", "select=nope").unwrap_err().code(),
            "42703"
        );
        assert_eq!(
            read(&s, "workspaces", "nope=eq.1").unwrap_err().code(),
            "42703"
        );
        assert_eq!(
            read(&s, "workspaces", "order=nope").unwrap_err().code(),
            "42703"
        );
        assert_eq!(
            read(&s, "workspaces", "or=(id.eq.1,nope.eq.2)")
                .unwrap_err()
                .code(),
            "42703"
        );
        assert_eq!(
            read(&s, "workspaces", "select=id::evil")
                .unwrap_err()
                .code(),
            "42704"
        );
        assert_eq!(
            read(&s, "workspaces", "select=*,nope(*)")
                .unwrap_err()
                .code(),
            "PGRST200"
        );
        assert_eq!(
            read(&s, "workspaces", "organizations.slug=eq.a")
                .unwrap_err()
                .code(),
            "PGRST108"
        );
        // Quotes in a name only ever match a cached name with quotes.
        assert_eq!(
            read(&s, "workspaces", "select=%22id%5C%22%22")
                .unwrap_err()
                .code(),
            "42703"
        );
        assert_eq!(
            read(&s, "devcloud_migrations", "").unwrap_err().code(),
            "PGRST205"
        );
    }

    #[test]
    fn embeds_resolve_both_directions() {
        let s = demo();
        let n = read(&s, "org_memberships", "select=org_id,role,organizations(*)").unwrap();
        let e = n.embeds().next().unwrap();
        assert!(e.rel.to_one);
        assert_eq!(e.label, "organizations");
        let n = read(
            &s,
            "organizations",
            "select=name,ws:workspaces(name)&ws.order=name.desc&ws.limit=1",
        )
        .unwrap();
        let e = n.embeds().next().unwrap();
        assert!(!e.rel.to_one);
        assert_eq!(e.label, "ws");
        assert_eq!(e.node.window.limit, Some(1));
        assert_eq!(e.node.order.len(), 1);
    }

    #[test]
    fn only_embeds_means_no_columns() {
        let s = demo();
        let n = read(&s, "workspaces", "select=organizations(name)").unwrap();
        assert_eq!(n.items.len(), 1);
        assert!(matches!(n.items[0], Item::Embed(_)));
        assert_eq!(read(&s, "workspaces", "select=").unwrap().items.len(), 8);
    }

    #[test]
    fn related_order_needs_a_to_one_embed() {
        let s = demo();
        assert!(read(
            &s,
            "workspaces",
            "select=id,organizations(name)&order=organizations(name).desc"
        )
        .is_ok());
        assert_eq!(
            read(&s, "workspaces", "order=organizations(name)")
                .unwrap_err()
                .code(),
            "PGRST108"
        );
        assert_eq!(
            read(
                &s,
                "organizations",
                "select=id,workspaces(name)&order=workspaces(name)"
            )
            .unwrap_err()
            .code(),
            "PGRST118"
        );
    }

    #[test]
    fn payload_columns_are_checked() {
        let s = demo();
        let mut p = Planner::new(&s);
        let t = p.table("workspaces").unwrap();
        let q = parse_query("").unwrap();
        let kind = MutationKind::Insert {
            resolution: None,
            missing: None,
        };
        let e = p
            .mutate(t, &q, kind, &["name".into(), "bogus".into()], false)
            .unwrap_err();
        assert_eq!(e.code(), "PGRST204");
        assert_eq!(
            e.body()["message"],
            "Could not find the 'bogus' column of 'workspaces' in the schema cache"
        );
        let q = parse_query("columns=name,nope").unwrap();
        assert_eq!(
            p.mutate(t, &q, kind, &["name".into()], false)
                .unwrap_err()
                .code(),
            "PGRST204"
        );
        let q = parse_query("on_conflict=nope").unwrap();
        let upsert = MutationKind::Insert {
            resolution: Some(Resolution::MergeDuplicates),
            missing: None,
        };
        assert_eq!(
            p.mutate(t, &q, upsert, &["name".into()], false)
                .unwrap_err()
                .code(),
            "42703"
        );
        let q = parse_query("").unwrap();
        let plan = p.mutate(t, &q, upsert, &["name".into()], false).unwrap();
        let Mutation::Insert {
            on_conflict: Some((_, target)),
            ..
        } = plan.mutation
        else {
            panic!()
        };
        assert_eq!(
            target.iter().map(|i| i.as_str()).collect::<Vec<_>>(),
            ["id"]
        );
    }

    #[test]
    fn windows() {
        const MAX_ROWS: u64 = 1000;
        let top_window = |q, h| top_window(q, h, MAX_ROWS);
        let w = |o, l| Window {
            offset: o,
            limit: l,
        };
        assert_eq!(
            top_window(w(None, None), None).unwrap(),
            w(Some(0), Some(MAX_ROWS))
        );
        assert_eq!(
            top_window(w(Some(5), Some(10)), None).unwrap(),
            w(Some(5), Some(10))
        );
        assert_eq!(
            top_window(w(None, Some(5000)), None).unwrap(),
            w(Some(0), Some(MAX_ROWS))
        );
        assert_eq!(
            top_window(w(None, None), Some((10, Some(19)))).unwrap(),
            w(Some(10), Some(10))
        );
        assert_eq!(
            top_window(w(None, Some(5)), Some((0, Some(9)))).unwrap(),
            w(Some(0), Some(5))
        );
        assert_eq!(
            top_window(w(None, Some(0)), None).unwrap(),
            w(Some(0), Some(0))
        );
        assert_eq!(
            top_window(w(None, None), Some((5, Some(2))))
                .unwrap_err()
                .code(),
            "PGRST103"
        );
    }
}
