//! Chunk shapes: a stream's chunks as a few JS constructors plus the values that vary.
//!
//! `JSON.parse` on the JS thread is most of what a streamed chunk costs the consumer, and
//! consecutive chunks of a completion differ in almost nothing: the same keys in the same
//! order, the same `id`, `model` and `created`, a different `delta.content`. So the stream
//! learns each chunk structure's constant leaves and hands the JS layer, once, the source
//! of an object literal with those constants inlined and a slot (`s[i+k]`) for each leaf
//! that varies. Later chunks of that structure travel as the shape's id and their slot
//! values only, and the JS layer builds each one with a single literal, an order of
//! magnitude faster than parsing it.
//!
//! The result is exactly what `JSON.parse` gives, because the source is made only of the
//! chunk's own tokens, after `serde_json` has validated it: a JSON string, number, `true`,
//! `false` or `null` token is a JS literal of the same value (JSON is a subset of JS since
//! ES2019), and every key is a computed key, `["k"]: v`, which defines an own property
//! as `JSON.parse` does (even for `__proto__`) and lets a repeated key overwrite in place
//! as `JSON.parse` does. No other text reaches the source.
//!
//! Shape 0 is the identity: its one slot is the whole chunk. A structure seen for the first
//! time travels that way, so one-off chunks (the role chunk, the final chunk with `usage`)
//! never cost a compilation; so does anything past the limits below.

use std::{fmt::Write as _, ops::Range};

use rustc_hash::FxHashMap;

/// Leaves per shape: bigger chunks travel whole.
const MAX_LEAVES: usize = 256;
/// Shapes per stream, and structures remembered per stream.
const MAX_SHAPES: u32 = 64;
const MAX_STRUCTURES: usize = 256;
/// Stands for a leaf in a structure key; never appears raw in valid JSON.
const LEAF: char = '\u{1}';

/// A shape the JS side has not seen yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewShape {
    pub id: u32,
    /// A JS expression over `s` (the batch's values) and `i` (this chunk's first slot).
    pub source: String,
    pub slots: u32,
}

enum Known {
    /// Seen once: its leaves, to learn which of them vary.
    Once(Vec<String>),
    /// `None` marks a slot.
    Shape {
        id: u32,
        leaves: Vec<Option<String>>,
    },
}

pub struct Shapes {
    known: FxHashMap<String, Known>,
    /// Shapes handed out, the identity included.
    issued: u32,
    /// The current chunk's structure and leaves, kept to reuse their allocations.
    structure: String,
    leaves: Vec<Range<usize>>,
}

impl Default for Shapes {
    fn default() -> Shapes {
        Shapes::new()
    }
}

impl Shapes {
    pub fn new() -> Shapes {
        Shapes {
            known: FxHashMap::default(),
            issued: 1,
            structure: String::new(),
            leaves: Vec::new(),
        }
    }

    /// Appends `chunk` (JSON text that `serde_json` accepted) to `out` as `id,slot,…`, and
    /// returns the shape it needed if the JS side has not seen that shape yet.
    pub fn encode(&mut self, chunk: &str, out: &mut String) -> Option<NewShape> {
        if !scan(chunk, &mut self.structure, &mut self.leaves) {
            return whole(chunk, out);
        }
        let leaves = &self.leaves;
        let leaf = |k: usize| &chunk[leaves[k].clone()];
        let Some(entry) = self.known.get_mut(&self.structure) else {
            if self.known.len() < MAX_STRUCTURES {
                let first = (0..leaves.len()).map(|k| leaf(k).to_string()).collect();
                self.known
                    .insert(self.structure.clone(), Known::Once(first));
            }
            return whole(chunk, out);
        };
        let mut new = None;
        if !matches!(entry, Known::Shape { leaves: known, .. } if fits(known, leaf)) {
            if self.issued >= MAX_SHAPES {
                return whole(chunk, out);
            }
            // A leaf stays constant only while every chunk of the structure agrees on it.
            let merged: Vec<Option<String>> = match entry {
                Known::Once(first) => first
                    .iter()
                    .enumerate()
                    .map(|(k, a)| (a == leaf(k)).then(|| a.clone()))
                    .collect(),
                Known::Shape { leaves: known, .. } => known
                    .iter()
                    .enumerate()
                    .map(|(k, a)| a.clone().filter(|a| a == leaf(k)))
                    .collect(),
            };
            let id = self.issued;
            self.issued += 1;
            new = Some(NewShape {
                id,
                source: source(&self.structure, &merged),
                slots: merged.iter().filter(|l| l.is_none()).count() as u32,
            });
            *entry = Known::Shape { id, leaves: merged };
        }
        let Known::Shape { id, leaves: known } = entry else {
            return whole(chunk, out);
        };
        if !out.is_empty() {
            out.push(',');
        }
        push_id(out, *id);
        for (k, _) in known.iter().enumerate().filter(|(_, c)| c.is_none()) {
            out.push(',');
            out.push_str(leaf(k));
        }
        new
    }
}

