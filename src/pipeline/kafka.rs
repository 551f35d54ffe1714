//! `auditlake consume`: a Kafka consumer-group member that writes the lake,
//! effectively once.
//!
//! ```text
//! consumer thread ──chunks──▶ worker × N ──batches──▶ writer ──lake commit──▶ offsets back
//! (poll, rebalance)  (bounded)  decode, resolve,      per-partition          to the consumer
//!                               build Arrow           segments               thread to commit
//! ```
//!
//! Each partition is its own lake source (`k.<topic>.<partition>`), with
//! segments named after their first and last offset. A partition's offset
//! is committed only after the segment holding its records is committed;
//! the lake remembers the next offset too, so a member that restarts (or
//! takes the partition over) skips what is already stored. Rejected
//! messages go into the same segment's dead letters, so the committed
//! range is always contiguous and a poison message never stops a
//! partition.
//!
//! Shutdown (SIGTERM/SIGINT, or the end of the topics with
//! `--exit-at-end`): stop fetching, hand the last chunks on, commit every
//! partition's segment, commit offsets synchronously, leave the group.

use super::assemble::{Assembler, Labels};
use super::commit::{Committer, Policy};
use super::recv_shared;
use super::reorder::Reorder;
use crate::ops::metrics::Metrics;
use crate::profiles::Profiles;
use crate::sinks::lake::batch::{PartKey, RowContext};
use crate::sinks::lake::{Lake, LakeError, RejectRecord, Resume};
use crate::sources::kafka::{
    self, Chunk, ConsumerParts, ConsumerSettings, Control, Offsets, ReleaseReply, Tp,
};
use arrow::record_batch::RecordBatch;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(transparent)]
    Source(#[from] kafka::KafkaSourceError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("{origin} offsets {first}..={last}: building Arrow batch: {source}")]
    Arrow {
        origin: String,
        first: i64,
        last: i64,
        source: arrow::error::ArrowError,
    },
    #[error("the {stage} stopped unexpectedly: {problem}\nhint: this is a bug (please report it with the log); offsets after the last lake commit were not committed, so a restart reads them again and nothing is lost")]
    TaskPanicked {
        stage: &'static str,
        problem: String,
    },
    #[error("{partition}: a chunk arrived for a partition this lake writer does not hold\nhint: this is a bug (please report it with the log); nothing was written for it, and a restart reads it again")]
    Unowned { partition: String },
}

/// What a panicked thread said, for [`ConsumeError::TaskPanicked`].
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_string(),
            Err(_) => "no message".into(),
        },
    }
}

/// What the consumer does with messages.
#[derive(Clone)]
pub struct ConsumeOptions {
    pub consumer: ConsumerSettings,
    /// Cluster of messages that name none (header or wrapper field).
    pub cluster: String,
    /// Field of a wrapper object that holds the event (or its text).
    pub payload_field: Option<String>,
    /// Field of the wrapper object that names the cluster.
    pub cluster_field: Option<String>,
    /// Take the cluster an envelope names when neither `cluster_field` nor
    /// a header names one and no `--cluster` was given.
    pub envelope_cluster: bool,
    /// Which envelopes are opened.
    pub format: crate::decode::envelope::InputFormat,
    pub profiles: Arc<Profiles>,
    pub workers: usize,
    /// Commit a partition's segment at this many rows...
    pub segment_rows: u64,
    /// ...or this long after its first row.
    pub max_age: Duration,
    /// Larger messages are dead-lettered (first 64 KiB kept).
    pub max_message_bytes: usize,
    /// Parquet files open at once in this process (every open file buffers
    /// a row group): past it, the partition holding the most is committed
    /// early. Bounds memory however many partitions are assigned.
    pub max_open_files: usize,
    /// Dead letters go to this topic (else to the lake's `_rejected/`).
    pub dead_letter: Option<Arc<crate::sinks::kafka::DeadLetterTopic>>,
    /// Failpoint for the crash tests: abort right after a lake commit, before its offsets are
    /// handed to the consumer (the window exactly-once must survive).
    pub abort_after_lake_commit: bool,
}

/// Totals of one run.
#[derive(Debug, Default, Clone)]
pub struct ConsumeSummary {
    pub messages: u64,
    pub events: u64,
    pub rows: u64,
    pub rejected: u64,
    pub files: u64,
    /// From the first message to the last commit (group join and the
    /// end-of-topic check excluded): the steady-state rate's denominator.
    pub active: Duration,
}

