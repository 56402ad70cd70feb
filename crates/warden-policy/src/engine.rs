//! [`Engine`]: a validated Cedar policy set and the decision for one MCP request (P2.2, P2.4,
//! A-ZT1, A-ZT3). Entities are in [`crate::entities`], the context in [`crate::context`].
//!
//! **Effects.** `permit` allows; a plain `forbid` denies. A `forbid` annotated
//! `@effect("ask")` does not deny: when it applies to a call the policies otherwise allow, the
//! decision is [`Effect::Ask`] (a person must say yes, #15 item 6); `@effect("audit")` allows
//! and flags the call for audit. Policies carry `@id("…")` (a decision names the ids that
//! determined it) and may carry `@reason("…")` (the hint a refusal shows).
//!
//! **Fail closed.** Cedar skips a policy whose evaluation errors (an erroring `forbid` would then
//! not apply), so any evaluation error denies, naming the policy.
//!
//! **Index.** A policy scoped to `resource == X::"y"` can only apply to that resource; each such
//! resource gets its own set (its policies and every policy not scoped to one resource), so
//! unrelated policies cost nothing.
//!
//! **Lists** ([`Engine::visible`]) use Cedar's partial evaluation with the whole context
//! unknown: an item is hidden only when no context could let the call through, so a hidden
//! item is never callable and a callable one is never hidden (property-tested).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    Authorizer, Decision as CedarDecision, Entities, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RequestBuilder,
};
use warden_guard::Principal;

use crate::context::{Facts, Needs, build_some};
use crate::entities::{Subject, Target};
use crate::index::Indexed;

/// What a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Forward it.
    Allow,
    /// Refuse it.
    Deny,
    /// Forward it only on a person's yes.
    Ask,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub effect: Effect,
    /// `@id`s of the policies that determined it (permits for an allow, forbids for a deny,
    /// the asking forbids for an ask); empty for a default deny.
    pub policies: Vec<String>,
    /// `@effect("audit")` policies that matched an allowed call.
    pub flagged: Vec<String>,
    /// The first determining policy's `@reason`, if any.
    pub reason: Option<String>,
    /// Why it could not be decided (denied for it).
    pub errors: Vec<String>,
}

impl Decision {
    /// Allowed outright?
    pub fn allowed(&self) -> bool {
        self.effect == Effect::Allow
    }
    pub(crate) fn deny_error(e: String) -> Self {
        Self {
            effect: Effect::Deny,
            policies: Vec::new(),
            flagged: Vec::new(),
            reason: None,
            errors: vec![e],
        }
    }
}

/// Why a policy set cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text does not parse.
    #[error("policies do not parse: {0}")]
    Parse(String),
    /// An annotation is wrong (an unknown `@effect`, `@effect` on a `permit`).
    #[error("{0}")]
    Annotation(String),
}

/// Entities per (principal, target) pair, holding both so their addresses stay theirs.
struct Cached {
    _principal: Option<Arc<Principal>>,
    _target: Arc<Target>,
    puid: EntityUid,
    entities: Arc<Entities>,
}

/// Most (principal, target) pairs whose entities are kept.
const CACHE_MAX: usize = 4096;

/// A loaded policy set.
pub struct Engine {
    /// Permits and denying forbids, unindexed (reference for the index property test).
    enforced_all: PolicySet,
    enforced: Indexed,
    /// `@effect("ask")` and `@effect("audit")` forbids.
    flags: Indexed,
    flags_all: PolicySet,
    effects: HashMap<String, FlagEffect>,
    ids: HashMap<String, (String, Option<String>)>,
    count: usize,
    authorizer: Authorizer,
    action_type: EntityTypeName,
    cache: Mutex<HashMap<(usize, usize), Cached>>,
    labels: Vec<Arc<str>>,
    needs: Needs,
    /// The set's version for refusals and audit (the caller's: a file hash, a revision).
    pub version: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagEffect {
    Ask,
    Audit,
}

/// What is asked, with shared entities (the gateway's hot path).
pub struct Ask<'a> {
    /// Who asks (`None`: an unauthenticated local client — `User::"local"`).
    pub principal: Option<&'a Arc<Principal>>,
    /// The JSON-RPC method (the Cedar action).
    pub method: &'a str,
    /// What it is about.
    pub target: &'a Arc<Target>,
    /// Arguments, client, time, flow.
    pub facts: Facts<'a>,
}

