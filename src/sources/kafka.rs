//! Kafka source: a consumer-group member that turns the messages of its
//! assigned partitions into ordered chunks, and gives partitions back only
//! after what it read from them is in the lake.
//!
//! Positions are Kafka offsets. The lake's source state of a partition
//! records the *next* offset to read (`committed_through`), which is also
//! the value committed to the group, so the two always agree on meaning:
//! - offsets are committed only after the lake commit that covers them
//!   (the writer asks, this thread commits);
//! - messages below the lake's `committed_through` are skipped, so a replay
//!   after a crash between the lake commit and the offset commit rewrites
//!   nothing;
//! - a revoked partition is flushed and committed inside the rebalance
//!   callback, before librdkafka hands it to another member.
//!
//! The pure part ([`extract`]) decides how a message's payload becomes units
//! of text (Event, EventList, array, JSON lines, or one of these inside a
//! wrapper field).

use crate::ops::metrics::Metrics;
use crate::sinks::lake::LakeError;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message as _};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    #[error("Kafka client configuration: {0}\nhint: check --brokers and the -X key=value options (librdkafka CONFIGURATION.md names every key)")]
    Config(KafkaError),
    #[error("subscribing to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        source: KafkaError,
    },
    #[error("-X {0}: expected key=value")]
    Option(String),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("the lake writer stopped; offsets after the last lake commit are not committed and will be read again")]
    WriterGone,
}

/// One partition of one topic, as the pipeline names it.
#[derive(Debug)]
pub struct Tp {
    pub topic: String,
    pub partition: i32,
    /// Lake source id (`k.<topic>.<partition>`): unique, because the
    /// partition (all digits) always follows the last dot.
    pub source: String,
    /// Where rejections say they came from.
    pub origin: String,
    /// The lake writer that owns this partition while it is assigned.
    pub shard: usize,
}

impl Tp {
    pub fn new(topic: &str, partition: i32, shard: usize) -> Tp {
        Tp {
            topic: topic.to_string(),
            partition,
            source: source_id(topic, partition),
            origin: format!("kafka {topic}/{partition}"),
            shard,
        }
    }
}

/// Lake source id of a topic partition.
pub fn source_id(topic: &str, partition: i32) -> String {
    format!("k.{topic}.{partition}")
}

/// One consumed message, copied out of librdkafka's buffer.
pub struct Message {
    pub offset: i64,
    /// `None` for a message without a payload (a tombstone).
    pub payload: Option<Vec<u8>>,
    /// The cluster named by the configured header, if present.
    pub cluster: Option<String>,
}

/// Consecutive messages of one partition.
pub struct Chunk {
    pub tp: Arc<Tp>,
    /// Per partition, from 0, in consumption order.
    pub seq: u64,
    pub messages: Vec<Message>,
}

/// Next offsets to commit, per partition.
pub type Offsets = Vec<(Arc<Tp>, u64)>;

/// The writer's answer to a release: the offsets to commit, or why not.
pub type ReleaseReply = SyncSender<Result<Offsets, String>>;

/// The writer's answer to an open: the partition's next offset not yet in the lake (after
/// finishing any commit its previous owner left), or why not.
pub type OpenReply = SyncSender<Result<u64, LakeError>>;

/// Messages sent from the consumer thread to the writer.
pub enum Control {
    /// This member now owns `tp`: recover its lake state and answer with the offset to resume
    /// from. The writer owns the lake; this source only reads messages.
    Open { tp: Arc<Tp>, reply: OpenReply },
    /// Commit everything of these partitions up to and including chunk
    /// `last_seq` (`None`: no chunk was ever sent), forget them, and answer
    /// with the next offset of each. With `discard`, drop what is held
    /// instead of committing it: the partitions were *lost* (this member
    /// was expelled from the group) and another member may already be
    /// writing them.
    Release {
        parts: Vec<(Arc<Tp>, Option<u64>)>,
        discard: bool,
        reply: ReleaseReply,
    },
}

