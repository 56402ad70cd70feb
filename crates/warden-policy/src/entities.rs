//! The principal and the target of a request as Cedar entities (P2.2, A-ZT1), built once and
//! shared: a [`Subject`] per principal, a [`Target`] per tool, resource or prompt.
//!
//! * `User::"<iss> <sub>"` (or `User::"local"` for an unauthenticated local client) with `sub`,
//!   `iss`, `roles`, `groups`, `scopes` (sets of strings), `mfa` (bool), `local` (bool), `claims`
//!   (every claim of the token, converted like arguments) and, when present, `tenant` and `acr`.
//! * `Tool::"<name>"`, `Resource::"<uri or uri template>"`, `Prompt::"<name>"` with `name`,
//!   `upstream`, `labels` (set of strings: config first, hints only add, see `labels`) and
//!   `hints` — the MCP annotations **as the server claims them** (untrusted), with the spec's
//!   worst-case defaults where the server is silent: `read_only` false, `destructive` true,
//!   `idempotent` false, `open_world` true.
//!
//! No attribute comes from the message's arguments: those are in the context ([`crate::context`]).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use warden_guard::Principal;

use crate::value::to_cedar;

/// What a method is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// `Tool::` (`tools/call`, `tools/list` items, and methods that name nothing).
    Tool,
    /// `Resource::` (`resources/read`, `resources/subscribe`, resource and template list items).
    Resource,
    /// `Prompt::` (`prompts/get`, `prompts/list` items).
    Prompt,
}

impl TargetKind {
    /// The kind a method's target is.
    pub fn of_method(method: &str) -> Self {
        match method {
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Self::Resource,
            "prompts/get" => Self::Prompt,
            _ => Self::Tool,
        }
    }
    fn type_name(self) -> &'static str {
        match self {
            Self::Tool => "Tool",
            Self::Resource => "Resource",
            Self::Prompt => "Prompt",
        }
    }
}

pub(crate) fn uid(ty: &str, id: &str) -> Result<EntityUid, String> {
    let t = EntityTypeName::from_str(ty).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

fn strings<'a>(v: impl IntoIterator<Item = &'a String>) -> RestrictedExpression {
    RestrictedExpression::new_set(
        v.into_iter()
            .map(|s| RestrictedExpression::new_string(s.clone())),
    )
}

/// The principal as a Cedar entity.
pub struct Subject {
    pub(crate) uid: EntityUid,
    pub(crate) entity: Entity,
}

impl Subject {
    /// `p` as `User::"<iss> <sub>"`, or `User::"local"` for `None`.
    pub fn new(p: Option<&Principal>) -> Result<Self, String> {
        let mut a: HashMap<String, RestrictedExpression> = HashMap::new();
        let uid = match p {
            Some(p) => {
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
                let claims = serde_json::Value::Object(p.claims.clone());
                if let Some(c) = to_cedar(&claims).map_err(|e| format!("claims: {e}"))? {
                    a.insert("claims".into(), c);
                }
                uid("User", p.id())?
            }
            None => {
                for k in ["roles", "groups", "scopes"] {
                    a.insert(k.into(), RestrictedExpression::new_set([]));
                }
                a.insert("mfa".into(), RestrictedExpression::new_bool(false));
                uid("User", "local")?
            }
        };
        a.insert("local".into(), RestrictedExpression::new_bool(p.is_none()));
        let entity = Entity::new(uid.clone(), a, HashSet::new()).map_err(|e| e.to_string())?;
        Ok(Self { uid, entity })
    }
}

/// MCP tool annotations as the server states them (untrusted hints, I4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Hints {
    /// `readOnlyHint`.
    pub read_only: Option<bool>,
    /// `destructiveHint`.
    pub destructive: Option<bool>,
    /// `idempotentHint`.
    pub idempotent: Option<bool>,
    /// `openWorldHint`.
    pub open_world: Option<bool>,
}

impl Hints {
    /// The hints of a tool definition's `annotations` (absent or malformed: none).
    pub fn of_tool(tool: &serde_json::Value) -> Self {
        let a = tool.get("annotations");
        let b = |k: &str| {
            a.and_then(|a| a.get(k))
                .and_then(serde_json::Value::as_bool)
        };
        Self {
            read_only: b("readOnlyHint"),
            destructive: b("destructiveHint"),
            idempotent: b("idempotentHint"),
            open_world: b("openWorldHint"),
        }
    }
    /// With the spec's defaults: (read_only, destructive, idempotent, open_world).
    pub fn resolved(&self) -> (bool, bool, bool, bool) {
        (
            self.read_only.unwrap_or(false),
            self.destructive.unwrap_or(true),
            self.idempotent.unwrap_or(false),
            self.open_world.unwrap_or(true),
        )
    }
}

/// A tool, resource or prompt as a Cedar entity.
pub struct Target {
    /// Which kind.
    pub kind: TargetKind,
    /// Its name (URI) as the upstream knows it.
    pub name: Arc<str>,
    /// Its upstream.
    pub upstream: Arc<str>,
    /// Its flow labels.
    pub labels: Vec<String>,
    pub(crate) uid: EntityUid,
    pub(crate) entity: Entity,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("upstream", &self.upstream)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// `name` of `upstream` with `labels` and `hints`.
    pub fn new(
        kind: TargetKind,
        name: &str,
        upstream: &str,
        labels: Vec<String>,
        hints: Hints,
    ) -> Result<Self, String> {
        let uid = uid(kind.type_name(), name)?;
        let (ro, de, id, ow) = hints.resolved();
        let hint_rec = RestrictedExpression::new_record([
            ("read_only".to_owned(), RestrictedExpression::new_bool(ro)),
            ("destructive".to_owned(), RestrictedExpression::new_bool(de)),
            ("idempotent".to_owned(), RestrictedExpression::new_bool(id)),
            ("open_world".to_owned(), RestrictedExpression::new_bool(ow)),
        ])
        .map_err(|e| e.to_string())?;
        let attrs = HashMap::from([
            (
                "name".to_owned(),
                RestrictedExpression::new_string(name.to_owned()),
            ),
            (
                "upstream".to_owned(),
                RestrictedExpression::new_string(upstream.to_owned()),
            ),
            ("labels".to_owned(), strings(&labels)),
            ("hints".to_owned(), hint_rec),
        ]);
        let entity = Entity::new(uid.clone(), attrs, HashSet::new()).map_err(|e| e.to_string())?;
        Ok(Self {
            kind,
            name: name.into(),
            upstream: upstream.into(),
            labels,
            uid,
            entity,
        })
    }

    /// Has it `label`?
    pub fn has(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l == label)
    }
}