impl Engine {
    /// Parse `text` (Cedar policy syntax) as version `version`.
    pub fn new(text: &str, version: impl Into<String>) -> Result<Self, PolicyError> {
        let set = PolicySet::from_str(text).map_err(|e| PolicyError::Parse(format!("{e:?}")))?;
        if set.templates().next().is_some() {
            return Err(PolicyError::Annotation(
                "policy templates are not supported: write plain policies".into(),
            ));
        }
        let mut effects = HashMap::new();
        let mut ids = HashMap::new();
        let (mut enforced, mut flags) = (Vec::new(), Vec::new());
        for p in set.policies() {
            let id = p.annotation("id").unwrap_or(p.id().as_ref()).to_owned();
            ids.insert(
                p.id().to_string(),
                (id.clone(), p.annotation("reason").map(str::to_owned)),
            );
            let effect = match p.annotation("effect") {
                None | Some("deny") => None,
                Some("ask") => Some(FlagEffect::Ask),
                Some("audit") => Some(FlagEffect::Audit),
                Some(other) => {
                    return Err(PolicyError::Annotation(format!(
                        "policy {id}: @effect must be \"deny\", \"ask\" or \"audit\", not {other:?}"
                    )));
                }
            };
            match (effect, p.effect()) {
                (None, _) => enforced.push(p),
                (Some(e), cedar_policy::Effect::Forbid) => {
                    effects.insert(p.id().to_string(), e);
                    flags.push(p);
                }
                (Some(_), cedar_policy::Effect::Permit) => {
                    return Err(PolicyError::Annotation(format!(
                        "policy {id}: @effect applies to forbid policies only"
                    )));
                }
            }
        }
        let texts: Vec<String> = set.policies().map(|p| p.to_string()).collect();
        let collect = |v: &[&cedar_policy::Policy]| -> Result<PolicySet, PolicyError> {
            PolicySet::from_policies(v.iter().map(|p| (*p).clone()))
                .map_err(|e| PolicyError::Parse(e.to_string()))
        };
        Ok(Self {
            enforced_all: collect(&enforced)?,
            enforced: Indexed::new(&enforced).map_err(PolicyError::Parse)?,
            flags_all: collect(&flags)?,
            flags: Indexed::new(&flags).map_err(PolicyError::Parse)?,
            effects,
            ids,
            count: set.policies().count(),
            authorizer: Authorizer::new(),
            action_type: EntityTypeName::from_str("Action")
                .map_err(|e| PolicyError::Parse(e.to_string()))?,
            cache: Mutex::new(HashMap::new()),
            needs: Needs::of(texts.iter().map(String::as_str)),
            labels: crate::flow::WELL_KNOWN
                .iter()
                .map(|l| Arc::from(*l))
                .collect(),
            version: version.into(),
        })
    }

    /// Show counts for these labels in every context (the flow book's labels).
    pub fn with_labels(mut self, labels: &[Arc<str>]) -> Self {
        self.labels = labels.to_vec();
        self
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Is the set empty?
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `@id` of Cedar policy id `id`.
    fn id_of(&self, id: &cedar_policy::PolicyId) -> (String, Option<String>) {
        self.ids
            .get(AsRef::<str>::as_ref(id))
            .cloned()
            .unwrap_or_else(|| (id.to_string(), None))
    }

    fn action(&self, method: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.action_type.clone(), EntityId::new(method))
    }

