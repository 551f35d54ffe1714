//! Envelopes: the wrappers a managed cluster's log pipeline puts around
//! audit events, opened into the events they carry and where they came from.
//!
//! - **EKS**: CloudWatch Logs subscription payloads (`messageType`,
//!   `logGroup`, `logStream`, `logEvents[].message` = the event as a JSON
//!   string), decoded or as delivered to Kinesis, Firehose and Lambda (base64
//!   of gzip); several payloads one after another (Firehose to S3 without a
//!   delimiter); CloudWatch export lines (`<RFC 3339> <event>`).
//!   `CONTROL_MESSAGE` carries no events and is counted as skipped.
//! - **AKS**: Azure resource-log records (`{"records":[…]}` as an Event Hub
//!   message, or one record per line in a storage blob) of category
//!   `kube-audit` or `kube-audit-admin`, the event in `properties.log` (a
//!   string, or an object); records of other categories are skipped.
//! - **GKE**: Cloud Audit Logs `LogEntry` with an `AuditLog` payload of
//!   `serviceName: k8s.io`, mapped field by field onto an [`Event`]
//!   (`docs/sources.md` lists what GKE's form cannot fill); entries of other
//!   services are skipped.
//!
//! Invariant: every event an envelope holds comes out as an item or as a
//! rejection with its place (`logEvents[3]`, `records[0]`); an envelope that
//! cannot be read is rejected whole, with what is wrong. Nothing here does
//! I/O or panics on any input. Detection is by the envelope's own top-level
//! keys, after a prefix test that lets a plain audit event (which the
//! apiserver writes starting `{"kind":"Event"`) through at no cost.

use super::{check, parse_event, DecodeError, Decoded};
use crate::event::{Event, ObjectRef, ResponseStatus, Spare, Str, UserInfo};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read as _;

/// Largest decompressed size of one base64/gzip payload: the line limit of
/// the file source, so a small line cannot unpack into unbounded memory.
pub const MAX_INFLATED_BYTES: usize = 64 << 20;

/// What the input is, for `--format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Recognise every envelope below by its shape; anything else is read
    /// as Kubernetes audit events.
    #[default]
    Auto,
    /// Kubernetes audit events only (Event, EventList, JSON arrays): the
    /// apiserver's log and webhook backends.
    Kubernetes,
    /// EKS: CloudWatch Logs subscription payloads (plain or base64 gzip),
    /// CloudWatch export lines, and the events themselves.
    Eks,
    /// AKS: Azure resource-log records (`{"records":[…]}` or one per line),
    /// and the events themselves.
    Aks,
    /// GKE: Cloud Audit Logs entries of `serviceName: k8s.io`, and the
    /// events themselves.
    Gke,
}

/// Which envelope an item came out of; the `envelope` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Eks,
    Aks,
    Gke,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Eks => "eks",
            Kind::Aks => "aks",
            Kind::Gke => "gke",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::Eks => "EKS CloudWatch Logs",
            Kind::Aks => "AKS resource-log",
            Kind::Gke => "GKE Cloud Audit Logs",
        }
    }
}

/// Where an enveloped event came from (the `envelope*` columns).
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance<'a> {
    pub envelope: Kind,
    /// EKS log group, AKS `resourceId`, GKE `logName`.
    pub log: Option<Str<'a>>,
    /// EKS log stream, AKS `properties.pod`, GKE `resource.labels.location`.
    pub stream: Option<Str<'a>>,
    /// EKS `logEvents[].id`, GKE `insertId`.
    pub id: Option<Str<'a>>,
    /// The cluster the envelope names (EKS log group `/aws/eks/<cluster>/cluster`,
    /// AKS `…/managedClusters/<cluster>`, GKE `resource.labels.cluster_name`).
    pub cluster: Option<Str<'a>>,
}

/// One event of an envelope: text to decode as a Kubernetes event, or (GKE)
/// an event already mapped.
#[derive(Debug)]
pub enum Body<'a> {
    Text(Str<'a>),
    Event(Box<Decoded<'a>>),
    /// An item that cannot be an event, with the reason.
    Bad(Str<'a>, String),
}

/// Where an item sits in its envelope, for rejections (written out only
/// when one is: a string per event was an allocation on the hot path).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Place {
    LogEvent(usize),
    Record(usize),
    /// A storage blob's line: one record.
    OneRecord,
    /// A CloudWatch export line's event.
    Message,
    /// A GKE entry.
    Entry,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Place::LogEvent(i) => write!(f, "logEvents[{i}]"),
            Place::Record(i) => write!(f, "records[{i}]"),
            Place::OneRecord => f.write_str("record"),
            Place::Message => f.write_str("message"),
            Place::Entry => f.write_str("entry"),
        }
    }
}

#[derive(Debug)]
pub struct Item<'a> {
    /// Where the item is, for rejections.
    pub place: Place,
    pub body: Body<'a>,
    pub provenance: Provenance<'a>,
}

