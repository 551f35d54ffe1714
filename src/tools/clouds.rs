//! Managed-cluster envelopes around generated events (`gen --format eks|aks|gke`), so users
//! can try each way in without a cloud account and tests can compare an envelope's rows with
//! the plain events'.
//!
//! The shapes are the documented ones (`docs/sources.md`): a CloudWatch Logs subscription
//! `DATA_MESSAGE`, an Azure Event Hub `{"records":[…]}` message, and a Cloud Audit Logs
//! `LogEntry`. The GKE form is lossy by nature (no groups, extras, level or stages), as GKE's
//! own is: only the last stage of each request becomes an entry.

use serde_json::{json, Map, Value};

/// The cluster each envelope names.
pub const EKS_CLUSTER: &str = "demo-eks";
pub const AKS_CLUSTER: &str = "demo-aks";
pub const GKE_CLUSTER: &str = "demo-gke";

/// One CloudWatch Logs subscription payload holding `events` (as decoded from
/// its base64 gzip).
pub fn eks(events: &[Value], first_id: u64) -> Value {
    let log_events: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let ms = e
                .get("stageTimestamp")
                .and_then(Value::as_str)
                .and_then(crate::decode::parse_timestamp_us)
                .map_or(0, |us| us / 1000);
            json!({
                "id": format!("{:056}", first_id + i as u64),
                "timestamp": ms,
                "message": e.to_string(),
            })
        })
        .collect();
    json!({
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": format!("/aws/eks/{EKS_CLUSTER}/cluster"),
        "logStream": "kube-apiserver-audit-71976ca11bea5d3083393f7d32dab75b",
        "subscriptionFilters": ["auditlake"],
        "logEvents": log_events,
    })
}

/// One Event Hub message of AKS diagnostic records holding `events`.
pub fn aks(events: &[Value]) -> Value {
    let records: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "time": e.get("stageTimestamp").cloned().unwrap_or(Value::Null),
                "resourceId": format!("/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/DEMO/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/{}", AKS_CLUSTER.to_ascii_uppercase()),
                "category": "kube-audit",
                "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
                "properties": {
                    "log": e.to_string(),
                    "stream": "stdout",
                    "pod": "kube-apiserver-7d9f8c6b5-x2x9q",
                },
            })
        })
        .collect();
    json!({ "records": records })
}

/// The `google.rpc.Code` GKE writes for an HTTP status (inverse of
/// `decode::envelope::http_status_of_rpc_code` where that is one-to-one).
fn rpc_code(http: i64) -> i64 {
    match http {
        200..=299 => 0,
        400 | 422 => 3,
        401 => 16,
        403 => 7,
        404 => 5,
        409 => 6,
        429 => 8,
        499 => 1,
        501 => 12,
        503 => 14,
        504 => 4,
        _ => 13,
    }
}

/// The API group as GKE's method names write it: `core` for the core group,
/// a `*.k8s.io` group reversed without the suffix (`authorization.rbac`).
fn method_group(group: &str) -> String {
    match group {
        "" => "core".into(),
        g => match g.strip_suffix(".k8s.io") {
            Some(rest) => rest.rsplit('.').collect::<Vec<_>>().join("."),
            None => g.into(),
        },
    }
}