/// How messages are read.
#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    pub brokers: String,
    /// Topic names; one starting with `^` is a regular expression.
    pub topics: Vec<String>,
    pub group: String,
    /// Extra librdkafka properties (`-X key=value`), applied last.
    pub options: Vec<(String, String)>,
    /// Header whose value names the cluster of a message.
    pub cluster_header: Option<String>,
    /// A chunk is handed on at this many messages...
    pub chunk_messages: usize,
    /// ...or bytes...
    pub chunk_bytes: usize,
    /// ...or after waiting this long.
    pub chunk_wait: Duration,
    /// Stop once every assigned partition is read to its end.
    pub exit_at_end: bool,
}

/// Parse every `-X key=value`.
pub fn parse_options(all: &[String]) -> Result<Vec<(String, String)>, KafkaSourceError> {
    all.iter().map(|o| parse_option(o)).collect()
}

/// Parse `key=value`.
pub fn parse_option(s: &str) -> Result<(String, String), KafkaSourceError> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(KafkaSourceError::Option(s.to_string())),
    }
}

/// The consumer's librdkafka configuration. Settings that the delivery
/// guarantee rests on are applied after the user's, so `-X` cannot turn
/// them off.
pub fn consumer_config(s: &ConsumerSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &s.brokers)
        .set("group.id", &s.group)
        .set("client.id", "auditlake-consume")
        .set("auto.offset.reset", "earliest")
        // A killed member's partitions move on after 10 s, not 45.
        .set("session.timeout.ms", "10000")
        .set("statistics.interval.ms", "5000")
        // librdkafka's prefetch queue is the only buffer before the bounded
        // chunk channel: cap it...
        .set("queued.max.messages.kbytes", "32768")
        // ...and refill it soon after it drains (the default waits 1 s,
        // which starved the pipeline to a third of its speed).
        .set("fetch.queue.backoff.ms", "10");
    for (k, v) in &s.options {
        c.set(k, v);
    }
    for (k, v) in [
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
    ] {
        if s.options.iter().any(|(uk, uv)| uk == k && uv != v) {
            tracing::warn!(
                key = k,
                "ignoring -X {k}: offsets are committed only after the lake commit"
            );
        }
        c.set(k, v);
    }
    c
}

/// librdkafka callbacks: statistics into metrics, and the rebalance hook
/// that flushes partitions before they are given up.
pub struct Ctx {
    feed: Mutex<Feed>,
    metrics: Arc<Metrics>,
}

