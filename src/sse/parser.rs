//! An event-stream parser following the HTML standard's rules ("9.2.6 Interpreting an event
//! stream"): it takes bytes as they arrive, in any chunking, and returns whole events. No I/O.
//!
//! Lines end with LF, CR or CRLF; a CRLF split across two chunks is one line end. Lines are cut
//! on bytes (CR and LF never occur inside a UTF-8 sequence), so a character split across
//! chunks waits in the buffer until its line is complete and is decoded whole. A leading BOM
//! is dropped, even when it arrives a byte at a time.
//!
//! A line, and an event's data, may hold at most `limit` bytes: a stream that never ends a
//! line fails as soon as it passes the limit instead of growing a buffer without bound.

use std::borrow::Cow;

const BOM: &[u8] = b"\xEF\xBB\xBF";
/// The default bound on a line and on an event's data.
pub const DEFAULT_LIMIT: usize = 1024 * 1024;

/// A line or an event's data passed the parser's limit; the parser accepts nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `event:` field; "message" when absent.
    pub event: Cow<'static, str>,
    /// `data:` lines joined with LF.
    pub data: String,
    /// The last event id seen so far, as the standard keeps it across events.
    pub id: Option<String>,
    /// A `retry:` value received with this event, in milliseconds.
    pub retry: Option<u64>,
}

