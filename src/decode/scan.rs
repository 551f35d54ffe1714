//! The fast path of decoding: a scanner for the shape of an audit `Event`
//! that fills [`Event`] directly, without serde's per-token dispatch.
//!
//! Decoding was the largest single cost of `ingest` (about a third of its
//! CPU time), and most of it was serde_json's generic machinery: a visitor
//! call per key, per string and per list item. Audit events have one fixed
//! shape, so a scanner that knows it does the same work with far fewer
//! steps.
//!
//! Contract: when [`event`] returns `Some(e)`, `serde_json::from_str::<Event>`
//! of the same text returns an equal event (the property tests in
//! `tests/decode_props.rs` and the tests below check it). Whenever the
//! scanner meets anything it does not handle itself (a syntax error, a
//! member of an unexpected type, an escaped key, a surrogate pair, a code
//! that is not a plain integer, trailing text) it returns `None` and the
//! caller takes the serde path, which accepts the event or says precisely
//! what is wrong with it. The scanner therefore never rejects anything; it
//! only makes the common case cheap.
//!
//! Members the record keeps verbatim or ignores (`requestObject`, unknown
//! members, `responseStatus.metadata`) are read as one value by serde_json
//! itself, so their validation is serde's. One difference: serde_json's
//! nesting limit (128) counts from such a value rather than from the event,
//! so a value nested 127 to 130 deep that the serde path would refuse is
//! accepted here. Such an event is valid JSON, so nothing is lost.

use crate::event::{non_null, Event, ExtraValues, ObjectRef, ResponseStatus, Spare, Str, UserInfo};
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Scan one JSON object as an audit event; `None` means "ask serde".
pub fn event(text: &str) -> Option<Event<'_>> {
    let mut e = Event::default();
    event_into(text, &mut Spare::default(), &mut e)?;
    Some(e)
}

/// As [`event`], filling `out` (a default event) where it lies rather than
/// returning the event (see [`crate::decode::Decoded`] for why), with list
/// buffers taken from `spare` (see [`Spare`]). On `None`, `out` may hold
/// part of the event: overwrite it.
pub fn event_into<'a>(text: &'a str, spare: &mut Spare, out: &mut Event<'a>) -> Option<()> {
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        i: 0,
        spare,
    };
    s.event(out)?;
    s.ws();
    (s.i == s.b.len()).then_some(())
}

struct Scanner<'a, 's> {
    text: &'a str,
    b: &'a [u8],
    /// Byte offset of the next unread byte. Only ever moved past ASCII
    /// bytes or whole values, so it is always a char boundary.
    i: usize,
    spare: &'s mut Spare,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Bytes that end the plain run of a JSON string: a quote, a backslash, or
/// a control character (which JSON forbids unescaped).
#[inline]
fn special(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// Bit `8k + 7` is set when byte `k` of `word` (eight bytes) is [`special`],
/// except possibly for bytes above a special one (the borrow), so the lowest
/// set bit always marks the first special byte.
#[inline]
fn swar_hits(word: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(word);
    let x = u64::from_le_bytes(w);
    let quote = x ^ (ONES * u64::from(b'"'));
    let slash = x ^ (ONES * u64::from(b'\\'));
    (quote.wrapping_sub(ONES) & !quote
        | slash.wrapping_sub(ONES) & !slash
        | x.wrapping_sub(ONES * 0x20) & !x)
        & HIGH
}

/// Bit `k` is set exactly when byte `k` of `block` (sixteen bytes) is
/// [`special`].
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn sse2_hits(block: &[u8]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_setzero_si128,
    };
    assert!(block.len() >= 16);
    // SAFETY: the assertion keeps the unaligned 16-byte load inside
    // `block`, and SSE2, which the other intrinsics need, is part of the
    // x86-64 baseline (`target_feature = "sse2"` is always set there).
    unsafe {
        let x = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
        let slash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
        // A control character (below 0x20) has its top three bits clear.
        let top = _mm_and_si128(x, _mm_set1_epi8(0xE0_u8 as i8));
        let control = _mm_cmpeq_epi8(top, _mm_setzero_si128());
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, slash), control)) as u32
    }
}