impl ClientContext for Ctx {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (p, part) in &t.partitions {
                if *p < 0 || part.consumer_lag < 0 {
                    continue;
                }
                self.metrics
                    .kafka_lag
                    .with_label_values(&[topic.as_str(), &p.to_string()])
                    .set(part.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                self.metrics.kafka_rebalances.inc();
                let parts: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                let lost = consumer.assignment_lost();
                if lost {
                    tracing::warn!(
                        partitions = parts.len(),
                        "partitions lost (expelled from the group); dropping what was not committed, another member reads it again"
                    );
                } else {
                    tracing::info!(
                        partitions = parts.len(),
                        "partitions revoked; flushing them first"
                    );
                }
                let mut feed = match self.feed.lock() {
                    Ok(f) => f,
                    Err(p) => p.into_inner(),
                };
                feed.release(consumer, Some(&parts), lost);
            }
            Rebalance::Assign(tpl) => {
                self.metrics.kafka_rebalances.inc();
                tracing::info!(partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// Per-partition state on the consumer side.
struct PartFeed {
    tp: Arc<Tp>,
    /// Offsets below this are already in the lake.
    skip_below: i64,
    pending: Vec<Message>,
    pending_bytes: usize,
    since: Instant,
    next_seq: u64,
    consumed: prometheus::IntCounter,
}

/// The lake writers as the consumer thread reaches them. A partition is owned by one writer, so
/// Parquet encoding of different partitions runs in parallel. The pipeline supplies `send`, so
/// this source does not depend on the pipeline that drives it.
pub struct Writers {
    pub count: usize,
    /// Deliver a control message to writer `shard`; false once that writer is gone.
    pub send: Box<dyn Fn(usize, Control) -> bool + Send>,
}

/// The consumer side of the pipeline: batches messages into chunks.
pub struct Feed {
    parts: HashMap<(String, i32), PartFeed>,
    work: SyncSender<Chunk>,
    writers: Writers,
    next_shard: usize,
    settings: ConsumerSettings,
    metrics: Arc<Metrics>,
    /// Set when the writer is gone: stop consuming.
    pub broken: Arc<AtomicBool>,
}

impl Feed {
    fn part(&mut self, topic: &str, partition: i32) -> Result<&mut PartFeed, KafkaSourceError> {
        let key = (topic.to_string(), partition);
        if !self.parts.contains_key(&key) {
            let shard = self.next_shard % self.writers.count.max(1);
            self.next_shard += 1;
            let tp = Arc::new(Tp::new(topic, partition, shard));
            // This member owns the partition now: its writer finishes any interrupted commit of
            // the previous owner and says where the lake ends, before anything is read on.
            let (reply, answer) = std::sync::mpsc::sync_channel(1);
            let open = Control::Open {
                tp: tp.clone(),
                reply,
            };
            if !(self.writers.send)(shard, open) {
                return Err(KafkaSourceError::WriterGone);
            }
            let next = answer.recv().map_err(|_| KafkaSourceError::WriterGone)??;
            let skip_below = i64::try_from(next).unwrap_or(i64::MAX);
            tracing::info!(
                topic,
                partition,
                lake_next_offset = skip_below,
                "partition opened"
            );
            let consumed = self
                .metrics
                .kafka_messages
                .with_label_values(&[topic, &partition.to_string()]);
            self.parts.insert(
                key.clone(),
                PartFeed {
                    tp,
                    skip_below,
                    pending: Vec::new(),
                    pending_bytes: 0,
                    since: Instant::now(),
                    next_seq: 0,
                    consumed,
                },
            );
        }
        self.parts.get_mut(&key).ok_or(KafkaSourceError::WriterGone)
    }

    fn add(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) -> Result<(), KafkaSourceError> {
        // Read from the message before borrowing the partition state (no
        // per-message copy of the settings on this hot path).
        let cluster = self.settings.cluster_header.as_deref().and_then(|name| {
            m.headers().and_then(|h| {
                h.iter()
                    .find(|hd| hd.key == name)
                    .and_then(|hd| hd.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
        });
        let (max_msgs, max_bytes) = (self.settings.chunk_messages, self.settings.chunk_bytes);
        let part = self.part(m.topic(), m.partition())?;
        part.consumed.inc();
        if m.offset() < part.skip_below {
            return Ok(());
        }
        let payload = m.payload().map(|p| p.to_vec());
        if part.pending.is_empty() {
            part.since = Instant::now();
        }
        part.pending_bytes += payload.as_ref().map_or(0, |p| p.len());
        part.pending.push(Message {
            offset: m.offset(),
            payload,
            cluster,
        });
        if part.pending.len() >= max_msgs || part.pending_bytes >= max_bytes {
            let chunk = take_chunk(part);
            self.work
                .send(chunk)
                .map_err(|_| KafkaSourceError::WriterGone)?;
        }
        Ok(())
    }

    /// Hand on chunks that waited long enough.
    fn dispatch_aged(&mut self) -> Result<(), KafkaSourceError> {
        let wait = self.settings.chunk_wait;
        for part in self.parts.values_mut() {
            if !part.pending.is_empty() && part.since.elapsed() >= wait {
                let chunk = take_chunk(part);
                self.work
                    .send(chunk)
                    .map_err(|_| KafkaSourceError::WriterGone)?;
            }
        }
        Ok(())
    }

    /// Flush the given partitions (all when `None`) to the lake, commit
    /// their offsets synchronously and forget them.
    fn release(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        which: Option<&[(String, i32)]>,
        discard: bool,
    ) {
        let keys: Vec<(String, i32)> = match which {
            Some(w) => w
                .iter()
                .filter(|k| self.parts.contains_key(*k))
                .cloned()
                .collect(),
            None => self.parts.keys().cloned().collect(),
        };
        if keys.is_empty() {
            return;
        }
        let mut parts = Vec::new();
        for key in &keys {
            let Some(mut part) = self.parts.remove(key) else {
                continue;
            };
            if !part.pending.is_empty() {
                let chunk = take_chunk(&mut part);
                if self.work.send(chunk).is_err() {
                    self.broken.store(true, Ordering::Relaxed);
                    return;
                }
            }
            parts.push((part.tp.clone(), part.next_seq.checked_sub(1)));
        }
        // Each writer flushes its own partitions; all answers are awaited.
        let (tx, rx) = std::sync::mpsc::sync_channel(self.writers.count.max(1));
        let mut asked = 0;
        for shard in 0..self.writers.count {
            let mine: Vec<_> = parts
                .iter()
                .filter(|(tp, _)| tp.shard == shard)
                .cloned()
                .collect();
            if mine.is_empty() {
                continue;
            }
            let msg = Control::Release {
                parts: mine,
                discard,
                reply: tx.clone(),
            };
            if !(self.writers.send)(shard, msg) {
                self.broken.store(true, Ordering::Relaxed);
                return;
            }
            asked += 1;
        }
        drop(tx);
        let mut offsets = Vec::new();
        for _ in 0..asked {
            match rx.recv() {
                Ok(Ok(o)) => offsets.extend(o),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "flush before giving up partitions failed; their offsets stay where the last lake commit put them");
                    self.broken.store(true, Ordering::Relaxed);
                }
                Err(_) => self.broken.store(true, Ordering::Relaxed),
            }
        }
        // Whatever did get committed to the lake is committed to the group
        // (not for lost partitions: the group has moved on without us).
        if !discard {
            commit_offsets(consumer, &offsets, CommitMode::Sync, &self.metrics);
        }
    }
}

fn take_chunk(part: &mut PartFeed) -> Chunk {
    let messages = std::mem::take(&mut part.pending);
    part.pending_bytes = 0;
    let seq = part.next_seq;
    part.next_seq += 1;
    Chunk {
        tp: part.tp.clone(),
        seq,
        messages,
    }
}

/// Commit `next offset` of each partition (0 = nothing to commit).
pub fn commit_offsets(
    consumer: &BaseConsumer<Ctx>,
    offsets: &[(Arc<Tp>, u64)],
    mode: CommitMode,
    metrics: &Metrics,
) {
    let mut tpl = TopicPartitionList::new();
    for (tp, next) in offsets {
        if *next == 0 {
            continue;
        }
        if let Err(e) =
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*next as i64))
        {
            tracing::warn!(error = %e, topic = tp.topic, partition = tp.partition, "bad offset");
        }
    }
    if tpl.count() == 0 {
        return;
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => {
            for (tp, next) in offsets {
                metrics
                    .kafka_committed_offset
                    .with_label_values(&[tp.topic.as_str(), &tp.partition.to_string()])
                    .set(*next as i64);
            }
        }
        // Harmless for correctness: the lake state is ahead, and messages
        // below it are skipped when read again.
        Err(e) => {
            tracing::warn!(error = %e, "offset commit failed; will be retried with the next one")
        }
    }
}

/// Everything the consumer thread needs.
pub struct ConsumerParts {
    pub settings: ConsumerSettings,
    pub work: SyncSender<Chunk>,
    pub writers: Writers,
    /// Offsets the writer has made safe to commit.
    pub commits: Receiver<Offsets>,
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
}

/// Consume until `cancel` fires (or, with `exit_at_end`, until every
/// assigned partition is read to its end); then flush and commit every held
/// partition and leave the group.
pub fn run(parts: ConsumerParts, cancel: CancellationToken) -> Result<(), KafkaSourceError> {
    let ConsumerParts {
        settings,
        work,
        writers,
        commits,
        metrics,
        ready,
    } = parts;
    let broken = Arc::new(AtomicBool::new(false));
    let ctx = Ctx {
        feed: Mutex::new(Feed {
            parts: HashMap::new(),
            work,
            writers,
            next_shard: 0,
            settings: settings.clone(),
            metrics: metrics.clone(),
            broken: broken.clone(),
        }),
        metrics: metrics.clone(),
    };
    let consumer: BaseConsumer<Ctx> = consumer_config(&settings)
        .create_with_context(ctx)
        .map_err(KafkaSourceError::Config)?;
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|source| KafkaSourceError::Subscribe {
            topics: settings.topics.clone(),
            source,
        })?;
    ready.store(true, Ordering::Relaxed);
    let mut idle_since: Option<Instant> = None;
    let mut last_end_check = Instant::now();
    let mut result = Ok(());
    while !cancel.is_cancelled() && !broken.load(Ordering::Relaxed) {
        while let Ok(offsets) = commits.try_recv() {
            commit_offsets(&consumer, &offsets, CommitMode::Async, &metrics);
        }
        let polled = consumer.poll(Duration::from_millis(100));
        let mut feed = match consumer.context().feed.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        let step = match polled {
            None => {
                idle_since.get_or_insert_with(Instant::now);
                Ok(())
            }
            Some(Err(KafkaError::PartitionEOF(_))) => Ok(()),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "Kafka consumer error");
                Ok(())
            }
            Some(Ok(m)) => {
                idle_since = None;
                feed.add(&m)
            }
        };
        let step = step.and_then(|_| feed.dispatch_aged());
        drop(feed);
        if let Err(e) = step {
            result = Err(e);
            break;
        }
        if settings.exit_at_end
            && idle_since.is_some_and(|t| t.elapsed() >= Duration::from_millis(250))
            && last_end_check.elapsed() >= Duration::from_millis(250)
        {
            last_end_check = Instant::now();
            let at_end = read_to_end(&consumer);
            tracing::debug!(
                at_end,
                took_ms = last_end_check.elapsed().as_millis() as u64,
                "end-of-topics check"
            );
            if at_end {
                tracing::info!("every assigned partition is read to its end; stopping");
                break;
            }
        }
    }
    // Shutdown: stop fetching, flush and commit what is held, leave.
    {
        let mut feed = match consumer.context().feed.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        feed.release(&consumer, None, false);
    }
    while let Ok(offsets) = commits.try_recv() {
        commit_offsets(&consumer, &offsets, CommitMode::Sync, &metrics);
    }
    consumer.unsubscribe();
    drop(consumer);
    if broken.load(Ordering::Relaxed) && result.is_ok() {
        result = Err(KafkaSourceError::WriterGone);
    }
    result
}

