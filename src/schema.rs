//! The record schema: the one place where the lake's Arrow schema is built.
//!
//! Column names are a public contract (queries, dashboards and other engines
//! depend on them). The same definition is committed as
//! `schemas/audit_record.schema.json`; a test fails when the two drift, so a
//! change here is always a deliberate, reviewed change of that file too.

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde_json::json;
use std::sync::{Arc, OnceLock};

/// Bumped whenever a column is added, removed or changes type. Written into
/// every Parquet file's key-value metadata.
///
/// - 1: the first lake layout.
/// - 2: `impersonation_constraint`, the `iam_*` columns and the `envelope*`
///   columns, added at the end (files of version 1 read them as NULL).
pub const SCHEMA_VERSION: &str = "2";

/// Hive partition columns: derived from the directory names, not stored in
/// the files (`dt=YYYY-MM-DD/hour=HH`, from `request_received_at` in UTC).
pub const PARTITION_COLUMNS: [&str; 2] = ["dt", "hour"];

/// Columns describing who acted; `requests` takes these from the stage that
/// carried impersonation (the `RequestReceived` stage never does).
pub const IDENTITY_COLUMNS: &[&str] = &[
    "authn_username",
    "authn_uid",
    "authn_groups",
    "authn_extra",
    "impersonated_username",
    "impersonated_uid",
    "impersonated_groups",
    "impersonated_extra",
    "original_username",
    "original_uid",
    "original_groups",
    "original_extra",
    "original_claim_raw",
    "actor_username",
    "actor_uid",
    "actor_groups",
    "actor_kind",
    "actor_sa_namespace",
    "actor_sa_name",
    "acted_as_username",
    "acted_as_groups",
    "proxy_profile",
    "proxy_username",
    "resolution",
    "claim_status",
    "credential_id",
    "authn_credential_id",
    "pod_name",
    "pod_uid",
    "node_name",
    "node_uid",
    "impersonation_constraint",
    "iam_arn",
    "iam_canonical_arn",
    "iam_session_name",
    "iam_access_key_id",
    "iam_principal_id",
];

enum Ty {
    Str,
    StrList,
    Ts,
    I32,
    StrMap,
    ExtraMap,
}