impl<'a> Scanner<'a, '_> {
    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            // Every byte that is not white space and can start or end a
            // JSON token is above the space: one compare in the common case.
            if c > b' ' || !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.i += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        if c > b' ' {
            return Some(c);
        }
        self.ws();
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek()? == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// Consume a `null` if one is next.
    #[inline]
    fn null(&mut self) -> Option<bool> {
        if self.peek()? != b'n' {
            return Some(false);
        }
        if self.b.get(self.i..self.i + 4)? == b"null" {
            self.i += 4;
            Some(true)
        } else {
            None
        }
    }

    /// Index of the first byte at or after `j` that ends a plain string run
    /// (or the end of input). Sixteen bytes at a time where SSE2 is there
    /// (every x86-64), then eight at a time by [`swar_hits`], then bytewise.
    #[inline]
    fn plain_end(&self, mut j: usize) -> usize {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        while let Some(block) = self.b.get(j..j + 16) {
            let hits = sse2_hits(block);
            if hits != 0 {
                return j + hits.trailing_zeros() as usize;
            }
            j += 16;
        }
        while let Some(word) = self.b.get(j..j + 8) {
            let hits = swar_hits(word);
            if hits != 0 {
                return j + (hits.trailing_zeros() / 8) as usize;
            }
            j += 8;
        }
        while j < self.b.len() && !special(self.b[j]) {
            j += 1;
        }
        j
    }

    /// A string; borrowed from the input unless it has escapes.
    fn string(&mut self) -> Option<Str<'a>> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i + 1;
        let end = self.plain_end(start);
        match self.b.get(end)? {
            b'"' => {
                self.i = end + 1;
                debug_assert!(
                    start <= end
                        && self.text.is_char_boundary(start)
                        && self.text.is_char_boundary(end)
                );
                // SAFETY: `text` is UTF-8, `start` is just past the opening
                // quote and `end` at the closing one (`plain_end` never
                // returns less than its start, and `end` was just read, so
                // start <= end < len). Both follow or hold an ASCII quote,
                // so both are char boundaries. The checked `get` was a
                // quarter of the instructions of reading a plain string
                // (cachegrind), and half the strings read are keys.
                Some(Cow::Borrowed(unsafe {
                    self.text.get_unchecked(start..end)
                }))
            }
            b'\\' => self.escaped(start, end),
            _ => None,
        }
    }

    /// The rest of a string with escapes; `j` is at the first backslash.
    fn escaped(&mut self, start: usize, mut j: usize) -> Option<Str<'a>> {
        // Unescaping only shortens, so the escaped length up to the closing
        // quote is enough: one allocation instead of regrowing the string
        // at every escape (RBAC reasons quote names with `\"`).
        let mut out = String::with_capacity(self.escaped_len(start, j));
        out.push_str(self.text.get(start..j)?);
        loop {
            match self.b.get(j)? {
                b'"' => {
                    self.i = j + 1;
                    return Some(Cow::Owned(out));
                }
                b'\\' => {
                    let (c, len) = match self.b.get(j + 1)? {
                        b'"' => ('"', 2),
                        b'\\' => ('\\', 2),
                        b'/' => ('/', 2),
                        b'b' => ('\u{8}', 2),
                        b'f' => ('\u{c}', 2),
                        b'n' => ('\n', 2),
                        b'r' => ('\r', 2),
                        b't' => ('\t', 2),
                        b'u' => {
                            let hex = self.b.get(j + 2..j + 6)?;
                            let mut v = 0u32;
                            for &h in hex {
                                v = v * 16 + (h as char).to_digit(16)?;
                            }
                            // Surrogates (pairs or lone) are left to serde.
                            (char::from_u32(v)?, 6)
                        }
                        _ => return None,
                    };
                    out.push(c);
                    j += len;
                }
                _ => return None, // an unescaped control character
            }
            let k = self.plain_end(j);
            out.push_str(self.text.get(j..k)?);
            j = k;
        }
    }

    /// Bytes from `start` to the quote that closes the string whose first
    /// backslash is at `j` (to the end of input if it is never closed: the
    /// string is then rejected anyway).
    fn escaped_len(&self, start: usize, j: usize) -> usize {
        let mut k = j;
        while let Some(q) = memchr::memchr(b'"', self.b.get(k..).unwrap_or_default()) {
            let quote = k + q;
            // A quote ends the string unless an odd number of backslashes
            // precede it.
            let slashes = self.b[j..quote]
                .iter()
                .rev()
                .take_while(|&&c| c == b'\\')
                .count();
            if slashes % 2 == 0 {
                return quote - start;
            }
            k = quote + 1;
        }
        self.b.len() - start
    }

    /// An object key followed by its colon. Escaped keys are left to serde,
    /// which compares them unescaped.
    #[inline]
    fn key(&mut self) -> Option<&'a str> {
        match self.string()? {
            Cow::Borrowed(k) => {
                self.eat(b':')?;
                Some(k)
            }
            Cow::Owned(_) => None,
        }
    }

    /// The members of an object; `member` reads each value.
    #[inline]
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.delimited(b'{', b'}', |s| {
            let key = s.key()?;
            member(s, key)
        })
    }

    /// The items of an array; `item` reads each one.
    #[inline]
    fn array(&mut self, item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.delimited(b'[', b']', item)
    }

    /// `open`, then comma-separated entries read by `entry`, then `close`
    /// (no trailing comma, as JSON has none).
    #[inline]
    fn delimited(
        &mut self,
        open: u8,
        close: u8,
        mut entry: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        if self.peek()? == close {
            self.i += 1;
            return Some(());
        }
        loop {
            entry(self)?;
            match self.peek()? {
                b',' => self.i += 1,
                c if c == close => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string or `null`.
    #[inline]
    fn opt_str(&mut self) -> Option<Option<Str<'a>>> {
        self.nullable(Self::string)
    }

    /// A list of strings or `null` (empty); `null` items are skipped.
    fn str_list<C: Default + Extend<Str<'a>>>(&mut self) -> Option<C> {
        self.str_list_into(C::default())
    }

    /// As [`Self::str_list`], appending to `out` (an empty, maybe reused,
    /// buffer).
    fn str_list_into<C: Extend<Str<'a>>>(&mut self, mut out: C) -> Option<C> {
        if !self.null()? {
            self.array(|s| {
                if let Some(v) = s.opt_str()? {
                    out.extend(std::iter::once(v));
                }
                Some(())
            })?;
        }
        Some(out)
    }

    /// One whole JSON value, read and validated by serde_json; the cursor
    /// moves past it.
    fn raw(&mut self) -> Option<&'a RawValue> {
        self.ws();
        let rest = self.text.get(self.i..)?;
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<&'a RawValue>();
        let raw = values.next()?.ok()?;
        self.i += values.byte_offset();
        Some(raw)
    }

    /// Skip one value: the shapes seen in practice here, the rest by serde.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'n' if self.null()? => Some(()),
            b'{' if self.b.get(self.i + 1) == Some(&b'}') => {
                self.i += 2;
                Some(())
            }
            _ => {
                let rest = self.text.get(self.i..)?;
                let mut values = serde_json::Deserializer::from_str(rest).into_iter::<IgnoredAny>();
                values.next()?.ok()?;
                self.i += values.byte_offset();
                Some(())
            }
        }
    }

    /// A plain JSON integer that fits `i32`. Fractions, exponents and `-0`
    /// (a float to serde_json, so not an `i32`) are left to serde.
    fn int(&mut self) -> Option<i32> {
        self.ws();
        let start = self.i;
        let mut j = start;
        if self.b.get(j) == Some(&b'-') {
            j += 1;
        }
        let digits = j;
        while self.b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        let n = j - digits;
        if n == 0 || n > 10 || (n > 1 && self.b[digits] == b'0') {
            return None;
        }
        if matches!(self.b.get(j), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let v: i64 = self.text.get(start..j)?.parse().ok()?;
        if v == 0 && digits > start {
            return None;
        }
        self.i = j;
        i32::try_from(v).ok()
    }

    fn user(&mut self) -> Option<UserInfo<'a>> {
        let mut u = UserInfo::default();
        self.object(|s, key| {
            match key {
                "username" => u.username = s.opt_str()?,
                "uid" => u.uid = s.opt_str()?,
                "groups" => {
                    let buf = s.spare.strs();
                    u.groups = s.str_list_into(buf)?;
                }
                "extra" => {
                    let mut extra = s.spare.extras();
                    if !s.null()? {
                        s.object(|s, k| {
                            // A Go nil slice is written as `null`: no values.
                            let values: ExtraValues = s.str_list()?;
                            extra.push((Cow::Borrowed(k), values));
                            Some(())
                        })?;
                    }
                    u.extra = extra;
                }
                _ => s.skip()?,
            }
            Some(())
        })?;
        Some(u)
    }

    fn object_ref(&mut self) -> Option<ObjectRef<'a>> {
        let mut o = ObjectRef::default();
        self.object(|s, key| {
            match key {
                "resource" => o.resource = s.opt_str()?,
                "namespace" => o.namespace = s.opt_str()?,
                "name" => o.name = s.opt_str()?,
                "uid" => o.uid = s.opt_str()?,
                "apiGroup" => o.api_group = s.opt_str()?,
                "apiVersion" => o.api_version = s.opt_str()?,
                "subresource" => o.subresource = s.opt_str()?,
                _ => s.skip()?,
            }
            Some(())
        })?;
        Some(o)
    }

    fn status(&mut self) -> Option<ResponseStatus<'a>> {
        let mut st = ResponseStatus::default();
        self.object(|s, key| {
            match key {
                "code" => st.code = if s.null()? { None } else { Some(s.int()?) },
                "status" => st.status = s.opt_str()?,
                "reason" => st.reason = s.opt_str()?,
                "message" => st.message = s.opt_str()?,
                _ => s.skip()?,
            }
            Some(())
        })?;
        Some(st)
    }

    /// `null`, or a value read by `read`.
    #[inline]
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null()? {
            Some(None)
        } else {
            read(self).map(Some)
        }
    }

    /// The members of an event, into `e`.
    fn event(&mut self, e: &mut Event<'a>) -> Option<()> {
        self.object(|s, key| {
            match key {
                "kind" => e.kind = s.opt_str()?,
                "apiVersion" => e.api_version = s.opt_str()?,
                "level" => e.level = s.opt_str()?,
                "auditID" => e.audit_id = s.opt_str()?,
                "stage" => e.stage = s.opt_str()?,
                "requestURI" => e.request_uri = s.opt_str()?,
                "verb" => e.verb = s.opt_str()?,
                "user" => e.user = s.nullable(Self::user)?.unwrap_or_default(),
                "impersonatedUser" => e.impersonated_user = s.nullable(Self::user)?,
                "sourceIPs" => {
                    let buf = s.spare.strs();
                    e.source_ips = s.str_list_into(buf)?;
                }
                "userAgent" => e.user_agent = s.opt_str()?,
                "objectRef" => e.object_ref = s.nullable(Self::object_ref)?,
                "responseStatus" => e.response_status = s.nullable(Self::status)?,
                "requestObject" => e.request_object = non_null(s.raw()?),
                "responseObject" => e.response_object = non_null(s.raw()?),
                "requestReceivedTimestamp" => e.request_received_timestamp = s.opt_str()?,
                "stageTimestamp" => e.stage_timestamp = s.opt_str()?,
                "annotations" => {
                    let mut pairs = s.spare.pairs();
                    if !s.null()? {
                        s.object(|s, k| {
                            let v = s.opt_str()?.unwrap_or_default();
                            pairs.push((Cow::Borrowed(k), v));
                            Some(())
                        })?;
                    }
                    e.annotations = pairs;
                }
                _ => {
                    let raw = s.raw()?;
                    e.other_fields.push((Cow::Borrowed(key), raw));
                }
            }
            Some(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `escaped_len` finds the closing quote past escaped quotes and
    /// backslashes, so an escaped string is read with one allocation that
    /// is never outgrown.
    #[test]
    fn escaped_strings_fit_their_first_allocation() {
        // (JSON text after the opening quote, unescaped value)
        let table: &[(&str, &str)] = &[
            (r#"a\"b" tail"#, "a\"b"),
            (r#"\\" tail"#, "\\"),
            (r#"x\\\"y\\" tail"#, "x\\\"y\\"),
            (
                r#"RBAC: \"edit\" of \"view\"", "x": "y""#,
                "RBAC: \"edit\" of \"view\"",
            ),
            (r#"\u00e9t\u00e9\n" tail"#, "été\n"),
        ];
        for (text, want) in table {
            let quoted = format!("\"{text}");
            let mut s = Scanner {
                text: &quoted,
                b: quoted.as_bytes(),
                i: 0,
                spare: &mut Spare::default(),
            };
            let first = quoted.find('\\').unwrap_or_default();
            let room = s.escaped_len(1, first);
            let got = s.string();
            assert_eq!(got.as_deref(), Some(*want), "{text}");
            assert!(room >= want.len(), "{text}: {room} < {}", want.len());
            // The scanner stopped just past the closing quote.
            assert_eq!(room, s.i - 2, "{text}");
            if let Some(Cow::Owned(v)) = got {
                assert!(v.capacity() <= room, "{text}: regrown to {}", v.capacity());
            }
        }
        // Never closed: up to the end, and the string is rejected.
        let open = r#""ab\"cd"#;
        let mut s = Scanner {
            text: open,
            b: open.as_bytes(),
            i: 0,
            spare: &mut Spare::default(),
        };
        assert_eq!(s.escaped_len(1, 3), open.len() - 1);
        assert!(s.string().is_none());
    }

    /// The first special byte of every string of 0..40 bytes, each byte
    /// value in turn placed at each position of a plain run, is where
    /// `plain_end` stops: this covers the 16-byte, 8-byte and bytewise
    /// steps and every lane of each.
    #[test]
    fn plain_end_stops_at_the_first_special_byte() {
        for len in 0..40usize {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut b = vec![b'a'; len];
                    b[at] = c;
                    // A second special byte later must not move the stop.
                    if at + 3 < len {
                        b[at + 3] = b'"';
                    }
                    // Most of these bytes are not UTF-8 on their own;
                    // `plain_end` reads only `b`, so `text` can stay empty.
                    let s = Scanner {
                        text: "",
                        b: &b,
                        i: 0,
                        spare: &mut Spare::default(),
                    };
                    let expected = b.iter().position(|&x| special(x)).unwrap_or(len);
                    assert_eq!(s.plain_end(0), expected, "len {len}, byte {c:#04x} at {at}");
                }
            }
        }
    }

    /// The scanner's reading must equal serde's whenever it gives one.
    fn agrees(text: &str) -> bool {
        let Some(fast) = event(text) else {
            return false;
        };
        match serde_json::from_str::<Event>(text) {
            Ok(slow) => assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{text}"),
            Err(e) => panic!("scanner accepted what serde refuses ({e}): {text}"),
        }
        true
    }

    #[test]
    fn generated_events_take_the_fast_path_and_agree() {
        let text = String::from_utf8(crate::tools::gen::jsonl(3000, 7)).expect("utf-8");
        let mut n = 0;
        for line in text.lines() {
            assert!(agrees(line), "fell back to serde: {line}");
            n += 1;
        }
        assert_eq!(n, 3000);
    }

    #[test]
    fn handled_shapes_agree() {
        // Every row must be read by the scanner itself.
        let rows = [
            r#"{"auditID":"a","stage":"x"}"#,
            r#" { "auditID" : "a" , "stage" : null } "#,
            r#"{"verb":"g\u0065t","requestURI":"/a?b=1\u0026c=\"2\"\\\/\b\f\n\r\t"}"#,
            r#"{"userAgent":"k\u00e9\u4e2d","user":{"username":"x","extra":{"a":null,"b":[],"c":["1"],"d":["1",null,"2"]},"other":[1,{"x":[true,false]}]}}"#,
            r#"{"user":null,"impersonatedUser":null,"objectRef":null,"responseStatus":null,"annotations":null,"sourceIPs":null}"#,
            r#"{"responseStatus":{"metadata":{},"code":-7,"status":"Failure","details":{"x":1.5e3}},"objectRef":{"resource":"pods","extra":"y"}}"#,
            r#"{"responseStatus":{"code":2147483647}}"#,
            r#"{"requestObject":{"a":[1,2,{"b":null}]},"responseObject":null,"authenticationMetadata":{"impersonationConstraint":"x"},"timestamp":"2018-10-25T13:58:49Z","n":12}"#,
            r#"{"annotations":{"a":"1","b":null,"a":"2"},"sourceIPs":["1.2.3.4",null,"::1"]}"#,
            r#"{"kind":"EventList","items":[{"auditID":"a"}],"metadata":{}}"#,
            "{\"verb\":\"caf\u{e9} \u{1F600}\"}",
            "{}",
        ];
        for row in rows {
            assert!(agrees(row), "fell back to serde: {row}");
        }
    }

    #[test]
    fn unsure_input_is_left_to_serde() {
        // Each is either invalid JSON, a wrong type, or a case the scanner
        // leaves to serde on purpose; none may be read here.
        let rows = [
            "",
            "{",
            r#"{"auditID":"a",}"#,
            r#"{"auditID":"a"} x"#,
            r#"{"auditID":"a"}{}"#,
            r#"{"auditID":5}"#,
            r#"{"auditID":"a\x"}"#,
            "{\"auditID\":\"a\u{1}\"}",
            r#"{"auditID":"\ud83d\ude00"}"#,
            r#"{"auditID":"\u+123"}"#,
            r#"{"audit\u0049D":"a"}"#,
            r#"{"responseStatus":{"code":200.0}}"#,
            r#"{"responseStatus":{"code":-0}}"#,
            r#"{"responseStatus":{"code":2e2}}"#,
            r#"{"responseStatus":{"code":2147483648}}"#,
            r#"{"responseStatus":{"code":0200}}"#,
            r#"{"responseStatus":{"code":"200"}}"#,
            r#"{"user":[]}"#,
            r#"{"user":{"extra":{"a":"b"}}}"#,
            r#"{"sourceIPs":[1]}"#,
            r#"{"annotations":{"a":1}}"#,
            r#"{"requestObject":{"a":}}"#,
            r#"{"x":nul}"#,
            r#"{"verb":nulls}"#,
            "[]",
        ];
        for row in rows {
            assert!(event(row).is_none(), "scanner read {row}");
        }
    }

    #[test]
    fn shape_fixtures_agree() {
        let lines = crate::decode::tests::shape_fixture_lines();
        let fast = lines.iter().filter(|(_, line)| agrees(line)).count();
        assert_eq!(
            fast,
            lines.len(),
            "only {fast} fixture events took the fast path"
        );
    }

    #[test]
    fn falco_fixtures_agree() {
        if let Some(lines) = crate::decode::tests::falco_fixture_lines() {
            let fast = lines.iter().filter(|(_, line)| agrees(line)).count();
            assert!(fast >= 10, "only {fast} fixture events took the fast path");
        }
    }
}
