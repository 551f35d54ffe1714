//! Buffers between a source and the lake: the webhook's write-ahead log, which holds every
//! acknowledged batch until a lake commit covers it.

pub mod wal;
