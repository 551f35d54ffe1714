//! Splitting a body into its events as its bytes arrive, for bodies too
//! large to hold in memory (the webhook's spilled batches: kube-apiserver
//! sends up to 400 events per batch with no size bound, and 400
//! RequestResponse events of 300 KiB objects are some 120 MiB).
//!
//! The [`Splitter`] is fed chunks and hands out [`Piece`]s: each list item
//! (of an `EventList`'s `items` or a bare array) or each top-level object
//! that is not a list, as its own text for [`decode_item_in`] or
//! [`decode_unit_in`](super::decode_unit_in) to judge. It only follows the
//! structure (strings, escapes, brackets): whether a piece is an event is
//! the decoder's call, so its reasons are the same as for a small body.
//!
//! Invariants:
//! - every byte of the input is inside exactly one piece, or is list
//!   scaffolding (`{"kind":"EventList",…,"items":[`, the commas, `]}`) or
//!   whitespace outside any value: nothing is dropped unnoticed, so a body
//!   cut short or holding junk leaves a dead letter that says where;
//! - memory is bounded by `max_item` (one piece is buffered at a time)
//!   whatever the input: a larger piece becomes a [`Piece::Bad`] keeping
//!   its first [`KEEP`] bytes, its length and its hash;
//! - the result does not depend on how the input is cut into chunks
//!   (tested below).
//!
//! Pure: no I/O, and no input makes it panic.
//!
//! [`decode_item_in`]: super::decode_item_in

use xxhash_rust::xxh3::Xxh3;

/// Bytes of an oversized piece that are kept for its dead letter.
pub const KEEP: usize = 64 << 10;

/// One piece of the body.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece<'a> {
    /// A list item (`index` within its list) or a top-level value that is
    /// no list (`index` `None`), at byte `offset` of the body.
    Item {
        text: &'a [u8],
        offset: u64,
        index: Option<usize>,
    },
    /// Bytes that cannot be judged as an event: a piece over `max_item`,
    /// or text that is not JSON. `kept` is its first bytes (at most
    /// [`KEEP`]); `length` and `xxh3` describe the whole of it.
    Bad {
        kept: &'a [u8],
        offset: u64,
        length: u64,
        xxh3: u64,
        index: Option<usize>,
        reason: String,
    },
}

/// Where the splitter is in the body's structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Between top-level values.
    Top,
    /// Inside a top-level object, not yet known to be a list: its bytes are
    /// kept, in case it is a single event.
    Header,
    /// Inside a list, between items.
    Gap,
    /// Inside an item that is an object or array (`depth` counts its
    /// brackets), or a scalar (`scalar`: `Some(quoted)`, whether it is a
    /// string).
    Item { scalar: Option<bool> },
    /// Inside an `EventList` after its `items` array: skipped to its end.
    Tail,
    /// The rest of the body is not JSON: all of it is one bad piece.
    Junk,
}

/// Where the `"items"` key of a top-level object stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// Nothing of note.
    None,
    /// Inside a string at the object's own level: its first bytes.
    InString,
    /// Just after the string `"items"` at the object's level.
    Items,
    /// After `"items":`.
    ItemsColon,
}

