//! The kube-apiserver audit `Event` as it arrives on the wire, borrowed from the
//! input buffer.
//!
//! Deserialization is hand-written rather than derived for two reasons: speed
//! (no `#[serde(flatten)]` buffering, strings borrowed wherever JSON has no
//! escapes) and tolerance (every field is optional, `null` is accepted where
//! producers emit it, and unknown top-level fields such as
//! `authenticationMetadata` or v1beta1's `metadata`/`timestamp` are kept as raw
//! JSON instead of being dropped).

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// A string borrowed from the input when it contains no escapes.
pub type Str<'a> = Cow<'a, str>;

/// The values of one extra key. Nearly always exactly one (a credential
/// id, a pod name), so one value is stored inline: a service-account
/// request carries five such keys, and a heap list for each was a
/// measurable part of decoding. (A hand-written enum rather than a small-
/// vector crate: those are invariant in the string lifetime, which the
/// borrowed event relies on being covariant.)
#[derive(Debug, Clone, PartialEq)]
pub enum ExtraValues<'a> {
    One(Str<'a>),
    /// None, or more than one.
    List(Vec<Str<'a>>),
}

impl Default for ExtraValues<'_> {
    fn default() -> Self {
        ExtraValues::List(Vec::new())
    }
}

impl<'a> std::ops::Deref for ExtraValues<'a> {
    type Target = [Str<'a>];
    fn deref(&self) -> &[Str<'a>] {
        match self {
            ExtraValues::One(v) => std::slice::from_ref(v),
            ExtraValues::List(v) => v,
        }
    }
}

impl<'a> Extend<Str<'a>> for ExtraValues<'a> {
    fn extend<I: IntoIterator<Item = Str<'a>>>(&mut self, iter: I) {
        for v in iter {
            match self {
                ExtraValues::List(list) if list.is_empty() => *self = ExtraValues::One(v),
                ExtraValues::List(list) => list.push(v),
                ExtraValues::One(first) => {
                    *self = ExtraValues::List(vec![std::mem::take(first), v]);
                }
            }
        }
    }
}

impl<'a> FromIterator<Str<'a>> for ExtraValues<'a> {
    fn from_iter<I: IntoIterator<Item = Str<'a>>>(iter: I) -> Self {
        let mut out = ExtraValues::default();
        out.extend(iter);
        out
    }
}

/// `authentication/v1` `UserInfo`: every member optional.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UserInfo<'a> {
    pub username: Option<Str<'a>>,
    pub uid: Option<Str<'a>>,
    pub groups: Vec<Str<'a>>,
    /// `map[string][]string`, in input order.
    pub extra: Vec<(Str<'a>, ExtraValues<'a>)>,
}

impl<'a> UserInfo<'a> {
    /// The values of one extra key (keys are compared exactly: kube-apiserver
    /// lower-cases impersonated extra keys itself).
    pub fn extra_values(&self, key: &str) -> Option<&[Str<'a>]> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &v[..])
    }

