//! The index of a policy set by resource: a policy scoped to `resource == X::"y"` can only apply
//! to that resource, so each such resource gets its own set (its policies and every policy not
//! scoped to one resource) and unrelated policies cost nothing.

use std::collections::HashMap;

use cedar_policy::{EntityUid, PolicySet};

/// A policy set split by resource.
pub(crate) struct Indexed {
    pub(crate) generic: PolicySet,
    pub(crate) by_resource: HashMap<EntityUid, PolicySet>,
}

impl Indexed {
    pub(crate) fn new(policies: &[&cedar_policy::Policy]) -> Result<Self, String> {
        let add = |s: &mut PolicySet, p: &cedar_policy::Policy| {
            s.add(p.clone()).map_err(|e| e.to_string())
        };
        let mut generic = PolicySet::new();
        let mut scoped: HashMap<EntityUid, Vec<&cedar_policy::Policy>> = HashMap::new();
        for p in policies {
            match p.resource_constraint() {
                cedar_policy::ResourceConstraint::Eq(u) => scoped.entry(u).or_default().push(p),
                _ => add(&mut generic, p)?,
            }
        }
        let mut by_resource = HashMap::new();
        for (u, ps) in scoped {
            let mut s = generic.clone();
            for p in ps {
                add(&mut s, p)?;
            }
            by_resource.insert(u, s);
        }
        Ok(Self {
            generic,
            by_resource,
        })
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.generic.is_empty() && self.by_resource.is_empty()
    }
}
