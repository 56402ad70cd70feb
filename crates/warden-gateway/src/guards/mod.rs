//! The guards. Each file is one control; `pipeline.rs` puts them in order.

pub mod host_origin;
pub mod protocol;
