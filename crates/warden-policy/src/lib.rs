//! # warden-policy
//!
//! Owns Warden's authorization decisions (P2.2, P7.3, A-ZT1, A-ZT3): who may call which tool,
//! read which resource or get which prompt, with which arguments — Cedar policies over the
//! principal the identity guard established, the MCP method and the target, with the arguments
//! converted so that none can forge an entity ([`value`]) and a decision that names the policies
//! that made it ([`engine`]). Deny by default; an evaluation error denies.
//!
//! Status (#15, first step): the engine and the safe argument conversion, tested table-driven
//! and by property. Not yet: the guard, list filtering, the schema, hot reload, flow labels,
//! approvals, the CLI. Unindexed cost, `cargo bench -p warden-policy --bench decide`: 19 µs at
//! 10 policies, 88 µs at 100, 810 µs at 1,000 — an index by action and resource comes next.
//!
//! It must not do I/O: policy text comes from the caller, decisions go back to it. The guard that
//! applies them to every message and list on every path lives in the gateway.

pub mod engine;
pub mod value;

pub use engine::{Call, Decision, Engine, PolicyError};
