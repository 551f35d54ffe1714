//! Decoding: turn one unit of input text (a log line, a webhook body, a Kafka
//! message) into audit events, or into rejections with a reason.
//!
//! Accepted shapes: an `Event` (with or without `kind`/`apiVersion`,
//! `audit.k8s.io/v1` or `v1beta1`), an `EventList`, a bare JSON array of
//! events, several events back to back with no delimiter. Managed
//! clusters' envelopes around them are opened by [`envelope`]. The apiserver's `legacy` text format is recognised and rejected
//! with an explanation, since it lacks the extras and UIDs resolution needs.
//!
//! Each event object is read by [`scan`], a scanner for the event's known
//! shape, and only when it is unsure by serde_json (the `Deserialize` impls
//! in `event.rs`), which then also words the rejection.
//!
//! Pure: no I/O. One bad item in a list rejects that item only. Nothing here
//! may panic on any input (see the property test).

pub mod envelope;
pub mod scan;
pub mod split;

use crate::event::{Event, Spare};
use serde_json::value::RawValue;
use std::cell::Cell;

/// One event object, read into `out` (a default event): by the scanner when
/// it can, else by serde (which also explains what is wrong).
fn parse_event<'a>(
    text: &'a str,
    spare: &mut Spare,
    out: &mut Event<'a>,
) -> Result<(), serde_json::Error> {
    if scan::event_into(text, spare, out).is_none() {
        *out = serde_json::from_str(text)?;
    }
    Ok(())
}

/// Why a unit or an item was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty input")]
    Empty,
    #[error("the apiserver `legacy` text audit format cannot be resolved (it has no user extras or UIDs); set --audit-log-format=json on kube-apiserver")]
    LegacyFormat,
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not an audit event: {0}")]
    NotAnEvent(String),
    #[error("invalid audit event: {0}")]
    InvalidEvent(String),
    #[error("unsupported apiVersion `{0}` (expected audit.k8s.io/v1 or v1beta1)")]
    UnsupportedVersion(String),
    #[error("invalid {envelope} envelope: {problem}")]
    BadEnvelope {
        envelope: &'static str,
        problem: String,
    },
    #[error("invalid {field} `{value}`: expected RFC 3339 UTC like 2025-03-04T06:22:18.819232Z")]
    BadTimestamp { field: &'static str, value: String },
}

/// One rejected item: its text (borrowed from the unit) and why.
#[derive(Debug, Clone)]
pub struct Rejection<'a> {
    /// Index within a list, `None` when the whole unit was rejected.
    pub item: Option<usize>,
    pub text: &'a str,
    pub error: DecodeError,
}

/// A decoded event with the timestamps already parsed (µs since the epoch).
///
/// It is filled where it lies and moved once, into the caller's hands: at
/// some 800 bytes, each move of an event was a visible part of decoding.
#[derive(Debug, Clone, Default)]
pub struct Decoded<'a> {
    /// Index within a list (0 for a single event).
    pub item: usize,
    pub event: Event<'a>,
    pub received_us: Option<i64>,
    pub stage_us: Option<i64>,
    /// Where an event read out of a managed cluster's envelope came from.
    pub provenance: Option<Box<envelope::Provenance<'a>>>,
}

