//! Tools for tests, demos and benchmarks; nothing on a data path depends on them.
//! - [`gen`]: deterministic synthetic audit traffic.
//! - [`clouds`]: that traffic in EKS, AKS and GKE envelopes.
//! - [`loadgen`]: an apiserver-like webhook client.
//! - [`produce`]: JSON lines into a Kafka topic.

pub mod clouds;
pub mod gen;
pub mod loadgen;
pub mod produce;
