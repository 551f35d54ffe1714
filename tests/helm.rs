//! The Helm chart (`charts/auditlake`), rendered by a real `helm` and checked by a strict
//! decoder of the real Kubernetes, cert-manager and Prometheus-operator Go types
//! (`tests/k8s-validate`): `helm lint` passes for every example values file, each rendering
//! decodes without an unknown field and passes the cross-object rules, every container runs a
//! real auditlake command with real flags, and combinations that would lose or split data, or
//! values of a wrong name or type, are refused with a message that names them.
//! `tests/helm.sh fetch` builds both tools once (tests/run.sh calls it).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::run;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// (helm, k8s-validate), built once per machine.
fn tools() -> &'static (PathBuf, PathBuf) {
    static TOOLS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let out = Command::new("bash")
            .arg(root().join("tests/helm.sh"))
            .arg("fetch")
            .stderr(Stdio::inherit())
            .output()
            .expect("bash tests/helm.sh fetch");
        assert!(out.status.success(), "tests/helm.sh fetch failed");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines().map(PathBuf::from);
        (lines.next().unwrap(), lines.next().unwrap())
    })
}

fn chart() -> String {
    root().join("charts/auditlake").display().to_string()
}

fn values(name: &str) -> String {
    root()
        .join("tests/fixtures/helm")
        .join(name)
        .display()
        .to_string()
}

/// `helm ARGS…`: (success, stdout, stderr).
fn helm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(&tools().0)
        .args(args)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("auditlake-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("auditlake-helm-config"),
        )
        .output()
        .expect("helm");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Manifests through k8s-validate: Ok(one summary per object) or Err(its message).
fn validate(manifests: &str) -> Result<Vec<Value>, String> {
    let mut child = Command::new(&tools().1)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("k8s-validate");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(manifests.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect())
}

/// Lint and render with these values files; the validated objects.
fn render(files: &[&str]) -> (String, Vec<Value>) {
    let mut args = vec!["lint", "--strict"];
    let paths: Vec<String> = files.iter().map(|f| values(f)).collect();
    for p in &paths {
        args.extend(["-f", p]);
    }
    let c = chart();
    args.push(&c);
    let (ok, out, err) = helm(&args);
    assert!(ok, "helm lint {files:?}:\n{out}\n{err}");
    args[0] = "template";
    args[1] = "audit";
    args.extend(["--namespace", "auditlake"]);
    let (ok, text, err) = helm(&args);
    assert!(ok, "helm template {files:?}: {err}");
    let objects = validate(&text).unwrap_or_else(|e| panic!("{files:?}: {e}"));
    (text, objects)
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["name"].as_str().unwrap()
            )
        })
        .collect();
    k.sort();
    k
}

fn containers(objects: &[Value]) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for o in objects {
        for c in o["containers"].as_array().into_iter().flatten() {
            let args = c["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
            out.push((
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["name"].as_str().unwrap()
                ),
                args,
            ));
        }
    }
    out
}

/// Every container's first arg is an auditlake command and each `--flag` one of its flags
/// (the global --lake-option/--lake-cache included); a bare arg must be a positional one.
fn assert_real_flags(objects: &[Value]) {
    let mut checked = 0;
    for (who, args) in containers(objects) {
        let help = String::from_utf8_lossy(&run(&[&args[0], "--help"]).stdout).into_owned();
        assert!(
            help.contains("Usage:"),
            "{who}: `auditlake {}` is not a command",
            args[0]
        );
        for arg in &args[1..] {
            if !arg.starts_with("--") {
                assert!(
                    help.contains(" <FILE>") || help.contains(" <LAKE>"),
                    "{who}: `{arg}`, but `auditlake {}` takes no positional argument",
                    args[0]
                );
                continue;
            }
            let flag = arg.split('=').next().unwrap();
            assert!(
                help.contains(&format!("{flag} "))
                    || help.contains(&format!("{flag}\n"))
                    || help.contains(&format!("{flag}=")),
                "{who}: `auditlake {} {flag}` is not a flag",
                args[0]
            );
            checked += 1;
        }
    }
    assert!(checked > 5, "only {checked} flags checked");
}

fn args_of(objects: &[Value], kind_name: &str) -> Vec<String> {
    containers(objects)
        .into_iter()
        .find(|(w, _)| w == kind_name)
        .unwrap_or_else(|| panic!("no {kind_name} in {:?}", kinds(objects)))
        .1
}