/// Whether every assigned partition's position has reached its high
/// watermark.
fn read_to_end(consumer: &BaseConsumer<Ctx>) -> bool {
    let Ok(assignment) = consumer.assignment() else {
        return false;
    };
    if assignment.count() == 0 {
        return false;
    }
    let Ok(positions) = consumer.position() else {
        return false;
    };
    for e in positions.elements() {
        // The watermarks of the last fetch response are cached by
        // librdkafka; asking the broker costs ~0.5 s per partition, so it
        // is done only for a partition never fetched.
        let marks = cached_watermarks(consumer, e.topic(), e.partition()).or_else(|| {
            consumer
                .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2))
                .ok()
        });
        let Some((low, high)) = marks else {
            return false;
        };
        let at = match e.offset() {
            Offset::Offset(o) => o,
            // Nothing fetched yet: at the end only if the partition is empty.
            _ => low,
        };
        if at < high {
            return false;
        }
    }
    true
}

/// librdkafka's cached (low, high) watermarks of a partition, if known.
fn cached_watermarks(
    consumer: &BaseConsumer<Ctx>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client handle is valid while `consumer` is borrowed, the
    // topic is a NUL-terminated string that outlives the call, and the out
    // pointers are locals; the function only reads librdkafka's cache.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low, high))
}