/// (name, type, nullable, description) of every stored column, in file order.
const COLUMNS: &[(&str, Ty, bool, &str)] = &[
    ("cluster", Ty::Str, false, "Cluster the event came from (--cluster, or the webhook client's mapping)."),
    ("audit_id", Ty::Str, true, "auditID; shared by all stages of one request and client-settable, so not unique on its own."),
    ("stage", Ty::Str, true, "RequestReceived, ResponseStarted, ResponseComplete or Panic."),
    ("level", Ty::Str, true, "Audit level the policy chose: Metadata, Request or RequestResponse."),
    ("verb", Ty::Str, true, "Kubernetes verb (get, list, create, ...) or lower-cased HTTP method for non-resource requests."),
    ("request_uri", Ty::Str, true, "Path and query as sent by the client."),
    ("user_agent", Ty::Str, true, "Client user agent (client-controlled)."),
    ("source_ips", Ty::StrList, true, "sourceIPs; all but the last entry can be set by the client."),
    ("request_received_at", Ty::Ts, true, "requestReceivedTimestamp (UTC, microseconds)."),
    ("stage_at", Ty::Ts, true, "stageTimestamp (UTC, microseconds)."),
    ("resource", Ty::Str, true, "objectRef.resource."),
    ("subresource", Ty::Str, true, "objectRef.subresource (exec, attach, portforward, token, ...)."),
    ("namespace", Ty::Str, true, "objectRef.namespace."),
    ("name", Ty::Str, true, "objectRef.name."),
    ("api_group", Ty::Str, true, "objectRef.apiGroup (empty for the core group)."),
    ("api_version", Ty::Str, true, "objectRef.apiVersion."),
    ("object_uid", Ty::Str, true, "objectRef.uid."),
    ("response_code", Ty::I32, true, "responseStatus.code (HTTP status)."),
    ("response_status", Ty::Str, true, "responseStatus.status (Success / Failure)."),
    ("response_reason", Ty::Str, true, "responseStatus.reason (Forbidden, NotFound, ...)."),
    ("response_message", Ty::Str, true, "responseStatus.message."),
    ("decision", Ty::Str, true, "Annotation authorization.k8s.io/decision: allow or forbid."),
    ("decision_reason", Ty::Str, true, "Annotation authorization.k8s.io/reason (e.g. the RBAC binding that allowed it)."),
    ("annotations", Ty::StrMap, true, "All event annotations."),
    ("authn_username", Ty::Str, true, "user.username: the authenticated identity (behind a proxy, the proxy). Empty for failed authentication."),
    ("authn_uid", Ty::Str, true, "user.uid."),
    ("authn_groups", Ty::StrList, true, "user.groups."),
    ("authn_extra", Ty::ExtraMap, true, "user.extra."),
    ("impersonated_username", Ty::Str, true, "impersonatedUser.username: the identity the request ran as."),
    ("impersonated_uid", Ty::Str, true, "impersonatedUser.uid."),
    ("impersonated_groups", Ty::StrList, true, "impersonatedUser.groups."),
    ("impersonated_extra", Ty::ExtraMap, true, "impersonatedUser.extra (includes proxy claim keys, verbatim)."),
    ("original_username", Ty::Str, true, "Original caller from a trusted proxy claim (NULL unless claim_status = trusted)."),
    ("original_uid", Ty::Str, true, "uid of the original caller from a trusted claim."),
    ("original_groups", Ty::StrList, true, "groups of the original caller from a trusted claim."),
    ("original_extra", Ty::ExtraMap, true, "extra of the original caller from a trusted claim."),
    ("original_claim_raw", Ty::Str, true, "The claim text exactly as found (trusted, spoofed or malformed), for evidence."),
    ("actor_username", Ty::Str, true, "Resolved actor: who actually did this. NULL when a proxy's claim is unreadable."),
    ("actor_uid", Ty::Str, true, "Resolved actor's uid."),
    ("actor_groups", Ty::StrList, true, "Resolved actor's groups."),
    ("actor_kind", Ty::Str, true, "serviceaccount, node, anonymous, system or user (NULL when the actor is unknown or empty)."),
    ("actor_sa_namespace", Ty::Str, true, "Namespace when the actor is system:serviceaccount:NS:NAME."),
    ("actor_sa_name", Ty::Str, true, "Service-account name when the actor is a service account."),
    ("acted_as_username", Ty::Str, true, "The identity whose permissions were used (impersonatedUser, else user)."),
    ("acted_as_groups", Ty::StrList, true, "Groups of the acted-as identity."),
    ("proxy_profile", Ty::Str, true, "Name of the proxy profile that matched user (NULL when user is not a configured proxy)."),
    ("proxy_username", Ty::Str, true, "The proxy identity (user.username) when a profile matched."),
    ("resolution", Ty::Str, false, "direct, impersonation, proxy, proxy_nested or proxy_claim_malformed."),
    ("claim_status", Ty::Str, false, "none, trusted, spoofed (claim from a non-proxy: not believed) or malformed."),
    ("credential_id", Ty::Str, true, "The actor's authentication.kubernetes.io/credential-id (JTI=... or X509SHA256=...)."),
    ("authn_credential_id", Ty::Str, true, "credential-id of the authenticated user (user.extra)."),
    ("pod_name", Ty::Str, true, "authentication.kubernetes.io/pod-name of the actor's bound token."),
    ("pod_uid", Ty::Str, true, "authentication.kubernetes.io/pod-uid of the actor's bound token."),
    ("node_name", Ty::Str, true, "authentication.kubernetes.io/node-name of the actor's bound token."),
    ("node_uid", Ty::Str, true, "authentication.kubernetes.io/node-uid of the actor's bound token."),
    ("request_object", Ty::Str, true, "requestObject as raw JSON text (levels Request and RequestResponse)."),
    ("response_object", Ty::Str, true, "responseObject as raw JSON text (level RequestResponse)."),
    ("event_extra_fields", Ty::Str, true, "Top-level event members with no column of their own (authenticationMetadata, v1beta1 timestamp, future fields) as a JSON object."),
    ("source", Ty::Str, false, "Where the event was read: file:PATH:LINE, webhook:..., kafka:TOPIC/PARTITION@OFFSET."),
    ("ingested_at", Ty::Ts, false, "When auditlake stored the row (UTC)."),
    ("impersonation_constraint", Ty::Str, true, "authenticationMetadata.impersonationConstraint (Kubernetes 1.35+): the constrained impersonation mode that authorized impersonatedUser (impersonate:user-info, impersonate:serviceaccount, impersonate:associated-node, ...). NULL for legacy impersonation, which the apiserver may fall back to silently."),
    ("iam_arn", Ty::Str, true, "EKS: user.extra arn (aws-iam-authenticator): the IAM identity behind the authenticated Kubernetes user."),
    ("iam_canonical_arn", Ty::Str, true, "EKS: user.extra canonicalArn: the IAM role (session path removed) behind the authenticated user."),
    ("iam_session_name", Ty::Str, true, "EKS: user.extra sessionName: the role session (EKSGetTokenAuth when `aws eks get-token --role-arn` chose it, which hides the person)."),
    ("iam_access_key_id", Ty::Str, true, "EKS: user.extra accessKeyId: the AWS access key that signed the token."),
    ("iam_principal_id", Ty::Str, true, "EKS: user.extra principalId: the IAM principal id (role id and session)."),
    ("envelope", Ty::Str, true, "The managed-cluster envelope the event arrived in: eks (CloudWatch Logs), aks (Azure resource log) or gke (Cloud Audit Logs); NULL for the apiserver's own log and webhook formats."),
    ("envelope_log", Ty::Str, true, "EKS log group, AKS resourceId, or GKE logName of the envelope."),
    ("envelope_stream", Ty::Str, true, "EKS log stream (kube-apiserver-audit-...), AKS properties.pod (the apiserver instance), or GKE resource location."),
    ("envelope_id", Ty::Str, true, "EKS logEvents[].id or GKE insertId: the log pipeline's id of the entry."),
];

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Item field of every string list column.
pub fn list_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Utf8, true))
}