#[test]
fn default_values_render_two_receivers_on_a_bucket_with_maintenance_jobs() {
    let (text, objects) = render(&[]);
    assert_eq!(
        kinds(&objects),
        [
            "CronJob/audit-auditlake-compact",
            "CronJob/audit-auditlake-retention",
            "PodDisruptionBudget/audit-auditlake-receiver",
            "Service/audit-auditlake",
            "Service/audit-auditlake-receiver",
            "ServiceAccount/audit-auditlake",
            "StatefulSet/audit-auditlake-receiver",
        ]
    );
    assert_real_flags(&objects);
    let serve = args_of(&objects, "StatefulSet/audit-auditlake-receiver");
    for want in [
        "serve",
        "--lake=s3://REPLACE-BUCKET/audit",
        "--lake-cache=/var/lib/auditlake/cache",
        "--wal=/var/lib/auditlake/wal",
        "--client-ca=/etc/auditlake/client-ca/ca.crt",
    ] {
        assert!(
            serve.contains(&want.to_string()),
            "serve lacks {want}: {serve:?}"
        );
    }
    // Two receivers on one bucket: the compaction is the CronJob's, not each receiver's.
    assert!(
        !serve.iter().any(|a| a.starts_with("--compact-every")),
        "{serve:?}"
    );
    assert_eq!(
        args_of(&objects, "CronJob/audit-auditlake-retention")[..3],
        ["retention", "s3://REPLACE-BUCKET/audit", "--keep=90d"]
    );
    assert!(text.contains("replicas: 2") && text.contains("volumeClaimTemplates:"));
    assert!(text.contains("concurrencyPolicy: Forbid"));
}

