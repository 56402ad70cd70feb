//! The two properties #15 names: the list filter and the call decision never disagree (A-PR1,
//! P2.2), and no sequence of calls reaches an `egress` tool after both taints without an
//! approval (P6.4, A-ZT4, the trifecta pack).
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};
use warden_guard::Principal;
use warden_policy::flow::{EGRESS, PRIVATE_DATA, UNTRUSTED_INPUT};
use warden_policy::{Ask, Effect, Engine, Facts, FlowBook, Hints, Target, TargetKind, packs};

const POLICIES: &str = r#"
@id("analyst") permit(principal, action == Action::"tools/call", resource)
  when { principal.roles.contains("analyst") && resource.name like "read_*" };
@id("srv") permit(principal, action == Action::"tools/call", resource == Tool::"read_file")
  when { context.args has path && context.args.path like "/srv/data/*" };
@id("hours") forbid(principal, action, resource)
  when { context.time.hour < 8 || context.time.hour >= 18 } unless { principal.roles.contains("oncall") };
@id("no-deletes") forbid(principal, action, resource) when { resource.name like "delete_*" } unless { principal.mfa };
@id("tenant") permit(principal, action, resource)
  when { principal has tenant && resource.upstream == principal.tenant };
@id("nobody-admin") forbid(principal, action, resource == Tool::"admin");
@id("arg-forbid") forbid(principal, action == Action::"tools/call", resource) when { context.args has danger };
"#;

fn principal(roles: Vec<String>, tenant: Option<String>, mfa: bool) -> Arc<Principal> {
    let mut p = Principal::new("https://as.example", "u");
    p.roles = roles;
    p.tenant = tenant;
    if mfa {
        p.strength.amr = vec!["mfa".into()];
    }
    Arc::new(p)
}

fn args() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        "/srv/data/[a-z]{1,4}|/etc/[a-z]{1,4}".prop_map(|p| json!({"path": p})),
        Just(json!({"danger": true})),
        Just(json!({"path": 5})),
    ]
}

proptest! {
    /// Hidden from a list ⇒ every call with these arguments, at this hour, is denied; a call
    /// that is allowed ⇒ its tool is listed.
    #[test]
    fn the_list_filter_and_the_call_decision_never_disagree(
        roles in prop::collection::vec("analyst|oncall|other", 0..3),
        tenant in prop::option::of("acme|globex"),
        mfa in any::<bool>(),
        tool in "read_notes|read_file|delete_x|admin|write_x",
        upstream in "acme|globex|files",
        a in args(),
        hour in 0u64..24,
    ) {
        let e = Engine::new(POLICIES, "p").unwrap();
        let p = principal(roles, tenant, mfa);
        let t = Arc::new(Target::new(TargetKind::Tool, &tool, &upstream, vec![], Hints::default()).unwrap());
        let visible = e.visible(Some(&p), "tools/call", &t);
        let d = e.decide(&Ask {
            principal: Some(&p), method: "tools/call", target: &t,
            facts: Facts { args: Some(&a), transport: "http", client_ip: None, now: hour * 3600, utc_offset_minutes: 0, flow: None },
        });
        if !visible {
            prop_assert!(!d.allowed(), "hidden but callable: {tool} {a} at {hour}h: {d:?}");
        }
        if d.allowed() {
            prop_assert!(visible);
        }
    }
}

/// Tools of the scripted agent's test servers.
fn tool(name: &str) -> (Arc<Target>, Vec<String>) {
    let labels: Vec<String> = match name {
        "fetch_page" => vec![UNTRUSTED_INPUT.into()],
        "read_notes" => vec![PRIVATE_DATA.into()],
        "send_message" => vec![EGRESS.into()],
        _ => vec![],
    };
    let t = Target::new(
        TargetKind::Tool,
        name,
        "test",
        labels.clone(),
        Hints::default(),
    )
    .unwrap();
    (Arc::new(t), labels)
}