/// An envelope, opened.
#[derive(Debug, Default)]
pub struct Opened<'a> {
    pub items: Vec<Item<'a>>,
    /// Messages that carry no audit event (CloudWatch `CONTROL_MESSAGE`,
    /// other log categories or services), with why.
    pub skipped: Vec<&'static str>,
}

/// One item of an envelope that was not accepted.
#[derive(Debug)]
pub struct ItemRejection<'o> {
    pub item: usize,
    pub text: &'o str,
    pub reason: String,
}

/// What a unit of input is.
enum Shape {
    Plain,
    Base64Gzip,
    CloudWatchExport,
    Json(Kind),
}

/// Open `text` if it is an envelope that `format` admits: `None` when it
/// should be decoded as Kubernetes audit events, `Err` when it is an
/// envelope that cannot be read.
pub fn open(text: &str, format: InputFormat) -> Option<Result<Opened<'_>, DecodeError>> {
    if format == InputFormat::Kubernetes {
        return None;
    }
    let t = text.trim_start_matches('\u{feff}').trim();
    let admits = |k: Kind| match format {
        InputFormat::Auto => true,
        InputFormat::Eks => k == Kind::Eks,
        InputFormat::Aks => k == Kind::Aks,
        InputFormat::Gke => k == Kind::Gke,
        InputFormat::Kubernetes => false,
    };
    match shape(t) {
        Shape::Plain => None,
        Shape::Json(k) if admits(k) => Some(open_json(t, k)),
        Shape::Json(_) => None,
        Shape::Base64Gzip if admits(Kind::Eks) => Some(open_base64(t)),
        Shape::CloudWatchExport if admits(Kind::Eks) => Some(Ok(open_export(t))),
        Shape::Base64Gzip | Shape::CloudWatchExport => None,
    }
}

fn shape(t: &str) -> Shape {
    let b = t.as_bytes();
    match b.first() {
        Some(b'{') => {
            // An object whose first member is one only audit events have
            // is one (nearly every line: the apiserver writes `kind`
            // first, re-serialisers sort `annotations` or `apiVersion`
            // first), and the rest of it need not be scanned. Scanning a
            // whole line per event cost 10% of ingest.
            if first_key(b).is_some_and(|k| EVENT_ONLY_KEYS.contains(&k)) {
                return Shape::Plain;
            }
            let (mut eks, mut records, mut category, mut properties, mut proto) =
                (false, false, false, false, false);
            top_level_keys(b, |k| match k {
                b"logEvents" | b"messageType" => eks = true,
                b"records" => records = true,
                b"category" => category = true,
                b"properties" => properties = true,
                b"protoPayload" => proto = true,
                _ => {}
            });
            if eks {
                Shape::Json(Kind::Eks)
            } else if records || (category && properties) {
                Shape::Json(Kind::Aks)
            } else if proto {
                Shape::Json(Kind::Gke)
            } else {
                Shape::Plain
            }
        }
        // Base64 of a gzip stream always starts with these four characters
        // (0x1f 0x8b 0x08).
        Some(b'H') if t.starts_with("H4sI") => Shape::Base64Gzip,
        Some(b'0'..=b'9') => match t.split_once(' ') {
            Some((ts, rest))
                if rest.trim_start().starts_with('{')
                    && super::parse_timestamp_us(ts).is_some() =>
            {
                Shape::CloudWatchExport
            }
            _ => Shape::Plain,
        },
        _ => Shape::Plain,
    }
}

/// Members of an audit `Event` that no envelope has at its top level
/// (`level` and `timestamp` are left out: Azure records and GKE entries
/// may start with them).
const EVENT_ONLY_KEYS: &[&[u8]] = &[
    b"kind",
    b"apiVersion",
    b"auditID",
    b"stage",
    b"requestURI",
    b"verb",
    b"user",
    b"impersonatedUser",
    b"sourceIPs",
    b"userAgent",
    b"objectRef",
    b"responseStatus",
    b"requestObject",
    b"responseObject",
    b"requestReceivedTimestamp",
    b"stageTimestamp",
    b"annotations",
    b"authenticationMetadata",
];

/// The first key of the object `b` starts, if it has one without escapes.
fn first_key(b: &[u8]) -> Option<&[u8]> {
    let mut i = 1;
    while b.get(i)?.is_ascii_whitespace() {
        i += 1;
    }
    if *b.get(i)? != b'"' {
        return None;
    }
    let rest = b.get(i + 1..)?;
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    (rest[end] == b'"').then(|| &rest[..end])
}

/// Calls `f` with each key of the top-level object(s) in `b`.
fn top_level_keys(b: &[u8], mut f: impl FnMut(&[u8])) {
    super::top_level_members(b, |key, _| {
        f(key);
        true
    });
}

fn bad(kind: Kind, problem: impl Into<String>) -> DecodeError {
    DecodeError::BadEnvelope {
        envelope: kind.title(),
        problem: problem.into(),
    }
}

/// The JSON values of `t`, which may be several objects one after another.
fn values(t: &str) -> Result<Vec<&RawValue>, serde_json::Error> {
    serde_json::Deserializer::from_str(t)
        .into_iter::<&RawValue>()
        .collect()
}

