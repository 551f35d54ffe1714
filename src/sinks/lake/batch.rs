//! Columnar assembly: resolved events appended to Arrow builders, finished
//! into `RecordBatch`es of the record schema, one builder set per lake
//! partition (`dt`, `hour`).

use crate::decode::envelope::Provenance;
use crate::decode::Decoded;
use crate::event::{Event, ObjectRef, ResponseStatus, Str, UserInfo};
use crate::resolve::{
    actor_kind, ActorKind, Resolved, Who, CREDENTIAL_ID, NODE_NAME, NODE_UID, POD_NAME, POD_UID,
};
use crate::schema::record_schema;
use arrow::array::{
    Array, ArrayRef, AsArray, Int32Builder, ListBuilder, MapBuilder, MapFieldNames, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use std::fmt::Write as _;
use std::sync::Arc;

/// A lake partition: UTC day and hour of `request_received_at`. Events with
/// no timestamp at all go to Hive's default partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartKey {
    At { days: i32, hour: u8 },
    Unknown,
}

/// Hive's name for a NULL partition value.
pub const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

impl PartKey {
    pub fn from_micros(us: Option<i64>) -> PartKey {
        match us {
            Some(us) => {
                let secs = us.div_euclid(1_000_000);
                let days = secs.div_euclid(86_400);
                let hour = (secs.rem_euclid(86_400) / 3600) as u8;
                match i32::try_from(days) {
                    Ok(days) if (-719_162..=2_932_896).contains(&days) => {
                        PartKey::At { days, hour }
                    }
                    _ => PartKey::Unknown,
                }
            }
            None => PartKey::Unknown,
        }
    }

    /// `dt=YYYY-MM-DD/hour=HH`.
    pub fn dir(&self) -> String {
        match self {
            PartKey::At { days, hour } => {
                let date = chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163)
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_else(|| DEFAULT_PARTITION.to_string());
                format!("dt={date}/hour={hour:02}")
            }
            PartKey::Unknown => format!("dt={DEFAULT_PARTITION}/hour={DEFAULT_PARTITION}"),
        }
    }
}

/// Per-row values that come from the ingest context, not the event.
#[derive(Debug, Clone, Copy)]
pub struct RowContext<'c> {
    pub cluster: &'c str,
    pub ingested_at_us: i64,
    /// Take the cluster an envelope names (an EKS log group, an AKS
    /// resource ID) over `cluster`: set when no cluster was given.
    pub envelope_cluster: bool,
}

type StrListBuilder = ListBuilder<StringBuilder>;
type StrMapBuilder = MapBuilder<StringBuilder, StringBuilder>;
type ExtraMapBuilder = MapBuilder<StringBuilder, StrListBuilder>;

/// How much a column's builder should hold: taken from the batch just
/// finished, so the next batch's buffers are allocated once at about the
/// right size instead of grown by doubling (each doubling copies the column,
/// about a copy of every event per batch).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Capacity {
    rows: usize,
    /// Strings of the column, list items, or map keys.
    items: usize,
    bytes: usize,
    /// Map values: their strings, or the items of their lists.
    sub_items: usize,
    sub_bytes: usize,
}

impl Capacity {
    fn of(a: &dyn Array) -> Capacity {
        let rows = a.len();
        if let Some(s) = a.as_string_opt::<i32>() {
            return Capacity {
                rows,
                items: rows,
                bytes: s.values().len(),
                ..Default::default()
            };
        }
        if let Some(l) = a.as_list_opt::<i32>() {
            let v = Capacity::of(l.values());
            return Capacity {
                rows,
                items: v.rows,
                bytes: v.bytes,
                ..Default::default()
            };
        }
        if let Some(m) = a.as_map_opt() {
            let (k, v) = (Capacity::of(m.keys()), Capacity::of(m.values()));
            return Capacity {
                rows,
                items: k.rows,
                bytes: k.bytes,
                // String values count as their own items, so one rule
                // serves both the string and the list-valued maps.
                sub_items: v.items,
                sub_bytes: v.bytes,
            };
        }
        Capacity {
            rows,
            ..Default::default()
        }
    }
}

/// A little headroom, so a batch slightly larger than the last one does not
/// double its buffers.
fn grow(n: usize) -> usize {
    n + n / 8
}