/// Appends `chunk` as shape 0, the chunk itself.
pub fn whole(chunk: &str, out: &mut String) -> Option<NewShape> {
    if !out.is_empty() {
        out.push(',');
    }
    out.push_str("0,");
    out.push_str(chunk);
    None
}

fn push_id(out: &mut String, id: u32) {
    if id < 10 {
        out.push(char::from(b'0' + id as u8));
    } else {
        let _ = write!(out, "{id}");
    }
}

fn fits<'a>(known: &[Option<String>], leaf: impl Fn(usize) -> &'a str) -> bool {
    known
        .iter()
        .enumerate()
        .all(|(k, c)| c.as_deref().is_none_or(|c| c == leaf(k)))
}

/// Fills `structure` (punctuation and keys, `LEAF` for each value) and `leaves` (where each
/// value's raw token is); false when the chunk has too many leaves or is not the JSON it
/// should be.
fn scan(json: &str, structure: &mut String, leaves: &mut Vec<Range<usize>>) -> bool {
    structure.clear();
    leaves.clear();
    scan_into(json, structure, leaves).is_some()
}

fn scan_into(json: &str, structure: &mut String, leaves: &mut Vec<Range<usize>>) -> Option<()> {
    let b = json.as_bytes();
    // Open containers, to tell a key from a string value.
    let mut open: Vec<u8> = Vec::new();
    let mut key_next = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            c @ (b'{' | b'[') => {
                open.push(c);
                structure.push(c as char);
                key_next = c == b'{';
                i += 1;
            }
            c @ (b'}' | b']') => {
                open.pop()?;
                structure.push(c as char);
                key_next = false;
                i += 1;
            }
            b',' => {
                structure.push(',');
                key_next = open.last() == Some(&b'{');
                i += 1;
            }
            b':' => {
                structure.push(':');
                key_next = false;
                i += 1;
            }
            b'"' => {
                let end = string_end(b, i)?;
                if key_next {
                    structure.push_str(json.get(i..end)?);
                    key_next = false;
                } else {
                    leaves.push(i..end);
                    structure.push(LEAF);
                }
                i = end;
            }
            _ => {
                let start = i;
                while i < b.len()
                    && matches!(b[i], b'-' | b'+' | b'.' | b'0'..=b'9' | b'a'..=b'z' | b'E')
                {
                    i += 1;
                }
                if !is_literal(json.get(start..i)?) {
                    return None;
                }
                leaves.push(start..i);
                structure.push(LEAF);
            }
        }
        if leaves.len() > MAX_LEAVES {
            return None;
        }
    }
    open.is_empty().then_some(())
}

/// The index just past the string token that starts at `start`.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut j = start + 1;
    loop {
        j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j] == b'"' {
            return Some(j + 1);
        }
        j += 2; // an escape: the next byte cannot end the string
    }
}

/// `true`, `false`, `null` or a number: the only bare tokens allowed into generated source.
fn is_literal(token: &str) -> bool {
    match token.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => token
            .bytes()
            .all(|c| matches!(c, b'-' | b'+' | b'.' | b'0'..=b'9' | b'e' | b'E')),
        _ => matches!(token, "true" | "false" | "null"),
    }
}

