//! warden-bench: the pieces of Warden's relay benchmark (issue #2) shared by its binaries.
//!
//! * [`http1`]: a minimal HTTP/1.1 request writer and response parser (cheap load generation).
//! * [`client`]: MCP sessions over one keep-alive connection, async (tokio) and blocking.
//! * [`procfs`]: CPU time and RSS of a process from `/proc`.
//! * [`stats`]: percentiles and number formatting for the report.
//! * [`supervise`]: child processes and temp dirs cleaned up on every exit path.
//!
//! The binaries are `trivial-upstream` (a fast MCP server) and `relay-bench` (the driver).

pub mod client;
pub mod http1;
pub mod procfs;
pub mod stats;
pub mod supervise;
