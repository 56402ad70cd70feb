//! # warden-policy
//!
//! Owns Warden's authorization decisions (P2.2, P2.4, P6.4, P7.3, P9.1, A-ZT1, A-ZT3, A-ZT4):
//! who may call which tool, read which resource or get which prompt, with which arguments,
//! under which conditions — Cedar policies over the principal the identity guard established
//! ([`entities`]), the MCP method and the target, and a context of the arguments (converted so
//! that none can forge an entity, [`value`]), the client, the time and the session's flow
//! ([`context`], [`flow`]). A decision allows, denies or asks a person, and names the policies
//! that made it ([`engine`]). Deny by default; an evaluation error denies.
//!
//! Also here: the flow labels of tools ([`labels`]), approvals and the integrity-protected
//! `requestState` of the 2026-07-28 retry ([`approval`]), the published schema and its
//! generation from a server's `tools/list` ([`schema`]), the built-in policy packs ([`packs`])
//! and the test cases `warden policy test` runs ([`cases`]).
//!
//! It must not do I/O: policy text comes from the caller, decisions go back to it. The guard
//! that applies them to every message and list on every path lives in the gateway
//! (`warden-gateway/src/policy/`).

pub mod approval;
pub mod call;
pub mod cases;
pub mod context;
pub mod engine;
pub mod entities;
pub mod flow;
mod index;
pub mod labels;
pub mod packs;
pub mod schema;
pub mod value;

pub use call::Call;
pub use context::Facts;
pub use engine::{Ask, Decision, Effect, Engine, PolicyError};
pub use entities::{Hints, Subject, Target, TargetKind};
pub use flow::{FlowBook, FlowView};
