#!/usr/bin/env bash
# Offline dependency audit for CI: cargo-audit and cargo-deny against the RustSec snapshot in
# ../shared/advisory-db (resolved from the repository root). Exits non-zero on any advisory
# (vulnerable, unmaintained, unsound, yanked), license, ban or source failure.
# Usage (from anywhere): .ci/audit.sh    Needs: git, a committed Cargo.lock, crates.io access
# for `cargo fetch` (the advisory database itself is never fetched).
set -euo pipefail

AUDIT_VERSION=0.22.2
DENY_VERSION=0.20.2
# cargo-deny opens <db-path>/<last URL segment>-<xxhash64(lowercased URL)>; DB_DIR is that name
# for DB_URL as printed by cargo-deny 0.20.2. Both must match [advisories] in deny.toml.
DB_URL=https://github.com/rustsec/advisory-db
DB_DIR=advisory-db-3157b0e258782691

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SRC=$(cd "$ROOT/../shared/advisory-db" && pwd)
export WARDEN_ADVISORY_DBS=${WARDEN_ADVISORY_DBS:-$ROOT/target/advisory-dbs}

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'audit.sh: %s\n' "$*" >&2; exit 2; }

# 1. Tools, pinned. `cargo install` replaces an installed copy of another version.
[[ $(cargo audit --version 2>/dev/null) == *" $AUDIT_VERSION" ]] ||
    cargo install --locked --version "$AUDIT_VERSION" cargo-audit
[[ $(cargo deny --version 2>/dev/null) == *" $DENY_VERSION" ]] ||
    cargo install --locked --version "$DENY_VERSION" cargo-deny

[[ -f Cargo.lock ]] || die "no Cargo.lock in $ROOT"
[[ -d $SRC/crates ]] || die "no advisory database at $SRC"
grep -qF "\"$DB_URL\"" deny.toml || die "deny.toml db-urls does not name $DB_URL"

# 2. Snapshot date: the commit date if the source is a git checkout, else SNAPSHOT.txt.
if [[ -e $SRC/.git ]]; then
    SNAP_DATE=$(git -C "$SRC" log -1 --format=%cI)
else
    SNAP_DATE=$(grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}' "$SRC/SNAPSHOT.txt" | head -n1) ||
        die "cannot read the snapshot date from $SRC/SNAPSHOT.txt"
    SNAP_DATE="${SNAP_DATE}T00:00:00Z"
fi
log "advisory snapshot $SRC dated $SNAP_DATE ($(( ($(date +%s) - $(date -d "$SNAP_DATE" +%s)) / 86400 )) days old)"

# 3. cargo-deny needs a git checkout: rebuild a one-commit copy dated like the snapshot, and
#    give HEAD that mtime too, so cargo-deny's staleness check sees the real age.
DEST=$WARDEN_ADVISORY_DBS/$DB_DIR
rm -rf "$DEST"
mkdir -p "$WARDEN_ADVISORY_DBS"
cp -R "$SRC" "$DEST"
chmod -R u+w "$DEST"
rm -rf "$DEST/.git"
(
    unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE
    export GIT_AUTHOR_DATE=$SNAP_DATE GIT_COMMITTER_DATE=$SNAP_DATE
    g() { git -C "$DEST" -c user.name=warden-ci -c user.email=ci@localhost \
        -c commit.gpgsign=false "$@"; }
    g init -q -b main
    g add -A
    g commit -q -m "RustSec advisory-db snapshot (copy of $SRC)"
    # An online `cargo deny check` may later update this copy from the real remote.
    g remote add origin "$DB_URL"
)
touch -d "$SNAP_DATE" "$DEST/.git/HEAD"

# 4. Exemptions live only in deny.toml ([advisories] ignore); hand the same IDs to cargo-audit.
IGNORES=()
while read -r id; do
    IGNORES+=(--ignore "$id")
done < <(grep -v '^[[:space:]]*#' deny.toml | grep -oE 'RUSTSEC-[0-9]{4}-[0-9]{4}' | sort -u)

# 5. Crate sources for `cargo metadata --offline` (crates.io, not the advisory database).
cargo fetch --locked --quiet

status=0
log "cargo audit (deny warnings: unmaintained, unsound, yanked)"
cargo audit --no-fetch --db "$SRC" --deny warnings "${IGNORES[@]}" || status=1

log "cargo deny (offline)"
cargo deny --offline --locked check advisories bans licenses sources || status=1

if [[ $status -ne 0 ]]; then log "audit FAILED"; else log "audit passed"; fi
exit "$status"