/// Decode one unit of text, calling `on_event` / `on_reject` for each item.
pub fn decode_unit<'a>(
    text: &'a str,
    on_event: impl FnMut(Decoded<'a>),
    on_reject: impl FnMut(Rejection<'a>),
) {
    decode_unit_in(text, &mut Spare::default(), on_event, on_reject)
}

/// As [`decode_unit`], filling the events' lists with buffers from `spare`
/// (hand them back with [`Spare::keep`] once the events are written).
pub fn decode_unit_in<'a>(
    text: &'a str,
    spare: &mut Spare,
    mut on_event: impl FnMut(Decoded<'a>),
    mut on_reject: impl FnMut(Rejection<'a>),
) {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    let whole = |error| Rejection {
        item: None,
        text,
        error,
    };
    match trimmed.as_bytes().first() {
        None => on_reject(whole(DecodeError::Empty)),
        Some(b'[') => match serde_json::from_str::<Vec<&RawValue>>(trimmed) {
            Ok(items) => decode_items(&items, spare, &mut on_event, &mut on_reject),
            Err(e) => match salvage_items(trimmed) {
                Some(items) => decode_texts(&items, spare, &mut on_event, &mut on_reject),
                None => on_reject(whole(DecodeError::NotJson(e.to_string()))),
            },
        },
        Some(b'{') => {
            let mut d = Decoded::default();
            match parse_event(trimmed, spare, &mut d.event) {
                Ok(()) => {
                    if let Some(items) = list_items(&d.event) {
                        match items {
                            Ok(items) => decode_items(&items, spare, &mut on_event, &mut on_reject),
                            Err(error) => on_reject(whole(error)),
                        }
                    } else {
                        match check(&mut d) {
                            Ok(()) => on_event(d),
                            Err(error) => on_reject(whole(error)),
                        }
                    }
                }
                Err(e) => {
                    let error = parse_failure(trimmed, e);
                    if let (DecodeError::NotJson(_), Some(values)) = (&error, concatenated(trimmed))
                    {
                        return decode_texts(&values, spare, &mut on_event, &mut on_reject);
                    }
                    match (&error, salvage_items(trimmed)) {
                        (DecodeError::NotJson(_), Some(items)) => {
                            decode_texts(&items, spare, &mut on_event, &mut on_reject)
                        }
                        _ => on_reject(whole(error)),
                    }
                }
            }
        }
        Some(_) if is_legacy(trimmed) => on_reject(whole(DecodeError::LegacyFormat)),
        Some(_) => on_reject(whole(
            match serde_json::from_str::<serde_json::Value>(trimmed) {
                Ok(v) => {
                    DecodeError::NotAnEvent(format!("a JSON {} is not an object", kind_of(&v)))
                }
                Err(e) => DecodeError::NotJson(e.to_string()),
            },
        )),
    }
}

/// Decode one item of a list (its `index` there), as the items of a list
/// unit are: one that is itself a list is rejected. For lists read in
/// pieces by [`split::Splitter`].
pub fn decode_item_in<'a>(
    text: &'a str,
    index: usize,
    spare: &mut Spare,
    mut on_event: impl FnMut(Decoded<'a>),
    mut on_reject: impl FnMut(Rejection<'a>),
) {
    decode_list(&[text], index, spare, &mut on_event, &mut on_reject)
}

/// Why an object that did not parse as an event failed: "not JSON at all"
/// or "JSON, wrong shape".
fn parse_failure(text: &str, e: serde_json::Error) -> DecodeError {
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => DecodeError::InvalidEvent(e.to_string()),
        Err(_) => DecodeError::NotJson(e.to_string()),
    }
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// `<RFC3339Nano> AUDIT: id="…"` — kube-apiserver's legacy log line.
fn is_legacy(text: &str) -> bool {
    match text.split_once(' ') {
        Some((ts, rest)) => {
            ts.len() >= 20 && ts.as_bytes()[4] == b'-' && rest.starts_with("AUDIT: ")
        }
        None => false,
    }
}

/// When `event` is really an `EventList`, its items.
fn list_items<'a>(event: &Event<'a>) -> Option<Result<Vec<&'a RawValue>, DecodeError>> {
    let items = event
        .other_fields
        .iter()
        .find(|(k, _)| k == "items")
        .map(|(_, v)| *v);
    let is_list = event.kind.as_deref() == Some("EventList");
    match (is_list, items) {
        (_, Some(raw)) => Some(
            serde_json::from_str::<Option<Vec<&'a RawValue>>>(raw.get())
                .map(|v| v.unwrap_or_default())
                .map_err(|e| DecodeError::InvalidEvent(format!("EventList items: {e}"))),
        ),
        (true, None) => Some(Ok(Vec::new())),
        (false, None) => None,
    }
}

fn decode_items<'a>(
    items: &[&'a RawValue],
    spare: &mut Spare,
    on_event: &mut impl FnMut(Decoded<'a>),
    on_reject: &mut impl FnMut(Rejection<'a>),
) {
    let texts: Vec<&str> = items.iter().map(|r| r.get()).collect();
    decode_texts(&texts, spare, on_event, on_reject)
}

/// The objects of a unit that holds several, one after another with no
/// delimiter (Firehose to S3 with message extraction and no newline
/// processor writes events this way); `None` unless there are two or more
/// and all parse.
fn concatenated(text: &str) -> Option<Vec<&str>> {
    let values: Vec<&str> = serde_json::Deserializer::from_str(text)
        .into_iter::<&RawValue>()
        .map(|v| v.map(RawValue::get))
        .collect::<Result<_, _>>()
        .ok()?;
    (values.len() > 1).then_some(values)
}

/// The items of a list that does not parse as a whole, found by matching
/// brackets outside strings: a bare array, or the `items` array of an
/// object. One damaged item (an unescaped NUL, a byte that was not UTF-8,
/// a cut) would otherwise take every other event of its batch with it into
/// the dead letter. `None` when no list is found. A list cut short ends
/// with its damaged remainder as the last item, which the caller rejects.
pub fn salvage_items(text: &str) -> Option<Vec<&str>> {
    let b = text.as_bytes();
    let open = match b.first()? {
        b'[' => 0,
        b'{' => items_array(b)?,
        _ => return None,
    };
    let mut items = Vec::new();
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    let mut start = open + 1;
    for (i, &c) in b.iter().enumerate().skip(open + 1) {
        if in_str {
            match c {
                _ if esc => esc = false,
                b'\\' => esc = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => depth -= 1,
            b',' | b']' if depth == 0 => {
                let item = text.get(start..i)?.trim();
                if !item.is_empty() {
                    items.push(item);
                }
                start = i + 1;
                if c == b']' {
                    // Whatever follows the list could hold an event too (a
                    // bare array's trailing text, damage in an envelope):
                    // it becomes an item of its own, to be rejected, so
                    // nothing is dropped unseen.
                    let rest = text.get(start..)?.trim();
                    if !benign_tail(rest, open > 0) {
                        items.push(rest);
                    }
                    return (!items.is_empty()).then_some(items);
                }
            }
            _ => {}
        }
    }
    let rest = text.get(start..)?.trim();
    if !rest.is_empty() {
        items.push(rest);
    }
    // A list with nothing in it is no salvage: the caller rejects the
    // unit whole.
    (!items.is_empty()).then_some(items)
}

/// Whether the text after a salvaged list's `]` holds nothing that could be
/// lost: nothing at all after a bare array; after an object's `items`, the
/// rest of a valid envelope (`}` or `,"kind":…}`).
fn benign_tail(rest: &str, in_object: bool) -> bool {
    if !in_object || rest.is_empty() {
        return rest.is_empty();
    }
    if rest == "}" {
        return true;
    }
    match rest.strip_prefix(',') {
        Some(members) => {
            serde_json::from_str::<serde::de::IgnoredAny>(&format!("{{{members}")).is_ok()
        }
        None => false,
    }
}

/// Offset of the `[` opening the `items` member of the top-level object
/// in `b` (which starts with `{`).
fn items_array(b: &[u8]) -> Option<usize> {
    let mut found = None;
    top_level_members(b, |key, value| {
        if key == b"items" && b.get(value) == Some(&b'[') {
            found = Some(value);
            return false;
        }
        true
    });
    found
}

/// Calls `f` with each key of the top-level object(s) in `b` (several may
/// follow one another) and the offset of its value, until `f` says stop.
/// Strings are skipped by their escapes, so a key inside a value never
/// counts. Shared by the `items` salvage and envelope detection.
pub(crate) fn top_level_members(b: &[u8], mut f: impl FnMut(&[u8], usize) -> bool) {
    let (mut depth, mut i) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'"' => {
                let s = i + 1;
                let mut j = s;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                if depth == 1 {
                    let mut k = j + 1;
                    while k < b.len() && b[k].is_ascii_whitespace() {
                        k += 1;
                    }
                    if b.get(k) == Some(&b':') {
                        k += 1;
                        while k < b.len() && b[k].is_ascii_whitespace() {
                            k += 1;
                        }
                        if let Some(key) = b.get(s..j) {
                            if !f(key, k) {
                                return;
                            }
                        }
                    }
                }
                i = j + 1;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
}

/// Replace every byte of `bytes` that is not part of valid UTF-8 with NUL.
/// The result has the same length (offsets into it are offsets into the
/// original) and NUL is invalid anywhere in JSON, so an item holding such
/// a byte is rejected and the others decode.
pub fn nul_for_invalid_utf8(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        out.extend(std::iter::repeat_n('\0', chunk.invalid().len()));
    }
    out
}

fn decode_texts<'a>(
    items: &[&'a str],
    spare: &mut Spare,
    on_event: &mut impl FnMut(Decoded<'a>),
    on_reject: &mut impl FnMut(Rejection<'a>),
) {
    decode_list(items, 0, spare, on_event, on_reject)
}

/// The items of a list, the first of them at index `first`.
fn decode_list<'a>(
    items: &[&'a str],
    first: usize,
    spare: &mut Spare,
    on_event: &mut impl FnMut(Decoded<'a>),
    on_reject: &mut impl FnMut(Rejection<'a>),
) {
    for (i, &text) in items.iter().enumerate() {
        let i = first + i;
        let mut d = Decoded {
            item: i,
            ..Default::default()
        };
        let result = match parse_event(text, spare, &mut d.event) {
            Ok(()) if list_items(&d.event).is_some() => Err(DecodeError::NotAnEvent(
                "an EventList nested inside a list".into(),
            )),
            Ok(()) => check(&mut d),
            Err(e) => Err(if text.starts_with('{') {
                DecodeError::InvalidEvent(e.to_string())
            } else {
                DecodeError::NotAnEvent("list item is not an object".into())
            }),
        };
        match result {
            Ok(()) => on_event(d),
            Err(error) => on_reject(Rejection {
                item: Some(i),
                text,
                error,
            }),
        }
    }
}

/// Validate what the record needs and parse the timestamps.
fn check(d: &mut Decoded) -> Result<(), DecodeError> {
    let event = &d.event;
    if let Some(kind) = event.kind.as_deref() {
        if kind != "Event" {
            return Err(DecodeError::NotAnEvent(format!("kind `{kind}`")));
        }
    }
    if let Some(v) = event.api_version.as_deref() {
        if !matches!(
            v,
            "audit.k8s.io/v1" | "audit.k8s.io/v1beta1" | "audit.k8s.io/v1alpha1"
        ) {
            return Err(DecodeError::UnsupportedVersion(v.to_string()));
        }
    }
    if event.audit_id.is_none() && event.stage.is_none() {
        return Err(DecodeError::NotAnEvent(
            "object has neither auditID nor stage".into(),
        ));
    }
    let received_us = parse_opt_ts(
        "requestReceivedTimestamp",
        event.request_received_timestamp.as_deref(),
    )?;
    let stage_us = parse_opt_ts("stageTimestamp", event.stage_timestamp.as_deref())?;
    d.received_us = received_us;
    d.stage_us = stage_us;
    Ok(())
}

fn parse_opt_ts(field: &'static str, value: Option<&str>) -> Result<Option<i64>, DecodeError> {
    match value {
        None | Some("") => Ok(None),
        Some(v) => parse_timestamp_us(v)
            .map(Some)
            .ok_or_else(|| DecodeError::BadTimestamp {
                field,
                value: v.chars().take(64).collect(),
            }),
    }
}

/// Microseconds since the Unix epoch of an RFC 3339 timestamp.
///
/// Fast path for the layouts kube-apiserver writes (`…T15:04:05.000000Z`,
/// `…T15:04:05Z`); anything else (offsets, nanoseconds) goes through chrono.
/// Consecutive events nearly always share the minute of their timestamps,
/// so the fast path keeps the last minute it computed per thread and only
/// reads the seconds when the first 16 bytes are the same.
pub fn parse_timestamp_us(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't')
        && b[13] == b':'
        && b[16] == b':'
        && b[b.len() - 1] == b'Z'
    {
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let mut v = 0i64;
            for &c in &b[r] {
                if !c.is_ascii_digit() {
                    return None;
                }
                v = v * 10 + i64::from(c - b'0');
            }
            Some(v)
        };
        let sec = num(17..19)?;
        let frac = &b[19..b.len() - 1];
        let micros = match frac {
            [] => 0,
            [b'.', digits @ ..] if !digits.is_empty() && digits.len() <= 9 => {
                let mut v = 0i64;
                for (i, &c) in digits.iter().enumerate() {
                    if !c.is_ascii_digit() {
                        return None;
                    }
                    if i < 6 {
                        v = v * 10 + i64::from(c - b'0');
                    }
                }
                v * 10i64.pow(6u32.saturating_sub(digits.len() as u32))
            }
            _ => return chrono_us(s),
        };
        if sec >= 61 {
            return None;
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&b[..16]);
        let minute_us = match LAST_MINUTE.with(Cell::get) {
            Some((k, us)) if k == key => us,
            _ => {
                let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
                let (h, mi) = (num(11..13)?, num(14..16)?);
                // `days_from_civil` would roll 02-30 over into March, so
                // the day is checked against its month, not against 31.
                if !((1..=12).contains(&mo)
                    && (1..=days_in_month(y, mo)).contains(&d)
                    && h < 24
                    && mi < 60)
                {
                    return None;
                }
                let us = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60_000_000;
                LAST_MINUTE.with(|c| c.set(Some((key, us))));
                us
            }
        };
        return Some(minute_us + sec * 1_000_000 + micros);
    }
    chrono_us(s)
}

thread_local! {
    /// The first 16 bytes (`YYYY-MM-DDTHH:MM`) of the last fast-path
    /// timestamp of this thread whose minute was valid, and that minute in
    /// µs since the epoch.
    static LAST_MINUTE: Cell<Option<([u8; 16], i64)>> = const { Cell::new(None) };
}

fn chrono_us(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// Days of month `m` (1–12) of year `y` in the proleptic Gregorian calendar.
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn run(text: &str) -> (Vec<Decoded<'_>>, Vec<Rejection<'_>>) {
        let (mut ok, mut bad) = (vec![], vec![]);
        decode_unit(text, |d| ok.push(d), |r| bad.push(r));
        (ok, bad)
    }

    /// A list that does not parse as a whole keeps its good items: one
    /// item with a raw NUL, a byte that was not UTF-8 (NUL by then), or a
    /// list cut short rejects that item alone, with its index and text.
    #[test]
    fn damaged_lists_keep_their_good_items() {
        // Brackets and commas inside strings must not split items.
        let ev = |id: &str| {
            format!(
                r#"{{"auditID":"{id}","stage":"ResponseComplete","user":{{"username":"u[{{,\"]"}}}}"#
            )
        };
        let bad = "{\"auditID\":\"x\",\"stage\":\"Response\0Complete\"}".to_string();
        let list = |items: &[String]| {
            format!(
                r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
                items.join(",")
            )
        };
        let not_utf8 = {
            let mut b = format!("[{},{}]", ev("a"), ev("b")).into_bytes();
            let at = b.len() - 10;
            b[at] = 0xff;
            nul_for_invalid_utf8(&b)
        };
        let full = list(&[ev("a"), ev("b")]);
        // (input, accepted IDs, rejected item indices)
        type Case<'a> = (String, Vec<&'a str>, Vec<Option<usize>>);
        let cases: Vec<Case> = vec![
            (
                list(&[ev("a"), bad.clone(), ev("c")]),
                vec!["a", "c"],
                vec![Some(1)],
            ),
            (
                format!("[{},{},{}]", ev("a"), ev("b"), bad),
                vec!["a", "b"],
                vec![Some(2)],
            ),
            (not_utf8, vec!["a"], vec![Some(1)]),
            (
                full[..full.len() - 20].to_string(),
                vec!["a"],
                vec![Some(1)],
            ),
            // A single damaged event is rejected whole, as before, and so
            // is a list cut before its first item.
            (bad.clone(), vec![], vec![None]),
            (
                r#"{"kind":"EventList","items":["#.to_string(),
                vec![],
                vec![None],
            ),
            // Text after a damaged list's end is an item of its own.
            (
                format!("[{},{}] {}", ev("a"), bad, ev("z")),
                vec!["a", "z"],
                vec![Some(1)],
            ),
            (
                format!("[{},{}] {{x", ev("a"), bad),
                vec!["a"],
                vec![Some(1), Some(2)],
            ),
        ];
        for (input, ids, rejected) in cases {
            let (ok, bad) = run(&input);
            let got: Vec<&str> = ok
                .iter()
                .filter_map(|d| d.event.audit_id.as_deref())
                .collect();
            assert_eq!(got, ids, "{input:?}");
            assert_eq!(
                bad.iter().map(|r| r.item).collect::<Vec<_>>(),
                rejected,
                "{input:?}"
            );
            for r in &bad {
                assert!(
                    input.contains(r.text),
                    "rejected text is not part of the input"
                );
            }
        }
        // Invalid UTF-8 becomes NUL, byte for byte.
        let raw = b"[\"a\xff\xfeb\"]";
        let fixed = nul_for_invalid_utf8(raw);
        assert_eq!(fixed.as_bytes(), b"[\"a\0\0b\"]");
    }

    #[test]
    fn shapes() {
        let ev = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete","requestReceivedTimestamp":"2025-03-04T06:22:18.819232Z","stageTimestamp":null}"#;
        let (ok, bad) = run(ev);
        assert_eq!((ok.len(), bad.len()), (1, 0));
        assert_eq!(ok[0].received_us, Some(1_741_069_338_819_232));
        assert_eq!(ok[0].stage_us, None);

        let list = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{"auditID":"a","stage":"RequestReceived"},{"kind":0},{"auditID":"b","stage":"ResponseComplete"}]}"#;
        let (ok, bad) = run(list);
        assert_eq!(ok.iter().map(|d| d.item).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].item, Some(1));
        assert_eq!(bad[0].text, r#"{"kind":0}"#);

        let arr = r#"[{"auditID":"a","stage":"x"}, 5]"#;
        let (ok, bad) = run(arr);
        assert_eq!((ok.len(), bad.len()), (1, 1));

        let (ok, bad) = run(r#"{"kind":"EventList","items":[]}"#);
        assert_eq!((ok.len(), bad.len()), (0, 0));
    }

    #[test]
    fn rejections_say_why() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "empty"),
            ("{\"kind\": 0}", "invalid audit event"),
            ("{}", "neither auditID nor stage"),
            ("{\"auditID\":\"a\"", "not JSON"),
            ("42", "not an object"),
            ("hello", "not JSON"),
            ("{\"kind\":\"Pod\",\"auditID\":\"a\"}", "kind `Pod`"),
            ("{\"apiVersion\":\"v1\",\"auditID\":\"a\"}", "unsupported apiVersion"),
            ("{\"auditID\":\"a\",\"stageTimestamp\":\"yesterday\"}", "stageTimestamp"),
            (
                "2025-03-04T06:22:18.819232981Z AUDIT: id=\"x\" stage=\"ResponseComplete\" ip=\"1.2.3.4\"",
                "legacy",
            ),
        ];
        for (text, want) in cases {
            let (ok, bad) = run(text);
            assert!(ok.is_empty(), "{text} accepted");
            assert_eq!(bad.len(), 1, "{text}");
            let msg = bad[0].error.to_string();
            assert!(msg.contains(want), "{text}: `{msg}` lacks `{want}`");
        }
    }

    #[test]
    fn timestamps() {
        let rows: &[(&str, Option<i64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("1970-01-01T00:00:00.000001Z", Some(1)),
            ("2018-10-25T13:58:49Z", Some(1_540_475_929_000_000)),
            ("2024-02-29T23:59:59.5Z", Some(1_709_251_199_500_000)),
            (
                "2025-03-04T06:22:18.819232981Z",
                Some(1_741_069_338_819_232),
            ),
            (
                "2025-03-04T07:22:18.819232+01:00",
                Some(1_741_069_338_819_232),
            ),
            ("2025-13-04T06:22:18Z", None),
            // Impossible days are rejected, not rolled into the next month.
            ("2026-02-30T00:00:00Z", None),
            ("2026-11-31T12:00:00.000000Z", None),
            ("2027-02-29T00:00:00Z", None),
            ("1900-02-29T00:00:00Z", None),
            ("2028-02-29T00:00:00Z", Some(1_835_395_200_000_000)),
            ("2000-02-29T00:00:00Z", Some(951_782_400_000_000)),
            ("2026-04-31T00:00:00Z", None),
            ("2026-12-31T23:59:59Z", Some(1_798_761_599_000_000)),
            ("2025-03-04 06:22:18", None),
            ("", None),
        ];
        for (s, want) in rows {
            assert_eq!(parse_timestamp_us(s), *want, "{s}");
        }
    }

    /// The remembered minute never leaks into another timestamp: runs of
    /// the same minute, changes of each field, and invalid minutes and
    /// seconds right after a valid one, all agree with chrono.
    #[test]
    fn timestamps_after_timestamps() {
        let seq = [
            "2025-03-04T06:22:18.819232Z",
            "2025-03-04T06:22:59.000001Z",
            "2025-03-04T06:22:00Z",
            "2025-03-04T06:23:00.5Z",
            "2025-03-04T07:23:00.5Z",
            "2025-03-05T07:23:00.5Z",
            "2025-04-05T07:23:00.5Z",
            "2026-04-05T07:23:00.5Z",
            "2026-04-05T07:23:61Z",
            "2026-04-05T07:60:00Z",
            "2026-04-05T07:23:0xZ",
            "2026-04-05T07:23:01.12345678Z",
            "2026-04-05T07:23:01.1234567890Z",
            "2026-04-05T07:23:01.Z",
            "2026-04-05T07:23:01+00:00",
            "2026-04-32T07:23:01Z",
            "2026-02-29T07:23:01Z",
            "2024-02-29T07:23:01Z",
            "2026-04-05T07:23:01Z",
        ];
        for s in seq {
            let want = chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp_micros());
            assert_eq!(parse_timestamp_us(s), want, "{s}");
        }
    }

    /// Every non-empty line of the `.json` files in `dir`, with its file.
    fn fixture_lines(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("fixtures at {}: {e}", dir.display()))
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().and_then(|e| e.to_str()) == Some("json"))
            .collect();
        paths.sort();
        let mut lines = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).expect("fixture readable");
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                lines.push((path.clone(), line.to_string()));
            }
        }
        lines
    }

    /// The event shapes written for this project (`tests/fixtures/shapes`): always present.
    pub(crate) fn shape_fixture_lines() -> Vec<(std::path::PathBuf, String)> {
        fixture_lines(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shapes"),
        )
    }

    /// The real Falco events beside the checkout (`../shared/fixtures/falco`), a cross-check:
    /// `None`, with a line saying so, when a clone has no such directory; a failure when
    /// `AUDITLAKE_REQUIRE_SHARED_FIXTURES` is set (CI sets it).
    pub(crate) fn falco_fixture_lines() -> Option<Vec<(std::path::PathBuf, String)>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/falco");
        if !dir.is_dir() {
            assert!(
                std::env::var_os("AUDITLAKE_REQUIRE_SHARED_FIXTURES").is_none(),
                "AUDITLAKE_REQUIRE_SHARED_FIXTURES is set but {} is missing",
                dir.display()
            );
            eprintln!(
                "skipped: the Falco cross-check ({} is not there)",
                dir.display()
            );
            return None;
        }
        Some(fixture_lines(&dir))
    }

    fn decodes_cleanly(lines: &[(std::path::PathBuf, String)]) -> usize {
        let mut events = 0;
        for (path, line) in lines {
            let (ok, bad) = run(line);
            assert!(bad.is_empty(), "{}: {:?}", path.display(), bad);
            events += ok.len();
        }
        events
    }

    #[test]
    fn shape_fixtures_decode() {
        assert_eq!(decodes_cleanly(&shape_fixture_lines()), 7);
    }

    #[test]
    fn falco_fixtures_decode() {
        if let Some(lines) = falco_fixture_lines() {
            assert_eq!(decodes_cleanly(&lines), 10);
        }
    }
}