/// A Cloud Audit Logs entry for `event`, or `None` for a stage GKE does not
/// log (only each request's last one is).
pub fn gke(event: &Value, seq: u64) -> Option<Value> {
    let get = |k: &str| event.get(k).and_then(Value::as_str);
    if !matches!(get("stage"), Some("ResponseComplete" | "Panic")) {
        return None;
    }
    let verb = get("verb").unwrap_or("get");
    let obj = event.get("objectRef");
    let field = |k: &str| obj.and_then(|o| o.get(k)).and_then(Value::as_str);
    let (method, resource_name) = match field("resource") {
        Some(resource) => {
            let group = field("apiGroup").unwrap_or("");
            let version = field("apiVersion").unwrap_or("v1");
            let mut method = format!("io.k8s.{}.{version}.{resource}", method_group(group));
            let mut name = format!(
                "{}/{version}",
                if group.is_empty() { "core" } else { group }
            );
            if let Some(ns) = field("namespace") {
                name.push_str(&format!("/namespaces/{ns}"));
            }
            name.push_str(&format!("/{resource}"));
            if let Some(n) = field("name") {
                name.push_str(&format!("/{n}"));
            }
            if let Some(sub) = field("subresource") {
                method.push_str(&format!(".{sub}"));
                name.push_str(&format!("/{sub}"));
            }
            (format!("{method}.{verb}"), name)
        }
        None => (
            format!("io.k8s.{verb}"),
            get("requestURI")
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string(),
        ),
    };
    let code = event
        .pointer("/responseStatus/code")
        .and_then(Value::as_i64)
        .unwrap_or(200);
    let mut status = Map::new();
    if rpc_code(code) != 0 {
        status.insert("code".into(), json!(rpc_code(code)));
        if let Some(m) = event.pointer("/responseStatus/message") {
            status.insert("message".into(), m.clone());
        }
    }
    let mut auth = Map::new();
    if let Some(u) = event.pointer("/user/username") {
        auth.insert("principalEmail".into(), u.clone());
    }
    if let Some(u) = event.pointer("/impersonatedUser/username") {
        auth.insert("authoritySelector".into(), u.clone());
    }
    let mut payload = json!({
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": auth,
        "authorizationInfo": [{
            "granted": event.pointer("/annotations/authorization.k8s.io~1decision").and_then(Value::as_str) != Some("forbid"),
            "permission": format!("{}.{verb}", method.rsplit_once('.').map_or("io.k8s", |m| m.0)),
            "resource": resource_name,
        }],
        "methodName": method,
        "requestMetadata": {
            "callerIp": event.pointer("/sourceIPs/0").cloned().unwrap_or(Value::Null),
            "callerSuppliedUserAgent": event.get("userAgent").cloned().unwrap_or(Value::Null),
        },
        "resourceName": resource_name,
        "serviceName": "k8s.io",
        "status": status,
    });
    for (from, to) in [("requestObject", "request"), ("responseObject", "response")] {
        if let (Some(v), Some(p)) = (event.get(from), payload.as_object_mut()) {
            p.insert(to.into(), v.clone());
        }
    }
    let writes = !matches!(verb, "get" | "list" | "watch");
    Some(json!({
        "insertId": format!("{:x}", 0x1f00_0000_u64 + seq),
        "labels": event.get("annotations").cloned().unwrap_or_else(|| json!({})),
        "logName": format!("projects/demo-project/logs/cloudaudit.googleapis.com%2F{}", if writes { "activity" } else { "data_access" }),
        "operation": {"first": true, "id": event.get("auditID").cloned().unwrap_or(Value::Null), "last": true, "producer": "k8s.io"},
        "protoPayload": payload,
        "receiveTimestamp": event.get("stageTimestamp").cloned().unwrap_or(Value::Null),
        "resource": {"labels": {"cluster_name": GKE_CLUSTER, "location": "us-central1", "project_id": "demo-project"}, "type": "k8s_cluster"},
        "severity": if code >= 400 { "WARNING" } else { "NOTICE" },
        "timestamp": event.get("requestReceivedTimestamp").cloned().unwrap_or(Value::Null),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_groups() {
        for (group, want) in [
            ("", "core"),
            ("apps", "apps"),
            ("rbac.authorization.k8s.io", "authorization.rbac"),
            ("certificates.k8s.io", "certificates"),
            ("cert-manager.io", "cert-manager.io"),
        ] {
            assert_eq!(method_group(group), want, "{group}");
        }
    }

    #[test]
    fn only_last_stages_become_entries() {
        let e = |stage: &str| json!({"stage": stage, "verb": "get", "auditID": "a"});
        assert!(gke(&e("RequestReceived"), 0).is_none());
        assert!(gke(&e("ResponseStarted"), 0).is_none());
        assert!(gke(&e("ResponseComplete"), 0).is_some());
    }
}
