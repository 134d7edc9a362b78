//! Plan → one SQL statement that builds the whole JSON body inside PostgreSQL.
//!
//! The builder only accepts three kinds of text: `&'static str` fragments written here,
//! [`Ident`]s (which only the schema cache can make) and aliases generated from numbers.
//! Every value from the request, JSON keys and output names included, becomes a `$n`
//! parameter sent in text format with type `unknown`, so PostgreSQL parses each literal with
//! the type it infers from its use, exactly as PostgREST's `unknownEncoder` does.

use bytes::BytesMut;
use postgres_types::{to_sql_checked, Format, IsNull, ToSql, Type};

use super::{
    plan::{ColExpr, Cond, EmbedPlan, Item, MutatePlan, Mutation, Order, OrderTarget, ReadNode},
    request::{CmpOp, IsVal, JsonOperand, Operation, Quant, Resolution},
    schema::{Ident, Table, SCHEMA},
};

/// A value PostgreSQL parses from text with the type it infers (PostgREST's `unknown`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextParam(pub String);

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// SQL text plus its parameters, in `$n` order.
#[derive(Debug, Default)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<TextParam>,
}

impl Statement {
    fn push(&mut self, fragment: &'static str) {
        self.sql.push_str(fragment);
    }

    fn ident(&mut self, i: Ident<'_>) {
        self.sql.push_str(&i.quoted());
    }

    /// `"public"."table"`.
    fn table(&mut self, t: &Table) {
        self.sql.push('"');
        self.sql.push_str(SCHEMA);
        self.sql.push_str("\".");
        self.ident(t.ident());
    }

    fn alias(&mut self, n: usize) {
        self.sql.push_str(&format!("\"pgrst_{n}\""));
    }

    fn column(&mut self, alias: usize, c: Ident<'_>) {
        self.alias(alias);
        self.sql.push('.');
        self.ident(c);
    }

    fn param(&mut self, value: impl Into<String>) {
        self.params.push(TextParam(value.into()));
        self.sql.push_str(&format!("${}", self.params.len()));
    }

    /// A default expression as printed by `pg_get_expr`: catalog text, not request text.
    fn catalog_expr(&mut self, expr: &str) {
        self.sql.push_str(expr);
    }

    pub fn param_refs(&self) -> Vec<(&(dyn ToSql + Sync), Type)> {
        self.params
            .iter()
            .map(|p| (p as &(dyn ToSql + Sync), Type::UNKNOWN))
            .collect()
    }
}

/// How the body is shaped: an array, or the single object of `.single()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyShape {
    pub single: bool,
    pub strip_nulls: bool,
}

/// The main query of a read. It returns one row: `(total, page_count, body, NULL)`.
pub fn read_statement(node: &ReadNode<'_>, count: bool, shape: BodyShape) -> Statement {
    let mut s = Statement::default();
    s.push("SELECT ");
    if count {
        s.push("(SELECT pg_catalog.count(*) FROM ");
        s.table(node.table);
        s.push(" AS ");
        s.alias(node.alias);
        where_clause(&mut s, node, &[]);
        s.push(")");
    } else {
        s.push("NULL");
    }
    s.push("::bigint, pg_catalog.count(*)::bigint, ");
    body(&mut s, shape);
    s.push(", NULL::bigint FROM (");
    node_select(&mut s, node, From::Table, &[]);
    s.push(") AS _pgrst_t");
    s
}

