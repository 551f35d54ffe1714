//! auditlake: Kubernetes audit events in, a Parquet lake that answers "who
//! actually did this?" out.
//!
//! Data flow, which the tree follows:
//!
//! ```text
//! sources (file, webhook, kafka) ──text──▶ decode ──Event──▶ resolve ──▶ sinks::lake::batch ──▶ sinks::lake
//!            │ webhook: buffer::wal first    │ bad input                                      │
//!            │                               └──────────▶ dead letters (_rejected/) ◀─────────┘
//!            └── pipeline: the three drivers and what they share (assembly, ordering, commit)
//! ```
//!
//! Sources are I/O at the edge; `decode` and `resolve` are pure functions;
//! the lake owns atomic, idempotent Parquet commits; `query` reads it back
//! with DataFusion. Dependencies point down this list, never up: a source
//! knows nothing of the pipeline that drives it.
//!
//! Modules:
//! - [`event`]: the audit `Event` as it arrives, borrowed from the input.
//! - [`decode`]: text (Event, EventList, array, JSON lines) to events or rejections;
//!   [`decode::scan`] is its fast path for the common event shape.
//! - [`profiles`]: proxy profiles, which decide whose identity claims are believed.
//! - [`resolve`]: the identity rules: who acted, as whom, through which proxy.
//! - [`schema`]: the one definition of the record schema.
//! - [`sources`]: inputs: log files, the webhook, Kafka partitions.
//! - [`buffer`]: the write-ahead log that makes webhook batches durable before 2xx.
//! - [`pipeline`]: what the three ways in share (assembly, ordered release), and the
//!   three drivers: files, the webhook's log, Kafka partitions.
//! - [`sinks`]: the lake (Parquet segments, atomic commits, recovery, dead letters) and Kafka
//!   (the webhook's relay, consume's dead-letter topic).
//! - [`query`]: DataFusion over the lake and the named forensic queries.
//! - [`ops`]: Prometheus metrics and the `/healthz`, `/readyz`, `/metrics` endpoints.
//! - [`tools`]: synthetic traffic, the webhook load generator, the Kafka producer.
//! - [`lock`]: advisory file locks (one writer per lake source).

pub mod buffer;
pub mod decode;
pub mod event;
pub mod lock;
pub mod ops;
pub mod pipeline;
pub mod profiles;
pub mod query;
pub mod resolve;
pub mod schema;
pub mod sinks;
pub mod sources;
pub mod tools;
