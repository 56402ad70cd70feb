//! # warden-proto
//!
//! Owns the wire shape of MCP as Warden sees it: a borrowed JSON-RPC envelope over the original bytes
//! ([`envelope`]), input limits checked before any parse ([`limits`]), protocol versions and the
//! generation they belong to ([`version`]), JSON-RPC error bodies with stable reason codes ([`error`]),
//! the 2026-07-28 `Mcp-Method`/`Mcp-Name`/`Mcp-Param-*` header rules ([`headers`]), SSE framing
//! ([`sse`]), streamed JSON bodies split into their messages ([`jsonseq`]), byte-span edits over
//! the original message ([`splice`]), the rule that no object repeats a key ([`unique`]), the one validating pass nearly every
//! message takes instead (`scan`) and
//! strict reads of the values decisions depend on: exact numbers ([`strict`]).
//!
//! It must not do I/O, hold state between messages, or re-serialise a message it did not edit:
//! everything a caller does not change passes as the exact input bytes (the lossless-relay rule).
//! Every function here takes untrusted bytes and fails with a typed error; none panics on input.
//! Requirements served: P1.1 (strict envelope, size/depth limits), P3.4 (version rules).

pub mod envelope;
pub mod error;
pub mod headers;
pub mod jsonseq;
pub mod limits;
mod scan;
pub mod splice;
pub mod sse;
pub mod strict;
mod string_end;
pub mod unique;
pub mod version;

pub use envelope::{Kind, Message, ProtoError};
pub use version::{Generation, ProtocolVersion};