fn open_json(t: &str, kind: Kind) -> Result<Opened<'_>, DecodeError> {
    fn open_one<'a>(kind: Kind, text: &'a str, out: &mut Opened<'a>) -> Result<(), DecodeError> {
        match kind {
            Kind::Eks => open_cloudwatch(text, out),
            Kind::Aks => open_azure(text, out),
            Kind::Gke => open_gke(text, out),
        }
    }
    // Nearly always one envelope: read it directly, and split the text into
    // values (a pass of its own) only when that fails.
    let mut out = Opened::default();
    let first = open_one(kind, t, &mut out);
    if first.is_ok() {
        return Ok(out);
    }
    let values = values(t).map_err(|e| bad(kind, format!("not JSON: {e}")))?;
    if values.len() < 2 {
        return first.map(|()| out);
    }
    let mut out = Opened::default();
    for v in values {
        open_one(kind, v.get(), &mut out)?;
    }
    Ok(out)
}

/// A CloudWatch Logs payload; `E` is how its events are read: typed in one
/// pass (nearly always), or as raw items when one of them is bad, so that
/// only that one is rejected.
#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    bound(deserialize = "E: Deserialize<'de>, 'de: 'a")
)]
struct CloudWatch<'a, E> {
    #[serde(borrow)]
    message_type: Option<Str<'a>>,
    #[serde(borrow)]
    log_group: Option<Str<'a>>,
    #[serde(borrow)]
    log_stream: Option<Str<'a>>,
    log_events: Option<Vec<E>>,
}

#[derive(Deserialize)]
struct CloudWatchEvent<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    message: Option<Str<'a>>,
}

/// `/aws/eks/<cluster>/cluster` → `<cluster>`.
fn eks_cluster(group: &str) -> Option<&str> {
    group
        .strip_prefix("/aws/eks/")?
        .strip_suffix("/cluster")
        .filter(|c| !c.is_empty() && !c.contains('/'))
}

fn open_cloudwatch<'a>(text: &'a str, out: &mut Opened<'a>) -> Result<(), DecodeError> {
    let kind = Kind::Eks;
    // The common case in one pass; an envelope with a bad event is read
    // again item by item, so that only that event is rejected.
    let (message_type, log_group, log_stream, events) =
        match serde_json::from_str::<CloudWatch<'a, CloudWatchEvent<'a>>>(text) {
            Ok(env) if env.log_events.iter().flatten().all(|e| e.message.is_some()) => (
                env.message_type,
                env.log_group,
                env.log_stream,
                env.log_events
                    .map(|evs| evs.into_iter().map(Ok).collect::<Vec<_>>()),
            ),
            _ => {
                let env: CloudWatch<'a, &'a RawValue> =
                    serde_json::from_str(text).map_err(|e| bad(kind, e.to_string()))?;
                let events = env.log_events.map(|raws| {
                    raws.into_iter()
                        .map(
                            |raw| match serde_json::from_str::<CloudWatchEvent>(raw.get()) {
                                Ok(CloudWatchEvent { message: None, .. }) => {
                                    Err((raw, "has no message".to_string()))
                                }
                                Ok(e) => Ok(e),
                                Err(e) => Err((raw, e.to_string())),
                            },
                        )
                        .collect::<Vec<_>>()
                });
                (env.message_type, env.log_group, env.log_stream, events)
            }
        };
    match message_type.as_deref() {
        Some("CONTROL_MESSAGE") => {
            out.skipped.push("CloudWatch Logs CONTROL_MESSAGE");
            return Ok(());
        }
        Some("DATA_MESSAGE") | None => {}
        Some(other) => {
            return Err(bad(
                kind,
                format!("messageType `{other}` (expected DATA_MESSAGE or CONTROL_MESSAGE)"),
            ))
        }
    }
    let events = events.ok_or_else(|| bad(kind, "no logEvents"))?;
    // Borrowed from the group's text whenever the group is (it has no
    // escapes): every event of the payload names the same cluster.
    let cluster: Option<Str<'a>> = match &log_group {
        Some(Cow::Borrowed(g)) => eks_cluster(g).map(Cow::Borrowed),
        Some(Cow::Owned(g)) => eks_cluster(g).map(|c| Cow::Owned(c.to_string())),
        None => None,
    };
    out.items.reserve(events.len());
    for (i, event) in events.into_iter().enumerate() {
        let place = Place::LogEvent(i);
        let (id, body) = match event {
            Ok(CloudWatchEvent {
                id,
                message: Some(m),
            }) => (id, Body::Text(m)),
            Ok(CloudWatchEvent { id, message: None }) => {
                (id, Body::Bad(Cow::Borrowed(""), "has no message".into()))
            }
            Err((raw, why)) => (None, Body::Bad(Cow::Borrowed(raw.get()), why)),
        };
        out.items.push(Item {
            place,
            body,
            provenance: Provenance {
                envelope: kind,
                log: log_group.clone(),
                stream: log_stream.clone(),
                id,
                cluster: cluster.clone(),
            },
        });
    }
    Ok(())
}