/// The main query of a write: the mutation in a CTE, then `(total, page_count, body,
/// inserted)` over the written rows.
pub fn mutate_statement(
    plan: &MutatePlan<'_>,
    body_json: &str,
    shape: BodyShape,
    track_inserted: bool,
) -> Statement {
    let mut s = Statement::default();
    let root = plan.alias;
    let full_rows = plan.returning.is_some() || track_inserted;
    s.push("WITH pgrst_source AS (");
    match &plan.mutation {
        Mutation::Insert {
            columns,
            on_conflict,
            defaults,
        } => {
            s.push("INSERT INTO ");
            s.table(plan.table);
            s.push(" AS ");
            s.alias(root);
            if !columns.is_empty() {
                s.push(" (");
                list(&mut s, columns, |s, c| s.ident(*c));
                s.push(")");
            }
            s.push(" SELECT ");
            match defaults {
                None => {
                    list(&mut s, columns, |s, c| {
                        s.push("pgrst_body.");
                        s.ident(*c);
                    });
                    s.push(" FROM json_populate_recordset(NULL::");
                    s.table(plan.table);
                    s.push(", ");
                    s.param(body_json);
                    s.push(") AS pgrst_body");
                }
                Some(defaults) => {
                    // Per row: the payload's value when the key is present, else the default.
                    let pairs: Vec<_> = columns.iter().zip(defaults).collect();
                    list(&mut s, &pairs, |s, (c, d)| {
                        s.push("CASE WHEN pgrst_elem.j::jsonb ? ");
                        s.param(c.as_str());
                        s.push("::text THEN pgrst_body.");
                        s.ident(**c);
                        s.push(" ELSE ");
                        match d {
                            Some(expr) => s.catalog_expr(expr),
                            None => s.push("NULL"),
                        }
                        s.push(" END");
                    });
                    s.push(" FROM json_array_elements(");
                    s.param(body_json);
                    s.push(") AS pgrst_elem(j), LATERAL json_populate_record(NULL::");
                    s.table(plan.table);
                    s.push(", pgrst_elem.j) AS pgrst_body");
                }
            }
            if let Some((resolution, target)) = on_conflict {
                s.push(" ON CONFLICT (");
                list(&mut s, target, |s, c| s.ident(*c));
                s.push(")");
                match resolution {
                    Resolution::MergeDuplicates if !columns.is_empty() => {
                        s.push(" DO UPDATE SET ");
                        list(&mut s, columns, |s, c| {
                            s.ident(*c);
                            s.push(" = EXCLUDED.");
                            s.ident(*c);
                        });
                    }
                    _ => s.push(" DO NOTHING"),
                }
            }
            returning(&mut s, root, full_rows, track_inserted);
        }
        Mutation::Update { columns } if columns.is_empty() => {
            // Nothing to set: PostgREST answers with no rows.
            s.push("SELECT ");
            if full_rows {
                s.alias(root);
                s.push(".*");
            } else {
                s.push("1");
            }
            s.push(" FROM ");
            s.table(plan.table);
            s.push(" AS ");
            s.alias(root);
            s.push(" WHERE false");
        }
        Mutation::Update { columns } => {
            s.push("UPDATE ");
            s.table(plan.table);
            s.push(" AS ");
            s.alias(root);
            s.push(" SET ");
            list(&mut s, columns, |s, c| {
                s.ident(*c);
                s.push(" = pgrst_body.");
                s.ident(*c);
            });
            s.push(" FROM json_populate_record(NULL::");
            s.table(plan.table);
            s.push(", ");
            s.param(body_json);
            s.push(") AS pgrst_body");
            conds_where(&mut s, root, &plan.conds);
            returning(&mut s, root, full_rows, false);
        }
        Mutation::Delete => {
            s.push("DELETE FROM ");
            s.table(plan.table);
            s.push(" AS ");
            s.alias(root);
            conds_where(&mut s, root, &plan.conds);
            returning(&mut s, root, full_rows, false);
        }
    }
    s.push(") SELECT (SELECT pg_catalog.count(*) FROM pgrst_source)::bigint, ");
    s.push("(SELECT pg_catalog.count(*) FROM pgrst_source)::bigint, ");
    match &plan.returning {
        Some(node) => {
            s.push("(SELECT ");
            body(&mut s, shape);
            s.push(" FROM (");
            node_select(&mut s, node, From::Source, &[]);
            s.push(") AS _pgrst_t)");
        }
        None => s.push("''::text"),
    }
    if track_inserted {
        s.push(", (SELECT pg_catalog.count(*) FROM pgrst_source WHERE pgrst_inserted)::bigint");
    } else {
        s.push(", NULL::bigint");
    }
    s
}