    fn entities(
        &self,
        p: Option<&Arc<Principal>>,
        t: &Arc<Target>,
        cache: bool,
    ) -> Result<(EntityUid, Arc<Entities>), String> {
        if !cache {
            let s = Subject::new(p.map(|p| &**p))?;
            let e = Entities::from_entities([s.entity, t.entity.clone()], None)
                .map_err(|e| e.to_string())?;
            return Ok((s.uid, Arc::new(e)));
        }
        let key = (
            p.map_or(0, |p| Arc::as_ptr(p) as usize),
            Arc::as_ptr(t) as usize,
        );
        {
            let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = c.get(&key) {
                return Ok((hit.puid.clone(), hit.entities.clone()));
            }
        }
        let s = Subject::new(p.map(|p| &**p))?;
        let entities = Arc::new(
            Entities::from_entities([s.entity, t.entity.clone()], None)
                .map_err(|e| e.to_string())?,
        );
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= CACHE_MAX {
            c.clear();
        }
        c.insert(
            key,
            Cached {
                _principal: p.cloned(),
                _target: t.clone(),
                puid: s.uid.clone(),
                entities: entities.clone(),
            },
        );
        Ok((s.uid, entities))
    }

    /// Decide `ask`.
    pub fn decide(&self, ask: &Ask<'_>) -> Decision {
        self.decide_in(ask, true)
    }

    /// Decide `ask` without keeping its entities (one-off requests: `warden policy test`).
    pub fn decide_once(&self, ask: &Ask<'_>) -> Decision {
        self.decide_with(ask, true, false)
    }

    pub(crate) fn decide_in(&self, ask: &Ask<'_>, indexed: bool) -> Decision {
        self.decide_with(ask, indexed, true)
    }

    fn decide_with(&self, ask: &Ask<'_>, indexed: bool, cache: bool) -> Decision {
        let (puid, entities) = match self.entities(ask.principal, ask.target, cache) {
            Ok(x) => x,
            Err(e) => return Decision::deny_error(e),
        };
        let context = match build_some(&ask.facts, &self.labels, self.needs) {
            Ok(c) => c,
            Err(e) => return Decision::deny_error(e),
        };
        let req = match Request::new(
            puid,
            self.action(ask.method),
            ask.target.uid.clone(),
            context,
            None,
        ) {
            Ok(r) => r,
            Err(e) => return Decision::deny_error(e.to_string()),
        };
        let set = self.pick(&self.enforced, &self.enforced_all, &ask.target.uid, indexed);
        let r = self.authorizer.is_authorized(&req, set, &entities);
        let errors: Vec<String> = r.diagnostics().errors().map(|e| e.to_string()).collect();
        let mut named: Vec<(String, Option<String>)> =
            r.diagnostics().reason().map(|id| self.id_of(id)).collect();
        named.sort();
        if !errors.is_empty() || r.decision() == CedarDecision::Deny {
            return decision(Effect::Deny, named, Vec::new(), errors);
        }
        if self.flags.is_empty() {
            return decision(Effect::Allow, named, Vec::new(), errors);
        }
        let fset = self.pick(&self.flags, &self.flags_all, &ask.target.uid, indexed);
        let f = self.authorizer.is_authorized(&req, fset, &entities);
        let ferrors: Vec<String> = f.diagnostics().errors().map(|e| e.to_string()).collect();
        if !ferrors.is_empty() {
            return decision(Effect::Deny, Vec::new(), Vec::new(), ferrors);
        }
        let (mut asking, mut flagged) = (Vec::new(), Vec::new());
        for id in f.diagnostics().reason() {
            match self.effects.get(AsRef::<str>::as_ref(id)) {
                Some(FlagEffect::Ask) => asking.push(self.id_of(id)),
                _ => flagged.push(self.id_of(id).0),
            }
        }
        flagged.sort();
        if asking.is_empty() {
            decision(Effect::Allow, named, flagged, Vec::new())
        } else {
            asking.sort();
            decision(Effect::Ask, asking, flagged, Vec::new())
        }
    }