/// Inflate a gzip payload (a Kafka message from Kinesis or Firehose),
/// bounded by [`MAX_INFLATED_BYTES`].
pub fn inflate(compressed: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let kind = Kind::Eks;
    let mut inflated = Vec::new();
    flate2::read::MultiGzDecoder::new(compressed)
        .take(MAX_INFLATED_BYTES as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| bad(kind, format!("the payload is not valid gzip: {e}")))?;
    if inflated.len() > MAX_INFLATED_BYTES {
        return Err(bad(
            kind,
            format!("the payload inflates to more than {MAX_INFLATED_BYTES} bytes"),
        ));
    }
    Ok(inflated)
}

/// A base64 gzip payload (as Kinesis, Firehose and Lambda receive a
/// subscription's data): inflated, then opened as CloudWatch payloads. The
/// items own their text, since the inflated buffer is this call's.
fn open_base64(t: &str) -> Result<Opened<'static>, DecodeError> {
    use base64::Engine as _;
    let kind = Kind::Eks;
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(t)
        .map_err(|e| bad(kind, format!("not base64: {e}")))?;
    let inflated = inflate(&compressed)?;
    let text = String::from_utf8(inflated)
        .map_err(|e| bad(kind, format!("the inflated payload is not UTF-8: {e}")))?;
    let opened = open_json(text.trim(), kind)?;
    Ok(Opened {
        skipped: opened.skipped,
        items: opened.items.into_iter().map(Item::into_owned).collect(),
    })
}

fn owned(s: Option<Str>) -> Option<Str<'static>> {
    s.map(|s| Cow::Owned(s.into_owned()))
}

impl Item<'_> {
    fn into_owned(self) -> Item<'static> {
        let p = self.provenance;
        Item {
            place: self.place,
            body: match self.body {
                Body::Text(t) => Body::Text(Cow::Owned(t.into_owned())),
                Body::Bad(t, why) => Body::Bad(Cow::Owned(t.into_owned()), why),
                // Only CloudWatch payloads arrive this way, and they hold text.
                Body::Event(_) => Body::Bad(Cow::Borrowed(""), "unexpected event".into()),
            },
            provenance: Provenance {
                envelope: p.envelope,
                log: owned(p.log),
                stream: owned(p.stream),
                id: owned(p.id),
                cluster: owned(p.cluster),
            },
        }
    }
}

/// `<RFC 3339> <event>`: a line of a CloudWatch Logs export.
fn open_export(t: &str) -> Opened<'_> {
    let event = t.split_once(' ').map(|(_, e)| e.trim()).unwrap_or_default();
    Opened {
        items: vec![Item {
            place: Place::Message,
            body: Body::Text(Cow::Borrowed(event)),
            provenance: Provenance {
                envelope: Kind::Eks,
                log: None,
                stream: None,
                id: None,
                cluster: None,
            },
        }],
        skipped: Vec::new(),
    }
}

#[derive(Deserialize)]
struct AzureEnvelope<'a> {
    #[serde(borrow)]
    records: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AzureRecord<'a> {
    #[serde(borrow)]
    resource_id: Option<Str<'a>>,
    #[serde(borrow)]
    category: Option<Str<'a>>,
    #[serde(borrow)]
    properties: Option<AzureProperties<'a>>,
}

#[derive(Deserialize)]
struct AzureProperties<'a> {
    #[serde(borrow)]
    log: Option<&'a RawValue>,
    #[serde(borrow)]
    pod: Option<Str<'a>>,
}

/// `…/managedClusters/<name>` (AKS) or `…/connectedClusters/<name>` (Arc),
/// lower-cased: Azure writes resource IDs upper-case in logs, and resource
/// names are case-insensitive.
fn azure_cluster(resource_id: &str) -> Option<String> {
    let lower = resource_id.to_ascii_lowercase();
    let mut parts = lower.split('/');
    while let Some(p) = parts.next() {
        if p == "managedclusters" || p == "connectedclusters" {
            return parts.next().filter(|n| !n.is_empty()).map(str::to_string);
        }
    }
    None
}

