//! The request as PostgREST reads it: the query string (`select`, filters, `or`/`and`,
//! `order`, `limit`/`offset`, `columns`, `on_conflict`) and the `Prefer`, `Accept` and `Range`
//! headers, parsed into types that know nothing about the schema yet. The grammar follows
//! PostgREST's `ApiRequest/QueryParams.hs`; nothing here produces SQL.

use std::collections::HashMap;

use axum::http::HeaderMap;

use super::error::ApiError;

// ---------------------------------------------------------------------------------------------
// Types

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonOperand {
    Key(String),
    /// An array index, kept as text (`-1`, `0`) and bound as a parameter.
    Idx(String),
}

/// `->` (json) or `->>` (text) with its operand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonOp {
    pub text: bool,
    pub operand: JsonOperand,
}

/// A column, possibly followed by a JSON path (`metadata->>key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub json_path: Vec<JsonOp>,
}

impl Field {
    pub fn plain(name: &str) -> Field {
        Field {
            name: name.to_string(),
            json_path: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectItem {
    Star,
    Column {
        field: Field,
        alias: Option<String>,
        cast: Option<String>,
    },
    Embed(Embed),
}

/// `alias:target!hint!inner(select…)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embed {
    pub target: String,
    pub alias: Option<String>,
    pub hint: Option<String>,
    pub inner: bool,
    pub select: Vec<SelectItem>,
}

impl Embed {
    /// The key of the embedded value in the JSON output, and how filters address it.
    pub fn label(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.target)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    ILike,
    Match,
    IMatch,
    Contains,
    Contained,
    Overlap,
    StrictlyLeft,
    StrictlyRight,
    NotExtendsRight,
    NotExtendsLeft,
    Adjacent,
}

impl CmpOp {
    /// The SQL operator; a fixed string, never request text.
    pub fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Neq => "<>",
            CmpOp::Gt => ">",
            CmpOp::Gte => ">=",
            CmpOp::Lt => "<",
            CmpOp::Lte => "<=",
            CmpOp::Like => "LIKE",
            CmpOp::ILike => "ILIKE",
            CmpOp::Match => "~",
            CmpOp::IMatch => "~*",
            CmpOp::Contains => "@>",
            CmpOp::Contained => "<@",
            CmpOp::Overlap => "&&",
            CmpOp::StrictlyLeft => "<<",
            CmpOp::StrictlyRight => ">>",
            CmpOp::NotExtendsRight => "&<",
            CmpOp::NotExtendsLeft => "&>",
            CmpOp::Adjacent => "-|-",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    Any,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsVal {
    Null,
    NotNull,
    True,
    False,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtsKind {
    Fts,
    Plain,
    Phrase,
    Websearch,
}

impl FtsKind {
    pub fn function(self) -> &'static str {
        match self {
            FtsKind::Fts => "to_tsquery",
            FtsKind::Plain => "plainto_tsquery",
            FtsKind::Phrase => "phraseto_tsquery",
            FtsKind::Websearch => "websearch_to_tsquery",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Compare {
        op: CmpOp,
        quant: Option<Quant>,
        value: String,
    },
    In(Vec<String>),
    Is(IsVal),
    IsDistinct(String),
    Fts {
        kind: FtsKind,
        lang: Option<String>,
        value: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub field: Field,
    pub negate: bool,
    pub op: Operation,
}

/// `or=(…)` / `and=(…)` trees; the leaves are filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logic {
    Filter(Filter),
    Expr {
        negate: bool,
        or: bool,
        children: Vec<Logic>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerm {
    /// `order=organizations(name)`: ordering by a to-one embedded resource's column.
    pub relation: Option<String>,
    pub field: Field,
    pub desc: Option<bool>,
    pub nulls_first: Option<bool>,
}

/// The names of embedded resources leading to the level a parameter applies to; empty for the
/// root table.
pub type EmbedPath = Vec<String>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub offset: Option<u64>,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryParams {
    pub select: Vec<SelectItem>,
    pub filters: Vec<(EmbedPath, Filter)>,
    pub logic: Vec<(EmbedPath, Logic)>,
    pub order: Vec<(EmbedPath, Vec<OrderTerm>)>,
    pub windows: HashMap<EmbedPath, Window>,
    pub columns: Option<Vec<String>>,
    pub on_conflict: Option<Vec<String>>,
    /// `apikey=` (WebSocket style); the gateway consumes it, it is not a filter.
    pub apikey: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Query string

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

/// `organizations.order` → `[organizations]` (the last segment is the parameter itself).
fn parse_embed_path(key: &str) -> Result<EmbedPath, ApiError> {
    let mut p = Parser::new("tree path", key);
    let mut names = vec![p.field_name()?];
    while p.eat('.') {
        names.push(p.field_name()?);
    }
    p.end()?;
    names.pop();
    Ok(names)
}

/// `a.b.not.or` → (`[a, b]`, `not.or`).
fn parse_logic_path(key: &str) -> Result<(EmbedPath, String), ApiError> {
    let mut p = Parser::new("logic path", key);
    let mut names = vec![p.field_name()?];
    while p.eat('.') {
        names.push(p.field_name()?);
    }
    p.end()?;
    let op = names.pop().unwrap_or_default();
    let negated = names.iter().any(|n| n == "not");
    let path = names.into_iter().filter(|n| n != "not").collect();
    Ok((path, if negated { format!("not.{op}") } else { op }))
}

/// A filter key: `col`, `col->>key`, `embed.col`.
pub fn parse_tree_path(key: &str) -> Result<(EmbedPath, Field), ApiError> {
    let mut p = Parser::new("tree path", key);
    let mut names = vec![p.field_name()?];
    while p.eat('.') {
        names.push(p.field_name()?);
    }
    let json_path = p.json_path()?;
    p.end()?;
    let name = names.pop().unwrap_or_default();
    Ok((names, Field { name, json_path }))
}

pub fn parse_select(s: &str) -> Result<Vec<SelectItem>, ApiError> {
    let mut p = Parser::new("select parameter", s);
    let items = p.select_forest(0)?;
    p.end()?;
    Ok(items)
}

pub fn parse_filter_value(s: &str) -> Result<(bool, Operation), ApiError> {
    let mut p = Parser::new("filter", s);
    let r = p.op_expr(false)?;
    p.end()?;
    Ok(r)
}

/// `or=(…)` is parsed as `or(…)`.
pub fn parse_logic_param(op: &str, value: &str) -> Result<Logic, ApiError> {
    let text = format!("{op}{value}");
    let mut p = Parser::new("logic tree", &text);
    p.input_for_messages = value.to_string();
    let tree = p.logic_tree()?;
    p.end()?;
    match tree {
        Logic::Expr { .. } => Ok(tree),
        Logic::Filter(_) => Err(p.error("logic operator (and, or)")),
    }
}

pub fn parse_order(s: &str) -> Result<Vec<OrderTerm>, ApiError> {
    let mut p = Parser::new("order", s);
    let mut terms = vec![p.order_term()?];
    while p.eat(',') {
        terms.push(p.order_term()?);
    }
    p.end()?;
    Ok(terms)
}

pub fn parse_columns(what: &'static str, s: &str) -> Result<Vec<String>, ApiError> {
    let mut p = Parser::new(what, s);
    p.ws();
    let mut cols = vec![p.field_name()?];
    p.ws();
    while p.eat(',') {
        p.ws();
        cols.push(p.field_name()?);
        p.ws();
    }
    p.end()?;
    Ok(cols)
}

/// A hand-written version of PostgREST's parsec grammar. Errors carry PostgREST's message
/// shape: `"failed to parse filter (…)" (line 1, column N)`.
struct Parser<'a> {
    what: &'static str,
    s: &'a str,
    i: usize,
    input_for_messages: String,
}

const MAX_DEPTH: usize = 8;

impl<'a> Parser<'a> {
    fn new(what: &'static str, s: &'a str) -> Parser<'a> {
        Parser {
            what,
            s,
            i: 0,
            input_for_messages: s.to_string(),
        }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn peek2(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        Some(c)
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.i += c.len_utf8();
            true
        } else {
            false
        }
    }
    fn eat_str(&mut self, t: &str) -> bool {
        if self.rest().starts_with(t) {
            self.i += t.len();
            true
        } else {
            false
        }
    }
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }
    fn error(&self, expecting: &str) -> ApiError {
        let column = self.s[..self.i].chars().count() + 1;
        let unexpected = match self.peek() {
            Some(c) => format!("unexpected {:?}", c.to_string()),
            None => "unexpected end of input".to_string(),
        };
        ApiError::query_param(
            self.what,
            &self.input_for_messages,
            column,
            format!("{unexpected} expecting {expecting}"),
        )
    }
    fn expect(&mut self, c: char) -> Result<(), ApiError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("{:?}", c.to_string())))
        }
    }
    fn end(&mut self) -> Result<(), ApiError> {
        self.ws();
        if self.at_end() {
            Ok(())
        } else {
            Err(self.error("end of input"))
        }
    }
    /// Lookahead for the end of an item: `,`, `)` or the end.
    fn at_item_end(&self) -> bool {
        matches!(self.peek(), None | Some(',' | ')'))
    }

    /// `"quoted \" name"` or identifier characters joined by dashes (not `->`).
    fn field_name(&mut self) -> Result<String, ApiError> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let mut parts = vec![self.identifier()?];
        while self.peek() == Some('-') && self.peek2() != Some('>') {
            self.bump();
            parts.push(self.identifier()?);
        }
        Ok(parts.join("-"))
    }