fn str_list() -> DataType {
    DataType::List(list_item())
}

/// Entries struct of the `annotations` map column.
pub fn str_map_entries() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
    ])
}

/// Entries struct of the `*_extra` map columns (`map[string][]string`).
pub fn extra_map_entries() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", str_list(), true),
    ])
}

fn data_type(t: &Ty) -> DataType {
    match t {
        Ty::Str => DataType::Utf8,
        Ty::StrList => str_list(),
        Ty::Ts => ts(),
        Ty::I32 => DataType::Int32,
        Ty::StrMap => DataType::Map(
            Arc::new(Field::new_struct("entries", str_map_entries(), false)),
            false,
        ),
        Ty::ExtraMap => DataType::Map(
            Arc::new(Field::new_struct("entries", extra_map_entries(), false)),
            false,
        ),
    }
}

/// The schema of the rows stored in each Parquet file (no partition columns).
pub fn record_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let fields: Vec<Field> = COLUMNS
                .iter()
                .map(|(name, ty, nullable, _)| Field::new(*name, data_type(ty), *nullable))
                .collect();
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// Index of a stored column, for builders that address columns by position.
pub fn column_index(name: &str) -> Option<usize> {
    COLUMNS.iter().position(|(n, ..)| *n == name)
}

/// Names of all stored columns, in order.
pub fn column_names() -> impl Iterator<Item = &'static str> {
    COLUMNS.iter().map(|(n, ..)| *n)
}

/// The schema document committed as `schemas/audit_record.schema.json`:
/// the Arrow schema (as arrow-rs serializes it) plus a description per
/// column and the partition columns.
pub fn schema_document() -> serde_json::Value {
    let schema = record_schema();
    let columns: Vec<serde_json::Value> = COLUMNS
        .iter()
        .zip(schema.fields().iter())
        .map(|((name, _, nullable, description), field)| {
            json!({
                "name": name,
                "type": field.data_type().to_string(),
                "nullable": nullable,
                "description": description,
            })
        })
        .chain(PARTITION_COLUMNS.iter().map(|p| {
            json!({
                "name": p,
                "type": "Utf8",
                "nullable": false,
                "partition": true,
                "description": if *p == "dt" {
                    "Partition: UTC date of request_received_at (YYYY-MM-DD)."
                } else {
                    "Partition: UTC hour of request_received_at (00-23)."
                },
            })
        }))
        .collect();
    json!({
        "name": "auditlake.audit_record",
        "schema_version": SCHEMA_VERSION,
        "partitioning": "hive: dt=YYYY-MM-DD/hour=HH",
        "columns": columns,
    })
}

/// The committed document, as text with a trailing newline.
pub fn schema_document_text() -> String {
    let mut s = serde_json::to_string_pretty(&schema_document()).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_columns_exist() {
        for c in IDENTITY_COLUMNS {
            assert!(column_index(c).is_some(), "{c} is not a column");
        }
    }

    #[test]
    fn committed_schema_matches_code() {
        let committed = include_str!("../schemas/audit_record.schema.json");
        assert_eq!(
            committed,
            schema_document_text(),
            "schemas/audit_record.schema.json drifted from src/schema.rs; \
             regenerate it with `cargo run -- schema > schemas/audit_record.schema.json` \
             after reviewing the change"
        );
    }
}
