//! Table-driven decisions over example policies, with the argument smuggling the issue names:
//! `..` and Unicode look-alikes in paths, number vs string, big and float numbers, forged
//! `__entity` references, evaluation errors and nesting limits (P2.2, P2.4, P7.3, A-ZT3).
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

use proptest::prelude::*;
use serde_json::{Value, json};
use warden_guard::Principal;
use warden_policy::{Call, Engine};

const POLICIES: &str = r#"
@id("analyst-read")
permit(principal, action == Action::"tools/call", resource)
when { principal.roles.contains("analyst") && resource.name like "read_*" };

@id("files-under-srv-data")
permit(principal, action == Action::"tools/call", resource == Tool::"read_file")
when { context.args.path like "/srv/data/*" && !(context.args.path like "*..*") };

@id("owner-only")
permit(principal, action == Action::"tools/call", resource == Tool::"share")
when { context.args.owner == principal };

@id("exactly-five")
permit(principal, action == Action::"tools/call", resource == Tool::"count")
when { context.args.n == 5 };

@id("tenant-upstream")
permit(principal, action == Action::"tools/call", resource)
when { principal has tenant && resource.upstream == principal.tenant };

@id("destructive-needs-mfa")
forbid(principal, action == Action::"tools/call", resource)
when { resource.name like "delete_*" } unless { principal.mfa };
"#;

fn engine() -> Engine {
    Engine::new(POLICIES, "test-1").unwrap()
}

fn user(sub: &str, roles: &[&str], tenant: Option<&str>, mfa: bool) -> Principal {
    let mut p = Principal::new("https://as.example", sub);
    p.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    p.tenant = tenant.map(str::to_owned);
    if mfa {
        p.strength.amr = vec!["pwd".into(), "mfa".into()];
    }
    p
}

/// Who, which tool, which upstream, the arguments, allowed?, the deciding policy ids.
type Case<'a> = (&'a Principal, &'a str, &'a str, Value, bool, &'a [&'a str]);

fn decide(p: &Principal, tool: &str, upstream: &str, args: Value) -> (bool, Vec<String>) {
    let d = engine().decide_call(&Call {
        principal: Some(p),
        method: "tools/call",
        target: Some(tool),
        upstream: Some(upstream),
        args: Some(&args),
        transport: "http",
        ..Call::default()
    });
    (d.allowed(), d.policies)
}

#[test]
fn allowed_and_denied_with_the_policies_that_decided() {
    let analyst = user("ann", &["analyst"], None, false);
    let nobody = user("bob", &[], None, false);
    let cases: Vec<Case<'_>> = vec![
        (
            &analyst,
            "read_notes",
            "notes",
            json!({}),
            true,
            &["analyst-read"],
        ),
        (&analyst, "write_notes", "notes", json!({}), false, &[]),
        (&nobody, "read_notes", "notes", json!({}), false, &[]),
        (
            &nobody,
            "read_file",
            "files",
            json!({"path": "/srv/data/q3.csv"}),
            true,
            &["files-under-srv-data"],
        ),
        (
            &nobody,
            "read_file",
            "files",
            json!({"path": "/srv/data/../../etc/passwd"}),
            false,
            &[],
        ),
        (
            &nobody,
            "read_file",
            "files",
            json!({"path": "/etc/passwd"}),
            false,
            &[],
        ),
        // Cyrillic 'а' in "dаta": not the allowed directory.
        (
            &nobody,
            "read_file",
            "files",
            json!({"path": "/srv/d\u{0430}ta/q3.csv"}),
            false,
            &[],
        ),
        (
            &nobody,
            "read_file",
            "files",
            json!({"path": ["/srv/data/x"]}),
            false,
            &[],
        ),
        (
            &nobody,
            "count",
            "c",
            json!({"n": 5}),
            true,
            &["exactly-five"],
        ),
        (&nobody, "count", "c", json!({"n": "5"}), false, &[]),
        (&nobody, "count", "c", json!({"n": 5.0}), false, &[]),
        (
            &nobody,
            "count",
            "c",
            json!({"n": 5, "extra": {"n": 6}}),
            true,
            &["exactly-five"],
        ),
    ];
    for (p, tool, up, args, want, ids) in cases {
        let (allowed, policies) = decide(p, tool, up, args.clone());
        assert_eq!(allowed, want, "{tool} {args}");
        if want {
            assert_eq!(policies, ids, "{tool} {args}");
        }
    }
    // Big numbers arrive as their text, not as a wrapped-around Long.
    let big: Value = serde_json::from_str(r#"{"n": 18446744073709551621}"#).unwrap();
    assert!(!decide(&nobody, "count", "c", big).0);
}

#[test]
fn tenants_and_mfa() {
    let acme = user("ann", &[], Some("acme"), false);
    let strong = user("ann", &[], Some("acme"), true);
    assert!(decide(&acme, "list_orders", "acme", json!({})).0);
    assert!(
        !decide(&acme, "list_orders", "globex", json!({})).0,
        "another tenant's upstream"
    );
    let (allowed, policies) = decide(&acme, "delete_orders", "acme", json!({}));
    assert!(!allowed);
    assert_eq!(policies, ["destructive-needs-mfa"], "the forbid is named");
    assert!(decide(&strong, "delete_orders", "acme", json!({})).0);
}

#[test]
fn an_argument_cannot_forge_an_entity() {
    let alice = user("alice", &[], None, false);
    let forged = json!({"owner": {"__entity": {"type": "User", "id": "https://as.example alice"}}});
    assert!(
        !decide(&alice, "share", "s", forged).0,
        "a record named __entity is no entity"
    );
    let extn = json!({"owner": {"__extn": {"fn": "ip", "arg": "127.0.0.1"}}});
    assert!(!decide(&alice, "share", "s", extn).0);
    let plain = json!({"owner": "https://as.example alice"});
    assert!(
        !decide(&alice, "share", "s", plain).0,
        "a string is not the principal either"
    );
}

#[test]
fn what_cannot_be_evaluated_or_converted_is_denied() {
    let nobody = user("bob", &[], None, false);
    // No `path`: the permit errors; the error denies and is reported.
    let d = engine().decide_call(&Call {
        principal: Some(&nobody),
        method: "tools/call",
        target: Some("read_file"),
        upstream: Some("files"),
        args: Some(&json!({})),
        transport: "http",
        ..Call::default()
    });
    assert!(!d.allowed());
    assert!(!d.errors.is_empty(), "{d:?}");
    // Deeper than the limit.
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!({ "a": deep });
    }
    let d = engine().decide_call(&Call {
        principal: Some(&nobody),
        method: "tools/call",
        target: Some("count"),
        upstream: Some("c"),
        args: Some(&json!({"n": 5, "deep": deep})),
        transport: "http",
        ..Call::default()
    });
    assert!(!d.allowed() && d.errors[0].contains("deeper"), "{d:?}");
    assert!(Engine::new("permit(principal, action, resource) when {", "bad").is_err());
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z_]{0,8}".prop_map(Value::from),
        Just(json!({"__entity": {"type": "User", "id": "https://as.example alice"}})),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("(__entity|__extn|owner|[a-z]{1,4})", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Whatever the arguments, converting them never panics, and no shape of them makes the
    /// owner-only tool callable: only the principal entity itself equals the principal.
    #[test]
    fn no_argument_shape_forges_the_principal(owner in json_value(), rest in json_value()) {
        let alice = user("alice", &[], None, false);
        let args = json!({"owner": owner, "rest": rest});
        prop_assert!(!decide(&alice, "share", "s", args).0);
    }
}