/// How a message's payload becomes units of text.
#[derive(Debug, Default, PartialEq)]
pub struct Extracted<'a> {
    pub units: Vec<Cow<'a, str>>,
    /// The cluster named in the wrapper's `cluster_field`, if any.
    pub cluster: Option<String>,
}

/// Split a payload into units for the decoder: the payload itself, or the
/// value of `payload_field` of a wrapper object (a JSON string holding the
/// event text, as Fluent Bit emits, or the event object itself, as Vector
/// does); then JSON lines into one unit per line.
pub fn extract<'a>(
    payload: &'a str,
    payload_field: Option<&str>,
    cluster_field: Option<&str>,
) -> Result<Extracted<'a>, String> {
    let Some(field) = payload_field else {
        return Ok(Extracted {
            units: split_json_lines(payload)
                .into_iter()
                .map(Cow::Borrowed)
                .collect(),
            cluster: None,
        });
    };
    let wrapper: HashMap<Cow<'a, str>, &'a RawValue> =
        serde_json::from_str(payload).map_err(|e| {
            format!("message is not a JSON object with field `{field}` (--payload-field): {e}")
        })?;
    let cluster = cluster_field
        .and_then(|f| wrapper.get(f))
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
    let raw = wrapper
        .get(field)
        .ok_or_else(|| format!("message has no field `{field}` (--payload-field)"))?;
    let text = raw.get();
    let units = match text.as_bytes().first() {
        Some(b'"') => {
            let s: String = serde_json::from_str(text)
                .map_err(|e| format!("field `{field}` is not a valid JSON string: {e}"))?;
            split_json_lines(&s)
                .into_iter()
                .map(|u| Cow::Owned(u.to_string()))
                .collect()
        }
        Some(b'{') | Some(b'[') => vec![Cow::Borrowed(text)],
        _ => {
            return Err(format!(
                "field `{field}` holds neither an event (object, array) nor its text (string)"
            ))
        }
    };
    Ok(Extracted { units, cluster })
}

