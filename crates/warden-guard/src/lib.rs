//! # warden-guard
//!
//! Owns the interface every Warden control implements: the [`Guard`] trait and what its hooks
//! see and answer — the exchange context [`Ctx`] with its [`Route`] and [`Principal`], the
//! [`Verdict`]s, [`Refusal`]s, list items ([`ListItem`], [`ItemVerdict`]), per-session state
//! ([`Slot`], [`SessionStore`]), requests to the client ([`ClientChannel`]), lists of Warden's own from the
//! routed upstream ([`UpstreamChannel`]) and the upstream request a guard may shape
//! ([`UpstreamRequest`]).
//!
//! It must not do I/O or know a transport: no sockets, no hyper, no processes. Decision crates
//! (token validation, policy, integrity, inspection) and their tests depend on this crate alone
//! and are driven without a gateway. The exchange core (`warden-gateway`) runs the guards in the
//! order written in its `pipeline.rs`, and alone turns a [`Refusal`] into wire form.
//!
//! ## How to write a guard
//!
//! A guard implements the hooks it needs. Hooks answer with [`Check::Ready`] when they can
//! decide at once (no allocation) and [`Check::later`] when they must await.
//!
//! ```
//! use warden_guard::{Check, Ctx, Guard, ItemVerdict, ListItem, ListKind, Refusal, Verdict};
//! use warden_proto::Message;
//!
//! /// Hides and refuses tools whose name starts with `admin_`, and answers `ping` itself.
//! struct NoAdminTools;
//!
//! impl Guard for NoAdminTools {
//!     fn name(&self) -> &'static str {
//!         "no_admin_tools"
//!     }
//!     fn client_message<'a>(&'a self, msg: &'a Message<'a>, ctx: &'a mut Ctx) -> Check<'a> {
//!         if msg.method() == Some("ping") {
//!             return Check::Ready(Verdict::Answer(b"{}".to_vec()));
//!         }
//!         // The core resolved the route before the guards run: the original name is known.
//!         let original = ctx.route.as_ref().and_then(|r| r.original.as_deref());
//!         if msg.method() == Some("tools/call") && original.is_some_and(|n| n.starts_with("admin_")) {
//!             return Check::Ready(Verdict::Deny(Refusal::new(
//!                 403, -32001, "tool_forbidden", "P2.2", "Tool not allowed", "ask an operator",
//!             )));
//!         }
//!         Check::Ready(Verdict::Continue)
//!     }
//!     fn list_item<'a>(&'a self, item: &'a ListItem<'a>, _ctx: &'a Ctx) -> Check<'a, ItemVerdict> {
//!         // Written once: the core applies it to every list on every path.
//!         Check::Ready(if item.kind == ListKind::Tools && item.original.starts_with("admin_") {
//!             ItemVerdict::Drop { reason: "tool_forbidden", control: "P2.2" }
//!         } else {
//!             ItemVerdict::Keep
//!         })
//!     }
//! }
//!
//! // A guard is tested without a gateway: a context, a parsed message, a verdict.
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let call = Message::parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x_admin_rm"}}"#).unwrap();
//! let mut ctx = Ctx::test();
//! ctx.route = Some(warden_guard::Route {
//!     original: Some("admin_rm".into()),
//!     exposed: Some("x_admin_rm".into()),
//!     ..warden_guard::Route::to(0, "files".into())
//! });
//! let verdict = NoAdminTools.client_message(&call, &mut ctx).resolve().await;
//! assert!(matches!(verdict, Verdict::Deny(r) if r.reason == "tool_forbidden"));
//! # });
//! ```
#![deny(missing_docs)]

mod client;
mod ctx;
mod guard;
mod list;
mod principal;
mod refusal;
mod session;
mod upstream;
mod verdict;

pub use client::{ClientChannel, ClientError};
pub use ctx::{Ctx, Front, Route};
pub use guard::{Guard, GuardEnv, HttpFacts, Outcome, UpstreamRequest};
pub use list::{ListItem, ListKind};
pub use principal::{AuthStrength, Principal, Secret};
pub use refusal::{Details as RefusalDetails, Refusal};
pub use session::{
    Decode, Erased, MemoryStore, SessionKey, SessionRef, SessionStore, Slot, StoreError, Stored,
};
pub use upstream::{Listed, UpstreamChannel};
pub use verdict::{BoxFuture, Check, ItemVerdict, LocalResponse, Resolve, Verdict};
