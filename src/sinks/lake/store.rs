//! Where a lake lives: a local directory, or a prefix of an object store (`s3://bucket/prefix`,
//! `gs://…`, `az://…` / `abfss://…`), named wherever a command takes `--lake`.
//!
//! A lake on an object store is the same Delta table as a local one: the same data files under
//! the same keys, the same `_delta_log/`. What differs is what a writer and a reader keep on
//! the machine they run on, in the lake's *cache directory* (`--lake-cache`, default
//! `~/.cache/auditlake/lakes/<scheme>/<bucket>/<prefix>-<hash>`):
//! - `work/`: a writer's `_tmp/` (files being written), `_state/` (the segment being
//!   committed and the per-source locks). A segment's files are written and fsynced there, then
//!   uploaded to their final keys, then one conditional put of the next log entry commits them
//!   (the commit point, as on a local disk); an interrupted commit's uploads are deleted by the
//!   next writer of that source, and are invisible meanwhile (the log does not name them).
//! - `mirror/`: what a reader queries: a copy of the log and of the live files it names,
//!   refreshed before each query; a file is downloaded once, its SHA-256 checked against the
//!   one its commit recorded, and removed from the mirror when the table no longer names it.
//!
//! Invariants: no write to the store ever overwrites a key (data files have fresh names, log
//! entries are put-if-absent), so a store that honours `If-None-Match: *` is all concurrency
//! needs; nothing is read from the store that the log does not name; memory stays bounded
//! whatever the file size (uploads and downloads stream in [`PART`] pieces).

use super::{delta, LakeError};
use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use url::Url;

/// Bytes per upload part and per read of a download: large enough that a part's request
/// overhead is small against its transfer, small enough that two in flight bound memory.
pub const PART: usize = 8 << 20;

/// URL schemes that name an object store.
const SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "abfs", "abfss", "azure"];

#[derive(Debug, Default)]
struct Config {
    options: Vec<(String, String)>,
    cache: Option<PathBuf>,
}

static CONFIG: OnceLock<Config> = OnceLock::new();
static OPENED: OnceLock<Mutex<HashMap<String, Arc<Remote>>>> = OnceLock::new();

/// Set, once at start, the options every object store is built with (`--lake-option`) and
/// the cache directory (`--lake-cache`). Later calls are ignored.
pub fn configure(options: Vec<(String, String)>, cache: Option<PathBuf>) {
    let _ = CONFIG.set(Config { options, cache });
}

fn config() -> &'static Config {
    CONFIG.get_or_init(Config::default)
}