fn returning(s: &mut Statement, root: usize, full_rows: bool, track_inserted: bool) {
    s.push(" RETURNING ");
    if full_rows {
        s.alias(root);
        s.push(".*");
    } else {
        s.push("1");
    }
    if track_inserted {
        // xmax is 0 for a freshly inserted row and set for one ON CONFLICT updated.
        s.push(", (");
        s.alias(root);
        s.push(".xmax = 0) AS pgrst_inserted");
    }
}

fn body(s: &mut Statement, shape: BodyShape) {
    if shape.strip_nulls {
        s.push("json_strip_nulls(");
    }
    if shape.single {
        s.push("coalesce(json_agg(_pgrst_t.pgrst_row)->0, 'null')");
    } else {
        s.push("coalesce(json_agg(_pgrst_t.pgrst_row), '[]')");
    }
    if shape.strip_nulls {
        s.push(")");
    }
    s.push("::text");
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum From {
    Table,
    /// The written rows of a mutation (the `pgrst_source` CTE).
    Source,
}

/// `SELECT <row json> AS pgrst_row FROM … WHERE … ORDER BY … LIMIT … OFFSET …`. `join` holds the
/// (this column, parent alias, parent column) equalities of an embedded level.
fn node_select(
    s: &mut Statement,
    node: &ReadNode<'_>,
    from: From,
    join: &[(Ident<'_>, usize, Ident<'_>)],
) {
    s.push("SELECT ");
    row_json(s, node);
    s.push(" AS pgrst_row FROM ");
    match from {
        From::Table => s.table(node.table),
        From::Source => s.push("pgrst_source"),
    }
    s.push(" AS ");
    s.alias(node.alias);
    if from == From::Table {
        where_clause(s, node, join);
    } else {
        // The write already applied the root conditions; only `!inner` embeds remain.
        inner_only_where(s, node);
    }
    if !node.order.is_empty() {
        s.push(" ORDER BY ");
        list(s, &node.order, |s, o| order_term(s, node, o));
    }
    if let Some(limit) = node.window.limit {
        s.push(" LIMIT ");
        s.param(limit.to_string());
    }
    if let Some(offset) = node.window.offset.filter(|o| *o > 0) {
        s.push(" OFFSET ");
        s.param(offset.to_string());
    }
}

/// PostgreSQL functions take at most 100 arguments: 50 key/value pairs per
/// `json_build_object`; wider rows are merged as jsonb.
const PAIRS_PER_OBJECT: usize = 50;

fn row_json(s: &mut Statement, node: &ReadNode<'_>) {
    let visible: Vec<&Item<'_>> = node
        .items
        .iter()
        .filter(|i| !matches!(i, Item::Embed(e) if e.hidden))
        .collect();
    let chunks: Vec<&[&Item<'_>]> = visible.chunks(PAIRS_PER_OBJECT).collect();
    if chunks.len() <= 1 {
        s.push("json_build_object(");
        list(s, chunks.first().copied().unwrap_or(&[]), |s, i| {
            item_pair(s, node, i)
        });
        s.push(")");
        return;
    }
    s.push("(");
    for (n, chunk) in chunks.iter().enumerate() {
        if n > 0 {
            s.push(" || ");
        }
        s.push("jsonb_build_object(");
        list(s, chunk, |s, i| item_pair(s, node, i));
        s.push(")");
    }
    s.push(")::json");
}

fn item_pair(s: &mut Statement, node: &ReadNode<'_>, item: &Item<'_>) {
    match item {
        Item::Column { expr, cast, name } => {
            s.param(name.as_str());
            s.push("::text, ");
            match cast {
                Some(ty) => {
                    s.push("CAST(");
                    col_expr(s, node.alias, expr);
                    s.push(" AS ");
                    s.push(ty);
                    s.push(")");
                }
                None => col_expr(s, node.alias, expr),
            }
        }
        Item::Embed(e) => {
            s.param(e.label.as_str());
            s.push("::text, ");
            embed_value(s, node, e);
        }
    }
}

fn join_pairs<'a>(parent: &ReadNode<'_>, e: &EmbedPlan<'a>) -> Vec<(Ident<'a>, usize, Ident<'a>)> {
    e.rel
        .join
        .iter()
        .map(|(child, parent_col)| (*child, parent.alias, *parent_col))
        .collect()
}

/// A to-one embed is a scalar subquery giving an object or NULL; a to-many one aggregates an
/// array (empty, never NULL).
fn embed_value(s: &mut Statement, parent: &ReadNode<'_>, e: &EmbedPlan<'_>) {
    let join = join_pairs(parent, e);
    if e.rel.to_one {
        s.push("(SELECT _pgrst_e.pgrst_row FROM (");
        node_select(s, &e.node, From::Table, &join);
        s.push(") AS _pgrst_e LIMIT 1)");
    } else {
        s.push("(SELECT coalesce(json_agg(_pgrst_e.pgrst_row), '[]') FROM (");
        node_select(s, &e.node, From::Table, &join);
        s.push(") AS _pgrst_e)");
    }
}

/// `EXISTS` for `!inner`: the parent row stays only if the embed has a matching row.
fn inner_exists(s: &mut Statement, parent: &ReadNode<'_>, e: &EmbedPlan<'_>) {
    let join = join_pairs(parent, e);
    s.push("EXISTS (SELECT 1 FROM ");
    s.table(e.node.table);
    s.push(" AS ");
    s.alias(e.node.alias);
    where_clause(s, &e.node, &join);
    s.push(")");
}

fn where_clause(s: &mut Statement, node: &ReadNode<'_>, join: &[(Ident<'_>, usize, Ident<'_>)]) {
    let inner: Vec<&EmbedPlan<'_>> = node.embeds().filter(|e| e.inner).collect();
    if join.is_empty() && node.conds.is_empty() && inner.is_empty() {
        return;
    }
    s.push(" WHERE ");
    let mut first = true;
    let mut and = |s: &mut Statement| {
        if !first {
            s.push(" AND ");
        }
        first = false;
    };
    for (col, parent_alias, parent_col) in join {
        and(s);
        s.column(node.alias, *col);
        s.push(" = ");
        s.column(*parent_alias, *parent_col);
    }
    for c in &node.conds {
        and(s);
        cond(s, node.alias, c);
    }
    for e in inner {
        and(s);
        inner_exists(s, node, e);
    }
}

fn inner_only_where(s: &mut Statement, node: &ReadNode<'_>) {
    let inner: Vec<&EmbedPlan<'_>> = node.embeds().filter(|e| e.inner).collect();
    if inner.is_empty() {
        return;
    }
    s.push(" WHERE ");
    list(s, &inner, |s, e| inner_exists(s, node, e));
}

fn conds_where(s: &mut Statement, alias: usize, conds: &[Cond<'_>]) {
    if conds.is_empty() {
        return;
    }
    s.push(" WHERE ");
    for (n, c) in conds.iter().enumerate() {
        if n > 0 {
            s.push(" AND ");
        }
        cond(s, alias, c);
    }
}

fn col_expr(s: &mut Statement, alias: usize, e: &ColExpr<'_>) {
    s.column(alias, e.column);
    for op in &e.json_path {
        s.push(if op.text { "->>" } else { "->" });
        match &op.operand {
            JsonOperand::Key(k) => {
                s.param(k.as_str());
                s.push("::text");
            }
            JsonOperand::Idx(i) => {
                s.param(i.as_str());
                s.push("::int");
            }
        }
    }
}

fn cond(s: &mut Statement, alias: usize, c: &Cond<'_>) {
    match c {
        Cond::Filter { expr, negate, op } => {
            if *negate {
                s.push("NOT ");
            }
            s.push("(");
            col_expr(s, alias, expr);
            operation(s, op);
            s.push(")");
        }
        Cond::Expr {
            negate,
            or,
            children,
        } => {
            if *negate {
                s.push("NOT ");
            }
            s.push("(");
            for (n, child) in children.iter().enumerate() {
                if n > 0 {
                    s.push(if *or { " OR " } else { " AND " });
                }
                cond(s, alias, child);
            }
            s.push(")");
        }
    }
}

fn operation(s: &mut Statement, op: &Operation) {
    match op {
        Operation::Compare { op, quant, value } => {
            s.push(" ");
            s.push(op.sql());
            s.push(" ");
            // PostgREST lets `*` stand for `%` in like patterns (no escaping in URLs).
            let value = if matches!(op, CmpOp::Like | CmpOp::ILike) {
                value.replace('*', "%")
            } else {
                value.clone()
            };
            match quant {
                Some(Quant::Any) => {
                    s.push("ANY(");
                    s.param(value);
                    s.push(")");
                }
                Some(Quant::All) => {
                    s.push("ALL(");
                    s.param(value);
                    s.push(")");
                }
                None => s.param(value),
            }
        }
        Operation::In(values) if values.len() == 1 && values[0].is_empty() => {
            s.push(" = ANY('{}')")
        }
        Operation::In(values) => {
            s.push(" = ANY(");
            s.param(array_literal(values));
            s.push(")");
        }
        Operation::Is(v) => s.push(match v {
            IsVal::Null => " IS NULL",
            IsVal::NotNull => " IS NOT NULL",
            IsVal::True => " IS TRUE",
            IsVal::False => " IS FALSE",
            IsVal::Unknown => " IS UNKNOWN",
        }),
        Operation::IsDistinct(v) => {
            s.push(" IS DISTINCT FROM ");
            s.param(v.as_str());
        }
        Operation::Fts { kind, lang, value } => {
            s.push(" @@ ");
            s.push(kind.function());
            s.push("(");
            if let Some(lang) = lang {
                s.param(lang.as_str());
                s.push("::regconfig, ");
            }
            s.param(value.as_str());
            s.push("::text)");
        }
    }
}

fn order_term(s: &mut Statement, node: &ReadNode<'_>, o: &Order<'_>) {
    match &o.target {
        OrderTarget::Column(e) => col_expr(s, node.alias, e),
        OrderTarget::Related { embed, expr } => {
            if let Some(e) = node.embeds().nth(*embed) {
                let join = join_pairs(node, e);
                s.push("(SELECT ");
                col_expr(s, e.node.alias, expr);
                s.push(" FROM ");
                s.table(e.node.table);
                s.push(" AS ");
                s.alias(e.node.alias);
                let bare = ReadNode {
                    conds: Vec::new(),
                    items: Vec::new(),
                    ..e.node.clone()
                };
                where_clause(s, &bare, &join);
                s.push(" LIMIT 1)");
            } else {
                s.push("NULL");
            }
        }
    }
    match o.desc {
        Some(true) => s.push(" DESC"),
        Some(false) => s.push(" ASC"),
        None => {}
    }
    match o.nulls_first {
        Some(true) => s.push(" NULLS FIRST"),
        Some(false) => s.push(" NULLS LAST"),
        None => {}
    }
}

fn list<T>(s: &mut Statement, items: &[T], mut each: impl FnMut(&mut Statement, &T)) {
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            s.push(", ");
        }
        each(s, item);
    }
}