/// The JS expression that builds a chunk of `structure`, constants inlined, slots read from
/// `s[i]`, `s[i+1]`, ….
fn source(structure: &str, leaves: &[Option<String>]) -> String {
    let mut src = String::with_capacity(structure.len() * 2);
    let mut leaves = leaves.iter();
    let mut slot = 0;
    let b = structure.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            // A key: computed, so that `__proto__` is an own property as with JSON.parse.
            let end = string_end(b, i).unwrap_or(b.len());
            src.push('[');
            src.push_str(structure.get(i..end).unwrap_or_default());
            src.push(']');
            i = end;
            continue;
        }
        if b[i] == LEAF as u8 {
            match leaves.next() {
                Some(Some(constant)) => src.push_str(constant),
                _ => {
                    let _ = match slot {
                        0 => write!(src, "s[i]"),
                        k => write!(src, "s[i+{k}]"),
                    };
                    slot += 1;
                }
            }
        } else {
            src.push(b[i] as char);
        }
        i += 1;
    }
    src
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};
    use std::collections::HashMap;

    /// What the JS side does with a shape, done on text: the chunk's JSON, whitespace-free.
    fn render(source: &str, slots: &[&str]) -> String {
        let b = source.as_bytes();
        let mut out = String::new();
        let mut i = 0;
        while i < b.len() {
            if source[i..].starts_with("s[i") {
                let close = i + source[i..].find(']').unwrap();
                let k: usize = source[i + 3..close]
                    .trim_start_matches('+')
                    .parse()
                    .unwrap_or(0);
                out.push_str(slots[k]);
                i = close + 1;
            } else if b[i] == b'"' {
                let end = string_end(b, i).unwrap();
                out.push_str(&source[i..end]);
                i = end;
            } else if b[i] == b'[' && b.get(i + 1) == Some(&b'"') {
                let end = string_end(b, i + 1).unwrap();
                if source[end..].starts_with("]:") {
                    out.push_str(&source[i + 1..end]); // a computed key
                    i = end + 1;
                } else {
                    out.push('[');
                    i += 1;
                }
            } else {
                out.push(b[i] as char);
                i += 1;
            }
        }
        out
    }

    fn scanned(json: &str) -> Option<(String, Vec<&str>)> {
        let (mut structure, mut leaves) = (String::new(), Vec::new());
        scan(json, &mut structure, &mut leaves)
            .then(|| (structure, leaves.into_iter().map(|r| &json[r]).collect()))
    }

    fn compact(json: &str) -> String {
        let (structure, leaves) = scanned(json).unwrap();
        source(&structure, &vec![None; leaves.len()]).pipe(|src| render(&src, &leaves))
    }

    trait Pipe: Sized {
        fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
            f(self)
        }
    }
    impl<T> Pipe for T {}

    /// Encodes `chunks` as one stream and rebuilds each from the shapes, as the JS side does.
    fn round_trip(chunks: &[String]) -> (Vec<String>, Vec<NewShape>) {
        let mut shapes = Shapes::new();
        let mut issued: HashMap<u32, NewShape> = HashMap::new();
        let mut all = Vec::new();
        let mut rebuilt = Vec::new();
        for chunk in chunks {
            let mut out = String::new();
            if let Some(new) = shapes.encode(chunk, &mut out) {
                issued.insert(new.id, new.clone());
                all.push(new);
            }
            if out.starts_with("0,") {
                assert_eq!(out, format!("0,{chunk}"));
                rebuilt.push(compact(chunk));
            } else {
                // The slot values exactly as sent: JSON tokens, parsed by the JS side.
                let array = format!("[{out}]");
                let (_, tokens) = scanned(&array).unwrap();
                let shape = &issued[&tokens[0].parse::<u32>().unwrap()];
                let slots = &tokens[1..];
                assert_eq!(slots.len(), shape.slots as usize);
                rebuilt.push(render(&shape.source, slots));
            }
        }
        (rebuilt, all)
    }

    fn chunk(content: &str) -> String {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1795720550,
            "model": "oboto/echo-1",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]
        })
        .to_string()
    }

    #[test]
    fn a_completion_needs_one_shape_with_one_slot() {
        let chunks: Vec<String> = ["Hel", "lo", " wor", "ld"]
            .iter()
            .map(|c| chunk(c))
            .collect();
        let (rebuilt, shapes) = round_trip(&chunks);
        let expect: Vec<String> = chunks.iter().map(|c| compact(c)).collect();
        assert_eq!(rebuilt, expect);
        assert_eq!(shapes.len(), 1);
        assert_eq!(shapes[0].slots, 1);
        assert!(
            shapes[0].source.contains(r#"["model"]:"oboto/echo-1""#),
            "{}",
            shapes[0].source
        );
        assert!(
            shapes[0].source.contains(r#"["content"]:s[i]"#),
            "{}",
            shapes[0].source
        );
    }

    #[test]
    fn first_sight_travels_whole_and_later_changes_add_slots() {
        let mut shapes = Shapes::new();
        let mut out = String::new();
        assert_eq!(shapes.encode(r#"{"a":1,"b":"x"}"#, &mut out), None);
        assert_eq!(out, r#"0,{"a":1,"b":"x"}"#);
        let mut out = String::new();
        let first = shapes.encode(r#"{"a":1,"b":"y"}"#, &mut out).unwrap();
        assert_eq!((first.id, first.slots, out.as_str()), (1, 1, r#"1,"y""#));
        assert_eq!(first.source, r#"{["a"]:1,["b"]:s[i]}"#);
        let mut out = String::new();
        let second = shapes.encode(r#"{"a":2,"b":"y"}"#, &mut out).unwrap();
        assert_eq!(
            (second.id, second.slots, out.as_str()),
            (2, 2, r#"2,2,"y""#)
        );
        assert_eq!(second.source, r#"{["a"]:s[i],["b"]:s[i+1]}"#);
        let mut out = String::from("2,3,\"z\"");
        assert_eq!(shapes.encode(r#"{"a":4, "b" : "w"}"#, &mut out), None);
        assert_eq!(out, r#"2,3,"z",2,4,"w""#);
    }

    #[test]
    fn keys_are_computed_and_literals_only_json_tokens() {
        let chunks = [
            r#"{"__proto__":{"x":1},"a":1,"a":2,"\u0061b":[1,"s",[true,null]],"":{}}"#,
            r#"{"__proto__":{"x":1},"a":1,"a":3,"\u0061b":[1,"s",[false,null]],"":{}}"#,
        ];
        let (rebuilt, shapes) = round_trip(&chunks.map(String::from));
        assert_eq!(rebuilt, chunks);
        assert_eq!(
            shapes[0].source,
            r#"{["__proto__"]:{["x"]:1},["a"]:1,["a"]:s[i],["\u0061b"]:[1,"s",[s[i+1],null]],[""]:{}}"#
        );
    }

    #[test]
    fn what_is_not_plain_json_travels_whole() {
        for text in [r#"{"a":alert(1)}"#, r#"{"a":1"#, r#"{"a":"1}"#, "]", "NaN"] {
            let mut shapes = Shapes::new();
            for _ in 0..3 {
                let mut out = String::new();
                assert_eq!(shapes.encode(text, &mut out), None, "{text}");
                assert_eq!(out, format!("0,{text}"));
            }
        }
    }

    #[test]
    fn limits_keep_the_shape_table_small() {
        let mut shapes = Shapes::new();
        let mut issued = 0;
        for n in 0..1000 {
            // Every chunk changes a different constant: one new shape each, up to the limit.
            let leaves: Vec<String> = (0..100)
                .map(|k| {
                    if k == n % 100 {
                        n.to_string()
                    } else {
                        "0".into()
                    }
                })
                .collect();
            let mut out = String::new();
            issued += shapes
                .encode(&format!("[{}]", leaves.join(",")), &mut out)
                .is_some() as u32;
        }
        assert!(issued < MAX_SHAPES, "{issued}");
        let wide = format!("[{}]", vec!["1"; MAX_LEAVES + 1].join(","));
        let mut out = String::new();
        shapes.encode(&wide, &mut out);
        shapes.encode(&wide, &mut out);
        assert_eq!(out, format!("0,{wide},0,{wide}"));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            prop::sample::select(vec!["", "\"", "\\", "\u{2028}", "a\"]:s[i]", "é"])
                .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-c_\"\\\\]{0,3}", inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// A stream of arbitrary chunks, each a variation of a few bases, pretty or compact,
        /// rebuilds to exactly the chunks' tokens.
        #[test]
        fn every_chunk_rebuilds_exactly(
            bases in prop::collection::vec(json_value(), 1..4),
            picks in prop::collection::vec((0usize..4, any::<bool>(), json_value()), 1..24),
        ) {
            let chunks: Vec<String> = picks
                .into_iter()
                .map(|(b, pretty, leaf)| {
                    let mut v = bases[b % bases.len()].clone();
                    // Change one leaf, if any, to vary the values under a fixed structure.
                    if let Some(slot) = first_leaf(&mut v) {
                        if !leaf.is_array() && !leaf.is_object() {
                            *slot = leaf;
                        }
                    }
                    if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap()
                })
                .collect();
            let (rebuilt, _) = round_trip(&chunks);
            let expect: Vec<String> = chunks.iter().map(|c| compact(c)).collect();
            prop_assert_eq!(rebuilt, expect);
            for c in &chunks {
                let back: Value = serde_json::from_str(&compact(c)).unwrap();
                prop_assert_eq!(back, serde_json::from_str::<Value>(c).unwrap());
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,64}", bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut shapes = Shapes::new();
            let mut out = String::new();
            shapes.encode(&text, &mut out);
            shapes.encode(&String::from_utf8_lossy(&bytes), &mut out);
        }
    }

    fn first_leaf(v: &mut Value) -> Option<&mut Value> {
        match v {
            Value::Array(a) => a.iter_mut().find_map(first_leaf),
            Value::Object(o) => o.values_mut().find_map(first_leaf),
            leaf => Some(leaf),
        }
    }
}