impl ConsumeSummary {
    fn add(&mut self, o: &ConsumeSummary) {
        self.messages += o.messages;
        self.events += o.events;
        self.rows += o.rows;
        self.rejected += o.rejected;
        self.files += o.files;
        self.active = self.active.max(o.active);
    }
}

/// A worker's output for one chunk.
pub struct Processed {
    tp: Arc<Tp>,
    seq: u64,
    first: i64,
    last: i64,
    messages: u64,
    events: u64,
    /// Requests with a proxy's claim from an identity no profile trusts.
    untrusted: u64,
    parts: Vec<(PartKey, RecordBatch)>,
    rejects: Vec<RejectRecord>,
}

/// Input of the writer: work from the workers, control from the consumer.
pub enum WriterMsg {
    Work(Result<Processed, ConsumeError>),
    Control(Control),
}

/// Run the consumer until `cancel` fires (or the end with `exit_at_end`).
pub async fn run(
    lake: Lake,
    opts: ConsumeOptions,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    cancel: CancellationToken,
) -> Result<ConsumeSummary, ConsumeError> {
    let workers = opts.workers.max(1);
    let (work_tx, work_rx) = sync_channel::<Chunk>(workers * 2);
    let (commit_tx, commit_rx) = std::sync::mpsc::channel();
    // As many lake writers as workers: Parquet encoding is the costliest
    // stage, and partitions are independent.
    let mut writer_txs = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..workers {
        // Small: each message is a chunk of up to 8192 rows in Arrow form.
        let (tx, rx) = sync_channel::<WriterMsg>(2);
        writer_txs.push(tx);
        let (lake, opts, metrics, commits) = (
            lake.clone(),
            opts.clone(),
            metrics.clone(),
            commit_tx.clone(),
        );
        writers.push(std::thread::spawn(move || {
            write_loop(rx, lake, &opts, commits, &metrics)
        }));
    }
    drop(commit_tx);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (rx, txs, opts) = (work_rx.clone(), writer_txs.clone(), opts.clone());
        handles.push(std::thread::spawn(move || worker(rx, txs, opts)));
    }
    drop(work_rx);
    let consumer = {
        let count = writer_txs.len();
        let send = move |shard: usize, control: Control| {
            writer_txs
                .get(shard)
                .is_some_and(|tx| tx.send(WriterMsg::Control(control)).is_ok())
        };
        let parts = ConsumerParts {
            settings: opts.consumer.clone(),
            work: work_tx,
            writers: kafka::Writers {
                count,
                send: Box::new(send),
            },
            commits: commit_rx,
            metrics,
            ready,
        };
        std::thread::spawn(move || kafka::run(parts, cancel))
    };
    let joined = tokio::task::spawn_blocking(move || {
        let consumed = consumer.join();
        for h in handles {
            let _ = h.join();
        }
        let written: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
        (consumed, written)
    })
    .await
    .map_err(|e| ConsumeError::TaskPanicked {
        stage: "pipeline supervisor",
        problem: e.to_string(),
    })?;
    let (consumed, written) = joined;
    let mut summary = ConsumeSummary::default();
    let mut first_error = None;
    for w in written {
        let w = w.map_err(|p| ConsumeError::TaskPanicked {
            stage: "lake writer",
            problem: panic_text(p),
        });
        match w.and_then(|r| r) {
            Ok(s) => summary.add(&s),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    consumed.map_err(|p| ConsumeError::TaskPanicked {
        stage: "Kafka consumer thread",
        problem: panic_text(p),
    })??;
    Ok(summary)
}

fn worker(rx: Arc<Mutex<Receiver<Chunk>>>, txs: Vec<SyncSender<WriterMsg>>, opts: ConsumeOptions) {
    let mut asm = Assembler::default();
    let mut warned = std::collections::HashSet::new();
    loop {
        let Some(chunk) = recv_shared(&rx) else {
            return;
        };
        let out = process(&chunk, &opts, &mut asm).map(|mut p| {
            p.untrusted = super::warn_untrusted(&mut warned, asm.take_untrusted(), 256);
            p
        });
        let Some(tx) = txs.get(chunk.tp.shard) else {
            return;
        };
        if tx.send(WriterMsg::Work(out)).is_err() {
            return;
        }
    }
}

fn process(
    chunk: &Chunk,
    opts: &ConsumeOptions,
    asm: &mut Assembler,
) -> Result<Processed, ConsumeError> {
    let tp = &chunk.tp;
    let prefix = format!("kafka:{}/{}:", tp.topic, tp.partition);
    let ingested_at_us = chrono::Utc::now().timestamp_micros();
    let mut rejects = Vec::new();
    let mut events = 0u64;
    let reject = |rejects: &mut Vec<RejectRecord>, offset: i64, reason: String, text: &[u8]| {
        rejects.push(RejectRecord::of(&tp.origin, offset as u64, reason, text));
    };
    for m in &chunk.messages {
        let Some(payload) = m.payload.as_deref() else {
            reject(&mut rejects, m.offset, "message has no payload".into(), b"");
            continue;
        };
        if payload.len() > opts.max_message_bytes {
            let reason = format!(
                "message of {} bytes is over --max-message-bytes {} (first 64 KiB kept)",
                payload.len(),
                opts.max_message_bytes
            );
            reject(&mut rejects, m.offset, reason, payload);
            continue;
        }
        // Kinesis and Firehose hand CloudWatch subscription data on as gzip.
        let inflated;
        let payload = if payload.starts_with(&[0x1f, 0x8b]) {
            match crate::decode::envelope::inflate(payload) {
                Ok(bytes) => {
                    inflated = bytes;
                    &inflated[..]
                }
                Err(e) => {
                    reject(&mut rejects, m.offset, e.to_string(), payload);
                    continue;
                }
            }
        } else {
            payload
        };
        let Ok(text) = std::str::from_utf8(payload) else {
            let reason =
                "message is not valid UTF-8 (the original bytes are in `base64`)".to_string();
            reject(&mut rejects, m.offset, reason, payload);
            continue;
        };
        let extracted = match kafka::extract(
            text,
            opts.payload_field.as_deref(),
            opts.cluster_field.as_deref(),
        ) {
            Ok(x) => x,
            Err(reason) => {
                reject(&mut rejects, m.offset, reason, payload);
                continue;
            }
        };
        let named = extracted.cluster.as_deref().or(m.cluster.as_deref());
        let labels = Labels {
            prefix: &prefix,
            origin: &tp.origin,
            row: RowContext {
                cluster: named.unwrap_or(&opts.cluster),
                ingested_at_us,
                envelope_cluster: named.is_none() && opts.envelope_cluster,
            },
            profiles: &opts.profiles,
            format: opts.format,
        };
        let lines = extracted.units.len();
        for (i, unit) in extracted.units.iter().enumerate() {
            let before = rejects.len();
            events += asm.add(unit, m.offset as u64, &labels, &mut rejects);
            if lines > 1 {
                for r in &mut rejects[before..] {
                    r.reason = format!("JSON line {}: {}", i + 1, r.reason);
                }
            }
        }
    }
    let first = chunk.messages.first().map_or(0, |m| m.offset);
    let last = chunk.messages.last().map_or(0, |m| m.offset);
    let parts = asm.finish().map_err(|source| ConsumeError::Arrow {
        origin: tp.origin.clone(),
        first,
        last,
        source,
    })?;
    Ok(Processed {
        tp: tp.clone(),
        seq: chunk.seq,
        first,
        last,
        messages: chunk.messages.len() as u64,
        events,
        untrusted: 0,
        parts,
        rejects,
    })
}

/// Writer-side state of one partition.
struct PartWrite {
    tp: Arc<Tp>,
    /// The open segment, its offsets and its commit policy.
    c: Committer,
    order: Reorder<Processed>,
    events: prometheus::IntCounter,
    /// Dead letters of the open segment bound for the dead-letter topic;
    /// delivered (or, failing that, written to the lake) before it commits.
    held: Vec<RejectRecord>,
}

/// A partition release the consumer thread is waiting for.
struct Barrier {
    parts: Vec<(Arc<Tp>, Option<u64>)>,
    discard: bool,
    reply: ReleaseReply,
}

struct Writer<'a> {
    lake: Lake,
    opts: &'a ConsumeOptions,
    metrics: &'a Metrics,
    commits: Sender<Offsets>,
    parts: HashMap<String, PartWrite>,
    summary: ConsumeSummary,
    first_work: Option<Instant>,
}

