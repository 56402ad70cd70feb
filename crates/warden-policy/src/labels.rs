//! Flow labels of tools (P6.4, A-ZT4): from the configuration first, MCP annotations as hints
//! where the configuration is silent, and a configured default.
//!
//! * Every `[[policy.labels]]` rule whose `upstream` (if given) and `tools` pattern (`*` any
//!   run, `?` one character) match the tool contributes its labels; a matching rule with
//!   `labels = []` still counts: the configuration has spoken, and neither hints nor the
//!   default apply.
//! * Otherwise the tool gets the default labels **plus** what its annotations claim: an explicit
//!   `destructiveHint: true` (not read-only) adds `destructive`, an explicit `openWorldHint: true`
//!   adds `untrusted_input` and `egress`. Hints are the server's word (untrusted), so they only
//!   ever add: a server cannot talk its tool out of the default.

use crate::entities::Hints;
use crate::flow::{DESTRUCTIVE, EGRESS, UNTRUSTED_INPUT};

/// One configured rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Only this upstream's tools (`None`: any).
    pub upstream: Option<String>,
    /// Tool-name pattern.
    pub tools: String,
    /// The labels.
    pub labels: Vec<String>,
}

/// The rules and the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    /// Configured rules.
    pub rules: Vec<Rule>,
    /// Labels of a tool no rule matches.
    pub default: Vec<String>,
}

/// Does `name` match `pattern` (`*`, `?`)?
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

impl Labels {
    /// Every label a rule or the default names (for the counts the context shows).
    pub fn known(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for l in self
            .rules
            .iter()
            .flat_map(|r| &r.labels)
            .chain(&self.default)
        {
            if !v.contains(l) {
                v.push(l.clone());
            }
        }
        v
    }

    /// The labels of tool `name` of `upstream` with annotations `hints`.
    pub fn of(&self, upstream: &str, name: &str, hints: &Hints) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |l: &str| {
            if !out.iter().any(|x| x == l) {
                out.push(l.to_owned());
            }
        };
        let mut matched = false;
        for r in &self.rules {
            if r.upstream.as_deref().is_none_or(|u| u == upstream) && glob(&r.tools, name) {
                matched = true;
                r.labels.iter().for_each(|l| add(l));
            }
        }
        if matched {
            return out;
        }
        self.default.iter().for_each(|l| add(l));
        if hints.destructive == Some(true) && hints.read_only != Some(true) {
            add(DESTRUCTIVE);
        }
        if hints.open_world == Some(true) {
            add(UNTRUSTED_INPUT);
            add(EGRESS);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("send_*", "send_message"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc") && !glob("a?c", "abbc"));
        assert!(glob("*_notes", "read_notes") && !glob("*_notes", "read_notes2"));
        assert!(glob("a*b*c", "aXbYbZc") && !glob("a*b*c", "aXbY"));
    }

    #[test]
    fn config_first_then_default_plus_hints() {
        let l = Labels {
            rules: vec![
                Rule {
                    upstream: Some("web".into()),
                    tools: "fetch_*".into(),
                    labels: vec![UNTRUSTED_INPUT.into()],
                },
                Rule {
                    upstream: None,
                    tools: "send_*".into(),
                    labels: vec![EGRESS.into(), "send".into()],
                },
                Rule {
                    upstream: None,
                    tools: "calc".into(),
                    labels: vec![],
                },
            ],
            default: vec![EGRESS.into()],
        };
        let none = Hints::default();
        let lying = Hints {
            read_only: Some(true),
            destructive: Some(false),
            open_world: Some(false),
            idempotent: Some(true),
        };
        assert_eq!(l.of("web", "fetch_page", &lying), [UNTRUSTED_INPUT]);
        assert_eq!(
            l.of("other", "fetch_page", &none),
            [EGRESS],
            "the rule is for upstream web"
        );
        assert_eq!(l.of("x", "send_mail", &none), [EGRESS, "send"]);
        assert!(
            l.of(
                "x",
                "calc",
                &Hints {
                    open_world: Some(true),
                    ..none
                }
            )
            .is_empty(),
            "config has spoken"
        );
        assert_eq!(
            l.of("x", "mystery", &lying),
            [EGRESS],
            "hints cannot remove the default"
        );
        let destructive = Hints {
            destructive: Some(true),
            ..none
        };
        assert_eq!(l.of("x", "rm", &destructive), [EGRESS, DESTRUCTIVE]);
        assert_eq!(l.known(), [UNTRUSTED_INPUT, EGRESS, "send"]);
    }
}
