//! A real `auditlake serve` process with real TLS (a private CA, server
//! and client certificates, a bearer token) for the webhook tests.

use super::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const TOKEN: &str = "s3cret-token-for-cluster-b-0123456789";
pub const TOKEN_A: &str = "s3cret-token-for-cluster-a-9876543210";

pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// (cert, key) signed by the CA, CN apiserver-a (allow-listed).
    pub client: (PathBuf, PathBuf),
    /// Signed by the CA but not allow-listed.
    pub intruder: (PathBuf, PathBuf),
    /// Signed by another CA.
    pub stranger: (PathBuf, PathBuf),
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write pem");
    p
}

pub fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.pem(), Issuer::new(params, key))
}

pub fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    issuer: &Issuer<'static, KeyPair>,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.signed_by(&key, issuer).expect("sign");
    (
        write(dir, &format!("{name}.crt"), &cert.pem()),
        write(dir, &format!("{name}.key"), &key.serialize_pem()),
    )
}

pub fn pki(dir: &Path) -> Pki {
    let (ca_pem, issuer) = ca("auditlake-test-ca");
    let (other_pem, other) = ca("some-other-ca");
    let _ = other_pem;
    let (server_cert, server_key) = leaf(dir, "server", &["localhost", "127.0.0.1"], &issuer);
    Pki {
        ca: write(dir, "ca.crt", &ca_pem),
        server_cert,
        server_key,
        client: leaf(dir, "apiserver-a", &[], &issuer),
        intruder: leaf(dir, "intruder", &[], &issuer),
        stranger: leaf(dir, "stranger", &[], &other),
    }
}

pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(lake: &Path, pki: &Pki, extra: &[&str]) -> Server {
        let mut args: Vec<String> = vec![
            "--tls-cert".into(),
            pki.server_cert.display().to_string(),
            "--tls-key".into(),
            pki.server_key.display().to_string(),
            "--client-ca".into(),
            pki.ca.display().to_string(),
            "--mtls-allow".into(),
            "apiserver-a=cluster-a".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Server::spawn(lake, &args)
    }

    /// Plain HTTP on loopback with bearer tokens only: [`TOKEN`] for
    /// cluster-b and [`TOKEN_A`] for cluster-a. For tests that write raw
    /// HTTP (slow bodies).
    pub fn start_plain(lake: &Path, extra: &[&str]) -> Server {
        let mut args: Vec<String> = vec!["--insecure-http".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Server::spawn(lake, &args)
    }

    fn spawn(lake: &Path, extra: &[String]) -> Server {
        let dir = lake.parent().expect("parent");
        let tokens = write(
            dir,
            "tokens",
            &format!("# token cluster\n{TOKEN} cluster-b\n{TOKEN_A} cluster-a\n"),
        );
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--lake".into(),
            lake.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--token-file".into(),
            tokens.display().to_string(),
        ];
        if !extra.iter().any(|a| a == "--flush-seconds") {
            args.extend(["--flush-seconds".to_string(), "0.2".to_string()]);
        }
        args.extend(extra.iter().cloned());
        let mut child = Command::new(bin())
            .args(&args)
            .env("AUDITLAKE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read listening line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .replace("127.0.0.1", "localhost");
        Server { child, url }
    }

    pub fn sigterm(mut self) {
        signal(&self.child, "-TERM");
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "serve exited with {status} after SIGTERM");
    }

    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    // A failed assertion must not leave a server behind (it would hold the
    // test runner's output pipe open).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client(pki: &Pki, identity: Option<&(PathBuf, PathBuf)>) -> reqwest::Client {
    auditlake::tools::loadgen::https_client(
        &pki.ca,
        identity.map(|(c, k)| (c.as_path(), k.as_path())),
    )
    .expect("client")
}

pub fn event(id: &str) -> serde_json::Value {
    serde_json::json!({
        "level": "Metadata", "auditID": id, "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/prod/pods", "verb": "list",
        "user": {"username": "system:serviceaccount:pinniped-concierge:pinniped-concierge-impersonation-proxy"},
        "impersonatedUser": {"username": "alice@example.com", "groups": ["devs"]},
        "sourceIPs": ["203.0.113.7"], "objectRef": {"resource": "pods", "namespace": "prod", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-11-20T08:00:00.000000Z", "stageTimestamp": "2026-11-20T08:00:00.001000Z"
    })
}

pub fn event_list(ids: &[String]) -> String {
    serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
                       "items": ids.iter().map(|i| event(i)).collect::<Vec<_>>()})
    .to_string()
}

pub async fn post(
    c: &reqwest::Client,
    url: &str,
    body: String,
) -> reqwest::Result<reqwest::Response> {
    c.post(format!("{url}/audit"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
}

/// The server's `/metrics` text.
pub async fn metrics_text(c: &reqwest::Client, url: &str) -> String {
    c.get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// Files left in the write-ahead log's directory of spilled bodies (`serve`'s default log).
pub fn spilled_left(lake: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(lake.join("_wal").join("large"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

pub fn stored_ids(lake: &Path) -> Vec<String> {
    sql(lake, "SELECT audit_id FROM audit")[1..]
        .iter()
        .map(|r| r[0].clone())
        .collect()
}

/// Make every commit into `lake` fail: a file stands where the partition
/// directory of the test events (2026-11-20) must go. Remove the returned
/// path to heal it.
pub fn block_partition(lake: &Path) -> PathBuf {
    std::fs::create_dir_all(lake).expect("lake");
    let blocker = lake.join("dt=2026-11-20");
    std::fs::write(&blocker, "in the way").expect("blocker");
    blocker
}
