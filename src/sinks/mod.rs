//! Where records go: the lake (the store of record) and Kafka (the webhook's relay mode and
//! consume's dead-letter topic).

pub mod kafka;
pub mod lake;