    fn identifier(&mut self) -> Result<String, ApiError> {
        let start = self.i;
        while matches!(self.peek(), Some(c) if c.is_alphanumeric() || matches!(c, '_' | ' ' | '$'))
        {
            self.bump();
        }
        if start == self.i {
            return Err(self.error("field name (* or [a..z0..9_$])"));
        }
        Ok(self.s[start..self.i].trim().to_string())
    }

    /// A double-quoted value; `\x` stands for `x`.
    fn quoted(&mut self) -> Result<String, ApiError> {
        self.expect('"')?;
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error("\"\\\"\"")),
                Some('\\') => match self.bump() {
                    Some(c) => out.push(c),
                    None => return Err(self.error("any character")),
                },
                Some('"') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn json_path(&mut self) -> Result<Vec<JsonOp>, ApiError> {
        let mut path = Vec::new();
        loop {
            let text = if self.eat_str("->>") {
                true
            } else if self.eat_str("->") {
                false
            } else {
                return Ok(path);
            };
            let operand = match self.json_index() {
                Some(idx) => JsonOperand::Idx(idx),
                None => JsonOperand::Key(self.json_key()?),
            };
            path.push(JsonOp { text, operand });
        }
    }

    fn json_index(&mut self) -> Option<String> {
        let save = self.i;
        let neg = self.eat('-');
        let start = self.i;
        while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
            self.bump();
        }
        let digits = &self.s[start..self.i];
        let ends = self.at_end()
            || ["->", "::", ".", ","]
                .iter()
                .any(|e| self.rest().starts_with(e));
        if digits.is_empty() || !ends {
            self.i = save;
            return None;
        }
        Some(if neg {
            format!("-{digits}")
        } else {
            digits.to_string()
        })
    }

    fn json_key(&mut self) -> Result<String, ApiError> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let part = |p: &mut Parser| -> Result<String, ApiError> {
            let start = p.i;
            while matches!(p.peek(), Some(c) if !"(-:.,>)".contains(c)) {
                p.bump();
            }
            if start == p.i {
                return Err(p.error("any non reserved character different from: .,>()"));
            }
            Ok(p.s[start..p.i].trim().to_string())
        };
        let mut parts = vec![part(self)?];
        while self.peek() == Some('-') && self.peek2() != Some('>') {
            self.bump();
            parts.push(part(self)?);
        }
        Ok(parts.join("-"))
    }

    fn field(&mut self) -> Result<Field, ApiError> {
        self.ws();
        let name = self.field_name()?;
        let json_path = self.json_path()?;
        self.ws();
        Ok(Field { name, json_path })
    }

    // -- select ---------------------------------------------------------------------------

    fn select_forest(&mut self, depth: usize) -> Result<Vec<SelectItem>, ApiError> {
        if depth > MAX_DEPTH {
            return Err(self.error("fewer nested embeddings"));
        }
        let mut items = Vec::new();
        self.ws();
        if self.at_end() || self.peek() == Some(')') {
            return Ok(items);
        }
        loop {
            items.push(self.select_tree(depth)?);
            self.ws();
            if !self.eat(',') {
                return Ok(items);
            }
        }
    }

    fn select_tree(&mut self, depth: usize) -> Result<SelectItem, ApiError> {
        self.ws();
        if self.rest().starts_with("...") {
            return Err(ApiError::NotImplemented(
                "Spread embedding (`...`) is not supported by devcloud".into(),
            ));
        }
        if self.eat('*') {
            self.ws();
            if !self.at_item_end() {
                return Err(self.error("\",\", \")\" or end of input"));
            }
            return Ok(SelectItem::Star);
        }
        let save = self.i;
        if let Some(embed) = self.try_embed(depth)? {
            return Ok(embed);
        }
        self.i = save;
        self.select_field()
    }

    fn try_alias(&mut self) -> Option<String> {
        let save = self.i;
        if let Ok(alias) = self.field_name() {
            if self.peek() == Some(':') && self.peek2() != Some(':') {
                self.bump();
                return Some(alias);
            }
        }
        self.i = save;
        None
    }

    /// `alias:target!hint!inner(…)`; `Ok(None)` when the text is not an embedding at all.
    fn try_embed(&mut self, depth: usize) -> Result<Option<SelectItem>, ApiError> {
        let alias = self.try_alias();
        let Ok(target) = self.field_name() else {
            return Ok(None);
        };
        if target == "count" {
            return Ok(None);
        }
        let (mut hint, mut inner) = (None, false);
        for _ in 0..2 {
            if !self.eat('!') {
                break;
            }
            let word = self
                .field_name()
                .map_err(|_| self.error("embed hint or join type"))?;
            match word.as_str() {
                "inner" => inner = true,
                "left" => inner = false,
                _ => hint = Some(word),
            }
        }
        if !self.eat('(') {
            return Ok(None);
        }
        let select = self.select_forest(depth + 1)?;
        self.ws();
        self.expect(')')?;
        Ok(Some(SelectItem::Embed(Embed {
            target,
            alias,
            hint,
            inner,
            select,
        })))
    }

    fn select_field(&mut self) -> Result<SelectItem, ApiError> {
        let alias = self.try_alias();
        if self.rest().starts_with("count()") {
            return Err(ApiError::AggregatesNotAllowed);
        }
        let field = self.field()?;
        let cast = if self.eat_str("::") {
            Some(self.identifier()?)
        } else {
            None
        };
        if self.peek() == Some('.') {
            let agg = ["sum()", "avg()", "count()", "max()", "min()"];
            if agg.iter().any(|a| self.rest()[1..].starts_with(a)) {
                return Err(ApiError::AggregatesNotAllowed);
            }
        }
        self.ws();
        if !self.at_item_end() {
            return Err(self.error("\"->\", \"::\", \",\", \")\" or end of input"));
        }
        Ok(SelectItem::Column { field, alias, cast })
    }

    // -- filters --------------------------------------------------------------------------

    /// `[not.]op.value`. Inside `or=(…)` a value ends at `,` or `)` unless quoted or `{…}`.
    fn op_expr(&mut self, in_logic: bool) -> Result<(bool, Operation), ApiError> {
        let negate = self.eat_str("not.");
        let start = self.i;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric()) {
            self.bump();
        }
        let token = &self.s[start..self.i];
        let op = match token {
            "in" => {
                self.expect('.')?;
                Operation::In(self.list_value()?)
            }
            "is" => {
                self.expect('.')?;
                Operation::Is(self.is_value()?)
            }
            "isdistinct" => {
                self.expect('.')?;
                Operation::IsDistinct(self.single_value(in_logic)?)
            }
            "fts" | "plfts" | "phfts" | "wfts" => {
                let kind = match token {
                    "fts" => FtsKind::Fts,
                    "plfts" => FtsKind::Plain,
                    "phfts" => FtsKind::Phrase,
                    _ => FtsKind::Websearch,
                };
                let lang = if self.eat('(') {
                    let l = self.identifier()?;
                    self.expect(')')?;
                    Some(l)
                } else {
                    None
                };
                self.expect('.')?;
                Operation::Fts {
                    kind,
                    lang,
                    value: self.single_value(in_logic)?,
                }
            }
            _ => {
                let (op, quantifiable) = match token {
                    "eq" => (CmpOp::Eq, true),
                    "gt" => (CmpOp::Gt, true),
                    "gte" => (CmpOp::Gte, true),
                    "lt" => (CmpOp::Lt, true),
                    "lte" => (CmpOp::Lte, true),
                    "like" => (CmpOp::Like, true),
                    "ilike" => (CmpOp::ILike, true),
                    "match" => (CmpOp::Match, true),
                    "imatch" => (CmpOp::IMatch, true),
                    "neq" => (CmpOp::Neq, false),
                    "cs" => (CmpOp::Contains, false),
                    "cd" => (CmpOp::Contained, false),
                    "ov" => (CmpOp::Overlap, false),
                    "sl" => (CmpOp::StrictlyLeft, false),
                    "sr" => (CmpOp::StrictlyRight, false),
                    "nxr" => (CmpOp::NotExtendsRight, false),
                    "nxl" => (CmpOp::NotExtendsLeft, false),
                    "adj" => (CmpOp::Adjacent, false),
                    _ => {
                        self.i = start;
                        return Err(self.error("\"not\" or operator (eq, gt, ...)"));
                    }
                };
                let quant = if !quantifiable {
                    None
                } else if self.eat_str("(any)") {
                    Some(Quant::Any)
                } else if self.eat_str("(all)") {
                    Some(Quant::All)
                } else {
                    None
                };
                self.expect('.')?;
                Operation::Compare {
                    op,
                    quant,
                    value: self.single_value(in_logic)?,
                }
            }
        };
        Ok((negate, op))
    }

    fn single_value(&mut self, in_logic: bool) -> Result<String, ApiError> {
        if !in_logic {
            let v = self.rest().to_string();
            self.i = self.s.len();
            return Ok(v);
        }
        if self.peek() == Some('"') {
            let save = self.i;
            if let Ok(v) = self.quoted() {
                if self.at_item_end() {
                    return Ok(v);
                }
            }
            self.i = save;
        }
        if self.peek() == Some('{') {
            let save = self.i;
            if let Some(close) = self.rest().find('}') {
                let inner = &self.rest()[1..close];
                if !inner.contains('{') {
                    let v = self.rest()[..=close].to_string();
                    self.i += close + 1;
                    return Ok(v);
                }
            }
            self.i = save;
        }
        let start = self.i;
        while !self.at_item_end() {
            self.bump();
        }
        Ok(self.s[start..self.i].to_string())
    }

    /// `(a,"b,c",d)`; `()` is the empty list (`[""]`, as PostgREST has it).
    fn list_value(&mut self) -> Result<Vec<String>, ApiError> {
        self.ws();
        self.expect('(')?;
        self.ws();
        let mut items = Vec::new();
        loop {
            let save = self.i;
            let mut item = None;
            if self.peek() == Some('"') {
                if let Ok(v) = self.quoted() {
                    if matches!(self.peek(), Some(',' | ')')) {
                        item = Some(v);
                    }
                }
                if item.is_none() {
                    self.i = save;
                }
            }
            let item = match item {
                Some(v) => v,
                None => {
                    let start = self.i;
                    while !matches!(self.peek(), None | Some(',' | ')')) {
                        self.bump();
                    }
                    self.s[start..self.i].to_string()
                }
            };
            items.push(item);
            if !self.eat(',') {
                break;
            }
        }
        self.ws();
        self.expect(')')?;
        self.ws();
        Ok(items)
    }

    fn is_value(&mut self) -> Result<IsVal, ApiError> {
        let start = self.i;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
            self.bump();
        }
        let v = match self.s[start..self.i].to_ascii_lowercase().as_str() {
            "null" => IsVal::Null,
            "not_null" => IsVal::NotNull,
            "true" => IsVal::True,
            "false" => IsVal::False,
            "unknown" => IsVal::Unknown,
            _ => {
                self.i = start;
                return Err(self.error("isVal: (null, not_null, true, false, unknown)"));
            }
        };
        Ok(v)
    }

    fn logic_tree(&mut self) -> Result<Logic, ApiError> {
        self.logic_tree_at(0)
    }

    fn logic_tree_at(&mut self, depth: usize) -> Result<Logic, ApiError> {
        if depth > MAX_DEPTH {
            return Err(self.error("fewer nested logic operators"));
        }
        self.ws();
        let save = self.i;
        let leaf = (|| -> Result<Filter, ApiError> {
            let field = self.field()?;
            self.expect('.')?;
            let (negate, op) = self.op_expr(true)?;
            Ok(Filter { field, negate, op })
        })();
        let leaf_err = match leaf {
            Ok(f) => {
                self.ws();
                return Ok(Logic::Filter(f));
            }
            Err(e) => e,
        };
        let leaf_end = self.i;
        self.i = save;
        let negate = self.eat_str("not.");
        let or = if self.eat_str("and") {
            false
        } else if self.eat_str("or") {
            true
        } else {
            // Report the failure of whichever alternative got further.
            if leaf_end > save {
                return Err(leaf_err);
            }
            return Err(self.error("field name (* or [a..z0..9_$]), negation operator (not) or logic operator (and, or)"));
        };
        self.ws();
        if self.peek() != Some('(') {
            if leaf_end > save {
                return Err(leaf_err);
            }
            return Err(self.error("\"(\""));
        }
        self.bump();
        let mut children = vec![self.logic_tree_at(depth + 1)?];
        while self.eat(',') {
            children.push(self.logic_tree_at(depth + 1)?);
        }
        self.ws();
        self.expect(')')?;
        self.ws();
        Ok(Logic::Expr {
            negate,
            or,
            children,
        })
    }

    // -- order ----------------------------------------------------------------------------

    fn order_term(&mut self) -> Result<OrderTerm, ApiError> {
        self.ws();
        let save = self.i;
        let mut relation = None;
        if let Ok(name) = self.field_name() {
            if self.eat('(') {
                relation = Some(name);
            } else {
                self.i = save;
            }
        } else {
            self.i = save;
        }
        let field = self.field()?;
        if relation.is_some() {
            self.expect(')')?;
        }
        let desc = if self.eat_str(".asc") {
            Some(false)
        } else if self.eat_str(".desc") {
            Some(true)
        } else {
            None
        };
        let nulls_first = if self.eat_str(".nullsfirst") {
            Some(true)
        } else if self.eat_str(".nullslast") {
            Some(false)
        } else {
            None
        };
        self.ws();
        if !matches!(self.peek(), None | Some(',')) {
            return Err(self.error("\"asc\", \"desc\", \"nullsfirst\" or \"nullslast\""));
        }
        Ok(OrderTerm {
            relation,
            field,
            desc,
            nulls_first,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Headers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    HeadersOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Exact,
    Planned,
    Estimated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    MergeDuplicates,
    IgnoreDuplicates,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Default,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    Strict,
    Lenient,
}

/// The `Prefer` header(s). The first occurrence of each preference wins, as in PostgREST.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preferences {
    pub ret: Option<Return>,
    pub count: Option<Count>,
    pub resolution: Option<Resolution>,
    pub missing: Option<Missing>,
    pub handling: Option<Handling>,
    pub invalid: Vec<String>,
}

impl Preferences {
    pub fn from_headers(headers: &HeaderMap) -> Preferences {
        let mut p = Preferences::default();
        let values = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok());
        for item in values
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match item {
                "return=minimal" => _ = p.ret.get_or_insert(Return::Minimal),
                "return=representation" => _ = p.ret.get_or_insert(Return::Representation),
                "return=headers-only" => _ = p.ret.get_or_insert(Return::HeadersOnly),
                "count=exact" => _ = p.count.get_or_insert(Count::Exact),
                "count=planned" => _ = p.count.get_or_insert(Count::Planned),
                "count=estimated" => _ = p.count.get_or_insert(Count::Estimated),
                "resolution=merge-duplicates" => {
                    _ = p.resolution.get_or_insert(Resolution::MergeDuplicates)
                }
                "resolution=ignore-duplicates" => {
                    _ = p.resolution.get_or_insert(Resolution::IgnoreDuplicates)
                }
                "missing=default" => _ = p.missing.get_or_insert(Missing::Default),
                "missing=null" => _ = p.missing.get_or_insert(Missing::Null),
                "handling=strict" => _ = p.handling.get_or_insert(Handling::Strict),
                "handling=lenient" => _ = p.handling.get_or_insert(Handling::Lenient),
                // Accepted and ignored: the transaction always commits here.
                "tx=commit" | "tx=rollback" => {}
                other if other.starts_with("timezone=") || other.starts_with("max-affected=") => {}
                other => p.invalid.push(other.to_string()),
            }
        }
        p
    }

    /// Planned and estimated counts are exact here: the tables are small.
    pub fn counts(&self) -> bool {
        self.count.is_some()
    }

    pub fn representation(&self) -> bool {
        self.ret == Some(Return::Representation)
    }

    /// `Preference-Applied`, listing what was honoured, in PostgREST's order.
    pub fn applied(&self, resolution: bool, missing: bool, ret: bool) -> Option<String> {
        let mut out = Vec::new();
        if resolution {
            match self.resolution {
                Some(Resolution::MergeDuplicates) => out.push("resolution=merge-duplicates"),
                Some(Resolution::IgnoreDuplicates) => out.push("resolution=ignore-duplicates"),
                None => {}
            }
        }
        if missing {
            match self.missing {
                Some(Missing::Default) => out.push("missing=default"),
                Some(Missing::Null) => out.push("missing=null"),
                None => {}
            }
        }
        if ret {
            match self.ret {
                Some(Return::Minimal) => out.push("return=minimal"),
                Some(Return::Representation) => out.push("return=representation"),
                Some(Return::HeadersOnly) => out.push("return=headers-only"),
                None => {}
            }
        }
        match self.count {
            Some(Count::Exact) => out.push("count=exact"),
            Some(Count::Planned) => out.push("count=planned"),
            Some(Count::Estimated) => out.push("count=estimated"),
            None => {}
        }
        match self.handling {
            Some(Handling::Strict) => out.push("handling=strict"),
            Some(Handling::Lenient) => out.push("handling=lenient"),
            None => {}
        }
        (!out.is_empty()).then(|| out.join(", "))
    }
}

