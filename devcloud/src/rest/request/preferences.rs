//! The `Prefer` header: what the client wants back and how conflicts, missing columns and
//! counts are handled (PostgREST's `ApiRequest/Preferences.hs`).

use axum::http::HeaderMap;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