#[test]
fn host_port_receivers_with_cert_manager_follow_monitoring_and_policy() {
    let (text, objects) = render(&["ha-hostport.yaml"]);
    let k = kinds(&objects);
    for want in [
        "Certificate/audit-auditlake",
        "ConfigMap/audit-auditlake-profiles",
        "DaemonSet/audit-auditlake-follow",
        "DaemonSet/audit-auditlake-receiver",
        "NetworkPolicy/audit-auditlake-receiver",
        "PodDisruptionBudget/audit-auditlake-receiver",
        "ServiceMonitor/audit-auditlake",
    ] {
        assert!(k.contains(&want.to_string()), "no {want} in {k:?}");
    }
    assert!(!k.iter().any(|k| k.starts_with("StatefulSet/")), "{k:?}");
    assert_real_flags(&objects);
    let serve = args_of(&objects, "DaemonSet/audit-auditlake-receiver");
    for want in [
        "--mtls-allow=kube-apiserver=prod-eu-1",
        "--token-file=/etc/auditlake/tokens/tokens",
        "--profiles=/etc/auditlake/profiles/proxies.toml",
        "--lake-option=region=eu-west-1",
    ] {
        assert!(
            serve.contains(&want.to_string()),
            "serve lacks {want}: {serve:?}"
        );
    }
    assert!(text.contains("hostPort: 8443"));
    // The apiserver posts to 127.0.0.1 on its node: the certificate must name it.
    assert!(text.contains("- 127.0.0.1"), "certificate lacks 127.0.0.1");
    let follow = args_of(&objects, "DaemonSet/audit-auditlake-follow");
    assert_eq!(follow[..2], ["ingest", "--follow"]);
    assert_eq!(
        follow.last().unwrap(),
        "/var/log/kubernetes/audit/audit.log"
    );
    assert!(
        text.contains("path: /var/log/kubernetes/audit\n"),
        "the log's directory is not mounted"
    );
    // The profiles the chart mounts are a file auditlake accepts.
    let profiles = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap()["data"]
        ["proxies.toml"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxies.toml");
    std::fs::write(&file, profiles).unwrap();
    let out = run(&["profiles", "check", "--profiles", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "profiles check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pinniped"));
}

#[test]
fn kafka_relay_with_a_consumer_group() {
    let (text, objects) = render(&["kafka-relay.yaml"]);
    assert_real_flags(&objects);
    let serve = args_of(&objects, "StatefulSet/audit-auditlake-receiver");
    assert!(serve.contains(&"--kafka-brokers=kafka-0.kafka:9092,kafka-1.kafka:9092".to_string()));
    assert!(
        !serve.iter().any(|a| a.starts_with("--lake")),
        "a relay writes no lake: {serve:?}"
    );
    let consume = args_of(&objects, "Deployment/audit-auditlake-consumer");
    for want in [
        "consume",
        "--lake=gs://audit-bucket/lake",
        "--group=auditlake",
        "--kafka-option=security.protocol=ssl",
    ] {
        assert!(
            consume.contains(&want.to_string()),
            "consume lacks {want}: {consume:?}"
        );
    }
    assert!(text.contains("clusterIP: 10.96.0.50") && text.contains("replicas: 3"));
    let k = kinds(&objects);
    assert!(k.contains(&"CronJob/audit-auditlake-compact".to_string()));
    assert!(
        !k.contains(&"CronJob/audit-auditlake-retention".to_string()),
        "retain is empty: {k:?}"
    );
}

#[test]
fn one_receiver_with_a_local_lake_maintains_it_itself() {
    let (_, objects) = render(&["single-local.yaml"]);
    assert_real_flags(&objects);
    let k = kinds(&objects);
    assert!(
        !k.iter()
            .any(|k| k.starts_with("CronJob/") || k.starts_with("PodDisruptionBudget/")),
        "{k:?}"
    );
    let serve = args_of(&objects, "StatefulSet/audit-auditlake-receiver");
    for want in [
        "--lake=/var/lib/auditlake/lake",
        "--compact-every=1h",
        "--retain=90d",
        "--token-file=/etc/auditlake/tokens/tokens",
    ] {
        assert!(
            serve.contains(&want.to_string()),
            "serve lacks {want}: {serve:?}"
        );
    }
    assert!(
        !serve
            .iter()
            .any(|a| a.starts_with("--client-ca") || a.starts_with("--lake-cache")),
        "{serve:?}"
    );
}

#[test]
fn values_that_would_lose_data_or_are_misspelt_are_refused() {
    let c = chart();
    for (set, expect) in [
        // Two receivers cannot share a lake on a local volume.
        (
            "lake.url=/data/lake",
            "can share a lake only on an object store",
        ),
        (
            "receiver.mode=hostPort,lake.url=/data/lake",
            "can share a lake only on an object store",
        ),
        (
            "auth.mtls.enabled=false",
            "would accept audit events from anyone",
        ),
        ("consumer.enabled=true", "needs consumer.brokers"),
        (
            "tls.certManager.enabled=true",
            "needs tls.certManager.issuerRef.name",
        ),
        // The schema: an unknown key, a wrong type, a value out of its set.
        ("receiver.replica=3", "replica"),
        ("receiver.replicas=two", "replicas"),
        ("receiver.mode=nodePort", "mode"),
        ("maintenance.retain=ninety", "retain"),
    ] {
        let (ok, _, err) = helm(&["template", "audit", &c, "--set", set]);
        assert!(!ok, "--set {set} was accepted");
        assert!(
            err.contains(expect),
            "--set {set}: the error does not say `{expect}`:\n{err}"
        );
    }
}

#[test]
fn the_validator_refuses_what_the_apiserver_would() {
    let (text, _) = render(&[]);
    for (from, to, expect) in [
        (
            "readOnlyRootFilesystem",
            "readOnlyRootFileSystem",
            "unknown field",
        ),
        (
            "podManagementPolicy: Parallel",
            "podManagementPolicy: [Parallel]",
            "podManagementPolicy",
        ),
        ("kind: StatefulSet", "kind: StatefullSet", "StatefullSet"),
        (
            "mountPath: /etc/auditlake/tls",
            "mountPath: /etc/auditlake/tls}\n            - {name: nope, mountPath: /x",
            "volumeMounts[nope]",
        ),
        (
            "targetPort: https",
            "targetPort: http",
            "targetPort \"http\"",
        ),
    ] {
        assert!(text.contains(from), "the rendering has no `{from}`");
        let broken = text.replacen(from, to, 1);
        let err = validate(&broken).expect_err(&format!("`{to}` was accepted"));
        assert!(err.contains(expect), "`{to}`: `{expect}` not in {err}");
    }
}

#[test]
fn plain_manifests_decode_strictly_too() {
    for name in ["auditlake.yaml", "follow-daemonset.yaml"] {
        let text = std::fs::read_to_string(root().join("docker/k8s").join(name)).unwrap();
        let objects = validate(&text).unwrap_or_else(|e| panic!("docker/k8s/{name}: {e}"));
        assert!(!objects.is_empty());
    }
}
