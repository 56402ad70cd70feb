//! The catalog of a gateway with several upstreams: each exposed name (tool, prompt, resource
//! URI, template) → the upstream that has it and the name that upstream uses. Merged lists fill
//! it (`exchange::merge`); routing reads it (`exchange::route`).
//!
//! It owns the map only; it must not decide collisions (merge does) or route (route does).

use std::collections::HashMap;

use warden_guard::ListKind;

/// Exposed name → (upstream, original name), learned from merged lists.
#[derive(Default)]
pub struct Catalog {
    pub(crate) names: HashMap<(ListKind, String), (usize, String)>,
}
