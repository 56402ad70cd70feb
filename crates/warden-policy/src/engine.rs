//! [`Engine`]: a validated Cedar policy set and the decision for one MCP request (P2.2, A-ZT1).
//!
//! Entities: the principal is `User::"<iss> <sub>"` with attributes `sub`, `iss`, `roles`,
//! `groups`, `scopes` (sets of strings), `tenant` (when present), `mfa` (bool) and `acr` (when
//! present); the action is `Action::"<method>"` (`tools/call`, `resources/read`, `prompts/get`,
//! …); the resource is `Tool::"<name>"`, `Resource::"<uri>"` or `Prompt::"<name>"` with
//! `name` and `upstream`. The context holds `args` (the call's arguments, converted by
//! [`crate::value`]) and `transport`. Policies carry `@id("…")`; a decision names the ids of the
//! policies that determined it.
//!
//! Fail closed: Cedar skips a policy whose evaluation errors (an erroring `forbid` would then not
//! apply), so any evaluation error denies, naming the policy.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicySet, Request, RestrictedExpression,
};
use serde_json::Value;
use warden_guard::Principal;

use crate::value::{ValueError, to_cedar};

/// What is asked.
pub struct Call<'a> {
    /// Who asks (`None`: an unauthenticated local client — `User::"local"`).
    pub principal: Option<&'a Principal>,
    /// The JSON-RPC method.
    pub method: &'a str,
    /// The tool, resource URI or prompt the method is about, as the client names it.
    pub target: Option<&'a str>,
    /// The upstream it goes to.
    pub upstream: Option<&'a str>,
    /// The call's arguments.
    pub args: Option<&'a Value>,
    /// `http` or `stdio`.
    pub transport: &'a str,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed?
    pub allowed: bool,
    /// `@id`s (else Cedar's ids) of the policies that determined it; empty: default deny.
    pub policies: Vec<String>,
    /// Why it could not be decided (denied for it).
    pub errors: Vec<String>,
}

/// Why a policy set cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text does not parse.
    #[error("policies do not parse: {0}")]
    Parse(String),
}

/// A loaded policy set, indexed by resource: a policy scoped to `resource == X::"y"` can only
/// apply to that resource, so each such resource gets its own set (its policies and every policy
/// not scoped to one resource) and a request is evaluated against its resource's set only.
pub struct Engine {
    set: PolicySet,
    /// Policies not scoped to one resource (the set for resources without their own).
    generic: PolicySet,
    by_resource: HashMap<EntityUid, PolicySet>,
    authorizer: Authorizer,
    /// The set's version for refusals and audit (the caller's: a file hash, a revision).
    pub version: String,
}