fn write_loop(
    rx: Receiver<WriterMsg>,
    lake: Lake,
    opts: &ConsumeOptions,
    commits: Sender<Offsets>,
    metrics: &Metrics,
) -> Result<ConsumeSummary, ConsumeError> {
    let mut w = Writer {
        lake,
        opts,
        metrics,
        commits,
        parts: HashMap::new(),
        summary: ConsumeSummary::default(),
        first_work: None,
    };
    let mut barriers: Vec<Barrier> = Vec::new();
    let result = (|| -> Result<(), ConsumeError> {
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(WriterMsg::Work(work)) => w.take(work?)?,
                Ok(WriterMsg::Control(Control::Open { tp, reply })) => {
                    // Finish any commit the partition's previous owner left, then resume after
                    // what the lake holds.
                    let state = match w.lake.recover(&tp.source, &tp.origin, Resume::Next) {
                        Ok(state) => state,
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                    };
                    let _ = reply.send(Ok(state.committed_through));
                    let policy = Policy {
                        rows: w.opts.segment_rows,
                        age: w.opts.max_age,
                    };
                    let c = Committer::new(&w.lake, &tp.source, state, Resume::Next, policy);
                    let events = metrics
                        .kafka_events
                        .with_label_values(&[tp.topic.as_str(), &tp.partition.to_string()]);
                    w.parts.insert(
                        tp.source.clone(),
                        PartWrite {
                            tp,
                            c,
                            order: Reorder::default(),
                            events,
                            held: Vec::new(),
                        },
                    );
                }
                Ok(WriterMsg::Control(Control::Release {
                    parts,
                    discard,
                    reply,
                })) => barriers.push(Barrier {
                    parts,
                    discard,
                    reply,
                }),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            w.commit_aged()?;
            let mut i = 0;
            while i < barriers.len() {
                if w.satisfied(&barriers[i]) {
                    let b = barriers.swap_remove(i);
                    match w.release(&b.parts, b.discard) {
                        Ok(offsets) => {
                            let _ = b.reply.send(Ok(offsets));
                        }
                        Err(e) => {
                            let _ = b.reply.send(Err(e.to_string()));
                            return Err(e);
                        }
                    }
                } else {
                    i += 1;
                }
            }
        }
        // Everyone upstream is gone; whatever is still held is committed.
        let sources: Vec<String> = w.parts.keys().cloned().collect();
        for s in sources {
            w.commit_part(&s)?;
        }
        Ok(())
    })();
    for b in barriers {
        let _ = b.reply.send(Err("the lake writer stopped".into()));
    }
    result.map(|_| w.summary)
}