/// Whether `lake` names an object store rather than a directory.
pub fn is_remote(lake: &Path) -> bool {
    lake.to_str()
        .and_then(|s| s.split_once("://"))
        .is_some_and(|(scheme, _)| SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

/// A lake on an object store.
pub struct Remote {
    /// The table's URL, as the user gave it (without a trailing `/`).
    pub url: String,
    /// The store with `/` at the lake's prefix: keys are the log's relative paths.
    pub store: Arc<dyn ObjectStore>,
    root_store: Arc<dyn ObjectStore>,
    location: Url,
    cache: PathBuf,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

impl Remote {
    /// Where writers keep their temporaries and per-source state.
    pub fn work_dir(&self) -> PathBuf {
        self.cache.join("work")
    }

    /// The local copy readers query.
    pub fn mirror_dir(&self) -> PathBuf {
        self.cache.join("mirror")
    }

    /// The Delta log store over this lake (puts log entries with `If-None-Match: *`).
    pub fn log_store(&self) -> deltalake_core::logstore::LogStoreRef {
        deltalake_core::logstore::default_logstore(
            self.store.clone(),
            self.root_store.clone(),
            &self.location,
            &deltalake_core::logstore::StorageConfig::default(),
        )
    }

    fn err(&self, key: &str, e: impl std::fmt::Display) -> LakeError {
        LakeError::Store {
            url: format!("{}/{key}", self.url),
            problem: e.to_string(),
        }
    }

    /// Upload the finished local file `local` to `rel`, in parts past [`PART`] bytes.
    pub fn upload(&self, local: &Path, rel: &str) -> Result<(), LakeError> {
        let store = self.store.clone();
        let key = StorePath::from(rel);
        let local = local.to_path_buf();
        let len = std::fs::metadata(&local).map_err(super::io(&local))?.len() as usize;
        let path = local.clone();
        delta::block(async move {
            use tokio::io::AsyncReadExt;
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| e.to_string())?;
            if len <= PART {
                let mut buf = Vec::with_capacity(len);
                file.read_to_end(&mut buf)
                    .await
                    .map_err(|e| e.to_string())?;
                store
                    .put(&key, buf.into())
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
            let upload = store.put_multipart(&key).await.map_err(|e| e.to_string())?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut buf = vec![0u8; PART];
            loop {
                let n = file.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                // At most two parts in flight: memory is bounded by the part size.
                w.wait_for_capacity(2).await.map_err(|e| e.to_string())?;
                w.write(&buf[..n]);
            }
            w.finish().await.map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        })?
        .map_err(|e| self.err(rel, format!("upload of {}: {e}", local.display())))
    }

    /// Delete `rel`; a key that is already gone is not an error.
    pub fn delete(&self, rel: &str) -> Result<(), LakeError> {
        let store = self.store.clone();
        let key = StorePath::from(rel);
        match delta::block(async move { store.delete(&key).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Every key under `prefix` (relative to the lake), with its size.
    pub fn list(&self, prefix: Option<&str>) -> Result<Vec<(String, u64)>, LakeError> {
        Ok(self
            .list_meta(prefix)?
            .into_iter()
            .map(|(k, size, _)| (k, size))
            .collect())
    }

    /// Every key under `prefix`, with its size and when it was written.
    pub fn list_meta(
        &self,
        prefix: Option<&str>,
    ) -> Result<Vec<(String, u64, std::time::SystemTime)>, LakeError> {
        let store = self.store.clone();
        let name = prefix.unwrap_or("").to_string();
        let prefix = prefix.map(StorePath::from);
        delta::block(async move {
            let mut out = Vec::new();
            let mut stream = store.list(prefix.as_ref());
            while let Some(meta) = stream.next().await {
                let meta = meta?;
                out.push((
                    meta.location.to_string(),
                    meta.size,
                    std::time::SystemTime::from(meta.last_modified),
                ));
            }
            Ok::<_, object_store::Error>(out)
        })?
        .map_err(|e| self.err(&name, format!("listing: {e}")))
    }

    /// Whether `rel` exists.
    pub fn exists(&self, rel: &str) -> Result<bool, LakeError> {
        let store = self.store.clone();
        let key = StorePath::from(rel);
        match delta::block(async move { store.head(&key).await })? {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Stream `rel` into `dest` (through a temporary beside it), returning its size and
    /// SHA-256; `None` when the key does not exist.
    pub fn download(&self, rel: &str, dest: &Path) -> Result<Option<(u64, String)>, LakeError> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dest.with_extension(format!("part-{}-{n}", std::process::id()));
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(super::io(dir))?;
        }
        let got = self.stream(rel, Some(tmp.clone()))?;
        match got {
            Ok(Some(done)) => {
                std::fs::rename(&tmp, dest).map_err(super::io(dest))?;
                Ok(Some(done))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(self.err(rel, format!("download: {e}")))
            }
        }
    }

    /// Stream `rel` through SHA-256 without keeping it: its size and hash, `None` when the key
    /// does not exist (`lake verify` of a lake on a store).
    pub fn hash(&self, rel: &str) -> Result<Option<(u64, String)>, LakeError> {
        self.stream(rel, None)
            .and_then(|got| got.map_err(|e| self.err(rel, e)))
    }

    /// Stream `rel` through SHA-256, writing it to `into` when given: its size and hash,
    /// `None` when the key does not exist. The outer error is the runtime's, the inner one
    /// the transfer's.
    fn stream(
        &self,
        rel: &str,
        into: Option<PathBuf>,
    ) -> Result<Result<Option<(u64, String)>, String>, LakeError> {
        let store = self.store.clone();
        let key = StorePath::from(rel);
        delta::block(async move {
            use tokio::io::AsyncWriteExt;
            let got = match store.get(&key).await {
                Ok(g) => g,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
            let mut file = match &into {
                Some(p) => Some(
                    tokio::fs::File::create(p)
                        .await
                        .map_err(|e| e.to_string())?,
                ),
                None => None,
            };
            let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
            let mut size = 0u64;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| e.to_string())?;
                digest.update(&chunk);
                size += chunk.len() as u64;
                if let Some(f) = file.as_mut() {
                    f.write_all(&chunk).await.map_err(|e| e.to_string())?;
                }
            }
            if let Some(f) = file.as_mut() {
                f.flush().await.map_err(|e| e.to_string())?;
            }
            Ok(Some((size, delta::hex(digest.finish().as_ref()))))
        })
    }

    /// Copy the log to the mirror: entries are immutable, so only new ones are fetched; an
    /// entry the store no longer has (a reset lake) is dropped from the copy. Returns the
    /// mirror directory, which then opens as a local lake's log.
    pub fn sync_log(&self) -> Result<PathBuf, LakeError> {
        self.copy_log(false)
    }

    /// [`Remote::sync_log`], fetching every entry again (`lake verify` must read what the
    /// store holds now, not a copy made before someone rewrote an entry).
    pub fn sync_log_fresh(&self) -> Result<PathBuf, LakeError> {
        self.copy_log(true)
    }

    fn copy_log(&self, fresh: bool) -> Result<PathBuf, LakeError> {
        let mirror = self.mirror_dir();
        let local_log = mirror.join(delta::LOG_DIR);
        std::fs::create_dir_all(&local_log).map_err(super::io(&local_log))?;
        let remote: Vec<(String, u64)> = self.list(Some(delta::LOG_DIR))?;
        let mut names = HashSet::new();
        for (key, size) in &remote {
            let Some(name) = key.rsplit('/').next() else {
                continue;
            };
            names.insert(name.to_string());
            let dest = local_log.join(name);
            let kept = !fresh
                && std::fs::metadata(&dest).is_ok_and(|m| m.len() == *size)
                && name.ends_with(".json")
                && !name.starts_with('_');
            if !kept {
                self.download(key, &dest)?;
            }
        }
        for entry in std::fs::read_dir(&local_log)
            .map_err(super::io(&local_log))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !names.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(mirror)
    }

    /// Make the mirror hold the files live at `version` (the newest when `None`) that `keep`
    /// takes (by lake-relative path: a query's window leaves the other partitions on the
    /// store), each checked against the SHA-256 its commit recorded; with `None`, files the
    /// table no longer names are removed from the mirror. Call [`Remote::sync_log`] first.
    pub fn sync_files(
        &self,
        version: Option<u64>,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<SyncReport, LakeError> {
        let mirror = self.mirror_dir();
        let live = match version {
            None => match delta::Log::open(&mirror, false)? {
                Some(log) => log.live()?,
                None => Vec::new(),
            },
            Some(v) => delta::Log::live_at(&mirror, v)?,
        };
        let wanted: Vec<delta::LiveFile> = live.iter().filter(|f| keep(&f.rel)).cloned().collect();
        let mut report = self.fetch(&wanted)?;
        if version.is_none() {
            let wanted: HashSet<&str> = live.iter().map(|f| f.rel.as_str()).collect();
            for p in super::parquet_files(&mirror) {
                let keep =
                    super::rel_path(&mirror, &p).is_some_and(|r| wanted.contains(r.as_str()));
                if !keep {
                    let _ = std::fs::remove_file(&p);
                    report.removed += 1;
                }
            }
        }
        Ok(report)
    }

    /// Download into the mirror those of `files` it does not hold yet, each checked against
    /// the SHA-256 its commit recorded (in the mirrored log: call [`Remote::sync_log`] first).
    /// A file whose bytes differ is refused, not kept: nothing tampered with is queried or
    /// compacted.
    pub fn fetch(&self, files: &[delta::LiveFile]) -> Result<SyncReport, LakeError> {
        let mirror = self.mirror_dir();
        let mut report = SyncReport::default();
        let missing: Vec<&delta::LiveFile> = files
            .iter()
            .filter(|f| !std::fs::metadata(mirror.join(&f.rel)).is_ok_and(|m| m.len() == f.size))
            .collect();
        if missing.is_empty() {
            return Ok(report);
        }
        let mut hashes: HashMap<String, Option<String>> = HashMap::new();
        for v in super::verify::versions(&mirror)? {
            if let Some(e) = super::verify::read_entry(&mirror, v)? {
                for a in e.adds {
                    hashes.insert(a.rel, a.sha256);
                }
            }
        }
        for f in missing {
            let dest = mirror.join(&f.rel);
            let Some((size, sha)) = self.download(&f.rel, &dest)? else {
                return Err(self.err(
                    &f.rel,
                    "the table names this file but the store does not have it (deleted outside auditlake?); `auditlake lake verify` lists every such file",
                ));
            };
            if let Some(Some(want)) = hashes.get(&f.rel) {
                if *want != sha {
                    let _ = std::fs::remove_file(&dest);
                    return Err(self.err(
                        &f.rel,
                        format!("changed after it was written: SHA-256 {sha}, its commit recorded {want}; `auditlake lake verify` lists every such file"),
                    ));
                }
            }
            report.downloaded += 1;
            report.bytes += size;
        }
        Ok(report)
    }
}

/// What [`Remote::sync_files`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct SyncReport {
    pub downloaded: u64,
    pub bytes: u64,
    pub removed: u64,
}

/// The lake at `lake` when it names an object store (built once per process and URL), `None`
/// for a directory.
pub fn remote(lake: &Path) -> Result<Option<Arc<Remote>>, LakeError> {
    if !is_remote(lake) {
        return Ok(None);
    }
    let text = lake.to_string_lossy().trim_end_matches('/').to_string();
    let opened = OPENED.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(r) = opened.lock().ok().and_then(|m| m.get(&text).cloned()) {
        return Ok(Some(r));
    }
    let r = Arc::new(build(&text, &config().options)?);
    if let Ok(mut m) = opened.lock() {
        m.insert(text, r.clone());
    }
    Ok(Some(r))
}

fn build(text: &str, options: &[(String, String)]) -> Result<Remote, LakeError> {
    let bad = |problem: String| LakeError::Store {
        url: text.to_string(),
        problem,
    };
    let url = Url::parse(text).map_err(|e| bad(format!("not a URL: {e}")))?;
    let scheme = url.scheme().to_ascii_lowercase();
    let bucket = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no bucket: write it as s3://BUCKET/PREFIX".into()))?
        .to_string();
    let prefix = url.path().trim_matches('/').to_string();
    let root: Arc<dyn ObjectStore> = match scheme.as_str() {
        "s3" | "s3a" => {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
            let mut b = AmazonS3Builder::from_env().with_bucket_name(&bucket);
            for (k, v) in options {
                let key: AmazonS3ConfigKey = option_key(k).parse().map_err(|_| {
                    bad(format!("unknown S3 option `{k}` (--lake-option): known ones include endpoint, region, allow_http, access_key_id, secret_access_key, session_token, virtual_hosted_style_request, conditional_put"))
                })?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
        }
        "gs" => {
            use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
            let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(&bucket);
            for (k, v) in options {
                let key: GoogleConfigKey = option_key(k).parse().map_err(|_| {
                    bad(format!("unknown GCS option `{k}` (--lake-option): known ones include service_account_path, service_account_key, application_credentials"))
                })?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
        }
        _ => {
            use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
            let mut b = MicrosoftAzureBuilder::from_env().with_url(text);
            for (k, v) in options {
                let key: AzureConfigKey = option_key(k).parse().map_err(|_| {
                    bad(format!("unknown Azure option `{k}` (--lake-option): known ones include account_name, access_key, client_id, client_secret, tenant_id, use_emulator"))
                })?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
        }
    };
    let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
        root.clone()
    } else {
        Arc::new(PrefixStore::new(
            root.clone(),
            StorePath::from(prefix.as_str()),
        ))
    };
    let mut location = url.clone();
    if !location.path().ends_with('/') {
        location.set_path(&format!("{}/", location.path()));
    }
    let cache = config()
        .cache
        .clone()
        .unwrap_or_else(default_cache)
        .join(scheme)
        .join(&bucket)
        .join(format!(
            "{}-{:08x}",
            if prefix.is_empty() {
                "_".to_string()
            } else {
                prefix.replace('/', "_")
            },
            xxhash_rust::xxh3::xxh3_64(text.as_bytes()) as u32
        ));
    Ok(Remote {
        url: text.to_string(),
        store,
        root_store: root,
        location,
        cache,
    })
}

/// `allow-http` and `AWS_ALLOW_HTTP` read as `allow_http`, the builders' spelling.
fn option_key(k: &str) -> String {
    k.trim().to_ascii_lowercase().replace('-', "_")
}

fn default_cache() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("auditlake").join("lakes");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache")
        .join("auditlake")
        .join("lakes")
}

/// Parse `KEY=VALUE` (`--lake-option`).
pub fn parse_option(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| {
        format!("`{s}` is not KEY=VALUE (for example endpoint=http://127.0.0.1:9000)")
    })?;
    if k.trim().is_empty() {
        return Err(format!("`{s}` has no key"));
    }
    Ok((k.trim().to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_lakes_are_recognised_by_scheme() {
        for (lake, remote) in [
            ("s3://bucket/prefix", true),
            ("S3://bucket", true),
            ("gs://b/p", true),
            ("abfss://c@acct.dfs.core.windows.net/p", true),
            ("az://c/p", true),
            ("./lake", false),
            ("/var/lib/auditlake", false),
            ("file:///tmp/lake", false),
            ("s3:/typo", false),
        ] {
            assert_eq!(is_remote(Path::new(lake)), remote, "{lake}");
        }
    }

    #[test]
    fn options_are_key_value_and_unknown_keys_are_refused() {
        assert_eq!(
            parse_option("endpoint=http://127.0.0.1:9000").expect("valid"),
            ("endpoint".to_string(), "http://127.0.0.1:9000".to_string())
        );
        assert!(parse_option("endpoint").is_err());
        assert!(parse_option("=x").is_err());
        let e = build(
            "s3://bucket/p",
            &[("endpont".to_string(), "http://x".to_string())],
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("unknown S3 option `endpont`"), "{e}");
        let ok = build(
            "s3://bucket/p/q",
            &[
                ("allow-http".to_string(), "true".to_string()),
                ("region".to_string(), "us-east-1".to_string()),
            ],
        )
        .expect("built");
        assert!(
            ok.cache.to_string_lossy().contains("p_q-"),
            "{:?}",
            ok.cache
        );
        assert!(build("s3:///nobucket", &[]).is_err());
    }
}