#[derive(Debug)]
pub struct Parser {
    /// Bytes a line, and an event's data, may hold.
    limit: usize,
    /// The limit was passed: the stream is unusable from here on.
    overflowed: bool,
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended in CR: an LF at the start of the next one belongs to it.
    after_cr: bool,
    /// Still deciding whether the stream starts with a BOM.
    bom_checked: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry: Option<u64>,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser::with_limit(DEFAULT_LIMIT)
    }
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// A parser whose lines and events' data hold at most `limit` bytes.
    pub fn with_limit(limit: usize) -> Parser {
        Parser {
            limit,
            overflowed: false,
            line: Vec::new(),
            after_cr: false,
            bom_checked: false,
            event: String::new(),
            data: String::new(),
            has_data: false,
            last_id: None,
            retry: None,
        }
    }

    /// Feeds the next bytes of the stream; completed events are appended to `out` (those
    /// completed before a line or an event passed the limit, too).
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<(), TooLarge> {
        if self.overflowed {
            return Err(self.too_large());
        }
        self.feed_bytes(bytes, out);
        if self.overflowed {
            self.line = Vec::new();
            self.data = String::new();
            return Err(self.too_large());
        }
        Ok(())
    }

    fn too_large(&self) -> TooLarge {
        TooLarge { limit: self.limit }
    }

    fn feed_bytes(&mut self, mut bytes: &[u8], out: &mut Vec<Event>) {
        if !self.bom_checked {
            self.line.extend_from_slice(bytes);
            let n = self.line.len().min(BOM.len());
            if self.line[..n] != BOM[..n] {
                self.bom_checked = true;
            } else if n == BOM.len() {
                self.bom_checked = true;
                self.line.drain(..BOM.len());
            } else {
                return; // a BOM prefix: wait for more
            }
            let pending = std::mem::take(&mut self.line);
            return self.feed_bytes(&pending, out);
        }
        if bytes.is_empty() {
            return; // an empty read must not cancel a pending CR's claim on the next LF
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(i) = memchr::memchr2(b'\n', b'\r', bytes) {
            if self.line.len() + i > self.limit {
                self.overflowed = true;
                return;
            }
            let line_end = bytes[i];
            if self.line.is_empty() {
                self.process_line(&bytes[..i], out);
            } else {
                self.line.extend_from_slice(&bytes[..i]);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, out);
                self.line = line;
                self.line.clear();
            }
            if self.overflowed {
                return;
            }
            bytes = &bytes[i + 1..];
            if line_end == b'\r' {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
        }
        if self.line.len() + bytes.len() > self.limit {
            self.overflowed = true;
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<Event>) {
        if line.is_empty() {
            return self.dispatch(out);
        }
        if line[0] == b':' {
            return; // a comment (keep-alives are sent this way)
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                let value = text(value);
                if self.data.len() + value.len() > self.limit {
                    self.overflowed = true;
                    return;
                }
                self.data.push_str(&value);
                self.data.push('\n');
                self.has_data = true;
            }
            b"event" => self.event = text(value).into_owned(),
            b"id" if !value.contains(&0) => self.last_id = Some(text(value).into_owned()),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Event>) {
        let event = std::mem::take(&mut self.event);
        let retry = self.retry.take();
        if !self.has_data {
            return;
        }
        self.has_data = false;
        // The next event is likely the same size: one allocation instead of a few growths.
        let next = String::with_capacity(self.data.len());
        let mut data = std::mem::replace(&mut self.data, next);
        data.pop(); // the LF after the last data line
        out.push(Event {
            event: if event.is_empty() {
                Cow::Borrowed("message")
            } else {
                Cow::Owned(event)
            },
            data,
            id: self.last_id.clone(),
            retry,
        });
    }
}

/// UTF-8 as the standard decodes it (invalid sequences become U+FFFD); valid text, nearly
/// always the case, is checked by the faster strict decoder and borrowed.
fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).unwrap();
        }
        out
    }

    /// The events and whether the limit was passed, feeding `chunks` to a parser with `limit`.
    fn parse_limited(chunks: &[&[u8]], limit: usize) -> (Vec<Event>, Option<TooLarge>) {
        let mut p = Parser::with_limit(limit);
        let mut out = Vec::new();
        for c in chunks {
            if let Err(e) = p.feed(c, &mut out) {
                return (out, Some(e));
            }
            assert!(
                p.line.len() <= limit.max(BOM.len() - 1),
                "the line buffer stays within the limit (or holds a BOM's start)"
            );
            assert!(
                p.data.len() <= limit + 1,
                "the data buffer stays within the limit (and its LF)"
            );
        }
        (out, None)
    }

    fn parse(bytes: &[u8]) -> Vec<Event> {
        parse_chunks(&[bytes])
    }

    fn datas(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn all_three_line_endings() {
        for s in [
            "data: a\n\ndata: b\n\n",
            "data: a\r\rdata: b\r\r",
            "data: a\r\n\r\ndata: b\r\n\r\n",
        ] {
            assert_eq!(datas(&parse(s.as_bytes())), ["a", "b"], "{s:?}");
        }
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_end() {
        let events = parse_chunks(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(datas(&events), ["a", "b"]);
        let with_empty_read = parse_chunks(&[b"data: a\r", b"", b"\nid: 1\r\n\r\n"]);
        assert_eq!(with_empty_read[0].id.as_deref(), Some("1"));
    }

    #[test]
    fn multi_line_data_comments_and_fields() {
        let s = b": keep-alive\nevent: delta\nid: 7\nretry: 1500\ndata: line one\ndata:line two\ndata\n\n";
        let e = &parse(s)[0];
        assert_eq!(e.event, "delta");
        assert_eq!(e.data, "line one\nline two\n");
        assert_eq!(e.id.as_deref(), Some("7"));
        assert_eq!(e.retry, Some(1500));
    }

    #[test]
    fn events_without_data_are_not_dispatched_and_ids_persist() {
        let events = parse(b"event: ping\n\nid: 1\ndata: x\n\ndata: y\n\nretry: soon\ndata: z\n\n");
        assert_eq!(datas(&events), ["x", "y", "z"]);
        assert_eq!(
            events[1].id.as_deref(),
            Some("1"),
            "the last event id is kept"
        );
        assert_eq!(events[2].retry, None, "a non-numeric retry is ignored");
        assert_eq!(events[0].event, "message");
    }

    #[test]
    fn an_unfinished_event_at_the_end_is_not_dispatched() {
        assert!(parse(b"data: half").is_empty());
        assert!(parse(b"data: half\n").is_empty());
    }

    #[test]
    fn utf8_split_across_chunks() {
        let s = "data: héllo → 世界\n\n".as_bytes();
        for cut in 0..s.len() {
            let events = parse_chunks(&[&s[..cut], &s[cut..]]);
            assert_eq!(datas(&events), ["héllo → 世界"], "cut at {cut}");
        }
    }

    #[test]
    fn a_leading_bom_is_dropped_even_byte_by_byte() {
        let s = b"\xEF\xBB\xBFdata: a\n\n";
        let chunks: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(datas(&parse_chunks(&chunks)), ["a"]);
        assert_eq!(datas(&parse(s)), ["a"]);
        // Only at the very start: a BOM later is data.
        assert_eq!(parse(b"data: \xEF\xBB\xBFa\n\n")[0].data, "\u{feff}a");
        assert_eq!(
            datas(&parse(b"\xEFdata: a\n\n")),
            Vec::<&str>::new(),
            "not a BOM: the field name is garbage"
        );
    }

    #[test]
    fn openai_style_stream() {
        let s = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(
            datas(&parse(s)),
            [r#"{"choices":[{"delta":{"content":"Hi"}}]}"#, "[DONE]"]
        );
    }

    #[test]
    fn a_line_may_hold_the_limit_and_no_more() {
        let line = |n: usize| format!("data: {}\n\n", "x".repeat(n - 6));
        let fits = line(64);
        let (events, err) = parse_limited(&[fits.as_bytes()], 64);
        assert_eq!((events.len(), err), (1, None));
        let over = line(65);
        assert_eq!(
            parse_limited(&[over.as_bytes()], 64).1,
            Some(TooLarge { limit: 64 })
        );
        let bytewise: Vec<&[u8]> = over.as_bytes().chunks(1).collect();
        assert_eq!(parse_limited(&bytewise, 64).1, Some(TooLarge { limit: 64 }));
    }

    #[test]
    fn a_line_that_never_ends_fails_once_past_the_limit() {
        let mut p = Parser::with_limit(1000);
        let mut out = Vec::new();
        p.feed(b"data: {\"ok\":1}\n\ndata: ", &mut out).unwrap();
        let mut fed = 0;
        let err = loop {
            match p.feed(&[b'x'; 100], &mut out) {
                Ok(()) => fed += 100,
                Err(e) => break e,
            }
            assert!(fed <= 1000, "still accepting after {fed} bytes");
        };
        assert_eq!(err.limit, 1000);
        assert_eq!(datas(&out), [r#"{"ok":1}"#], "what came before is kept");
        assert!(
            p.feed(b"\n\n", &mut out).is_err(),
            "nothing is accepted after"
        );
        assert!(p.line.capacity() == 0, "the buffer is released");
    }

    #[test]
    fn an_event_whose_data_lines_add_up_past_the_limit_fails() {
        let s = "data: 0123456789\n".repeat(10) + "\n";
        assert_eq!(parse_limited(&[s.as_bytes()], 200).0.len(), 1);
        assert!(parse_limited(&[s.as_bytes()], 80).1.is_some());
    }

    fn valid_stream() -> impl Strategy<Value = Vec<u8>> {
        let field = prop_oneof![
            "[a-zA-Z0-9 {}\":,é世]{0,12}".prop_map(|v| format!("data: {v}")),
            "[a-z]{1,6}".prop_map(|v| format!("event: {v}")),
            "[0-9]{1,4}".prop_map(|v| format!("id: {v}")),
            "[0-9]{1,4}".prop_map(|v| format!("retry: {v}")),
            "[ a-z]{0,8}".prop_map(|v| format!(":{v}")),
            Just(String::new()),
        ];
        let eol = prop_oneof![Just("\n"), Just("\r"), Just("\r\n")];
        (
            proptest::bool::ANY,
            prop::collection::vec((field, eol), 0..40),
        )
            .prop_map(|(bom, lines)| {
                let mut s = if bom {
                    "\u{feff}".to_string()
                } else {
                    String::new()
                };
                for (l, e) in lines {
                    s.push_str(&l);
                    s.push_str(e);
                }
                s.into_bytes()
            })
    }

    /// `stream` split at the positions `cuts` (taken modulo its length, in any order).
    fn cut(stream: &[u8], cuts: Vec<usize>) -> Vec<&[u8]> {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for c in cuts {
            chunks.push(&stream[start..c]);
            start = c;
        }
        chunks.push(&stream[start..]);
        chunks
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_events(stream in valid_stream(), cuts in prop::collection::vec(0usize..400, 0..12)) {
            let whole = parse(&stream);
            let chunks = cut(&stream, cuts);
            prop_assert_eq!(parse_chunks(&chunks), whole.clone());
            let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
            prop_assert_eq!(parse_chunks(&bytewise), whole);
        }

        #[test]
        fn with_a_limit_any_chunking_gives_the_same_outcome(stream in valid_stream(), cuts in prop::collection::vec(0usize..400, 0..12), limit in 0usize..40) {
            let whole = parse_limited(&[&stream], limit);
            let chunks = cut(&stream, cuts);
            prop_assert_eq!(parse_limited(&chunks, limit), whole.clone());
            let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
            prop_assert_eq!(parse_limited(&bytewise, limit), whole.clone());
            // Below the limit, the limit changes nothing; past it, only the events before
            // the offending line are delivered.
            let unlimited = parse(&stream);
            match whole {
                (events, None) => prop_assert_eq!(events, unlimited.clone()),
                (events, Some(_)) => prop_assert!(unlimited.starts_with(&events)),
            }
            prop_assert_eq!(parse_limited(&[&stream], stream.len()), (unlimited, None));
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut p = Parser::new();
            let mut out = Vec::new();
            for c in &chunks {
                let _ = p.feed(c, &mut out);
            }
        }
    }
}