fn string(c: Capacity) -> StringBuilder {
    StringBuilder::with_capacity(grow(c.items), grow(c.bytes))
}

fn str_list(c: Capacity) -> StrListBuilder {
    ListBuilder::with_capacity(string(c), grow(c.rows))
}

fn names() -> Option<MapFieldNames> {
    Some(MapFieldNames {
        entry: "entries".into(),
        key: "key".into(),
        value: "value".into(),
    })
}

fn str_map(c: Capacity) -> StrMapBuilder {
    MapBuilder::with_capacity(
        names(),
        string(c),
        StringBuilder::with_capacity(grow(c.items), grow(c.sub_bytes)),
        grow(c.rows),
    )
}

fn extra_map(c: Capacity) -> ExtraMapBuilder {
    MapBuilder::with_capacity(
        names(),
        string(c),
        ListBuilder::with_capacity(
            StringBuilder::with_capacity(grow(c.sub_items), grow(c.sub_bytes)),
            grow(c.items),
        ),
        grow(c.rows),
    )
}

fn ts(c: Capacity) -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::with_capacity(grow(c.rows)).with_timezone("UTC")
}

/// Arrow builders for every stored column, in schema order.
pub struct BatchBuilder {
    rows: usize,
    cluster: StringBuilder,
    audit_id: StringBuilder,
    stage: StringBuilder,
    level: StringBuilder,
    verb: StringBuilder,
    request_uri: StringBuilder,
    user_agent: StringBuilder,
    source_ips: StrListBuilder,
    request_received_at: TimestampMicrosecondBuilder,
    stage_at: TimestampMicrosecondBuilder,
    resource: StringBuilder,
    subresource: StringBuilder,
    namespace: StringBuilder,
    name: StringBuilder,
    api_group: StringBuilder,
    api_version: StringBuilder,
    object_uid: StringBuilder,
    response_code: Int32Builder,
    response_status: StringBuilder,
    response_reason: StringBuilder,
    response_message: StringBuilder,
    decision: StringBuilder,
    decision_reason: StringBuilder,
    annotations: StrMapBuilder,
    authn_username: StringBuilder,
    authn_uid: StringBuilder,
    authn_groups: StrListBuilder,
    authn_extra: ExtraMapBuilder,
    impersonated_username: StringBuilder,
    impersonated_uid: StringBuilder,
    impersonated_groups: StrListBuilder,
    impersonated_extra: ExtraMapBuilder,
    original_username: StringBuilder,
    original_uid: StringBuilder,
    original_groups: StrListBuilder,
    original_extra: ExtraMapBuilder,
    original_claim_raw: StringBuilder,
    actor_username: StringBuilder,
    actor_uid: StringBuilder,
    actor_groups: StrListBuilder,
    actor_kind: StringBuilder,
    actor_sa_namespace: StringBuilder,
    actor_sa_name: StringBuilder,
    acted_as_username: StringBuilder,
    acted_as_groups: StrListBuilder,
    proxy_profile: StringBuilder,
    proxy_username: StringBuilder,
    resolution: StringBuilder,
    claim_status: StringBuilder,
    credential_id: StringBuilder,
    authn_credential_id: StringBuilder,
    pod_name: StringBuilder,
    pod_uid: StringBuilder,
    node_name: StringBuilder,
    node_uid: StringBuilder,
    request_object: StringBuilder,
    response_object: StringBuilder,
    event_extra_fields: StringBuilder,
    source: StringBuilder,
    ingested_at: TimestampMicrosecondBuilder,
    impersonation_constraint: StringBuilder,
    iam_arn: StringBuilder,
    iam_canonical_arn: StringBuilder,
    iam_session_name: StringBuilder,
    iam_access_key_id: StringBuilder,
    iam_principal_id: StringBuilder,
    envelope: StringBuilder,
    envelope_log: StringBuilder,
    envelope_stream: StringBuilder,
    envelope_id: StringBuilder,
    scratch: String,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn groups(b: &mut StrListBuilder, u: Option<&UserInfo>) {
    match u {
        Some(u) => {
            for g in &u.groups {
                b.values().append_value(g);
            }
            b.append(true);
        }
        None => b.append(false),
    }
}

fn extra(b: &mut ExtraMapBuilder, u: Option<&UserInfo>) {
    match u {
        Some(u) if !u.extra.is_empty() => {
            for (k, vs) in &u.extra {
                b.keys().append_value(k);
                for v in vs.iter() {
                    b.values().values().append_value(v);
                }
                b.values().append(true);
            }
            // Appending a map entry cannot fail once keys and values agree.
            let _ = b.append(true);
        }
        Some(_) => {
            let _ = b.append(true);
        }
        None => {
            let _ = b.append(false);
        }
    }
}

fn s<'a>(v: &'a Option<Str<'_>>) -> Option<&'a str> {
    v.as_deref()
}

/// aws-iam-authenticator's `user.extra` keys, in the order of the `iam_*`
/// columns.
const IAM_KEYS: [&str; 5] = [
    "arn",
    "canonicalArn",
    "sessionName",
    "accessKeyId",
    "principalId",
];

/// One resolved event, ready to append.
pub struct Row<'r> {
    pub decoded: &'r Decoded<'r>,
    pub resolved: &'r Resolved<'r>,
    /// The row's `source` value.
    pub source: &'r str,
}

