//! Tools for tests, demos and benchmarks; nothing on a data path depends on them.
//! - [`gen`]: deterministic synthetic audit traffic.
//! - [`loadgen`]: an apiserver-like webhook client.
//! - [`produce`]: JSON lines into a Kafka topic.

pub mod gen;
pub mod loadgen;
pub mod produce;
