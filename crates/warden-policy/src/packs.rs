//! Built-in policy packs, switched on by name in `[policy] packs` (#15 item 5). Their text is in
//! `crates/warden-policy/packs/`.

/// `trifecta`: no `egress` after both taints and no `destructive` after untrusted input without
/// a person's yes; at most 20 `egress` calls an hour (P6.4, A-ZT4).
pub const TRIFECTA: &str = include_str!("../packs/trifecta.cedar");
/// `permit-all`: allow every request (flow rules and other controls still apply).
pub const PERMIT_ALL: &str = include_str!("../packs/permit-all.cedar");

/// The pack called `name`.
pub fn get(name: &str) -> Option<&'static str> {
    match name {
        "trifecta" => Some(TRIFECTA),
        "permit-all" => Some(PERMIT_ALL),
        _ => None,
    }
}

/// Every pack's name.
pub const NAMES: [&str; 2] = ["trifecta", "permit-all"];