impl<'r> Row<'r> {
    fn event(&self) -> &'r Event<'r> {
        &self.decoded.event
    }

    fn object(&self) -> Option<&'r ObjectRef<'r>> {
        self.event().object_ref.as_ref()
    }

    fn provenance(&self) -> Option<&'r Provenance<'r>> {
        self.decoded.provenance.as_deref()
    }

    /// `authenticationMetadata.impersonationConstraint` (Kubernetes 1.35+):
    /// kept verbatim in `event_extra_fields` too.
    fn constraint(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Metadata {
            impersonation_constraint: Option<String>,
        }
        let (_, raw) = self
            .event()
            .other_fields
            .iter()
            .find(|(k, _)| k == "authenticationMetadata")?;
        serde_json::from_str::<Metadata>(raw.get())
            .ok()?
            .impersonation_constraint
            .filter(|c| !c.is_empty())
    }

    fn status(&self) -> Option<&'r ResponseStatus<'r>> {
        self.event().response_status.as_ref()
    }

    fn impersonated(&self) -> Option<&'r UserInfo<'r>> {
        self.event().impersonated_user.as_ref()
    }

    fn original(&self) -> Option<&'r UserInfo<'r>> {
        self.resolved.original.as_ref()
    }

    /// The value of an annotation (keys compared exactly).
    fn annotation(&self, key: &str) -> Option<&'r str> {
        self.event()
            .annotations
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

/// The identities a row's actor columns are made of.
struct Identities<'r> {
    actor: Option<&'r UserInfo<'r>>,
    /// The actor's username ("" when the identity has none).
    actor_name: Option<&'r str>,
    kind: Option<(ActorKind, Option<(&'r str, &'r str)>)>,
    acted: Option<&'r UserInfo<'r>>,
}

impl<'r> Identities<'r> {
    fn of(row: &Row<'r>) -> Identities<'r> {
        let (r, e) = (row.resolved, row.event());
        let actor = r.identity(r.actor, e);
        let actor_name = actor.map(|u| s(&u.username).unwrap_or(""));
        // A malformed claim leaves the actor unknown, and then it has no
        // identity at all.
        debug_assert!(r.actor != Who::Unknown || actor.is_none());
        Identities {
            actor,
            actor_name,
            kind: actor_name.and_then(actor_kind),
            acted: r.identity(r.acted_as, e),
        }
    }

    /// The first value of one of the actor's extras.
    fn actor_extra(&self, key: &str) -> Option<&'r str> {
        self.actor.and_then(|u| u.extra_first(key))
    }

    /// (namespace, name) when the actor is a service account.
    fn service_account(&self) -> Option<(&'r str, &'r str)> {
        self.kind.and_then(|k| k.1)
    }
}

