//! The request as PostgREST reads it: the query string (`select`, filters, `or`/`and`,
//! `order`, `limit`/`offset`, `columns`, `on_conflict`) and the `Prefer`, `Accept` and `Range`
//! headers and the JSON body, parsed into types that know nothing about the schema yet.
//! Split as PostgREST's `ApiRequest` is: the types, the query string and its grammar, the
//! preferences, the media type, the range and the payload. Nothing here produces SQL.

mod grammar;
mod media;
mod payload;
mod preferences;
mod query;
mod range;
mod types;

pub use grammar::{
    parse_columns, parse_filter_value, parse_logic_param, parse_order, parse_select,
    parse_tree_path,
};
pub use media::{negotiate, Accept};
pub use payload::{parse_payload, Payload, INVALID_JSON};
pub use preferences::{Count, Handling, Missing, Preferences, Resolution, Return};
pub use query::{decode_pairs, parse_query};
pub use range::parse_range_header;
pub use types::*;

/// The same deterministic stream of hostile strings for every parser's never-panic test.
#[cfg(test)]
mod test_inputs {
    use super::types::{CmpOp, Operation};

    /// A plain comparison, the operation most parser tests expect.
    pub fn cmp(op: CmpOp, v: &str) -> Operation {
        Operation::Compare {
            op,
            quant: None,
            value: v.to_string(),
        }
    }

    /// Random strings over the grammar's special characters and its keywords.
    pub fn hostile_inputs() -> impl Iterator<Item = String> {
        let alphabet: Vec<char> = "ab(),.:!\"\\{}*->-=&%+é ' ;ü0".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        let words = [
            "eq.", "in.(", "not.", "or(", "and(", "is.", "->>", "::", "!inner", "(any)", "%22", "%",
        ];
        (0..5000).map(move |_| {
            let len = next() % 24;
            let mut text = String::new();
            for _ in 0..len {
                if next() % 4 == 0 {
                    text.push_str(words[next() % words.len()]);
                } else {
                    text.push(alphabet[next() % alphabet.len()]);
                }
            }
            text
        })
    }
}
