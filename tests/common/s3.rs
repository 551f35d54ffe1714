//! A real S3-compatible server per test: SeaweedFS (tests/s3.sh says why not s3proxy) on
//! loopback. A test reaches the bucket through the S3 API as well, to change, delete or add an
//! object as someone with write access to the bucket could.

use std::path::{Path, PathBuf};

use std::process::{Command, Output};

pub struct S3 {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3.sh")
}

/// A port P with P..P+3 and their gRPC ports (+10000) free on loopback.
fn free_ports() -> u16 {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        std::process::id() as u64
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
    );
    for _ in 0..200 {
        let p = 20_000 + (rng.next_u32() % 30_000) as u16;
        let free = (0..4).all(|i| {
            std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", p + i + 10_000)).is_ok()
        });
        if free {
            return p;
        }
    }
    panic!("no free ports for SeaweedFS");
}

impl S3 {
    pub fn start() -> S3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_ports();
        let out = Command::new("bash")
            .arg(script())
            .args([
                "start",
                &dir.path().display().to_string(),
                &port.to_string(),
            ])
            .output()
            .expect("run tests/s3.sh");
        assert!(
            out.status.success(),
            "s3proxy did not start: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        S3 { dir, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Make bucket `name` and return `s3://name`.
    pub fn bucket(&self, name: &str) -> String {
        let out = Command::new("bash")
            .arg(script())
            .args(["bucket", &self.dir.path().display().to_string(), name])
            .output()
            .expect("run tests/s3.sh");
        assert!(
            out.status.success(),
            "bucket {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("s3://{name}")
    }

    /// A client of `bucket`, for a test to reach behind auditlake.
    pub fn store(&self, bucket: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
        std::sync::Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_access_key_id("auditlake")
                .with_secret_access_key("auditlake-secret")
                .build()
                .expect("store"),
        )
    }

    /// The keys of `bucket` under `prefix`, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let store = self.store(bucket);
        let prefix = object_store::path::Path::from(prefix);
        let mut keys: Vec<String> = block(async move {
            store
                .list(Some(&prefix))
                .map_ok(|m| m.location.to_string())
                .try_collect::<Vec<_>>()
                .await
        })
        .expect("list");
        keys.sort();
        keys
    }

    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        use object_store::ObjectStoreExt;
        let (store, key) = (self.store(bucket), object_store::path::Path::from(key));
        block(async move { store.get(&key).await?.bytes().await })
            .expect("get")
            .to_vec()
    }

    pub fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        use object_store::ObjectStoreExt;
        let (store, key) = (self.store(bucket), object_store::path::Path::from(key));
        block(async move { store.put(&key, bytes.into()).await }).expect("put");
    }

    pub fn delete(&self, bucket: &str, key: &str) {
        use object_store::ObjectStoreExt;
        let (store, key) = (self.store(bucket), object_store::path::Path::from(key));
        block(async move { store.delete(&key).await }).expect("delete");
    }

    /// The variables that point auditlake (and object_store) at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "AUDITLAKE_LAKE_OPTIONS".into(),
                format!(
                    "endpoint={},allow_http=true,region=us-east-1",
                    self.endpoint()
                ),
            ),
            ("AWS_ACCESS_KEY_ID".into(), "auditlake".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "auditlake-secret".into()),
        ]
    }

    /// `auditlake ARGS` against this server, with its own lake cache `cache` (one per
    /// simulated machine).
    pub fn command(&self, cache: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(super::bin());
        c.args(args)
            .env_remove("AUDITLAKE_LAKE")
            .env("AUDITLAKE_LAKE_CACHE", cache);
        for (k, v) in self.env() {
            c.env(k, v);
        }
        c
    }

    /// Run `auditlake ARGS`; panic with its output if it fails.
    pub fn run(&self, cache: &Path, args: &[&str]) -> Output {
        let out = self.command(cache, args).output().expect("spawn auditlake");
        assert!(
            out.status.success(),
            "auditlake {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The one value of a one-row, one-column query.
    pub fn scalar(&self, cache: &Path, lake: &str, q: &str) -> String {
        let out = self.run(cache, &["query", "--lake", lake, "--format", "csv", q]);
        let rows = super::parse_csv(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(rows.len(), 2, "{q}: expected one row, got {rows:?}");
        rows[1][0].clone()
    }
}

/// Run `f` on a runtime of its own (the tests are plain threads).
fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", &self.dir.path().display().to_string()])
            .status();
    }
}