/// What the client accepts: a JSON array (the default) or one object (`.single()`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accept {
    pub single: bool,
    pub strip_nulls: bool,
}

pub fn negotiate(accept: Option<&str>) -> Result<Accept, ApiError> {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(Accept::default());
    };
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let strip_nulls = parts.any(|p| p.eq_ignore_ascii_case("nulls=stripped"));
        match media.as_str() {
            "application/json" | "application/*" | "*/*" => {
                return Ok(Accept {
                    single: false,
                    strip_nulls: false,
                })
            }
            "application/vnd.pgrst.array+json" | "application/vnd.pgrst.array" => {
                return Ok(Accept {
                    single: false,
                    strip_nulls,
                })
            }
            "application/vnd.pgrst.object+json" | "application/vnd.pgrst.object" => {
                return Ok(Accept {
                    single: true,
                    strip_nulls,
                })
            }
            _ => {}
        }
    }
    Err(ApiError::MediaType(accept.to_string()))
}

/// `Range: 0-9` (PostgREST's items range; a leading `items=` is tolerated). `None` when the
/// header is absent or not a range (then it is ignored, as PostgREST ignores it).
pub fn parse_range_header(v: &str) -> Option<(u64, Option<u64>)> {
    let v = v.trim();
    let v = v.strip_prefix("items=").unwrap_or(v);
    let (lo, hi) = v.split_once('-')?;
    if lo.is_empty()
        || !lo.bytes().all(|b| b.is_ascii_digit())
        || !hi.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let lo = lo.parse().ok()?;
    let hi = if hi.is_empty() {
        None
    } else {
        Some(hi.parse().ok()?)
    };
    Some((lo, hi))
}

