//! The grammar of the query string's values: `select` trees, filter operators, `or`/`and`
//! logic trees, `order` terms, column lists and parameter keys. A hand-written version of
//! PostgREST's parsec grammar in `ApiRequest/QueryParams.hs`; nothing here produces SQL.

use super::types::{
    CmpOp, Embed, EmbedPath, Field, Filter, FtsKind, IsVal, JsonOp, JsonOperand, Logic, Operation,
    OrderTerm, Quant, SelectItem,
};
use crate::rest::error::ApiError;

/// `organizations.order` → `[organizations]` (the last segment is the parameter itself).
pub(super) fn parse_embed_path(key: &str) -> Result<EmbedPath, ApiError> {
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
pub(super) fn parse_logic_path(key: &str) -> Result<(EmbedPath, String), ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::request::test_inputs::{cmp, hostile_inputs};

    fn code(e: ApiError) -> String {
        e.code().to_string()
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

    /// Random strings over the grammar's special characters must never panic the parsers.
    #[test]
    fn parsers_never_panic() {
        for text in hostile_inputs() {
            let _ = parse_select(&text);
            let _ = parse_order(&text);
            let _ = parse_filter_value(&text);
            let _ = parse_logic_param("or", &text);
            let _ = parse_columns("columns parameter", &text);
        }
    }
}
