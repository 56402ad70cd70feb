//! The guards. Each file is one control; `pipeline.rs` puts them in order.

pub mod host_origin;
pub mod http_hygiene;
pub mod protocol;
pub mod tool_headers;