// ---------------------------------------------------------------------------------------------
// Body

/// A JSON payload for POST/PATCH: the raw text (sent to PostgreSQL untouched, so numbers keep
/// their precision) and its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// For inserts always a JSON array; for updates a JSON object.
    pub json: String,
    pub keys: Vec<String>,
    pub rows: usize,
}

pub const INVALID_JSON: &str = "Empty or invalid json";

/// Checks the body as PostgREST does: an object, or an array of objects with the same keys
/// (unless `columns=` says which keys count).
pub fn parse_payload(body: &[u8], insert: bool, columns_given: bool) -> Result<Payload, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::InvalidBody(INVALID_JSON.into()))?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| ApiError::InvalidBody(INVALID_JSON.into()))?;
    let keys_of = |o: &serde_json::Map<String, serde_json::Value>| {
        let mut k: Vec<String> = o.keys().cloned().collect();
        k.sort();
        k
    };
    match value {
        serde_json::Value::Object(o) => {
            let json = if insert {
                format!("[{text}]")
            } else {
                text.to_string()
            };
            Ok(Payload {
                json,
                keys: keys_of(&o),
                rows: 1,
            })
        }
        serde_json::Value::Array(items) if insert || items.len() == 1 => {
            let mut keys: Option<Vec<String>> = None;
            for item in &items {
                let serde_json::Value::Object(o) = item else {
                    return Err(ApiError::InvalidBody("All object keys must match".into()));
                };
                let k = keys_of(o);
                match &keys {
                    None => keys = Some(k),
                    Some(first) if *first != k && !columns_given => {
                        return Err(ApiError::InvalidBody("All object keys must match".into()))
                    }
                    Some(_) => {}
                }
            }
            let json = match (insert, items.first()) {
                (true, _) => text.to_string(),
                (false, Some(one)) => one.to_string(),
                (false, None) => "{}".to_string(),
            };
            Ok(Payload {
                json,
                keys: keys.unwrap_or_default(),
                rows: items.len(),
            })
        }
        serde_json::Value::Array(_) => Err(ApiError::InvalidBody(INVALID_JSON.into())),
        // PostgREST truncates anything else to an empty array.
        _ => Ok(Payload {
            json: if insert { "[]".into() } else { "{}".into() },
            keys: Vec::new(),
            rows: 0,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(op: CmpOp, v: &str) -> Operation {
        Operation::Compare {
            op,
            quant: None,
            value: v.to_string(),
        }
    }

    fn code(e: ApiError) -> String {
        e.code().to_string()
    }

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
    fn values_keep_dots_and_operators_verbatim() {
        let (neg, op) = parse_filter_value("eq.a.b.eq.c").unwrap();
        assert!(!neg);
        assert_eq!(op, cmp(CmpOp::Eq, "a.b.eq.c"));
        let (_, op) = parse_filter_value("eq.").unwrap();
        assert_eq!(op, cmp(CmpOp::Eq, ""));
    }

    #[test]
    fn every_operator_parses() {
        for (t, op) in [
            ("eq", CmpOp::Eq),
            ("neq", CmpOp::Neq),
            ("gt", CmpOp::Gt),
            ("gte", CmpOp::Gte),
            ("lt", CmpOp::Lt),
            ("lte", CmpOp::Lte),
            ("like", CmpOp::Like),
            ("ilike", CmpOp::ILike),
            ("match", CmpOp::Match),
            ("imatch", CmpOp::IMatch),
            ("cs", CmpOp::Contains),
            ("cd", CmpOp::Contained),
            ("ov", CmpOp::Overlap),
        ] {
            assert_eq!(
                parse_filter_value(&format!("{t}.v")).unwrap().1,
                cmp(op, "v"),
                "{t}"
            );
        }
        assert_eq!(
            parse_filter_value("like(any).{a*,b*}").unwrap().1,
            Operation::Compare {
                op: CmpOp::Like,
                quant: Some(Quant::Any),
                value: "{a*,b*}".into()
            }
        );
        assert_eq!(
            parse_filter_value("isdistinct.x").unwrap().1,
            Operation::IsDistinct("x".into())
        );
        assert_eq!(
            parse_filter_value("wfts(english).cat dog").unwrap().1,
            Operation::Fts {
                kind: FtsKind::Websearch,
                lang: Some("english".into()),
                value: "cat dog".into()
            }
        );
    }

    #[test]
    fn unknown_operators_are_pgrst100() {
        for v in [
            "foo.1",
            "eqx.1",
            "1",
            "",
            "not.foo.1",
            "eq",
            "neq(any).1",
            "in.1,2",
            "is.maybe",
            "is.null;drop",
        ] {
            let e = parse_filter_value(v).unwrap_err();
            assert_eq!(code(e.clone()), "PGRST100", "{v}");
            assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
        }
        let e = parse_filter_value("eqx.1").unwrap_err();
        assert!(e.body()["message"]
            .as_str()
            .unwrap()
            .starts_with("\"failed to parse filter (eqx.1)\""));
    }

    #[test]
    fn is_accepts_only_its_keywords() {
        for (v, want) in [
            ("is.null", IsVal::Null),
            ("is.NULL", IsVal::Null),
            ("is.not_null", IsVal::NotNull),
            ("is.true", IsVal::True),
            ("is.false", IsVal::False),
            ("is.unknown", IsVal::Unknown),
        ] {
            assert_eq!(parse_filter_value(v).unwrap().1, Operation::Is(want));
        }
        assert!(parse_filter_value("is.1").is_err());
        assert!(parse_filter_value("is.null or 1=1").is_err());
    }

    #[test]
    fn in_lists_with_quotes() {
        let (_, op) = parse_filter_value(r#"in.(1,"a,b","say \"hi\"", c d ,"x)y")"#).unwrap();
        assert_eq!(
            op,
            Operation::In(vec![
                "1".into(),
                "a,b".into(),
                "say \"hi\"".into(),
                " c d ".into(),
                "x)y".into()
            ])
        );
        assert_eq!(
            parse_filter_value("in.()").unwrap().1,
            Operation::In(vec!["".into()])
        );
        // A quote that does not close an element is part of a raw element.
        assert_eq!(
            parse_filter_value(r#"in.("a"b)"#).unwrap().1,
            Operation::In(vec![r#""a"b"#.into()])
        );
        assert!(parse_filter_value("in.(1,2").is_err());
        assert!(parse_filter_value("in.(1,2)) or true").is_err());
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
    fn logic_values_can_be_quoted_or_arrays() {
        let t = parse_logic_param("or", r#"(name.eq."a,b)",tags.cs.{x,y},n.not.eq.3)"#).unwrap();
        let Logic::Expr { children, .. } = t else {
            panic!()
        };
        assert_eq!(
            children[0],
            Logic::Filter(Filter {
                field: Field::plain("name"),
                negate: false,
                op: cmp(CmpOp::Eq, "a,b)")
            })
        );
        assert_eq!(
            children[1],
            Logic::Filter(Filter {
                field: Field::plain("tags"),
                negate: false,
                op: cmp(CmpOp::Contains, "{x,y}")
            })
        );
        assert_eq!(
            children[2],
            Logic::Filter(Filter {
                field: Field::plain("n"),
                negate: true,
                op: cmp(CmpOp::Eq, "3")
            })
        );
    }

    #[test]
    fn broken_logic_is_rejected() {
        for v in [
            "(a.eq.1",
            "a.eq.1",
            "()",
            "(a.eq.1)x",
            "(a.zz.1)",
            "(and(a.eq.1)",
        ] {
            assert_eq!(
                code(parse_logic_param("or", v).unwrap_err()),
                "PGRST100",
                "{v}"
            );
        }
    }

    #[test]
    fn select_with_embedding_alias_and_cast() {
        let s = parse_select("id, name:display_name,count::text,org:organizations!inner(*),profiles!created_by(display_name,avatar_url),metadata->>kind").unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(
            s[0],
            SelectItem::Column {
                field: Field::plain("id"),
                alias: None,
                cast: None
            }
        );
        assert_eq!(
            s[1],
            SelectItem::Column {
                field: Field::plain("display_name"),
                alias: Some("name".into()),
                cast: None
            }
        );
        assert_eq!(
            s[2],
            SelectItem::Column {
                field: Field::plain("count"),
                alias: None,
                cast: Some("text".into())
            }
        );
        let SelectItem::Embed(e) = &s[3] else {
            panic!()
        };
        assert_eq!(
            (
                e.target.as_str(),
                e.alias.as_deref(),
                e.inner,
                e.select.clone()
            ),
            ("organizations", Some("org"), true, vec![SelectItem::Star])
        );
        let SelectItem::Embed(e) = &s[4] else {
            panic!()
        };
        assert_eq!(e.hint.as_deref(), Some("created_by"));
        assert_eq!(e.select.len(), 2);
        let SelectItem::Column { field, .. } = &s[5] else {
            panic!()
        };
        assert_eq!(
            field.json_path,
            vec![JsonOp {
                text: true,
                operand: JsonOperand::Key("kind".into())
            }]
        );
        assert_eq!(parse_select("").unwrap(), vec![]);
        assert_eq!(parse_select("*").unwrap(), vec![SelectItem::Star]);
        let s = parse_select(r#""we\"ird":"a b",x->0"#).unwrap();
        assert_eq!(
            s[0],
            SelectItem::Column {
                field: Field::plain("a b"),
                alias: Some("we\"ird".into()),
                cast: None
            }
        );
        // PostgREST quotes with backslashes; a doubled quote is two quoted names.
        assert!(parse_select(r#""a""b""#).is_err());
    }

    #[test]
    fn hostile_selects_are_rejected() {
        for s in [
            "*,(select 1)",
            "id;drop table x",
            "id)",
            "a(b",
            "id::text)--",
            "'x'",
            "id,",
            "a--b",
            "id::text; drop",
        ] {
            assert!(parse_select(s).is_err(), "{s}");
        }
        // A JSON key is data (bound later), whatever it contains.
        let s = parse_select("x->>'a' or 1=1").unwrap();
        let SelectItem::Column { field, .. } = &s[0] else {
            panic!()
        };
        assert_eq!(
            field.json_path[0].operand,
            JsonOperand::Key("'a' or 1=1".into())
        );
        assert_eq!(
            parse_select("count()").unwrap_err(),
            ApiError::AggregatesNotAllowed
        );
        assert_eq!(
            parse_select("id.sum()").unwrap_err(),
            ApiError::AggregatesNotAllowed
        );
    }

    #[test]
    fn order_terms() {
        let o = parse_order(
            "last_active_at.desc.nullslast,name,created_at.asc,organizations(name).desc",
        )
        .unwrap();
        assert_eq!(
            o[0],
            OrderTerm {
                relation: None,
                field: Field::plain("last_active_at"),
                desc: Some(true),
                nulls_first: Some(false)
            }
        );
        assert_eq!(
            o[1],
            OrderTerm {
                relation: None,
                field: Field::plain("name"),
                desc: None,
                nulls_first: None
            }
        );
        assert_eq!(o[2].desc, Some(false));
        assert_eq!(o[3].relation.as_deref(), Some("organizations"));
        for bad in ["a.up", "a.desc.nulls", "a;", "", "a.desc,"] {
            assert!(parse_order(bad).is_err(), "{bad}");
        }
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

    #[test]
    fn prefer_and_applied() {
        let mut h = HeaderMap::new();
        h.append(
            "prefer",
            "return=representation, count=exact".parse().unwrap(),
        );
        h.append(
            "prefer",
            "resolution=merge-duplicates,return=minimal,bogus"
                .parse()
                .unwrap(),
        );
        let p = Preferences::from_headers(&h);
        assert_eq!(p.ret, Some(Return::Representation));
        assert_eq!(p.count, Some(Count::Exact));
        assert_eq!(p.resolution, Some(Resolution::MergeDuplicates));
        assert_eq!(p.invalid, vec!["bogus".to_string()]);
        assert_eq!(
            p.applied(true, true, true).as_deref(),
            Some("resolution=merge-duplicates, return=representation, count=exact")
        );
        assert_eq!(
            p.applied(false, false, false).as_deref(),
            Some("count=exact")
        );
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate(None).unwrap(), Accept::default());
        assert_eq!(negotiate(Some("*/*")).unwrap(), Accept::default());
        assert!(
            negotiate(Some("application/vnd.pgrst.object+json"))
                .unwrap()
                .single
        );
        assert_eq!(
            negotiate(Some("application/vnd.pgrst.object+json;nulls=stripped")).unwrap(),
            Accept {
                single: true,
                strip_nulls: true
            }
        );
        assert_eq!(negotiate(Some("text/csv")).unwrap_err().code(), "PGRST107");
    }

    #[test]
    fn range_header() {
        assert_eq!(parse_range_header("0-9"), Some((0, Some(9))));
        assert_eq!(parse_range_header("items=5-"), Some((5, None)));
        assert_eq!(parse_range_header("bytes"), None);
        assert_eq!(parse_range_header("-5"), None);
    }

    /// Random strings over the grammar's special characters must never panic the parsers.
    #[test]
    fn parsers_never_panic() {
        let alphabet: Vec<char> = "ab(),.:!\"\\{}*->-=&%+é ' ;ü0".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        let words = [
            "eq.", "in.(", "not.", "or(", "and(", "is.", "->>", "::", "!inner", "(any)", "%22", "%",
        ];
        for _ in 0..5000 {
            let len = next() % 24;
            let mut text = String::new();
            for _ in 0..len {
                if next() % 4 == 0 {
                    text.push_str(words[next() % words.len()]);
                } else {
                    text.push(alphabet[next() % alphabet.len()]);
                }
            }
            let _ = parse_select(&text);
            let _ = parse_order(&text);
            let _ = parse_filter_value(&text);
            let _ = parse_logic_param("or", &text);
            let _ = parse_columns("columns parameter", &text);
            let _ = parse_query(&text);
            let _ = parse_query(&format!("a={text}&select={text}"));
            let _ = parse_range_header(&text);
            let _ = negotiate(Some(&text));
        }
    }

    #[test]
    fn payloads() {
        let p = parse_payload(br#"{"b":1,"a":"x"}"#, true, false).unwrap();
        assert_eq!(p.json, r#"[{"b":1,"a":"x"}]"#);
        assert_eq!(p.keys, vec!["a", "b"]);
        let p = parse_payload(br#"[{"a":1},{"a":2}]"#, true, false).unwrap();
        assert_eq!((p.rows, p.keys), (2, vec!["a".to_string()]));
        assert_eq!(
            parse_payload(br#"[{"a":1},{"b":2}]"#, true, false)
                .unwrap_err()
                .code(),
            "PGRST102"
        );
        assert!(parse_payload(br#"[{"a":1},{"b":2}]"#, true, true).is_ok());
        assert_eq!(
            parse_payload(b"{nope", true, false).unwrap_err().code(),
            "PGRST102"
        );
        assert_eq!(
            parse_payload(b"", true, false).unwrap_err().code(),
            "PGRST102"
        );
        // Big numbers reach PostgreSQL as written.
        let p = parse_payload(br#"{"n":123456789012345678901234567890.5}"#, false, false).unwrap();
        assert_eq!(p.json, r#"{"n":123456789012345678901234567890.5}"#);
    }
}