fn uid(ty: &str, id: &str) -> Result<EntityUid, String> {
    let t = EntityTypeName::from_str(ty).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

/// The generic set and one set per resource that policies name with `resource == …`. With
/// templates the set is not split (every request sees all of it).
fn index(set: &PolicySet) -> Result<(PolicySet, HashMap<EntityUid, PolicySet>), PolicyError> {
    let add = |s: &mut PolicySet, p: &cedar_policy::Policy| {
        s.add(p.clone())
            .map_err(|e| PolicyError::Parse(e.to_string()))
    };
    if set.templates().next().is_some() {
        return Ok((set.clone(), HashMap::new()));
    }
    let mut generic = PolicySet::new();
    let mut scoped: HashMap<EntityUid, Vec<&cedar_policy::Policy>> = HashMap::new();
    for p in set.policies() {
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
    Ok((generic, by_resource))
}

fn strings(v: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(
        v.iter()
            .map(|s| RestrictedExpression::new_string(s.clone())),
    )
}

impl Engine {
    /// Parse `text` (Cedar policy syntax) as version `version`.
    pub fn new(text: &str, version: impl Into<String>) -> Result<Self, PolicyError> {
        let set = PolicySet::from_str(text).map_err(|e| PolicyError::Parse(format!("{e:?}")))?;
        let (generic, by_resource) = index(&set)?;
        Ok(Self {
            set,
            generic,
            by_resource,
            authorizer: Authorizer::new(),
            version: version.into(),
        })
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.set.policies().count()
    }

    /// Is the set empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decide `call`.
    pub fn decide(&self, call: &Call<'_>) -> Decision {
        self.decide_in(call, true)
    }

    fn decide_in(&self, call: &Call<'_>, indexed: bool) -> Decision {
        match self.request(call) {
            Ok((req, entities, ruid)) => {
                let set = match indexed {
                    true => self.by_resource.get(&ruid).unwrap_or(&self.generic),
                    false => &self.set,
                };
                let r = self.authorizer.is_authorized(&req, set, &entities);
                let errors: Vec<String> = r.diagnostics().errors().map(|e| e.to_string()).collect();
                let policies = r
                    .diagnostics()
                    .reason()
                    .map(|id| {
                        set.annotation(id, "id")
                            .map_or_else(|| id.to_string(), str::to_owned)
                    })
                    .collect();
                Decision {
                    allowed: errors.is_empty() && r.decision() == CedarDecision::Allow,
                    policies,
                    errors,
                }
            }
            Err(e) => Decision {
                allowed: false,
                policies: Vec::new(),
                errors: vec![e],
            },
        }
    }

    fn request(&self, call: &Call<'_>) -> Result<(Request, Entities, EntityUid), String> {
        let (puid, mut attrs) = match call.principal {
            Some(p) => {
                let mut a: HashMap<String, RestrictedExpression> = HashMap::new();
                a.insert(
                    "sub".into(),
                    RestrictedExpression::new_string(p.subject.clone()),
                );
                a.insert(
                    "iss".into(),
                    RestrictedExpression::new_string(p.issuer.clone()),
                );
                a.insert("roles".into(), strings(&p.roles));
                a.insert("groups".into(), strings(&p.groups));
                a.insert("scopes".into(), strings(&p.scopes));
                a.insert(
                    "mfa".into(),
                    RestrictedExpression::new_bool(p.strength.mfa()),
                );
                if let Some(t) = &p.tenant {
                    a.insert("tenant".into(), RestrictedExpression::new_string(t.clone()));
                }
                if let Some(acr) = &p.strength.acr {
                    a.insert("acr".into(), RestrictedExpression::new_string(acr.clone()));
                }
                (uid("User", p.id())?, a)
            }
            None => (uid("User", "local")?, HashMap::new()),
        };
        attrs
            .entry("local".into())
            .or_insert(RestrictedExpression::new_bool(call.principal.is_none()));
        let principal =
            Entity::new(puid.clone(), attrs, HashSet::new()).map_err(|e| e.to_string())?;
        let ty = match call.method {
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "Resource",
            "prompts/get" => "Prompt",
            _ => "Tool",
        };
        let name = call.target.unwrap_or("");
        let ruid = uid(ty, name)?;
        let mut rattrs = HashMap::new();
        rattrs.insert(
            "name".into(),
            RestrictedExpression::new_string(name.to_owned()),
        );
        rattrs.insert(
            "upstream".into(),
            RestrictedExpression::new_string(call.upstream.unwrap_or("").to_owned()),
        );
        let resource =
            Entity::new(ruid.clone(), rattrs, HashSet::new()).map_err(|e| e.to_string())?;
        let mut ctx = vec![(
            "transport".to_owned(),
            RestrictedExpression::new_string(call.transport.to_owned()),
        )];
        let args = match call.args {
            Some(a) => to_cedar(a).map_err(|e: ValueError| e.to_string())?,
            None => None,
        };
        ctx.push((
            "args".to_owned(),
            args.unwrap_or_else(|| {
                RestrictedExpression::new_record([])
                    .unwrap_or_else(|_| RestrictedExpression::new_bool(false))
            }),
        ));
        let context = Context::from_pairs(ctx).map_err(|e| e.to_string())?;
        let req = Request::new(
            puid,
            uid("Action", call.method)?,
            ruid.clone(),
            context,
            None,
        )
        .map_err(|e| e.to_string())?;
        let entities =
            Entities::from_entities([principal, resource], None).map_err(|e| e.to_string())?;
        Ok((req, entities, ruid))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const SET: &str = r#"
        @id("a") permit(principal, action == Action::"tools/call", resource == Tool::"t1");
        @id("b") forbid(principal, action, resource == Tool::"t2") when { context.args.x == 1 };
        @id("c") permit(principal, action, resource) when { resource.name like "t*" && !(context.args has y) };
        @id("d") forbid(principal, action, resource is Tool) when { context.args has z };
        @id("e") permit(principal, action == Action::"resources/read", resource == Resource::"t1");
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
            let call = Call {
                principal: None, method: &method, target: Some(&tool), upstream: None,
                args: Some(&args), transport: "stdio",
            };
            let (a, b) = (e.decide_in(&call, true), e.decide_in(&call, false));
            prop_assert_eq!(a.allowed, b.allowed);
            let (mut pa, mut pb) = (a.policies, b.policies);
            pa.sort();
            pb.sort();
            prop_assert_eq!(pa, pb);
        }
    }
}
