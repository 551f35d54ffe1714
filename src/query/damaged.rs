//! Queries over a lake with damaged Parquet files.
//!
//! When a query opens the lake, every file's frame is checked
//! ([`crate::sinks::lake::check::quick_problem`]: two small reads per file). What
//! happens to a damaged file is the user's choice ([`Damaged`]): the query
//! fails naming every such file (the default: an answer silently missing
//! rows is worse than none), or the files are hidden from the query engine
//! and named in a warning. Hiding is done below DataFusion, in the object
//! store its tables list files from, so `audit` and the deduplicated
//! relations skip exactly the same files.

use datafusion::object_store::path::Path as StorePath;
use datafusion::object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use futures::stream::{BoxStream, StreamExt};
use std::collections::HashSet;
use std::sync::Arc;

/// What a query does about damaged files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Damaged {
    /// Fail, naming each damaged file.
    #[default]
    Fail,
    /// Leave them out, with a warning naming each.
    Skip,
}

/// The Parquet files under a lake root that may be listed (its Delta log's live files).
pub type Only = (StorePath, HashSet<StorePath>);

/// A local file system that does not list some files: damaged ones the user chose to skip,
/// and, under a lake with a Delta log, every Parquet file the log does not name.
#[derive(Debug)]
pub struct Hiding {
    inner: Arc<dyn ObjectStore>,
    hidden: Arc<HashSet<StorePath>>,
    only: Option<Arc<Only>>,
}

impl Hiding {
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        hidden: HashSet<StorePath>,
        only: Option<Only>,
    ) -> Hiding {
        Hiding {
            inner,
            hidden: Arc::new(hidden),
            only: only.map(Arc::new),
        }
    }
}

fn listed(hidden: &HashSet<StorePath>, only: Option<&Only>, location: &StorePath) -> bool {
    if hidden.contains(location) {
        return false;
    }
    match only {
        Some((root, live)) => {
            let under = location.prefix_matches(root);
            !(under && location.as_ref().ends_with(".parquet")) || live.contains(location)
        }
        None => true,
    }
}

impl std::fmt::Display for Hiding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} hiding {} damaged files{}",
            self.inner,
            self.hidden.len(),
            if self.only.is_some() {
                ", listing only the Delta log's live files"
            } else {
                ""
            }
        )
    }
}

#[async_trait::async_trait]
impl ObjectStore for Hiding {
    async fn put_opts(
        &self,
        location: &StorePath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &StorePath,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &StorePath, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<StorePath>>,
    ) -> BoxStream<'static, Result<StorePath>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&StorePath>) -> BoxStream<'static, Result<ObjectMeta>> {
        let hidden = self.hidden.clone();
        let only = self.only.clone();
        self.inner
            .list(prefix)
            .filter(move |m| {
                let keep = match m {
                    Ok(m) => listed(&hidden, only.as_deref(), &m.location),
                    Err(_) => true,
                };
                futures::future::ready(keep)
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&StorePath>) -> Result<ListResult> {
        let mut r = self.inner.list_with_delimiter(prefix).await?;
        r.objects
            .retain(|m| listed(&self.hidden, self.only.as_deref(), &m.location));
        Ok(r)
    }

    async fn copy_opts(
        &self,
        from: &StorePath,
        to: &StorePath,
        options: CopyOptions,
    ) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