impl Writer<'_> {
    fn take(&mut self, p: Processed) -> Result<(), ConsumeError> {
        let source = p.tp.source.clone();
        let Some(part) = self.parts.get_mut(&source) else {
            // Cannot happen: a partition is forgotten only after all its
            // chunks arrived. Refuse rather than write without state.
            return Err(ConsumeError::Unowned { partition: source });
        };
        part.order.push(p.seq, p);
        loop {
            let Some(part) = self.parts.get_mut(&source) else {
                return Ok(());
            };
            let Some(p) = part.order.pop() else {
                return Ok(());
            };
            part.events.inc_by(p.events);
            self.metrics.untrusted_claims.inc_by(p.untrusted);
            self.first_work.get_or_insert_with(Instant::now);
            self.summary.messages += p.messages;
            self.summary.events += p.events;
            let seg = part.c.segment(p.first as u64, p.last as u64);
            for (key, batch) in &p.parts {
                seg.write(*key, batch)?;
            }
            for r in p.rejects {
                self.metrics.dead_letters.inc();
                if self.opts.dead_letter.is_some() {
                    part.held.push(r);
                } else {
                    let bytes = seg.reject(&r)?;
                    self.metrics.dead_letter_bytes.inc_by(bytes);
                }
            }
            if part.c.due() {
                self.commit_part(&source)?;
            }
            self.enforce_open_files()?;
        }
    }

    /// Keep this writer's share of `max_open_files`.
    fn enforce_open_files(&mut self) -> Result<(), ConsumeError> {
        let budget = (self.opts.max_open_files / self.opts.workers.max(1)).max(1);
        loop {
            let open = |p: &PartWrite| p.c.open_partitions();
            let total: usize = self.parts.values().map(open).sum();
            if total <= budget {
                return Ok(());
            }
            let Some(largest) = self
                .parts
                .iter()
                .max_by_key(|(_, p)| open(p))
                .map(|(s, _)| s.clone())
            else {
                return Ok(());
            };
            self.commit_part(&largest)?;
        }
    }

    fn commit_aged(&mut self) -> Result<(), ConsumeError> {
        let aged: Vec<String> = self
            .parts
            .iter()
            .filter(|(_, p)| p.c.due())
            .map(|(s, _)| s.clone())
            .collect();
        for s in aged {
            self.commit_part(&s)?;
        }
        Ok(())
    }

    /// Commit the open segment of a partition, then let the consumer
    /// commit the offset after it.
    fn commit_part(&mut self, source: &str) -> Result<(), ConsumeError> {
        let Some(part) = self.parts.get_mut(source) else {
            return Ok(());
        };
        if !part.c.is_open() {
            return Ok(());
        }
        if let Some(dlq) = &self.opts.dead_letter {
            let held = std::mem::take(&mut part.held);
            let n = held.len() as u64;
            let failed = dlq.deliver(held);
            self.summary.rejected += n - failed.len() as u64;
            // Not confirmed by Kafka: kept in the lake instead, so the
            // offset commit below never outruns a dead letter.
            if let Some(seg) = part.c.open_segment() {
                for r in &failed {
                    seg.reject(r)?;
                }
            }
        }
        let Some(done) = part.c.commit()? else {
            return Ok(());
        };
        let (first, last, info) = (done.first, done.last, done.info);
        self.summary.rows += info.rows;
        self.summary.rejected += info.rejected;
        self.summary.files += info.files as u64;
        if let Some(t) = self.first_work {
            self.summary.active = t.elapsed();
        }
        self.metrics.files_committed.inc_by(info.files as u64);
        self.metrics.rows_committed.inc_by(info.rows);
        tracing::info!(
            topic = part.tp.topic,
            partition = part.tp.partition,
            first,
            last,
            rows = info.rows,
            rejected = info.rejected,
            "lake segment committed"
        );
        if self.opts.abort_after_lake_commit {
            tracing::error!("failpoint abort-after-lake-commit: aborting before the offset commit");
            std::process::abort();
        }
        let _ = self.commits.send(vec![(part.tp.clone(), done.through)]);
        Ok(())
    }

    fn satisfied(&self, b: &Barrier) -> bool {
        b.parts.iter().all(|(tp, last_seq)| match last_seq {
            None => true,
            Some(s) => self
                .parts
                .get(&tp.source)
                .is_none_or(|p| p.order.released_below() > *s),
        })
    }

    fn release(
        &mut self,
        parts: &[(Arc<Tp>, Option<u64>)],
        discard: bool,
    ) -> Result<Offsets, ConsumeError> {
        let mut out = Vec::new();
        for (tp, _) in parts {
            if discard {
                // Dropping the segment leaves only temporaries, which the
                // partition's next owner deletes when it recovers.
                self.parts.remove(&tp.source);
                continue;
            }
            self.commit_part(&tp.source)?;
            if let Some(p) = self.parts.remove(&tp.source) {
                out.push((p.tp, p.c.state().committed_through));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    //! The Kafka writer loop in-process, driven by the messages the consumer thread and the
    //! workers send it: no broker. It must recover a partition when told to open it, commit
    //! chunks in sequence whatever order they arrive in, and answer a release with the next
    //! offset only after the lake commit that covers it.
    use super::*;
    use crate::sinks::lake::WriteOptions;
    use crate::sources::kafka::{ConsumerSettings, Message};
    use std::sync::mpsc::channel;

    fn options() -> ConsumeOptions {
        ConsumeOptions {
            consumer: ConsumerSettings {
                brokers: "unused:9092".into(),
                topics: vec!["audit".into()],
                group: "g".into(),
                options: vec![],
                cluster_header: None,
                chunk_messages: 100,
                chunk_bytes: 1 << 20,
                chunk_wait: Duration::from_millis(10),
                exit_at_end: false,
            },
            cluster: "k".into(),
            payload_field: None,
            cluster_field: None,
            envelope_cluster: false,
            format: Default::default(),
            profiles: Arc::new(Profiles::builtin()),
            workers: 1,
            segment_rows: 1_000_000,
            max_age: Duration::from_secs(3600),
            max_message_bytes: 1 << 20,
            max_open_files: 32,
            dead_letter: None,
            abort_after_lake_commit: false,
        }
    }

    /// Chunk `seq` of partition `tp`: messages at offsets `from..from + n`, one event each, and
    /// one that is not JSON at the end.
    fn chunk(tp: &Arc<Tp>, seq: u64, from: i64, n: usize) -> Chunk {
        let text = crate::tools::gen::jsonl(n as u64, seq + 1);
        let mut messages: Vec<Message> = std::str::from_utf8(&text)
            .expect("utf-8")
            .lines()
            .enumerate()
            .map(|(i, l)| Message {
                offset: from + i as i64,
                payload: Some(l.as_bytes().to_vec()),
                cluster: None,
            })
            .collect();
        messages.push(Message {
            offset: from + n as i64,
            payload: Some(b"{not json".to_vec()),
            cluster: None,
        });
        Chunk {
            tp: tp.clone(),
            seq,
            messages,
        }
    }

    fn open_part(tx: &SyncSender<WriterMsg>, tp: &Arc<Tp>) -> u64 {
        let (reply, answer) = sync_channel(1);
        tx.send(WriterMsg::Control(Control::Open {
            tp: tp.clone(),
            reply,
        }))
        .expect("writer alive");
        answer.recv().expect("answered").expect("recovered")
    }

    fn release(tx: &SyncSender<WriterMsg>, tp: &Arc<Tp>, last_seq: u64) -> Offsets {
        let (reply, answer) = sync_channel(1);
        tx.send(WriterMsg::Control(Control::Release {
            parts: vec![(tp.clone(), Some(last_seq))],
            discard: false,
            reply,
        }))
        .expect("writer alive");
        answer.recv().expect("answered").expect("released")
    }

    #[test]
    fn the_writer_commits_in_order_then_hands_offsets_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(dir.path(), WriteOptions::default()).expect("lake");
        let opts = options();
        let run_writer = |lake: Lake, opts: ConsumeOptions| {
            let (tx, rx) = sync_channel::<WriterMsg>(8);
            let (commits, committed) = channel::<Offsets>();
            let handle =
                std::thread::spawn(move || write_loop(rx, lake, &opts, commits, &Metrics::new()));
            (tx, committed, handle)
        };

        let (tx, committed, handle) = run_writer(lake.clone(), opts.clone());
        let tp = Arc::new(Tp::new("audit", 3, 0));
        assert_eq!(open_part(&tx, &tp), 0, "a new partition starts at offset 0");
        let mut asm = Assembler::default();
        // Chunk 1 (offsets 21..=41) arrives before chunk 0 (offsets 0..=20).
        let c1 = process(&chunk(&tp, 1, 21, 20), &opts, &mut asm);
        let c0 = process(&chunk(&tp, 0, 0, 20), &opts, &mut asm);
        tx.send(WriterMsg::Work(c1)).expect("send");
        // The release waits for chunk 0, which is still to come.
        let releasing = {
            let (tx, tp) = (tx.clone(), tp.clone());
            std::thread::spawn(move || release(&tx, &tp, 1))
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(!releasing.is_finished(), "released before chunk 0 arrived");
        tx.send(WriterMsg::Work(c0)).expect("send");
        let offsets = releasing.join().expect("release thread");
        assert_eq!(offsets.len(), 1);
        assert_eq!(offsets[0].1, 42, "the next offset after the last message");
        // The offset commit was also handed to the consumer, after the lake commit.
        assert_eq!(
            committed.recv().expect("offsets").first().map(|o| o.1),
            Some(42)
        );
        drop(tx);
        let summary = handle.join().expect("writer thread").expect("writer ok");
        assert_eq!(
            (summary.events, summary.rows, summary.rejected),
            (40, 40, 2)
        );
        let names: Vec<String> = crate::sinks::lake::parquet_files(dir.path())
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("k.audit.3-000000000000-000000000041")),
            "{names:?}"
        );

        // Another owner opening the partition resumes after what the lake holds.
        let (tx, _committed, handle) = run_writer(lake, opts);
        assert_eq!(open_part(&tx, &tp), 42);
        drop(tx);
        handle.join().expect("writer thread").expect("writer ok");
    }
}