/// A streaming splitter of one body.
pub struct Splitter {
    max_item: usize,
    /// Bytes consumed so far (the offset of the next byte).
    pos: u64,
    mode: Mode,
    in_string: bool,
    escape: bool,
    /// Bracket depth within the current top-level value.
    depth: u32,
    /// Depth of the list whose items are read (1 for a bare array, 2 for
    /// `items`).
    list_depth: u32,
    /// Whether the list being read is a bare array (else `items`).
    bare: bool,
    /// The current piece's text (its first `max_item` bytes).
    buf: Vec<u8>,
    /// The current piece's offset and length so far.
    start: u64,
    len: u64,
    /// Hash of the current piece once it is over `max_item`.
    hasher: Option<Xxh3>,
    /// Index of the next item in the list.
    index: usize,
    key: Key,
    key_bytes: [u8; 6],
    key_len: usize,
    /// Bytes of a leading byte-order mark seen (3 once past the start).
    bom: usize,
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

impl Splitter {
    /// A splitter that buffers at most `max_item` bytes of one piece.
    pub fn new(max_item: usize) -> Splitter {
        Splitter {
            max_item: max_item.max(KEEP),
            pos: 0,
            mode: Mode::Top,
            in_string: false,
            escape: false,
            depth: 0,
            list_depth: 0,
            bare: false,
            buf: Vec::new(),
            start: 0,
            len: 0,
            hasher: None,
            index: 0,
            key: Key::None,
            key_bytes: [0; 6],
            key_len: 0,
            bom: 0,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Feed the next chunk of the body.
    pub fn push(&mut self, chunk: &[u8], out: &mut impl FnMut(Piece)) {
        // The part of `chunk` that belongs to the current piece starts at
        // `from` (when one is being captured).
        let mut from = 0usize;
        let mut i = 0usize;
        while i < chunk.len() {
            let b = chunk[i];
            match self.mode {
                Mode::Top => {
                    let abs = self.pos + i as u64;
                    if abs < 3 && self.bom == abs as usize && b == BOM[self.bom] {
                        // A UTF-8 byte-order mark is skipped.
                        self.bom += 1;
                    } else if (self.bom > 0 && self.bom < 3)
                        || (!is_space(b) && b != b'{' && b != b'[')
                    {
                        self.begin(i as u64);
                        from = i;
                        if self.bom > 0 && self.bom < 3 {
                            // Not a byte-order mark after all: its bytes
                            // are part of the junk.
                            self.start = 0;
                            let partial = BOM[..self.bom].to_vec();
                            self.take(&partial);
                        }
                        self.bom = 3;
                        self.mode = Mode::Junk;
                    } else if b == b'{' || b == b'[' {
                        self.begin(i as u64);
                        from = i;
                        self.depth = 1;
                        if b == b'[' {
                            // A bare array: its items are the events.
                            self.mode = Mode::Gap;
                            self.list_depth = 1;
                            self.bare = true;
                            self.index = 0;
                        } else {
                            self.mode = Mode::Header;
                            self.key = Key::None;
                        }
                    }
                    if abs >= 2 {
                        self.bom = 3;
                    }
                }
                Mode::Header => {
                    if self.lex(b) {
                        self.header_key(b);
                        i += 1;
                        continue;
                    }
                    match b {
                        b'{' | b'[' => {
                            if b == b'[' && self.key == Key::ItemsColon && self.depth == 1 {
                                // `"items": [`: a list. What was kept of the
                                // header is scaffolding.
                                self.drop_piece();
                                self.depth = 2;
                                self.list_depth = 2;
                                self.bare = false;
                                self.index = 0;
                                self.mode = Mode::Gap;
                                i += 1;
                                continue;
                            }
                            self.depth += 1;
                            self.key = Key::None;
                        }
                        b'}' | b']' => {
                            self.depth = self.depth.saturating_sub(1);
                            self.key = Key::None;
                            if self.depth == 0 {
                                // A top-level object with no list: one event.
                                self.take(&chunk[from..=i]);
                                self.emit(None, out);
                                self.mode = Mode::Top;
                            }
                        }
                        b':' if self.key == Key::Items => self.key = Key::ItemsColon,
                        _ if is_space(b) => {}
                        _ => self.key = Key::None,
                    }
                }
                Mode::Gap => {
                    if b == b']' {
                        self.depth -= 1;
                        self.mode = if self.bare { Mode::Top } else { Mode::Tail };
                    } else if !is_space(b) && b != b',' {
                        self.begin(i as u64);
                        from = i;
                        if b == b'{' || b == b'[' {
                            self.depth += 1;
                            self.mode = Mode::Item { scalar: None };
                        } else {
                            let quoted = b == b'"';
                            self.mode = Mode::Item {
                                scalar: Some(quoted),
                            };
                            self.in_string = quoted;
                        }
                    }
                }
                Mode::Item { scalar } => {
                    if self.lex(b) {
                        i += 1;
                        continue;
                    }
                    if let Some(quoted) = scalar {
                        // A scalar ends before the next separator, or
                        // right after its closing quote.
                        if b == b',' || b == b']' || is_space(b) || quoted {
                            self.take(&chunk[from..i]);
                            self.emit(Some(self.index), out);
                            self.index += 1;
                            self.mode = Mode::Gap;
                            // The separator is read again in the gap.
                            continue;
                        }
                    } else {
                        match b {
                            b'{' | b'[' => self.depth += 1,
                            b'}' | b']' => {
                                self.depth -= 1;
                                if self.depth == self.list_depth {
                                    self.take(&chunk[from..=i]);
                                    self.emit(Some(self.index), out);
                                    self.index += 1;
                                    self.mode = Mode::Gap;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                Mode::Tail => {
                    if !self.lex(b) {
                        match b {
                            b'{' | b'[' => self.depth += 1,
                            b'}' | b']' => {
                                self.depth = self.depth.saturating_sub(1);
                                if self.depth == 0 {
                                    self.mode = Mode::Top;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                Mode::Junk => {}
            }
            i += 1;
        }
        if self.capturing() {
            self.take(&chunk[from..]);
        }
        self.pos += chunk.len() as u64;
    }

    /// The body has ended: hand out what is left (a piece cut short goes to
    /// the decoder, which says what is wrong with it).
    pub fn finish(&mut self, out: &mut impl FnMut(Piece)) {
        match self.mode {
            Mode::Top if self.bom > 0 && self.bom < 3 => {
                self.begin(0);
                self.start = 0;
                let partial = BOM[..self.bom].to_vec();
                self.take(&partial);
                self.emit_bad(
                    None,
                    "not JSON: a batch holds JSON objects or arrays".into(),
                    out,
                );
            }
            Mode::Top | Mode::Tail => {}
            Mode::Header => self.emit(None, out),
            Mode::Item { .. } => {
                self.emit(Some(self.index), out);
                self.index += 1;
                self.cut_short(out);
            }
            Mode::Gap => self.cut_short(out),
            Mode::Junk => {
                let reason = "not JSON: a batch holds JSON objects or arrays".to_string();
                self.emit_bad(None, reason, out);
            }
        }
        self.mode = Mode::Top;
    }

    /// A list that never closed: say so once, where it ends.
    fn cut_short(&mut self, out: &mut impl FnMut(Piece)) {
        self.begin(0);
        let reason = format!(
            "the body ends at byte {} inside its list of events (cut short: the sender stopped or the connection broke)",
            self.pos
        );
        self.emit_bad(None, reason, out);
    }

    /// Whether bytes are being kept for a piece.
    fn capturing(&self) -> bool {
        matches!(self.mode, Mode::Header | Mode::Item { .. } | Mode::Junk)
    }

    /// Start a piece at `at` within the current chunk.
    fn begin(&mut self, at: u64) {
        self.buf.clear();
        self.start = self.pos + at;
        self.len = 0;
        self.hasher = None;
        self.in_string = false;
        self.escape = false;
    }

    fn drop_piece(&mut self) {
        self.buf.clear();
        self.len = 0;
        self.hasher = None;
    }

    /// Keep `bytes` of the current piece, up to `max_item`; past it, keep
    /// hashing only.
    fn take(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len() as u64;
        if let Some(h) = self.hasher.as_mut() {
            h.update(bytes);
            return;
        }
        if self.buf.len() + bytes.len() <= self.max_item {
            self.buf.extend_from_slice(bytes);
            return;
        }
        let mut h = Xxh3::new();
        h.update(&self.buf);
        h.update(bytes);
        self.hasher = Some(h);
        let room = KEEP.saturating_sub(self.buf.len());
        self.buf.truncate(KEEP);
        self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.buf.shrink_to(KEEP);
    }

    /// Hand out the current piece.
    fn emit(&mut self, index: Option<usize>, out: &mut impl FnMut(Piece)) {
        if self.hasher.is_some() {
            let reason = format!(
                "an event of {} bytes, over the {} bytes one event may hold; its first {} bytes are kept",
                self.len,
                self.max_item,
                self.buf.len()
            );
            self.emit_bad(index, reason, out);
            return;
        }
        out(Piece::Item {
            text: &self.buf,
            offset: self.start,
            index,
        });
        self.drop_piece();
    }

    fn emit_bad(&mut self, index: Option<usize>, reason: String, out: &mut impl FnMut(Piece)) {
        let xxh3 = match self.hasher.take() {
            Some(h) => h.digest(),
            None => xxhash_rust::xxh3::xxh3_64(&self.buf),
        };
        let kept = &self.buf[..self.buf.len().min(KEEP)];
        out(Piece::Bad {
            kept,
            offset: self.start,
            length: self.len,
            xxh3,
            index,
            reason,
        });
        self.drop_piece();
    }

    /// Follow strings: `true` when `b` is inside one (or closes one), so it
    /// has no structural meaning.
    fn lex(&mut self, b: u8) -> bool {
        if self.in_string {
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return true;
        }
        if b == b'"' {
            self.in_string = true;
            return true;
        }
        false
    }

    /// Track a string at the header object's own level, to find `"items"`.
    /// Called for bytes `lex` took (inside or delimiting a string).
    fn header_key(&mut self, b: u8) {
        if self.depth != 1 {
            return;
        }
        if self.in_string {
            if self.key != Key::InString {
                // The opening quote.
                self.key = Key::InString;
                self.key_len = 0;
            } else if self.key_len < self.key_bytes.len() {
                self.key_bytes[self.key_len] = b;
                self.key_len += 1;
            } else {
                self.key_len = self.key_bytes.len() + 1;
            }
        } else if self.key == Key::InString {
            // The closing quote.
            self.key = if self.key_len == 5 && &self.key_bytes[..5] == b"items" {
                Key::Items
            } else {
                Key::None
            };
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a piece is, owned, for comparisons.
    #[derive(Debug, Clone, PartialEq)]
    enum P {
        Item(String, u64, Option<usize>),
        Bad(String, u64, u64, Option<usize>, String, u64),
    }

    fn split_in(input: &[u8], max: usize, cuts: &[usize]) -> Vec<P> {
        let mut s = Splitter::new(max);
        let mut got = Vec::new();
        let mut sink = |p: Piece| {
            got.push(match p {
                Piece::Item {
                    text,
                    offset,
                    index,
                } => P::Item(String::from_utf8_lossy(text).into_owned(), offset, index),
                Piece::Bad {
                    kept,
                    offset,
                    length,
                    index,
                    reason,
                    xxh3,
                } => P::Bad(
                    String::from_utf8_lossy(kept).into_owned(),
                    offset,
                    length,
                    index,
                    reason,
                    xxh3,
                ),
            })
        };
        let mut at = 0;
        for &c in cuts {
            let c = c.clamp(at, input.len());
            s.push(&input[at..c], &mut sink);
            at = c;
        }
        s.push(&input[at..], &mut sink);
        s.finish(&mut sink);
        assert_eq!(s.position(), input.len() as u64);
        got
    }

    fn split(input: &str) -> Vec<P> {
        split_in(input.as_bytes(), 1 << 20, &[])
    }

    fn item(text: &str, offset: u64, index: Option<usize>) -> P {
        P::Item(text.to_string(), offset, index)
    }

    #[test]
    fn shapes_split_into_their_events() {
        let list = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{"a":"]}"},{"b":[1,{"c":2}]}]}"#;
        let cases: Vec<(&str, Vec<P>)> = vec![
            (
                list,
                vec![
                    item(r#"{"a":"]}"}"#, 74, Some(0)),
                    item(r#"{"b":[1,{"c":2}]}"#, 85, Some(1)),
                ],
            ),
            // Members after the list are scaffolding too.
            (
                r#"{"items":[{"x":1}],"metadata":{"items":[{"y":2}]}}"#,
                vec![item(r#"{"x":1}"#, 10, Some(0))],
            ),
            // A bare array, with spaces and newlines.
            (
                "[ {\"x\":1} ,\n {\"y\":\"\\\"\"} ]",
                vec![
                    item(r#"{"x":1}"#, 2, Some(0)),
                    item(r#"{"y":"\""}"#, 13, Some(1)),
                ],
            ),
            // One event, and events back to back.
            (
                r#"{"auditID":"a"}"#,
                vec![item(r#"{"auditID":"a"}"#, 0, None)],
            ),
            (
                "{\"a\":1}\n{\"b\":{\"items\":[]}}",
                vec![
                    item(r#"{"a":1}"#, 0, None),
                    item(r#"{"b":{"items":[]}}"#, 8, None),
                ],
            ),
            // A key that only starts like `items`, and an escaped one.
            (
                r#"{"itemsX":[1],"i\u0074ems":[2]}"#,
                vec![item(r#"{"itemsX":[1],"i\u0074ems":[2]}"#, 0, None)],
            ),
            // Scalars in a list are items the decoder rejects.
            (
                r#"[1, "s,]", null,{}]"#,
                vec![
                    item("1", 1, Some(0)),
                    item(r#""s,]""#, 4, Some(1)),
                    item("null", 11, Some(2)),
                    item("{}", 16, Some(3)),
                ],
            ),
            // An empty list, and an empty body.
            (r#"{"kind":"EventList","items":[]}"#, vec![]),
            ("  \n", vec![]),
            // A byte-order mark is skipped.
            ("\u{feff}[{}]", vec![item("{}", 4, Some(0))]),
        ];
        for (input, want) in cases {
            assert_eq!(split(input), want, "input {input}");
        }
    }

    #[test]
    fn damage_is_kept_and_said() {
        // Cut short inside an item: the item goes to the decoder, and the
        // unclosed list is said.
        let got = split(r#"{"items":[{"a":1},{"b":"#);
        assert_eq!(got[0], item(r#"{"a":1}"#, 10, Some(0)));
        assert_eq!(got[1], item(r#"{"b":"#, 18, Some(1)));
        assert!(matches!(&got[2], P::Bad(_, 23, 0, None, r, _) if r.contains("cut short")));
        assert_eq!(got.len(), 3);
        // Not JSON at all: one bad piece holding all of it.
        let got = split("not json\n{}");
        assert_eq!(
            got,
            vec![P::Bad(
                "not json\n{}".into(),
                0,
                11,
                None,
                "not JSON: a batch holds JSON objects or arrays".into(),
                xxhash_rust::xxh3::xxh3_64(b"not json\n{}"),
            )]
        );
        // Junk after a list.
        let got = split(r#"[{}] trailing"#);
        assert_eq!(got[0], item("{}", 1, Some(0)));
        assert!(matches!(&got[1], P::Bad(t, 5, 8, None, _, _) if t == "trailing"));
        // A partial byte-order mark is junk, with its bytes.
        let got = split_in(b"\xEF\xBB{}", 1 << 20, &[1]);
        assert!(matches!(&got[..], [P::Bad(_, 0, 4, None, _, _)]), "{got:?}");
        // A header cut short is handed out as it is.
        assert_eq!(
            split(r#"{"kind":"Ev"#),
            vec![item(r#"{"kind":"Ev"#, 0, None)]
        );
    }

    #[test]
    fn an_oversized_event_is_cut_to_its_first_bytes() {
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(3 * KEEP));
        let input = format!(r#"{{"items":[{{"s":1}},{big},{{"t":2}}]}}"#);
        let want_hash = xxhash_rust::xxh3::xxh3_64(big.as_bytes());
        let after = 18 + big.len() as u64 + 1;
        for cuts in [vec![], vec![15, 20, 40_000, 100_000, 150_000]] {
            let got = split_in(input.as_bytes(), 2 * KEEP, &cuts);
            assert_eq!(got.len(), 3, "{cuts:?}");
            assert_eq!(got[0], item(r#"{"s":1}"#, 10, Some(0)));
            match &got[1] {
                P::Bad(kept, 18, length, Some(1), reason, hash) => {
                    assert_eq!(kept.as_str(), &big[..KEEP]);
                    assert_eq!(*length, big.len() as u64);
                    assert_eq!(*hash, want_hash);
                    assert!(reason.contains("over the"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(got[2], item(r#"{"t":2}"#, after, Some(2)));
        }
    }

    #[test]
    fn chunking_does_not_change_the_pieces() {
        use rand::{Rng, SeedableRng};
        let inputs = [
            r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{"x":"[{"},"items":[{"auditID":"a\\\"]","k":[1,2,{"z":"}"}]},"s",7,{"b":{}}],"after":[{"q":1}]}"#,
            "\u{feff}[{\"a\":1},\n{\"b\":\"\\\\\"}]\n{\"c\":[]} [ ] junk",
            r#"{"items":[{"a":1},{"b":"#,
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for input in inputs {
            let whole = split_in(input.as_bytes(), 1 << 20, &[]);
            assert!(!whole.is_empty());
            for _ in 0..300 {
                let mut cuts: Vec<usize> = (0..rng.random_range(1..8))
                    .map(|_| rng.random_range(0..=input.len()))
                    .collect();
                cuts.sort();
                assert_eq!(
                    split_in(input.as_bytes(), 1 << 20, &cuts),
                    whole,
                    "input {input} cut at {cuts:?}"
                );
            }
        }
    }

    #[test]
    fn no_input_makes_it_panic() {
        use rand::{Rng, SeedableRng};
        let alphabet = b"{}[]\",:\\ ax1\n\xEF\xBB\xBF";
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for _ in 0..3000 {
            let n = rng.random_range(0..60);
            let input: Vec<u8> = (0..n)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            // Every piece lies inside the input, and they do not overlap.
            let mut s = Splitter::new(KEEP);
            let mut spans = Vec::new();
            let mut sink = |p: Piece| {
                spans.push(match p {
                    Piece::Item { text, offset, .. } => (offset, text.len() as u64),
                    Piece::Bad { offset, length, .. } => (offset, length),
                })
            };
            s.push(&input[..n / 2], &mut sink);
            s.push(&input[n / 2..], &mut sink);
            s.finish(&mut sink);
            let mut end = 0;
            for (off, len) in spans {
                assert!(off >= end && off + len <= n as u64, "{input:?}");
                end = off + len;
            }
        }
    }
}