    /// The first value of one extra key.
    pub fn extra_first(&self, key: &str) -> Option<&str> {
        self.extra_values(key)
            .and_then(|v| v.first())
            .map(|s| s.as_ref())
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ObjectRef<'a> {
    pub resource: Option<Str<'a>>,
    pub namespace: Option<Str<'a>>,
    pub name: Option<Str<'a>>,
    pub uid: Option<Str<'a>>,
    pub api_group: Option<Str<'a>>,
    pub api_version: Option<Str<'a>>,
    pub subresource: Option<Str<'a>>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ResponseStatus<'a> {
    pub code: Option<i32>,
    pub status: Option<Str<'a>>,
    pub reason: Option<Str<'a>>,
    pub message: Option<Str<'a>>,
}

/// One audit event. Fields are `None` when absent or `null`.
#[derive(Debug, Default, Clone)]
pub struct Event<'a> {
    pub kind: Option<Str<'a>>,
    pub api_version: Option<Str<'a>>,
    pub level: Option<Str<'a>>,
    pub audit_id: Option<Str<'a>>,
    pub stage: Option<Str<'a>>,
    pub request_uri: Option<Str<'a>>,
    pub verb: Option<Str<'a>>,
    pub user: UserInfo<'a>,
    pub impersonated_user: Option<UserInfo<'a>>,
    pub source_ips: Vec<Str<'a>>,
    pub user_agent: Option<Str<'a>>,
    pub object_ref: Option<ObjectRef<'a>>,
    pub response_status: Option<ResponseStatus<'a>>,
    pub request_object: Option<&'a RawValue>,
    pub response_object: Option<&'a RawValue>,
    pub request_received_timestamp: Option<Str<'a>>,
    pub stage_timestamp: Option<Str<'a>>,
    pub annotations: Vec<(Str<'a>, Str<'a>)>,
    /// Top-level members the record has no column for (e.g.
    /// `authenticationMetadata`, v1beta1 `timestamp`), kept verbatim.
    pub other_fields: Vec<(Str<'a>, &'a RawValue)>,
}

/// Deserialize `T` but treat JSON `null` as `T::default()`.
fn or_default<'de, A, T>(map: &mut A) -> Result<T, A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(map.next_value::<Option<T>>()?.unwrap_or_default())
}

/// A JSON object read as an ordered list of pairs (faster than a map and
/// keeps input order, which the Arrow map column preserves).
struct Pairs<K, V>(Vec<(K, V)>);

impl<K, V> Default for Pairs<K, V> {
    fn default() -> Self {
        Pairs(Vec::new())
    }
}

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Pairs<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<K, V>(std::marker::PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for V2<K, V> {
            type Value = Pairs<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(k) = map.next_key()? {
                    out.push((k, map.next_value()?));
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(V2(std::marker::PhantomData))
    }
}

/// A list of strings in which `null` entries are skipped (seen from some
/// re-serializers) rather than failing the whole event. `C` is the list
/// type: a `Vec`, or [`ExtraValues`] for extra values.
struct StrList<'a, C>(C, PhantomData<&'a ()>);

impl<C: Default> Default for StrList<'_, C> {
    fn default() -> Self {
        StrList(C::default(), PhantomData)
    }
}

