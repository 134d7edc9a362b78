//! What a PostgREST request asks for, as types that know nothing about the schema yet:
//! selected items and embeddings, filters and logic trees, order terms, windows
//! (PostgREST's `ApiRequest/Types.hs`).

use std::collections::HashMap;

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