/// `$b` takes one value (an `Option`) per item of `$items`, in order.
/// Many columns are null in most rows (no impersonation, no proxy, no pod):
/// a run of nulls is appended in one call.
macro_rules! each {
    ($b:expr, $items:expr, |$r:ident| $v:expr) => {{
        let mut nulls = 0;
        for $r in $items {
            match $v {
                Some(v) => {
                    if nulls > 0 {
                        $b.append_nulls(nulls);
                        nulls = 0;
                    }
                    $b.append_value(v);
                }
                None => nulls += 1,
            }
        }
        if nulls > 0 {
            $b.append_nulls(nulls);
        }
    }};
}

/// The username, uid, groups and extra columns of the identity `who`
/// picks from each row: all four null in a row where it has none.
fn identity<'r>(
    username: &mut StringBuilder,
    uid: &mut StringBuilder,
    group_lists: &mut StrListBuilder,
    extras: &mut ExtraMapBuilder,
    rows: &[Row<'r>],
    who: fn(&Row<'r>) -> Option<&'r UserInfo<'r>>,
) {
    each!(username, rows, |r| who(r).and_then(|u| s(&u.username)));
    each!(uid, rows, |r| who(r).and_then(|u| s(&u.uid)));
    for r in rows {
        groups(group_lists, who(r));
    }
    for r in rows {
        extra(extras, who(r));
    }
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::with_capacities(&[])
    }

    /// Builders sized for `caps` (one per column, in schema order; missing
    /// ones start empty).
    fn with_capacities(caps: &[Capacity]) -> Self {
        let mut caps = caps.iter().copied();
        let mut next = || caps.next().unwrap_or_default();
        // Fields are initialised in the order written, which is the
        // schema's order, so each builder takes its own column's capacity.
        BatchBuilder {
            rows: 0,
            cluster: string(next()),
            audit_id: string(next()),
            stage: string(next()),
            level: string(next()),
            verb: string(next()),
            request_uri: string(next()),
            user_agent: string(next()),
            source_ips: str_list(next()),
            request_received_at: ts(next()),
            stage_at: ts(next()),
            resource: string(next()),
            subresource: string(next()),
            namespace: string(next()),
            name: string(next()),
            api_group: string(next()),
            api_version: string(next()),
            object_uid: string(next()),
            response_code: Int32Builder::with_capacity(grow(next().rows)),
            response_status: string(next()),
            response_reason: string(next()),
            response_message: string(next()),
            decision: string(next()),
            decision_reason: string(next()),
            annotations: str_map(next()),
            authn_username: string(next()),
            authn_uid: string(next()),
            authn_groups: str_list(next()),
            authn_extra: extra_map(next()),
            impersonated_username: string(next()),
            impersonated_uid: string(next()),
            impersonated_groups: str_list(next()),
            impersonated_extra: extra_map(next()),
            original_username: string(next()),
            original_uid: string(next()),
            original_groups: str_list(next()),
            original_extra: extra_map(next()),
            original_claim_raw: string(next()),
            actor_username: string(next()),
            actor_uid: string(next()),
            actor_groups: str_list(next()),
            actor_kind: string(next()),
            actor_sa_namespace: string(next()),
            actor_sa_name: string(next()),
            acted_as_username: string(next()),
            acted_as_groups: str_list(next()),
            proxy_profile: string(next()),
            proxy_username: string(next()),
            resolution: string(next()),
            claim_status: string(next()),
            credential_id: string(next()),
            authn_credential_id: string(next()),
            pod_name: string(next()),
            pod_uid: string(next()),
            node_name: string(next()),
            node_uid: string(next()),
            request_object: string(next()),
            response_object: string(next()),
            event_extra_fields: string(next()),
            source: string(next()),
            ingested_at: ts(next()),
            impersonation_constraint: string(next()),
            iam_arn: string(next()),
            iam_canonical_arn: string(next()),
            iam_session_name: string(next()),
            iam_access_key_id: string(next()),
            iam_principal_id: string(next()),
            envelope: string(next()),
            envelope_log: string(next()),
            envelope_stream: string(next()),
            envelope_id: string(next()),
            scratch: String::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Append one resolved event. `source` is the row's `source` value.
    pub fn append(&mut self, d: &Decoded, r: &Resolved, ctx: &RowContext, source: &str) {
        let row = Row {
            decoded: d,
            resolved: r,
            source,
        };
        self.append_rows(std::slice::from_ref(&row), ctx);
    }

    /// Append resolved events, column by column: each builder takes the
    /// values of every row while its buffers are in cache and its code is
    /// hot, instead of sixty builders taking one value each per event in
    /// turn. The rows come out exactly as `append` would write them one by
    /// one.
    pub fn append_rows(&mut self, rows: &[Row], ctx: &RowContext) {
        self.rows += rows.len();
        if ctx.envelope_cluster {
            each!(self.cluster, rows, |r| Some(
                r.provenance()
                    .and_then(|p| p.cluster.as_deref())
                    .unwrap_or(ctx.cluster)
            ));
        } else {
            self.cluster.append_value_n(ctx.cluster, rows.len());
        }
        each!(self.audit_id, rows, |r| s(&r.event().audit_id));
        each!(self.stage, rows, |r| s(&r.event().stage));
        each!(self.level, rows, |r| s(&r.event().level));
        each!(self.verb, rows, |r| s(&r.event().verb));
        each!(self.request_uri, rows, |r| s(&r.event().request_uri));
        each!(self.user_agent, rows, |r| s(&r.event().user_agent));
        for r in rows {
            for ip in &r.event().source_ips {
                self.source_ips.values().append_value(ip);
            }
            self.source_ips.append(true);
        }
        each!(self.request_received_at, rows, |r| r.decoded.received_us);
        each!(self.stage_at, rows, |r| r.decoded.stage_us);

        each!(self.resource, rows, |r| r
            .object()
            .and_then(|o| s(&o.resource)));
        each!(self.subresource, rows, |r| r
            .object()
            .and_then(|o| s(&o.subresource)));
        each!(self.namespace, rows, |r| r
            .object()
            .and_then(|o| s(&o.namespace)));
        each!(self.name, rows, |r| r.object().and_then(|o| s(&o.name)));
        each!(self.api_group, rows, |r| r
            .object()
            .and_then(|o| s(&o.api_group)));
        each!(self.api_version, rows, |r| r
            .object()
            .and_then(|o| s(&o.api_version)));
        each!(self.object_uid, rows, |r| r
            .object()
            .and_then(|o| s(&o.uid)));

        each!(self.response_code, rows, |r| r
            .status()
            .and_then(|x| x.code));
        each!(self.response_status, rows, |r| r
            .status()
            .and_then(|x| s(&x.status)));
        each!(self.response_reason, rows, |r| r
            .status()
            .and_then(|x| s(&x.reason)));
        each!(self.response_message, rows, |r| r
            .status()
            .and_then(|x| s(&x.message)));

        each!(self.decision, rows, |r| r
            .annotation("authorization.k8s.io/decision"));
        each!(self.decision_reason, rows, |r| r
            .annotation("authorization.k8s.io/reason"));
        for r in rows {
            for (k, v) in &r.event().annotations {
                self.annotations.keys().append_value(k);
                self.annotations.values().append_value(v);
            }
            let _ = self.annotations.append(true);
        }

        each!(self.authn_username, rows, |r| Some(
            s(&r.event().user.username).unwrap_or("")
        ));
        each!(self.authn_uid, rows, |r| s(&r.event().user.uid));
        for r in rows {
            groups(&mut self.authn_groups, Some(&r.event().user));
        }
        for r in rows {
            extra(&mut self.authn_extra, Some(&r.event().user));
        }

        identity(
            &mut self.impersonated_username,
            &mut self.impersonated_uid,
            &mut self.impersonated_groups,
            &mut self.impersonated_extra,
            rows,
            Row::impersonated,
        );
        identity(
            &mut self.original_username,
            &mut self.original_uid,
            &mut self.original_groups,
            &mut self.original_extra,
            rows,
            Row::original,
        );
        each!(self.original_claim_raw, rows, |r| r
            .resolved
            .claim_raw
            .as_deref());

        // The actor and the acted-as identity feed several columns each:
        // found once per row.
        let who: Vec<Identities> = rows.iter().map(Identities::of).collect();
        each!(self.actor_username, &who, |w| w.actor_name);
        each!(self.actor_uid, &who, |w| w.actor.and_then(|u| s(&u.uid)));
        for w in &who {
            groups(&mut self.actor_groups, w.actor);
        }
        each!(self.actor_kind, &who, |w| w.kind.map(|k| k.0.as_str()));
        each!(self.actor_sa_namespace, &who, |w| w
            .service_account()
            .map(|sa| sa.0));
        each!(self.actor_sa_name, &who, |w| w
            .service_account()
            .map(|sa| sa.1));
        each!(self.acted_as_username, &who, |w| w
            .acted
            .map(|u| s(&u.username).unwrap_or("")));
        for w in &who {
            groups(&mut self.acted_as_groups, w.acted);
        }
        each!(self.proxy_profile, rows, |r| r.resolved.proxy_profile);
        each!(self.proxy_username, rows, |r| r.resolved.proxy_username);
        each!(self.resolution, rows, |r| Some(
            r.resolved.resolution.as_str()
        ));
        each!(self.claim_status, rows, |r| Some(
            r.resolved.claim_status.as_str()
        ));

        // Provenance comes from the actor's own extras: behind a proxy,
        // user.extra describes the proxy's token, not the caller's. A
        // malformed claim has no actor and therefore no actor provenance.
        each!(self.credential_id, &who, |w| w.actor_extra(CREDENTIAL_ID));
        each!(self.authn_credential_id, rows, |r| r
            .event()
            .user
            .extra_first(CREDENTIAL_ID));
        each!(self.pod_name, &who, |w| w.actor_extra(POD_NAME));
        each!(self.pod_uid, &who, |w| w.actor_extra(POD_UID));
        each!(self.node_name, &who, |w| w.actor_extra(NODE_NAME));
        each!(self.node_uid, &who, |w| w.actor_extra(NODE_UID));

        each!(self.request_object, rows, |r| r
            .event()
            .request_object
            .map(|v| v.get()));
        each!(self.response_object, rows, |r| r
            .event()
            .response_object
            .map(|v| v.get()));
        for r in rows {
            let e = r.event();
            if e.other_fields.is_empty() {
                self.event_extra_fields.append_null();
                continue;
            }
            self.scratch.clear();
            self.scratch.push('{');
            for (i, (k, v)) in e.other_fields.iter().enumerate() {
                if i > 0 {
                    self.scratch.push(',');
                }
                // Keys came from JSON; re-escape them.
                let _ = write!(
                    self.scratch,
                    "{}:{}",
                    serde_json::Value::from(k.as_ref()),
                    v.get()
                );
            }
            self.scratch.push('}');
            self.event_extra_fields.append_value(&self.scratch);
        }
        each!(self.source, rows, |r| Some(r.source));
        self.ingested_at
            .append_value_n(ctx.ingested_at_us, rows.len());

        let constraints: Vec<Option<String>> = rows.iter().map(Row::constraint).collect();
        each!(self.impersonation_constraint, &constraints, |c| c
            .as_deref());
        // aws-iam-authenticator's extras describe the authenticated user's
        // IAM credential. Keys are matched ignoring case, since
        // re-serialisers lower-case extra keys: one pass over the extras per
        // row, not a lookup (and a lower-cased copy of the key) per column.
        let iam: Vec<[Option<&str>; 5]> = rows
            .iter()
            .map(|r| {
                let mut found = [None; 5];
                for (k, v) in &r.event().user.extra {
                    if let Some(i) = IAM_KEYS.iter().position(|n| k.eq_ignore_ascii_case(n)) {
                        if found[i].is_none() {
                            found[i] = v.first().map(|s| s.as_ref());
                        }
                    }
                }
                found
            })
            .collect();
        for (i, b) in [
            &mut self.iam_arn,
            &mut self.iam_canonical_arn,
            &mut self.iam_session_name,
            &mut self.iam_access_key_id,
            &mut self.iam_principal_id,
        ]
        .into_iter()
        .enumerate()
        {
            each!(b, &iam, |f| f[i]);
        }
        each!(self.envelope, rows, |r| r
            .provenance()
            .map(|p| p.envelope.as_str()));
        each!(self.envelope_log, rows, |r| r
            .provenance()
            .and_then(|p| p.log.as_deref()));
        each!(self.envelope_stream, rows, |r| r
            .provenance()
            .and_then(|p| p.stream.as_deref()));
        each!(self.envelope_id, rows, |r| r
            .provenance()
            .and_then(|p| p.id.as_deref()));
    }

    /// Finish the rows appended so far into a batch; the builder is reset.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.cluster.finish()),
            Arc::new(self.audit_id.finish()),
            Arc::new(self.stage.finish()),
            Arc::new(self.level.finish()),
            Arc::new(self.verb.finish()),
            Arc::new(self.request_uri.finish()),
            Arc::new(self.user_agent.finish()),
            Arc::new(self.source_ips.finish()),
            Arc::new(self.request_received_at.finish()),
            Arc::new(self.stage_at.finish()),
            Arc::new(self.resource.finish()),
            Arc::new(self.subresource.finish()),
            Arc::new(self.namespace.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.api_group.finish()),
            Arc::new(self.api_version.finish()),
            Arc::new(self.object_uid.finish()),
            Arc::new(self.response_code.finish()),
            Arc::new(self.response_status.finish()),
            Arc::new(self.response_reason.finish()),
            Arc::new(self.response_message.finish()),
            Arc::new(self.decision.finish()),
            Arc::new(self.decision_reason.finish()),
            Arc::new(self.annotations.finish()),
            Arc::new(self.authn_username.finish()),
            Arc::new(self.authn_uid.finish()),
            Arc::new(self.authn_groups.finish()),
            Arc::new(self.authn_extra.finish()),
            Arc::new(self.impersonated_username.finish()),
            Arc::new(self.impersonated_uid.finish()),
            Arc::new(self.impersonated_groups.finish()),
            Arc::new(self.impersonated_extra.finish()),
            Arc::new(self.original_username.finish()),
            Arc::new(self.original_uid.finish()),
            Arc::new(self.original_groups.finish()),
            Arc::new(self.original_extra.finish()),
            Arc::new(self.original_claim_raw.finish()),
            Arc::new(self.actor_username.finish()),
            Arc::new(self.actor_uid.finish()),
            Arc::new(self.actor_groups.finish()),
            Arc::new(self.actor_kind.finish()),
            Arc::new(self.actor_sa_namespace.finish()),
            Arc::new(self.actor_sa_name.finish()),
            Arc::new(self.acted_as_username.finish()),
            Arc::new(self.acted_as_groups.finish()),
            Arc::new(self.proxy_profile.finish()),
            Arc::new(self.proxy_username.finish()),
            Arc::new(self.resolution.finish()),
            Arc::new(self.claim_status.finish()),
            Arc::new(self.credential_id.finish()),
            Arc::new(self.authn_credential_id.finish()),
            Arc::new(self.pod_name.finish()),
            Arc::new(self.pod_uid.finish()),
            Arc::new(self.node_name.finish()),
            Arc::new(self.node_uid.finish()),
            Arc::new(self.request_object.finish()),
            Arc::new(self.response_object.finish()),
            Arc::new(self.event_extra_fields.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.ingested_at.finish()),
            Arc::new(self.impersonation_constraint.finish()),
            Arc::new(self.iam_arn.finish()),
            Arc::new(self.iam_canonical_arn.finish()),
            Arc::new(self.iam_session_name.finish()),
            Arc::new(self.iam_access_key_id.finish()),
            Arc::new(self.iam_principal_id.finish()),
            Arc::new(self.envelope.finish()),
            Arc::new(self.envelope_log.finish()),
            Arc::new(self.envelope_stream.finish()),
            Arc::new(self.envelope_id.finish()),
        ];
        let caps: Vec<Capacity> = columns.iter().map(|c| Capacity::of(c)).collect();
        let scratch = std::mem::take(&mut self.scratch);
        *self = BatchBuilder::with_capacities(&caps);
        self.scratch = scratch;
        RecordBatch::try_new(record_schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_dirs() {
        let rows = [
            (Some(0), "dt=1970-01-01/hour=00"),
            (Some(1_741_069_338_819_232), "dt=2025-03-04/hour=06"),
            (Some(-1), "dt=1969-12-31/hour=23"),
            (
                None,
                "dt=__HIVE_DEFAULT_PARTITION__/hour=__HIVE_DEFAULT_PARTITION__",
            ),
        ];
        for (us, want) in rows {
            assert_eq!(PartKey::from_micros(us).dir(), want);
        }
    }

    fn build(texts: &[&str], b: &mut BatchBuilder) -> RecordBatch {
        let profiles = crate::profiles::Profiles::builtin();
        let ctx = RowContext {
            cluster: "c1",
            ingested_at_us: 5,
            envelope_cluster: false,
        };
        for text in texts {
            crate::decode::decode_unit(
                text,
                |d| {
                    let r = crate::resolve::resolve(&d.event, &profiles);
                    b.append(&d, &r, &ctx, "test:1");
                },
                |r| panic!("rejected: {:?}", r.error),
            );
        }
        b.finish().expect("batch")
    }

    const SA_EVENT: &str = r#"{"auditID":"a","stage":"ResponseComplete","sourceIPs":["10.0.0.1","10.0.0.2"],"user":{"username":"system:serviceaccount:ns:sa","groups":["g1"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=1"],"k2":["v1","v22"]}},"annotations":{"authorization.k8s.io/decision":"allow"}}"#;

    #[test]
    fn capacities_follow_the_last_batch() {
        let batch = build(&[SA_EVENT, SA_EVENT, SA_EVENT], &mut BatchBuilder::new());
        let cap = |n: &str| {
            Capacity::of(
                batch
                    .column(crate::schema::column_index(n).expect("column"))
                    .as_ref(),
            )
        };
        assert_eq!(
            cap("audit_id"),
            Capacity {
                rows: 3,
                items: 3,
                bytes: 3,
                ..Default::default()
            }
        );
        assert_eq!(
            cap("source_ips"),
            Capacity {
                rows: 3,
                items: 6,
                bytes: 48,
                ..Default::default()
            }
        );
        // Keys: 2 per row, 42 + 2 bytes; values: 3 per row, 5 + 2 + 3 bytes.
        assert_eq!(
            cap("authn_extra"),
            Capacity {
                rows: 3,
                items: 6,
                bytes: 132,
                sub_items: 9,
                sub_bytes: 30
            }
        );
        assert_eq!(
            cap("annotations"),
            Capacity {
                rows: 3,
                items: 3,
                bytes: 87,
                sub_items: 3,
                sub_bytes: 15
            }
        );
        assert_eq!(
            cap("response_code"),
            Capacity {
                rows: 3,
                ..Default::default()
            }
        );
    }

    /// A builder that was finished (and resized from its batch) builds the
    /// same next batch as a fresh one.
    #[test]
    fn a_resized_builder_builds_the_same_rows() {
        let other = r#"{"auditID":"b","stage":"ResponseComplete","user":{"username":"alice"},"impersonatedUser":{"username":"bob","groups":["x","y"]},"objectRef":{"resource":"pods","namespace":"n"},"responseStatus":{"code":403}}"#;
        let mut reused = BatchBuilder::new();
        build(&[SA_EVENT; 5], &mut reused);
        let again = build(&[other, SA_EVENT], &mut reused);
        let fresh = build(&[other, SA_EVENT], &mut BatchBuilder::new());
        assert_eq!(again, fresh);
        assert_eq!(again.num_rows(), 2);
    }

    #[test]
    fn batch_matches_schema() {
        let text = r#"{"auditID":"a","stage":"ResponseComplete","user":{"username":"system:serviceaccount:ns:sa","extra":{"authentication.kubernetes.io/credential-id":["JTI=1"],"authentication.kubernetes.io/pod-name":["p"]}},"annotations":{"authorization.k8s.io/decision":"allow"},"authenticationMetadata":{"impersonationConstraint":"impersonate:user-info"}}"#;
        let batch = build(&[text], &mut BatchBuilder::new());
        assert_eq!(batch.num_rows(), 1);
        let col = |n: &str| {
            let i = crate::schema::column_index(n).expect("column");
            arrow::util::display::array_value_to_string(batch.column(i), 0).expect("display")
        };
        assert_eq!(col("actor_kind"), "serviceaccount");
        assert_eq!(col("actor_sa_name"), "sa");
        assert_eq!(col("credential_id"), "JTI=1");
        assert_eq!(col("pod_name"), "p");
        assert_eq!(col("decision"), "allow");
        assert_eq!(
            col("event_extra_fields"),
            r#"{"authenticationMetadata":{"impersonationConstraint":"impersonate:user-info"}}"#
        );
    }
}