impl<'de: 'a, 'a, C: Default + Extend<Str<'a>>> Deserialize<'de> for StrList<'a, C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, C>(PhantomData<(&'a (), C)>);
        impl<'de: 'a, 'a, C: Default + Extend<Str<'a>>> Visitor<'de> for V<'a, C> {
            type Value = StrList<'a, C>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = C::default();
                while let Some(v) = seq.next_element::<Option<BorrowedStr<'a>>>()? {
                    if let Some(s) = v {
                        out.extend(std::iter::once(s.0));
                    }
                }
                Ok(StrList(out, PhantomData))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// A string that borrows from the input when possible.
struct BorrowedStr<'a>(Str<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for BorrowedStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = BorrowedStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

fn opt_str<'de: 'a, 'a, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Str<'a>>, A::Error> {
    Ok(map.next_value::<Option<BorrowedStr<'a>>>()?.map(|s| s.0))
}

fn str_list<'de: 'a, 'a, A: MapAccess<'de>>(map: &mut A) -> Result<Vec<Str<'a>>, A::Error> {
    Ok(or_default::<A, StrList<'a, Vec<Str<'a>>>>(map)?.0)
}

impl<'de: 'a, 'a> Deserialize<'de> for UserInfo<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = UserInfo<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a UserInfo object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut u = UserInfo::default();
                while let Some(key) = map.next_key::<BorrowedStr<'de>>()? {
                    match key.0.as_ref() {
                        "username" => u.username = opt_str(&mut map)?,
                        "uid" => u.uid = opt_str(&mut map)?,
                        "groups" => u.groups = str_list(&mut map)?,
                        "extra" => {
                            // A Go nil slice is written as `null`: no values.
                            let pairs: Pairs<
                                BorrowedStr<'a>,
                                Option<StrList<'a, ExtraValues<'a>>>,
                            > = or_default(&mut map)?;
                            u.extra = pairs
                                .0
                                .into_iter()
                                .map(|(k, v)| (k.0, v.map(|v| v.0).unwrap_or_default()))
                                .collect();
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(u)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ObjectRef<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = ObjectRef<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an ObjectReference object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut o = ObjectRef::default();
                while let Some(key) = map.next_key::<BorrowedStr<'de>>()? {
                    match key.0.as_ref() {
                        "resource" => o.resource = opt_str(&mut map)?,
                        "namespace" => o.namespace = opt_str(&mut map)?,
                        "name" => o.name = opt_str(&mut map)?,
                        "uid" => o.uid = opt_str(&mut map)?,
                        "apiGroup" => o.api_group = opt_str(&mut map)?,
                        "apiVersion" => o.api_version = opt_str(&mut map)?,
                        "subresource" => o.subresource = opt_str(&mut map)?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(o)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ResponseStatus<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = ResponseStatus<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a Status object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut s = ResponseStatus::default();
                while let Some(key) = map.next_key::<BorrowedStr<'de>>()? {
                    match key.0.as_ref() {
                        "code" => s.code = map.next_value()?,
                        "status" => s.status = opt_str(&mut map)?,
                        "reason" => s.reason = opt_str(&mut map)?,
                        "message" => s.message = opt_str(&mut map)?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(s)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Event<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Event<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an audit Event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut e = Event::default();
                while let Some(key) = map.next_key::<BorrowedStr<'de>>()? {
                    match key.0.as_ref() {
                        "kind" => e.kind = opt_str(&mut map)?,
                        "apiVersion" => e.api_version = opt_str(&mut map)?,
                        "level" => e.level = opt_str(&mut map)?,
                        "auditID" => e.audit_id = opt_str(&mut map)?,
                        "stage" => e.stage = opt_str(&mut map)?,
                        "requestURI" => e.request_uri = opt_str(&mut map)?,
                        "verb" => e.verb = opt_str(&mut map)?,
                        "user" => e.user = or_default(&mut map)?,
                        "impersonatedUser" => e.impersonated_user = map.next_value()?,
                        "sourceIPs" => e.source_ips = str_list(&mut map)?,
                        "userAgent" => e.user_agent = opt_str(&mut map)?,
                        "objectRef" => e.object_ref = map.next_value()?,
                        "responseStatus" => e.response_status = map.next_value()?,
                        "requestObject" => e.request_object = non_null(map.next_value()?),
                        "responseObject" => e.response_object = non_null(map.next_value()?),
                        "requestReceivedTimestamp" => {
                            e.request_received_timestamp = opt_str(&mut map)?
                        }
                        "stageTimestamp" => e.stage_timestamp = opt_str(&mut map)?,
                        "annotations" => {
                            let pairs: Pairs<BorrowedStr<'a>, Option<BorrowedStr<'a>>> =
                                or_default(&mut map)?;
                            e.annotations = pairs
                                .0
                                .into_iter()
                                .map(|(k, v)| (k.0, v.map(|v| v.0).unwrap_or_default()))
                                .collect();
                        }
                        _ => {
                            let raw: &'a RawValue = map.next_value()?;
                            e.other_fields.push((key.0, raw));
                        }
                    }
                }
                Ok(e)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// `None` for a JSON `null`: the record stores no text for it.
pub(crate) fn non_null(raw: &RawValue) -> Option<&RawValue> {
    (raw.get() != "null").then_some(raw)
}

/// Emptied list buffers of events already written, for the scanner to fill
/// again.
///
/// A decoded event owns a handful of small vectors (groups, extras, source
/// IPs, annotations, for the user and the impersonated user). Allocating
/// and freeing them for every event was about a tenth of the decode
/// workers' time; handing the emptied vectors from one run of events to the
/// next removes nearly all of it.
///
/// Bounded: at most [`SPARE_VECTORS`] vectors of each kind are kept, and a
/// vector that grew past [`SPARE_CAPACITY`] items is freed rather than kept,
/// so one huge event cannot pin its memory.
#[derive(Debug, Default)]
pub struct Spare {
    strs: Vec<Vec<Str<'static>>>,
    extras: Vec<Vec<(Str<'static>, ExtraValues<'static>)>>,
    pairs: Vec<Vec<(Str<'static>, Str<'static>)>>,
}

/// Vectors of each kind a [`Spare`] keeps.
pub const SPARE_VECTORS: usize = 1024;
/// Largest capacity of a vector a [`Spare`] keeps.
pub const SPARE_CAPACITY: usize = 64;

/// The allocation of `v`, emptied, for items of another lifetime (kept
/// vectors are stored with `'static` items, which hand out to any lifetime
/// by covariance, for free). The standard library collects a consumed
/// vector into one of an item type of the same size and alignment in place
/// (its `in_place_collect`), so for `Str<'x>` → `Str<'static>` the buffer is
/// reused, not reallocated; the test `spare_vectors_keep_their_allocation`
/// checks that this still holds.
fn rebind<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

fn keep<T, U>(pool: &mut Vec<Vec<U>>, v: Vec<T>) {
    let cap = v.capacity();
    if cap > 0 && cap <= SPARE_CAPACITY && pool.len() < SPARE_VECTORS {
        pool.push(rebind(v));
    }
}

impl Spare {
    /// Take back the list buffers of an event that is no longer needed.
    pub fn keep(&mut self, e: Event<'_>) {
        let Event {
            user,
            impersonated_user,
            source_ips,
            annotations,
            ..
        } = e;
        self.keep_user(user);
        if let Some(u) = impersonated_user {
            self.keep_user(u);
        }
        keep(&mut self.strs, source_ips);
        keep(&mut self.pairs, annotations);
    }

    fn keep_user(&mut self, u: UserInfo<'_>) {
        keep(&mut self.strs, u.groups);
        keep(&mut self.extras, u.extra);
    }

    /// Move every vector of `other` here (up to the bound).
    pub fn absorb(&mut self, other: &mut Spare) {
        fn move_all<T>(to: &mut Vec<T>, from: &mut Vec<T>) {
            let room = SPARE_VECTORS.saturating_sub(to.len());
            to.extend(from.drain(..).take(room));
        }
        move_all(&mut self.strs, &mut other.strs);
        move_all(&mut self.extras, &mut other.extras);
        move_all(&mut self.pairs, &mut other.pairs);
    }

    /// An empty list of strings, reusing a kept buffer when there is one.
    pub(crate) fn strs<'a>(&mut self) -> Vec<Str<'a>> {
        self.strs.pop().unwrap_or_default()
    }

    /// An empty extra map.
    pub(crate) fn extras<'a>(&mut self) -> Vec<(Str<'a>, ExtraValues<'a>)> {
        self.extras.pop().unwrap_or_default()
    }

    /// An empty list of string pairs (annotations).
    pub(crate) fn pairs<'a>(&mut self) -> Vec<(Str<'a>, Str<'a>)> {
        self.pairs.pop().unwrap_or_default()
    }

    /// Vectors kept, of all kinds.
    pub fn len(&self) -> usize {
        self.strs.len() + self.extras.len() + self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_plain_strings_and_keeps_unknown_fields() {
        let text = r#"{"kind":"Event","auditID":"a1","user":{"username":"bob","groups":["g1",null],"extra":{"k":["v"]}},
            "authenticationMetadata":{"impersonationConstraint":"impersonate:user-info"},"requestObject":{"x":1},"responseObject":null}"#;
        let e: Event = serde_json::from_str(text).expect("valid event");
        assert!(matches!(e.audit_id, Some(Cow::Borrowed("a1"))));
        assert_eq!(e.user.groups, vec![Cow::Borrowed("g1")]);
        assert_eq!(e.user.extra_first("k"), Some("v"));
        assert_eq!(e.other_fields.len(), 1);
        assert_eq!(e.other_fields[0].0, "authenticationMetadata");
        assert_eq!(e.request_object.map(|r| r.get()), Some(r#"{"x":1}"#));
        assert!(e.response_object.is_none());
    }

    #[test]
    fn extra_values_of_any_count() {
        let e: Event = serde_json::from_str(
            r#"{"user":{"extra":{"none":[],"one":["a"],"two":["a",null,"b"],"three":["a","b","c"],"null":null}}}"#,
        )
        .expect("valid event");
        let values = |k: &str| {
            e.user
                .extra_values(k)
                .map(|v| v.iter().map(|s| s.as_ref()).collect::<Vec<_>>())
        };
        assert_eq!(values("none"), Some(vec![]));
        assert_eq!(values("one"), Some(vec!["a"]));
        assert_eq!(values("two"), Some(vec!["a", "b"]));
        assert_eq!(values("three"), Some(vec!["a", "b", "c"]));
        assert_eq!(values("null"), Some(vec![]));
        assert_eq!(values("absent"), None);
        assert!(matches!(e.user.extra[1].1, ExtraValues::One(_)));
    }

    #[test]
    fn null_members_are_absent() {
        let e: Event = serde_json::from_str(
            r#"{"user":null,"annotations":null,"sourceIPs":null,"stageTimestamp":null,"impersonatedUser":null}"#,
        )
        .expect("nulls accepted");
        assert!(e.user.username.is_none());
        assert!(e.impersonated_user.is_none());
        assert!(e.stage_timestamp.is_none());
    }

    #[test]
    fn escaped_strings_are_owned() {
        let e: Event = serde_json::from_str(r#"{"verb":"g\u0065t"}"#).expect("valid");
        assert_eq!(e.verb.as_deref(), Some("get"));
    }

    #[test]
    fn spare_vectors_keep_their_allocation() {
        let text = r#"{"user":{"username":"u","groups":["a","b"],"extra":{"k":["v"]}},"sourceIPs":["10.0.0.1"],"annotations":{"x":"y"}}"#;
        let e: Event = serde_json::from_str(text).expect("valid");
        let groups = e.user.groups.as_ptr() as usize;
        let extra = e.user.extra.as_ptr() as usize;
        let ips = e.source_ips.as_ptr() as usize;
        let notes = e.annotations.as_ptr() as usize;
        let mut spare = Spare::default();
        spare.keep(e);
        assert_eq!(spare.len(), 4);
        // Handed out last-in first-out, empty, in the same buffers.
        let a = spare.strs();
        let b = spare.strs();
        assert!(a.is_empty() && b.is_empty());
        assert_eq!(a.as_ptr() as usize, ips);
        assert_eq!(b.as_ptr() as usize, groups);
        let (c, d) = (spare.extras(), spare.pairs());
        assert_eq!(c.as_ptr() as usize, extra);
        assert_eq!(d.as_ptr() as usize, notes);
        assert!(spare.is_empty());
        // Nothing kept: fresh vectors without a buffer.
        assert_eq!(spare.strs().capacity(), 0);
    }

    #[test]
    fn spare_is_bounded() {
        let mut spare = Spare::default();
        let big = Event {
            source_ips: vec![Str::Borrowed("ip"); SPARE_CAPACITY + 1],
            ..Default::default()
        };
        spare.keep(big);
        assert!(spare.is_empty(), "an over-grown vector is freed");
        let mut other = Spare::default();
        for _ in 0..SPARE_VECTORS + 10 {
            other.keep(Event {
                source_ips: vec![Str::Borrowed("ip")],
                ..Default::default()
            });
        }
        assert_eq!(other.len(), SPARE_VECTORS);
        spare.keep(Event {
            source_ips: vec![Str::Borrowed("ip")],
            ..Default::default()
        });
        spare.absorb(&mut other);
        assert_eq!(spare.len(), SPARE_VECTORS);
        assert!(other.is_empty());
    }
}