/// JSON lines become one unit per non-blank line; anything else stays one
/// unit. A single JSON document (even pretty-printed) never has a `}`
/// that ends one line followed by a `{` opening the next outside a string
/// (raw newlines cannot occur inside JSON strings, and array items are
/// separated by commas), so that pattern tells JSON lines apart.
pub fn split_json_lines(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let mut is_lines = false;
    for nl in memchr::memchr_iter(b'\n', b) {
        let before = b[..nl]
            .iter()
            .rev()
            .find(|c| !c.is_ascii_whitespace())
            .copied();
        let after = b[nl + 1..]
            .iter()
            .find(|c| !c.is_ascii_whitespace())
            .copied();
        if before == Some(b'}') && after == Some(b'{') {
            is_lines = true;
            break;
        }
    }
    if !is_lines {
        return vec![text];
    }
    text.split('\n').filter(|l| !l.trim().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_told_apart_from_documents() {
        let cases: &[(&str, usize)] = &[
            ("{\"a\":1}", 1),
            ("{\"a\":1}\n{\"a\":2}\n", 2),
            ("{\"a\":1}\r\n\r\n{\"a\":2}", 2),
            (
                "{\n  \"items\": [\n    {\"a\": 1},\n    {\"a\": 2}\n  ]\n}\n",
                1,
            ),
            ("[\n{\"a\":1},\n{\"a\":2}\n]", 1),
            ("{\"a\":{\n\"b\":1\n}\n}", 1),
            ("", 1),
        ];
        for (text, n) in cases {
            assert_eq!(split_json_lines(text).len(), *n, "{text:?}");
        }
    }

    #[test]
    fn wrapper_fields() {
        // Fluent Bit: the event as a string.
        let e = extract(
            r#"{"log":"{\"auditID\":\"x\"}","cluster":"prod"}"#,
            Some("log"),
            Some("cluster"),
        )
        .unwrap();
        assert_eq!(
            e.units,
            vec![Cow::<str>::Owned(r#"{"auditID":"x"}"#.into())]
        );
        assert_eq!(e.cluster.as_deref(), Some("prod"));
        // Vector: the event as an object.
        let e = extract(r#"{"message":{"auditID":"y"}}"#, Some("message"), None).unwrap();
        assert_eq!(e.units, vec![Cow::Borrowed(r#"{"auditID":"y"}"#)]);
        assert_eq!(e.cluster, None);
        // Errors name the field.
        for (payload, want) in [
            (r#"{"other":1}"#, "no field `message`"),
            (r#"{"message":5}"#, "neither an event"),
            ("not json", "not a JSON object"),
        ] {
            let err = extract(payload, Some("message"), None).unwrap_err();
            assert!(err.contains(want), "{payload}: {err}");
        }
    }

    #[test]
    fn source_ids_are_distinct() {
        let ids = [
            source_id("a", 1),
            source_id("a", 10),
            source_id("a.1", 0),
            source_id("a.10", 0),
            source_id("a-p1", 2),
        ];
        let set: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
    }

    #[test]
    fn options_parse() {
        assert_eq!(
            parse_option("security.protocol=ssl").unwrap(),
            ("security.protocol".to_string(), "ssl".to_string())
        );
        assert!(parse_option("novalue").is_err());
        assert!(parse_option("=x").is_err());
    }
}
