//! What names mean when several upstreams share one endpoint.
//!
//! * [`Catalog`]: each exposed name (tool, prompt, resource URI, template) → the upstream that
//!   has it and the name that upstream uses. **Scoped to one session** (the state of the
//!   session-based generation), because what an upstream lists can differ per session and per
//!   principal (its own per-session state, credentials a guard adds for the caller, list items a
//!   guard withholds from this caller): one client's list must never decide where another
//!   client's call goes. A stateless (2026-07-28) request has no session: it gets a catalog of
//!   its own, filled on demand for that one request and then dropped.
//! * [`Withheld`]: names that two upstreams (or one upstream twice) exposed at once. **Gateway-
//!   wide and sticky**: a collision is a property of the configured upstreams, so once seen in
//!   any list it stays withheld for every client, even while one side is down and the other's
//!   list looks clean, until the operator resolves it (a distinct `prefix`, then a restart).
//!
//! Merged lists and on-demand fills write both (`exchange::merge`); routing reads both
//! (`exchange::route`). This module owns the maps only: it must not decide collisions (merge
//! does), route (route does) or talk to upstreams.

use std::collections::{HashMap, HashSet};

use warden_guard::ListKind;

/// Most names one catalog keeps per kind; past it names are not remembered, so calls to them
/// are refused as unknown (fail closed) rather than growing a session's memory without bound.
pub const MAX_NAMES_PER_KIND: usize = 16_384;
/// Most withheld names remembered; past it a collision is still withheld from the list that
/// shows it, but not remembered (logged).
pub const MAX_WITHHELD: usize = 65_536;

/// Exposed name → (upstream index, the upstream's own name), for one session or one request.
#[derive(Default)]
pub struct Catalog {
    names: HashMap<(ListKind, String), (usize, String)>,
    /// Kinds a merged list has filled.
    filled: HashSet<ListKind>,
}

impl Catalog {
    /// A merged list of `kind` replaces what the catalog knew of that kind.
    pub fn replace(&mut self, kind: ListKind, entries: Vec<(String, usize, String)>) {
        self.names.retain(|(k, _), _| *k != kind);
        self.filled.insert(kind);
        if entries.len() > MAX_NAMES_PER_KIND {
            tracing::warn!(?kind, "catalog full: further names are not routable");
        }
        for (exposed, idx, original) in entries.into_iter().take(MAX_NAMES_PER_KIND) {
            self.names.insert((kind, exposed), (idx, original));
        }
    }

    /// Has a list of `kind` filled the catalog?
    pub fn has(&self, kind: ListKind) -> bool {
        self.filled.contains(&kind)
    }

    /// The upstream and original name of exposed `name`.
    pub fn get(&self, kind: ListKind, name: &str) -> Option<(usize, &str)> {
        self.names
            .get(&(kind, name.to_owned()))
            .map(|(i, o)| (*i, o.as_str()))
    }

    /// Every known resource template with its upstream.
    pub fn templates(&self) -> impl Iterator<Item = (&str, usize)> {
        self.names
            .iter()
            .filter(|((k, _), _)| *k == ListKind::Templates)
            .map(|((_, t), (i, _))| (t.as_str(), *i))
    }
}

/// Names withheld for a collision, for the gateway's life.
#[derive(Default)]
pub struct Withheld {
    names: HashSet<(ListKind, String)>,
}

impl Withheld {
    /// Remember a collision; `false` when the set is full (the name is then withheld only where
    /// the collision shows).
    pub fn insert(&mut self, kind: ListKind, name: &str) -> bool {
        if self.names.len() >= MAX_WITHHELD && !self.contains(kind, name) {
            tracing::warn!(
                ?kind,
                name,
                "withheld-name set full: collision not remembered"
            );
            return false;
        }
        self.names.insert((kind, name.to_owned()));
        true
    }

    pub fn contains(&self, kind: ListKind, name: &str) -> bool {
        self.names.contains(&(kind, name.to_owned()))
    }

    /// Withheld templates (two upstreams list the same one).
    pub fn templates(&self) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .filter(|(k, _)| *k == ListKind::Templates)
            .map(|(_, t)| t.as_str())
    }
}

/// Does resource template `template` cover `uri`? The literal text before the first expression
/// must start the URI (RFC 6570 expressions are not expanded: a looser match can only make a
/// URI ambiguous, never route it to an upstream whose template does not start it).
pub fn template_covers(template: &str, uri: &str) -> bool {
    let stem = template.split('{').next().unwrap_or(template);
    !stem.is_empty() && uri.starts_with(stem)
}

/// Do prefixes alone decide every tool and prompt name? True when every upstream has a prefix
/// and no `<p>_` starts another's `<q>_`: then no two upstreams can expose the same name, and a
/// name routes by its prefix without any list.
pub fn partitioned<'a>(prefixes: impl Iterator<Item = Option<&'a str>>) -> bool {
    let all: Option<Vec<String>> = prefixes.map(|p| p.map(|p| format!("{p}_"))).collect();
    let Some(all) = all else { return false };
    all.iter().enumerate().all(|(i, p)| {
        all.iter()
            .enumerate()
            .all(|(j, q)| i == j || !q.starts_with(p.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_partition_names_only_when_none_overlaps() {
        assert!(partitioned([Some("a"), Some("b")].into_iter()));
        assert!(!partitioned([Some("a"), None].into_iter()));
        assert!(!partitioned([Some("a"), Some("a_b")].into_iter()));
        assert!(partitioned([Some("ab"), Some("a")].into_iter()));
    }

    #[test]
    fn templates_cover_by_literal_stem() {
        assert!(template_covers("file:///{path}", "file:///x"));
        assert!(!template_covers("{+uri}", "file:///x"));
        assert!(!template_covers("db://{t}", "file:///x"));
    }

    #[test]
    fn a_list_replaces_its_kind_only() {
        let mut c = Catalog::default();
        c.replace(ListKind::Tools, vec![("a".into(), 0, "a".into())]);
        c.replace(ListKind::Prompts, vec![("p".into(), 1, "p".into())]);
        c.replace(ListKind::Tools, vec![("b".into(), 1, "b".into())]);
        assert!(c.get(ListKind::Tools, "a").is_none());
        assert_eq!(c.get(ListKind::Tools, "b"), Some((1, "b")));
        assert_eq!(c.get(ListKind::Prompts, "p"), Some((1, "p")));
    }
}
