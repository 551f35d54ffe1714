//! Inputs. Each source turns an outside stream into units of text with
//! stable positions; decoding and everything after it is shared.

pub mod file;
pub mod kafka;
pub mod webhook;