/// A PostgreSQL array literal of quoted elements (`{"a","b \"c\""}`), bound as one value.
pub fn array_literal(values: &[String]) -> String {
    let mut out = String::from("{");
    for (n, v) in values.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push('"');
        for c in v.chars().filter(|c| *c != '\0') {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::{
        plan::{MutationKind, Planner},
        request::{parse_query, Missing, Window},
        schema::{tests::demo, SchemaCache},
    };

    fn read_sql(s: &SchemaCache, table: &str, qs: &str) -> Statement {
        let q = parse_query(qs).unwrap();
        let mut p = Planner::new(s);
        let t = p.table(table).unwrap();
        let node = p
            .read(
                t,
                &q,
                Window {
                    offset: Some(0),
                    limit: Some(1000),
                },
            )
            .unwrap();
        read_statement(&node, true, BodyShape::default())
    }

    /// No hostile text in the SQL, and every placeholder has its parameter.
    fn assert_no_request_text(st: &Statement, hostile: &[&str]) {
        for h in hostile {
            assert!(!st.sql.contains(h), "{h:?} leaked into {}", st.sql);
        }
        let mut rest = st.sql.as_str();
        while let Some(i) = rest.find('$') {
            rest = &rest[i + 1..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            let n: usize = digits.parse().unwrap();
            assert!(n >= 1 && n <= st.params.len(), "{}", st.sql);
        }
    }

    #[test]
    fn values_become_parameters() {
        let s = demo();
        let evil = "x'); drop table workspaces;--";
        let qs = format!(
            "select=id,name&name=eq.{}&slug=in.(a,%22b,c%22)&or=(status.eq.%22{}%22,id.is.null)&order=last_active_at.desc.nullslast",
            percent_encoding::utf8_percent_encode(evil, percent_encoding::NON_ALPHANUMERIC),
            percent_encoding::utf8_percent_encode(evil, percent_encoding::NON_ALPHANUMERIC),
        );
        let st = read_sql(&s, "workspaces", &qs);
        assert_no_request_text(&st, &[evil, "drop", "'x'"]);
        assert!(st.params.contains(&TextParam(evil.into())));
        assert!(st.params.contains(&TextParam(r#"{"a","b,c"}"#.into())));
        assert!(st.sql.contains("\"pgrst_0\".\"name\" = $"), "{}", st.sql);
        assert!(
            st.sql
                .contains("ORDER BY \"pgrst_0\".\"last_active_at\" DESC NULLS LAST"),
            "{}",
            st.sql
        );
        assert!(st
            .sql
            .contains("FROM \"public\".\"workspaces\" AS \"pgrst_0\""));
        // The output keys are values too.
        assert!(st.params.contains(&TextParam("name".into())));
    }

    #[test]
    fn encoded_query_separators_stay_one_value() {
        let s = demo();
        let st = read_sql(&s, "workspaces", "org_id=eq.x%26org_id%3Dneq.0");
        assert!(st.params.contains(&TextParam("x&org_id=neq.0".into())));
        assert_eq!(st.sql.matches("org_id").count(), 3, "{}", st.sql); // output key param excluded
    }

    #[test]
    fn identifiers_are_the_cached_ones_quoted() {
        let s = demo();
        let st = read_sql(&s, "weird\"name", "select=%22a%5C%22b%22");
        assert!(
            st.sql.contains("\"public\".\"weird\"\"name\""),
            "{}",
            st.sql
        );
        assert!(st.sql.contains("\"pgrst_0\".\"a\"\"b\""), "{}", st.sql);
    }

    #[test]
    fn aliases_and_json_paths_are_bound() {
        let s = demo();
        let st = read_sql(
            &s,
            "workspaces",
            "select=%22evil%5C%22)%20--%22:name,progress_data->>step::text",
        );
        assert!(st.params.contains(&TextParam("evil\") --".into())));
        assert!(st.params.contains(&TextParam("step".into())));
        assert!(
            st.sql.contains("CAST(\"pgrst_0\".\"progress_data\"->>$"),
            "{}",
            st.sql
        );
        assert!(!st.sql.contains("evil"));
    }

    #[test]
    fn embeds_are_correlated_subqueries() {
        let s = demo();
        let st = read_sql(&s, "org_memberships", "select=org_id,role,organizations(*)");
        assert!(st.sql.contains("FROM \"public\".\"organizations\" AS \"pgrst_1\" WHERE \"pgrst_1\".\"id\" = \"pgrst_0\".\"org_id\""), "{}", st.sql);
        assert!(st.sql.contains("LIMIT 1)"));
        let st = read_sql(
            &s,
            "organizations",
            "select=id,workspaces!inner(name)&workspaces.status=eq.active",
        );
        assert!(
            st.sql
                .contains("coalesce(json_agg(_pgrst_e.pgrst_row), '[]')"),
            "{}",
            st.sql
        );
        assert!(
            st.sql
                .contains("EXISTS (SELECT 1 FROM \"public\".\"workspaces\""),
            "{}",
            st.sql
        );
    }

    #[test]
    fn in_list_literals_escape_quotes_and_backslashes() {
        assert_eq!(array_literal(&["a".into(), "b,c".into()]), r#"{"a","b,c"}"#);
        assert_eq!(
            array_literal(&[r#"x"}"#.into(), r"\".into()]),
            r#"{"x\"}","\\"}"#
        );
        let s = demo();
        let st = read_sql(&s, "workspaces", "id=in.()");
        assert!(st.sql.contains("= ANY('{}')"));
    }

    #[test]
    fn like_stars_become_percent_and_is_has_no_parameter() {
        let s = demo();
        let st = read_sql(&s, "workspaces", "name=ilike.*web*&status=not.is.null");
        assert!(st.params.contains(&TextParam("%web%".into())));
        assert!(
            st.sql.contains("NOT (\"pgrst_0\".\"status\" IS NULL)"),
            "{}",
            st.sql
        );
    }

    #[test]
    fn inserts_bind_the_body_once() {
        let s = demo();
        let q = parse_query("on_conflict=org_id,slug").unwrap();
        let mut p = Planner::new(&s);
        let t = p.table("workspaces").unwrap();
        let kind = MutationKind::Insert {
            resolution: Some(Resolution::MergeDuplicates),
            missing: None,
        };
        let plan = p
            .mutate(
                t,
                &q,
                kind,
                &["name".into(), "org_id".into(), "slug".into()],
                true,
            )
            .unwrap();
        let body = r#"[{"name":"'); drop table x;--","org_id":"1","slug":"s"}]"#;
        let st = mutate_statement(&plan, body, BodyShape::default(), true);
        assert!(st.sql.starts_with("WITH pgrst_source AS (INSERT INTO \"public\".\"workspaces\" AS \"pgrst_0\" (\"name\", \"org_id\", \"slug\") SELECT pgrst_body.\"name\""), "{}", st.sql);
        assert!(st
            .sql
            .contains("json_populate_recordset(NULL::\"public\".\"workspaces\", $1)"));
        assert!(st.sql.contains(
            "ON CONFLICT (\"org_id\", \"slug\") DO UPDATE SET \"name\" = EXCLUDED.\"name\""
        ));
        assert!(st.sql.contains("xmax = 0"));
        assert_eq!(st.params[0], TextParam(body.into()));
        assert!(!st.sql.contains("drop"));
    }

    #[test]
    fn missing_default_uses_catalog_defaults() {
        let s = demo();
        let q = parse_query("").unwrap();
        let mut p = Planner::new(&s);
        let t = p.table("workspaces").unwrap();
        let kind = MutationKind::Insert {
            resolution: None,
            missing: Some(Missing::Default),
        };
        let plan = p.mutate(t, &q, kind, &["name".into()], false).unwrap();
        let st = mutate_statement(&plan, "[]", BodyShape::default(), false);
        assert!(
            st.sql.contains(
                "CASE WHEN pgrst_elem.j::jsonb ? $1::text THEN pgrst_body.\"name\" ELSE NULL END"
            ),
            "{}",
            st.sql
        );
        assert!(st.sql.contains("RETURNING 1"));
    }

    #[test]
    fn updates_and_deletes_are_filtered() {
        let s = demo();
        let q = parse_query("id=eq.1&select=id").unwrap();
        let mut p = Planner::new(&s);
        let t = p.table("workspaces").unwrap();
        let plan = p
            .mutate(t, &q, MutationKind::Update, &["name".into()], true)
            .unwrap();
        let st = mutate_statement(&plan, r#"{"name":"n"}"#, BodyShape::default(), false);
        assert!(st.sql.contains("UPDATE \"public\".\"workspaces\" AS \"pgrst_0\" SET \"name\" = pgrst_body.\"name\" FROM json_populate_record(NULL::\"public\".\"workspaces\", $1) AS pgrst_body WHERE (\"pgrst_0\".\"id\" = $2)"), "{}", st.sql);
        let plan = p.mutate(t, &q, MutationKind::Delete, &[], false).unwrap();
        let st = mutate_statement(&plan, "", BodyShape::default(), false);
        assert!(st.sql.contains("DELETE FROM \"public\".\"workspaces\" AS \"pgrst_1\" WHERE (\"pgrst_1\".\"id\" = $1) RETURNING 1"), "{}", st.sql);
    }
}