fn open_azure<'a>(text: &'a str, out: &mut Opened<'a>) -> Result<(), DecodeError> {
    let kind = Kind::Aks;
    // An Event Hub message has one member, `records` (seen at once); a
    // blob line is a record itself (any other shape is scanned).
    let has_records = first_key(text.as_bytes()) == Some(b"records") || {
        let mut r = false;
        top_level_keys(text.as_bytes(), |k| r |= k == b"records");
        r
    };
    let records: Vec<(Place, &'a RawValue)> = if has_records {
        let env: AzureEnvelope = serde_json::from_str(text)
            .map_err(|e| bad(kind, format!("{e} (expected {{\"records\":[…]}})")))?;
        env.records
            .into_iter()
            .enumerate()
            .map(|(i, r)| (Place::Record(i), r))
            .collect()
    } else {
        let raw: &RawValue = serde_json::from_str(text).map_err(|e| bad(kind, e.to_string()))?;
        vec![(Place::OneRecord, raw)]
    };
    for (place, raw) in records {
        let record = match serde_json::from_str::<AzureRecord>(raw.get()) {
            Ok(r) => r,
            Err(e) => {
                out.items.push(Item {
                    place,
                    body: Body::Bad(Cow::Borrowed(raw.get()), e.to_string()),
                    provenance: azure_provenance(None, None),
                });
                continue;
            }
        };
        let category = record.category.as_deref().unwrap_or_default();
        if !category.eq_ignore_ascii_case("kube-audit")
            && !category.eq_ignore_ascii_case("kube-audit-admin")
        {
            out.skipped
                .push("Azure resource-log record of another category than kube-audit");
            continue;
        }
        let provenance = azure_provenance(
            record.resource_id,
            record.properties.as_ref().and_then(|p| p.pod.clone()),
        );
        let body = match record.properties.as_ref().and_then(|p| p.log) {
            None => Body::Bad(Cow::Borrowed(raw.get()), "has no properties.log".into()),
            Some(log) => match log.get().as_bytes().first() {
                // The event as a JSON string (the documented form)...
                Some(b'"') => match serde_json::from_str::<Str>(log.get()) {
                    Ok(s) => Body::Text(s),
                    Err(e) => Body::Bad(Cow::Borrowed(raw.get()), format!("properties.log: {e}")),
                },
                // ...or as an object, as some exporters re-encode it.
                Some(b'{') => Body::Text(Cow::Borrowed(log.get())),
                _ => Body::Bad(
                    Cow::Borrowed(raw.get()),
                    "properties.log is neither a string nor an object".into(),
                ),
            },
        };
        out.items.push(Item {
            place,
            body,
            provenance,
        });
    }
    Ok(())
}

fn azure_provenance<'a>(resource_id: Option<Str<'a>>, pod: Option<Str<'a>>) -> Provenance<'a> {
    let cluster = resource_id
        .as_deref()
        .and_then(azure_cluster)
        .map(Cow::Owned);
    Provenance {
        envelope: Kind::Aks,
        log: resource_id,
        stream: pod,
        id: None,
        cluster,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogEntry<'a> {
    #[serde(borrow)]
    log_name: Option<Str<'a>>,
    #[serde(borrow)]
    insert_id: Option<Str<'a>>,
    #[serde(borrow)]
    timestamp: Option<Str<'a>>,
    #[serde(borrow, default)]
    labels: BTreeMap<Str<'a>, Str<'a>>,
    #[serde(borrow)]
    operation: Option<Operation<'a>>,
    #[serde(borrow)]
    proto_payload: Option<AuditLog<'a>>,
    #[serde(borrow)]
    resource: Option<MonitoredResource<'a>>,
}

#[derive(Deserialize)]
struct Operation<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    first: Option<bool>,
    last: Option<bool>,
}

#[derive(Deserialize)]
struct MonitoredResource<'a> {
    #[serde(borrow, default)]
    labels: BTreeMap<Str<'a>, Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditLog<'a> {
    #[serde(rename = "@type", borrow)]
    type_url: Option<Str<'a>>,
    #[serde(borrow)]
    service_name: Option<Str<'a>>,
    #[serde(borrow)]
    method_name: Option<&'a RawValue>,
    #[serde(borrow)]
    resource_name: Option<&'a RawValue>,
    #[serde(borrow)]
    authentication_info: Option<AuthenticationInfo<'a>>,
    #[serde(borrow)]
    authorization_info: Option<&'a RawValue>,
    #[serde(borrow)]
    request_metadata: Option<RequestMetadata<'a>>,
    #[serde(borrow)]
    status: Option<Status<'a>>,
    #[serde(borrow)]
    request: Option<&'a RawValue>,
    #[serde(borrow)]
    response: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationInfo<'a> {
    #[serde(borrow)]
    principal_email: Option<Str<'a>>,
    #[serde(borrow)]
    authority_selector: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestMetadata<'a> {
    #[serde(borrow)]
    caller_ip: Option<Str<'a>>,
    #[serde(borrow)]
    caller_supplied_user_agent: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Status<'a> {
    code: Option<i32>,
    #[serde(borrow)]
    message: Option<Str<'a>>,
}

const AUDIT_LOG_TYPE: &str = "type.googleapis.com/google.cloud.audit.AuditLog";

/// The HTTP status of a `google.rpc.Code` (the mapping in
/// `google/rpc/code.proto`); `None` for a code it does not list.
pub fn http_status_of_rpc_code(code: i32) -> Option<i32> {
    Some(match code {
        0 => 200,
        1 => 499,
        2 => 500,
        3 => 400,
        4 => 504,
        5 => 404,
        6 => 409,
        7 => 403,
        8 => 429,
        9 => 400,
        10 => 409,
        11 => 400,
        12 => 501,
        13 => 500,
        14 => 503,
        15 => 500,
        16 => 401,
        _ => return None,
    })
}