    fn pick<'s>(
        &'s self,
        ix: &'s Indexed,
        all: &'s PolicySet,
        u: &EntityUid,
        indexed: bool,
    ) -> &'s PolicySet {
        match indexed {
            true => ix.by_resource.get(u).unwrap_or(&ix.generic),
            false => all,
        }
    }

    /// May `principal` see `target` in a list (the call `method` would name it)? `false` only
    /// when no arguments, time or flow could let that call through.
    pub fn visible(
        &self,
        principal: Option<&Arc<Principal>>,
        method: &str,
        target: &Arc<Target>,
    ) -> bool {
        let Ok((puid, entities)) = self.entities(principal, target, true) else {
            return false;
        };
        let req = RequestBuilder::default()
            .principal(puid)
            .action(self.action(method))
            .resource(target.uid.clone())
            .build();
        let set = self.pick(&self.enforced, &self.enforced_all, &target.uid, true);
        let r = self.authorizer.is_authorized_partial(&req, set, &entities);
        r.decision() != Some(CedarDecision::Deny)
    }
}

fn decision(
    effect: Effect,
    named: Vec<(String, Option<String>)>,
    flagged: Vec<String>,
    errors: Vec<String>,
) -> Decision {
    let reason = named.iter().find_map(|(_, r)| r.clone());
    Decision {
        effect,
        policies: named.into_iter().map(|(id, _)| id).collect(),
        flagged,
        reason,
        errors,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::entities::{Hints, TargetKind};
    use proptest::prelude::*;

    const SET: &str = r#"
        @id("a") permit(principal, action == Action::"tools/call", resource == Tool::"t1");
        @id("b") forbid(principal, action, resource == Tool::"t2") when { context.args.x == 1 };
        @id("c") permit(principal, action, resource) when { resource.name like "t*" && !(context.args has y) };
        @id("d") forbid(principal, action, resource is Tool) when { context.args has z };
        @id("e") permit(principal, action == Action::"resources/read", resource == Resource::"t1");
        @id("f") @effect("ask") forbid(principal, action, resource == Tool::"t3") when { context.args.x == 2 };
        @id("g") @effect("audit") forbid(principal, action, resource) when { context.args.x == 0 };
    "#;

    proptest! {
        /// The index changes what is evaluated, never the decision or the policies named.
        #[test]
        fn the_index_never_changes_a_decision(
            tool in "t[0-3]|u1", method in "tools/call|resources/read|prompts/get",
            x in 0i64..3, y in any::<bool>(), z in any::<bool>(),
        ) {
            let e = Engine::new(SET, "t").unwrap();
            let mut args = serde_json::json!({"x": x});
            if y { args["y"] = 1.into(); }
            if z { args["z"] = 1.into(); }
            let target = Arc::new(Target::new(TargetKind::of_method(&method), &tool, "up", vec![], Hints::default()).unwrap());
            let ask = Ask {
                principal: None, method: &method, target: &target,
                facts: Facts { args: Some(&args), transport: "stdio", client_ip: None, now: 0, utc_offset_minutes: 0, flow: None },
            };
            let (a, b) = (e.decide_in(&ask, true), e.decide_in(&ask, false));
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn ask_and_audit_effects() {
        let e = Engine::new(SET, "t").unwrap();
        let t3 =
            Arc::new(Target::new(TargetKind::Tool, "t3", "up", vec![], Hints::default()).unwrap());
        let ask = |x: i64| {
            let args = serde_json::json!({"x": x});
            e.decide(&Ask {
                principal: None,
                method: "tools/call",
                target: &t3,
                facts: Facts {
                    args: Some(&args),
                    transport: "stdio",
                    client_ip: None,
                    now: 0,
                    utc_offset_minutes: 0,
                    flow: None,
                },
            })
        };
        assert_eq!(ask(1).effect, Effect::Allow);
        let d = ask(2);
        assert_eq!(
            (d.effect, d.policies.as_slice()),
            (Effect::Ask, &["f".to_owned()][..])
        );
        let d = ask(0);
        assert_eq!(
            (d.effect, d.flagged.as_slice()),
            (Effect::Allow, &["g".to_owned()][..])
        );
        assert!(
            Engine::new(
                r#"@effect("ask") permit(principal, action, resource);"#,
                "x"
            )
            .is_err()
        );
        assert!(
            Engine::new(
                r#"@effect("maybe") forbid(principal, action, resource);"#,
                "x"
            )
            .is_err()
        );
    }
}
