//! auditlake: Kubernetes audit events in, a Parquet lake that answers "who
//! actually did this?" out.
//!
//! Data flow:
//!
//! ```text
//! source (file, webhook, kafka) ──text──▶ decode ──Event──▶ resolve ──▶ lake::batch ──▶ lake
//!                                          │ bad input                                  │
//!                                          └──────────▶ dead letters (_rejected/) ◀─────┘
//! ```
//!
//! Sources are I/O at the edge; `decode` and `resolve` are pure functions;
//! the lake owns atomic, idempotent Parquet commits; `query` reads it back
//! with DataFusion.
//!
//! Modules:
//! - [`event`]: the audit `Event` as it arrives, borrowed from the input.
//! - [`decode`]: text (Event, EventList, array, JSON lines) to events or rejections;
//!   [`decode::scan`] is its fast path for the common event shape.
//! - [`profiles`]: proxy profiles, which decide whose identity claims are believed.
//! - [`resolve`]: the identity rules: who acted, as whom, through which proxy.
//! - [`schema`]: the one definition of the record schema.
//! - [`lake`]: Parquet segments, atomic commits, recovery, dead letters.
//! - [`source`]: inputs: log files, the webhook, Kafka partitions.
//! - [`ingest`]: the threaded file → lake pipeline.
//! - [`query`]: DataFusion over the lake and the named forensic queries.
//! - [`gen`]: deterministic synthetic audit traffic.
//! - [`wal`]: the write-ahead log that makes webhook batches durable before 2xx.
//! - [`flush`]: the stage that turns the log into lake segments, then trims it.
//! - [`serve`]: the webhook receiver wired together (server, log, flush, metrics).
//! - [`consume`]: the Kafka consumer-group pipeline (offsets committed after the lake).
//! - [`relay`]: the webhook's Kafka sink (2xx after every delivery report).
//! - [`metrics`]: Prometheus metrics of the long-running commands.
//! - [`loadgen`]: an apiserver-like webhook client for load tests.

pub mod consume;
pub mod decode;
pub mod event;
pub mod flush;
pub mod gen;
pub mod ingest;
pub mod lake;
pub mod loadgen;
pub mod lock;
pub mod metrics;
pub mod profiles;
pub mod query;
pub mod relay;
pub mod resolve;
pub mod schema;
pub mod serve;
pub mod source;
pub mod wal;
