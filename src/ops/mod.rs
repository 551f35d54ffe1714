//! Operating the long-running commands: Prometheus metrics and the endpoints that serve them.

pub mod metrics;
