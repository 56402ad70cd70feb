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

/// A loaded policy set.
pub struct Engine {
    set: PolicySet,
    authorizer: Authorizer,
    /// The set's version for refusals and audit (the caller's: a file hash, a revision).
    pub version: String,
}

fn uid(ty: &str, id: &str) -> Result<EntityUid, String> {
    let t = EntityTypeName::from_str(ty).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
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
        Ok(Self {
            set,
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
        match self.request(call) {
            Ok((req, entities)) => {
                let r = self.authorizer.is_authorized(&req, &self.set, &entities);
                let errors: Vec<String> = r.diagnostics().errors().map(|e| e.to_string()).collect();
                let policies = r
                    .diagnostics()
                    .reason()
                    .map(|id| {
                        self.set
                            .annotation(id, "id")
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

    fn request(&self, call: &Call<'_>) -> Result<(Request, Entities), String> {
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
        let req = Request::new(puid, uid("Action", call.method)?, ruid, context, None)
            .map_err(|e| e.to_string())?;
        let entities =
            Entities::from_entities([principal, resource], None).map_err(|e| e.to_string())?;
        Ok((req, entities))
    }
}