proptest! {
    /// Whatever the order, an `egress` call after both taints is never allowed outright: the
    /// pack asks, and only a yes (recorded as an approval event) lets it through.
    #[test]
    fn no_egress_after_both_taints_without_an_approval(
        calls in prop::collection::vec(("fetch_page|read_notes|send_message|calc", any::<bool>()), 1..24),
    ) {
        let text = format!("{}\n{}", packs::PERMIT_ALL, packs::TRIFECTA);
        let e = Engine::new(&text, "p").unwrap();
        let book = FlowBook::new(16, &[]);
        let (mut untrusted, mut private) = (false, false);
        for (i, (name, person_says_yes)) in calls.iter().enumerate() {
            let (t, labels) = tool(name);
            let now = 1000 + i as u64;
            let view = book.view("s", now, name);
            let d = e.decide(&Ask {
                principal: None, method: "tools/call", target: &t,
                facts: Facts { args: Some(&json!({})), transport: "stdio", client_ip: None, now, utc_offset_minutes: 0, flow: Some(&view) },
            });
            let both = untrusted && private;
            let forwarded = match d.effect {
                Effect::Allow => {
                    prop_assert!(!(both && labels.iter().any(|l| l == EGRESS)), "egress allowed after both taints: {calls:?}");
                    true
                }
                Effect::Ask => {
                    prop_assert!(d.policies.iter().any(|p| p.starts_with("trifecta.")));
                    prop_assert!(!view.tainted_by().is_empty(), "an ask names what tainted the flow");
                    *person_says_yes // the approval event
                }
                Effect::Deny => false,
            };
            if forwarded {
                book.record("s", now, &Arc::from(name.as_str()), &labels, None).unwrap();
                untrusted |= labels.iter().any(|l| l == UNTRUSTED_INPUT);
                private |= labels.iter().any(|l| l == PRIVATE_DATA);
            }
        }
    }
}

#[test]
fn read_then_send_alone_is_allowed_fetch_read_send_asks() {
    let text = format!("{}\n{}", packs::PERMIT_ALL, packs::TRIFECTA);
    let e = Engine::new(&text, "p").unwrap();
    let run = |seq: &[&str]| {
        let book = FlowBook::new(4, &[]);
        let mut last = Effect::Allow;
        for (i, n) in seq.iter().enumerate() {
            let (t, labels) = tool(n);
            let view = book.view("s", i as u64, n);
            last = e
                .decide(&Ask {
                    principal: None,
                    method: "tools/call",
                    target: &t,
                    facts: Facts {
                        args: None,
                        transport: "stdio",
                        client_ip: None,
                        now: i as u64,
                        utc_offset_minutes: 0,
                        flow: Some(&view),
                    },
                })
                .effect;
            book.record("s", i as u64, &Arc::from(*n), &labels, None)
                .unwrap();
        }
        last
    };
    assert_eq!(run(&["read_notes", "send_message"]), Effect::Allow);
    assert_eq!(run(&["fetch_page", "send_message"]), Effect::Allow);
    assert_eq!(
        run(&["fetch_page", "read_notes", "send_message"]),
        Effect::Ask
    );
    assert_eq!(
        run(&["read_notes", "calc", "fetch_page", "send_message"]),
        Effect::Ask
    );
    // The 21st egress call within the hour is denied outright.
    let many: Vec<&str> = std::iter::repeat_n("send_message", 21).collect();
    assert_eq!(run(&many), Effect::Deny);
}

/// The engine keeps entities per (principal, target): a principal with the same `iss sub` but
/// other claims (a new token, roles revoked) is decided on its own claims, never on a cached
/// copy of the old ones — also after the old principal is gone and its memory reused.
#[test]
fn cached_entities_never_outlive_the_principal_they_were_built_for() {
    let e = Engine::new(POLICIES, "p").unwrap();
    let t = Arc::new(
        Target::new(
            TargetKind::Tool,
            "read_notes",
            "notes",
            vec![],
            Hints::default(),
        )
        .unwrap(),
    );
    let decide = |p: &Arc<Principal>| {
        e.decide(&Ask {
            principal: Some(p),
            method: "tools/call",
            target: &t,
            facts: Facts {
                args: None,
                transport: "http",
                client_ip: None,
                now: 10 * 3600,
                utc_offset_minutes: 0,
                flow: None,
            },
        })
        .allowed()
    };
    let analyst = principal(vec!["analyst".into()], None, false);
    assert!(decide(&analyst));
    assert!(decide(&analyst), "from the cache");
    drop(analyst);
    for _ in 0..64 {
        let revoked = principal(vec![], None, false);
        assert!(!decide(&revoked), "same id, no role: denied");
    }
}