/// A JSON string value, borrowed when it has no escapes.
fn string_of(raw: Option<&RawValue>) -> Option<Str<'_>> {
    raw.and_then(|r| serde_json::from_str::<Str>(r.get()).ok())
}

/// Whether `s` is an API version (`v1`, `v2beta1`, `v1alpha3`).
fn is_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let tail = &rest[digits..];
    digits > 0
        && (tail.is_empty()
            || ["alpha", "beta"].iter().any(|p| {
                tail.strip_prefix(p)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
            }))
}

/// The object a GKE `resourceName` names: `core/v1/namespaces/NS/pods/NAME/exec`,
/// `rbac.authorization.k8s.io/v1/clusterrolebindings/NAME`. `None` for a
/// non-resource path (`HNAP1`, `apis`), whose resourceName is the path.
fn object_of(name: &str) -> Option<ObjectRef<'static>> {
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() < 3 || !is_version(parts[1]) {
        return None;
    }
    let group = if parts[0] == "core" { "" } else { parts[0] };
    let rest = &parts[2..];
    let (namespace, rest) = match rest {
        ["namespaces", ns, r, tail @ ..] if !r.is_empty() => {
            (Some(*ns), [&[*r][..], tail].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let own = |s: &str| Cow::Owned(s.to_string());
    let mut obj = ObjectRef {
        api_group: Some(own(group)),
        api_version: Some(own(parts[1])),
        namespace: namespace.map(own),
        ..Default::default()
    };
    let at = |i: usize| rest.get(i).filter(|s| !s.is_empty()).map(|s| own(s));
    obj.resource = at(0);
    obj.name = at(1);
    obj.subresource = at(2);
    Some(obj)
}

fn open_gke<'a>(text: &'a str, out: &mut Opened<'a>) -> Result<(), DecodeError> {
    let kind = Kind::Gke;
    let entry: LogEntry<'a> = serde_json::from_str(text).map_err(|e| bad(kind, e.to_string()))?;
    let Some(p) = entry.proto_payload else {
        return Err(bad(kind, "no protoPayload"));
    };
    if p.type_url.as_deref() != Some(AUDIT_LOG_TYPE) {
        out.skipped.push("GKE log entry that is not an AuditLog");
        return Ok(());
    }
    if p.service_name.as_deref() != Some("k8s.io") {
        out.skipped
            .push("GKE audit log entry of another service than k8s.io");
        return Ok(());
    }
    let method = string_of(p.method_name);
    let resource_name = string_of(p.resource_name);
    let auth = p.authentication_info;
    let (principal, selector) = match auth {
        Some(a) => (a.principal_email, a.authority_selector),
        None => (None, None),
    };
    let op = entry.operation;
    // GKE writes one entry per request (first and last), or two for a
    // long-running one (the first when it started, the last when it ended).
    let stage = match op.as_ref().map(|o| (o.first, o.last)) {
        Some((_, Some(true))) => Some("ResponseComplete"),
        Some((Some(true), _)) => Some("ResponseStarted"),
        _ => None,
    };
    let audit_id = op
        .as_ref()
        .and_then(|o| o.id.clone())
        .or_else(|| entry.insert_id.clone());
    let (code, message) = match p.status {
        Some(s) => (
            // proto3 JSON leaves a zero code (OK) out.
            http_status_of_rpc_code(s.code.unwrap_or(0)),
            s.message.filter(|m| !m.is_empty()),
        ),
        None => (None, None),
    };
    let object = resource_name.as_deref().and_then(object_of);
    let request_uri = match (&object, resource_name.as_deref()) {
        (None, Some(path)) => Some(Cow::Owned(format!("/{}", path.trim_start_matches('/')))),
        _ => None,
    };
    let mut other: Vec<(Str<'a>, &'a RawValue)> = Vec::new();
    if let Some(m) = p.method_name {
        other.push((Cow::Borrowed("methodName"), m));
    }
    if let Some(r) = p.resource_name {
        other.push((Cow::Borrowed("resourceName"), r));
    }
    if let Some(a) = p.authorization_info {
        other.push((Cow::Borrowed("authorizationInfo"), a));
    }
    let event = Event {
        kind: Some(Cow::Borrowed("Event")),
        audit_id,
        stage: stage.map(Cow::Borrowed),
        verb: method
            .as_deref()
            .and_then(|m| m.rsplit('.').next())
            .map(|v| Cow::Owned(v.to_string())),
        request_uri,
        user: UserInfo {
            username: principal,
            ..Default::default()
        },
        impersonated_user: selector.map(|s| UserInfo {
            username: Some(s),
            ..Default::default()
        }),
        source_ips: p
            .request_metadata
            .as_ref()
            .and_then(|m| m.caller_ip.clone())
            .into_iter()
            .collect(),
        user_agent: p
            .request_metadata
            .and_then(|m| m.caller_supplied_user_agent),
        object_ref: object,
        response_status: code.map(|c| ResponseStatus {
            code: Some(c),
            status: Some(Cow::Borrowed(if c < 400 { "Success" } else { "Failure" })),
            reason: None,
            message,
        }),
        request_object: p.request,
        response_object: p.response,
        request_received_timestamp: entry.timestamp.clone(),
        stage_timestamp: entry.timestamp,
        annotations: entry.labels.into_iter().collect(),
        other_fields: other,
        ..Default::default()
    };
    let mut labels = entry.resource.map(|r| r.labels).unwrap_or_default();
    let provenance = Provenance {
        envelope: kind,
        log: entry.log_name,
        stream: labels.remove("location"),
        id: entry.insert_id,
        cluster: labels.remove("cluster_name"),
    };
    let mut d = Decoded {
        event,
        ..Default::default()
    };
    let body = match check(&mut d) {
        Ok(()) => Body::Event(Box::new(d)),
        // Both timestamps are the entry's `timestamp`: say so.
        Err(DecodeError::BadTimestamp { value, .. }) => Body::Bad(
            Cow::Borrowed(text),
            DecodeError::BadTimestamp {
                field: "timestamp",
                value,
            }
            .to_string(),
        ),
        Err(e) => Body::Bad(Cow::Borrowed(text), e.to_string()),
    };
    out.items.push(Item {
        place: Place::Entry,
        body,
        provenance,
    });
    Ok(())
}

/// Decode the items of an opened envelope. Each event carries its
/// provenance; `on_reject` gets each item that is not an event.
pub fn decode_opened<'o>(
    opened: &'o mut Opened<'_>,
    spare: &mut Spare,
    mut on_event: impl FnMut(Decoded<'o>),
    mut on_reject: impl FnMut(ItemRejection<'o>),
) {
    for (i, item) in opened.items.iter_mut().enumerate() {
        let Item {
            place,
            body,
            provenance,
        } = item;
        let kind = provenance.envelope.title();
        let provenance = || Some(Box::new(provenance.clone()));
        match body {
            Body::Event(d) => {
                let mut d = std::mem::take(&mut **d);
                d.item = i;
                d.provenance = provenance();
                on_event(d);
            }
            Body::Bad(text, why) => {
                let text: &'o Str = text;
                on_reject(ItemRejection {
                    item: i,
                    text,
                    reason: format!("{kind} {place}: {why}"),
                })
            }
            Body::Text(text) => {
                let text: &'o Str = text;
                let text: &'o str = text;
                let mut d = Decoded {
                    item: i,
                    ..Default::default()
                };
                let result = match parse_event(text, spare, &mut d.event) {
                    Ok(()) => check(&mut d),
                    Err(e) => Err(super::parse_failure(text, e)),
                };
                match result {
                    Ok(()) => {
                        d.provenance = provenance();
                        on_event(d)
                    }
                    Err(error) => on_reject(ItemRejection {
                        item: i,
                        text,
                        reason: format!("{kind} {place}: {error}"),
                    }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(text: &str) -> Option<&'static str> {
        match shape(text.trim()) {
            Shape::Plain => None,
            Shape::Base64Gzip => Some("base64"),
            Shape::CloudWatchExport => Some("export"),
            Shape::Json(k) => Some(k.as_str()),
        }
    }

    /// Shapes are told apart by top-level keys only: the same key inside a
    /// value (an event's requestObject) changes nothing.
    #[test]
    fn shapes() {
        for (text, want) in [
            (r#"{"kind":"Event","auditID":"a","logEvents":1}"#, None),
            (r#"{ "annotations":{},"logEvents":[]}"#, None),
            (r#"{"timestamp":"t","protoPayload":{}}"#, Some("gke")),
            (
                r#"{"level":"Information","category":"kube-audit","properties":{}}"#,
                Some("aks"),
            ),
            (r#"{"items":[{"logEvents":1}]}"#, None),
            (
                r#"{"auditID":"a","requestObject":{"records":[],"protoPayload":1}}"#,
                None,
            ),
            (
                r#"{"messageType":"DATA_MESSAGE","logEvents":[]}"#,
                Some("eks"),
            ),
            (r#"{"logGroup":"g","logEvents":[]}"#, Some("eks")),
            (r#" {"records":[]}"#, Some("aks")),
            (
                r#"{"time":"t","category":"kube-audit","properties":{}}"#,
                Some("aks"),
            ),
            (r#"{"category":"kube-audit"}"#, None),
            (r#"{"insertId":"x","protoPayload":{}}"#, Some("gke")),
            (r#"{"a":"\"protoPayload\":"}"#, None),
            ("H4sIAAAAAAAA", Some("base64")),
            (
                r#"2025-01-01T10:00:00.000Z {"kind":"Event"}"#,
                Some("export"),
            ),
            (r#"2025-01-01T10:00:00.000Z AUDIT: id="x""#, None),
            ("12345 {", None),
            ("", None),
        ] {
            assert_eq!(kind_of(text), want, "{text}");
        }
    }

    #[test]
    fn clusters_from_envelope_names() {
        for (group, want) in [
            ("/aws/eks/prod/cluster", Some("prod")),
            ("/aws/eks/prod-eu-1/cluster", Some("prod-eu-1")),
            ("/aws/eks//cluster", None),
            ("/aws/eks/a/b/cluster", None),
            ("/aws/lambda/x", None),
        ] {
            assert_eq!(eks_cluster(group), want, "{group}");
        }
        for (id, want) in [
            ("/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD", Some("prod")),
            ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/Edge-1", Some("edge-1")),
            ("/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG", None),
            ("/x/managedClusters/", None),
        ] {
            assert_eq!(azure_cluster(id).as_deref(), want, "{id}");
        }
    }

    #[test]
    fn gke_resource_names() {
        type Want = (
            &'static str,
            Option<&'static str>,
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: [(&str, Option<Want>); 7] = [
            (
                "core/v1/namespaces/prod/pods/web-1/exec",
                Some(("", Some("prod"), "pods", Some("web-1"), Some("exec"))),
            ),
            (
                "core/v1/namespaces/prod/secrets",
                Some(("", Some("prod"), "secrets", None, None)),
            ),
            (
                "core/v1/namespaces/prod",
                Some(("", None, "namespaces", Some("prod"), None)),
            ),
            (
                "rbac.authorization.k8s.io/v1/clusterrolebindings/admins",
                Some((
                    "rbac.authorization.k8s.io",
                    None,
                    "clusterrolebindings",
                    Some("admins"),
                    None,
                )),
            ),
            (
                "apps/v1beta2/namespaces/a/deployments/d/scale",
                Some(("apps", Some("a"), "deployments", Some("d"), Some("scale"))),
            ),
            ("HNAP1", None),
            ("apis/metrics.k8s.io", None),
        ];
        for (name, want) in cases {
            let got = object_of(name).map(|o| {
                (
                    o.api_group.map(|s| s.into_owned()),
                    o.namespace.map(|s| s.into_owned()),
                    o.resource.map(|s| s.into_owned()),
                    o.name.map(|s| s.into_owned()),
                    o.subresource.map(|s| s.into_owned()),
                )
            });
            let want = want.map(|(g, ns, r, n, s)| {
                (
                    Some(g.to_string()),
                    ns.map(String::from),
                    Some(r.to_string()),
                    n.map(String::from),
                    s.map(String::from),
                )
            });
            assert_eq!(got, want, "{name}");
        }
        for (v, want) in [
            ("v1", true),
            ("v2beta1", true),
            ("v1alpha3", true),
            ("v1beta", false),
            ("vx", false),
            ("1", false),
        ] {
            assert_eq!(is_version(v), want, "{v}");
        }
    }

    #[test]
    fn rpc_codes_become_http_statuses() {
        for (code, want) in [
            (0, Some(200)),
            (7, Some(403)),
            (16, Some(401)),
            (5, Some(404)),
            (6, Some(409)),
            (99, None),
        ] {
            assert_eq!(http_status_of_rpc_code(code), want, "{code}");
        }
    }

    /// Every event of a payload comes out as an event or a rejection, in
    /// order, with its place.
    #[test]
    fn every_item_is_accounted_for() {
        let ev = |id: &str| format!(r#"{{\"auditID\":\"{id}\",\"stage\":\"ResponseComplete\"}}"#);
        let text = format!(
            r#"{{"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/c/cluster","logEvents":[{{"id":"1","message":"{}"}},{{"id":"2","message":"nope"}},{{"id":"3"}},{{"id":"4","message":"{}"}}]}}"#,
            ev("a"),
            ev("b")
        );
        let mut opened = match open(&text, InputFormat::Auto) {
            Some(Ok(o)) => o,
            other => panic!("not opened: {other:?}"),
        };
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        decode_opened(
            &mut opened,
            &mut Spare::default(),
            |d| {
                ok.push((
                    d.item,
                    d.event.audit_id.map(|s| s.into_owned()),
                    d.provenance.and_then(|p| p.id.map(|s| s.into_owned())),
                ))
            },
            |r| bad.push((r.item, r.reason)),
        );
        assert_eq!(
            ok,
            [
                (0, Some("a".into()), Some("1".into())),
                (3, Some("b".into()), Some("4".into()))
            ]
        );
        assert_eq!(bad.len(), 2);
        assert!(
            bad[0]
                .1
                .starts_with("EKS CloudWatch Logs logEvents[1]: not JSON"),
            "{bad:?}"
        );
        assert_eq!(
            bad[1],
            (2, "EKS CloudWatch Logs logEvents[2]: has no message".into())
        );
    }

    /// A payload that inflates past the bound is refused, not unpacked.
    #[test]
    fn inflating_is_bounded() {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..(MAX_INFLATED_BYTES >> 20) + 1 {
            gz.write_all(&zeros).expect("compress");
        }
        let bomb = gz.finish().expect("compress");
        assert!(bomb.len() < MAX_INFLATED_BYTES / 100);
        let err = inflate(&bomb).expect_err("over the bound");
        assert!(err.to_string().contains("inflates to more than"), "{err}");
    }
}
