#!/usr/bin/env bash
# Bounded cargo-fuzz smoke run of every target in fuzz/ on stable Rust (no sanitizer).
# Each target starts from a fresh corpus made of fuzz/seeds/<t>/ plus past crash inputs in
# fuzz/regressions/<t>/, runs FUZZ_SECONDS (default 20) seconds, and the script exits non-zero if
# any target crashes (the crash input is kept in fuzz/artifacts/<t>/).
# Env: FUZZ_SECONDS, FUZZ_TARGETS (space-separated subset). Builds go to their own target dir
# (fuzzing flags would otherwise invalidate the workspace's): FUZZ_TARGET_DIR, else
# "$CARGO_TARGET_DIR-fuzz" when CARGO_TARGET_DIR is set, else fuzz/target; reused across runs.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fuzz="$root/fuzz"
secs=${FUZZ_SECONDS:-20}
if [[ -n "${FUZZ_TARGET_DIR:-}" ]]; then
  export CARGO_TARGET_DIR="$FUZZ_TARGET_DIR"
elif [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
  export CARGO_TARGET_DIR="$CARGO_TARGET_DIR-fuzz"
else
  export CARGO_TARGET_DIR="$fuzz/target"
fi

if [[ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  echo "fuzz-smoke: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

cd "$fuzz"
if ! cargo fetch --locked --manifest-path "$fuzz/Cargo.toml" >/dev/null 2>&1; then
  echo "fuzz-smoke: fuzz/Cargo.lock is out of date;" \
    "run: cargo update --workspace --manifest-path fuzz/Cargo.toml" >&2
  exit 2
fi
flags=(--sanitizer none --release --debug-assertions)
cargo fuzz build "${flags[@]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
failed=()
for t in $targets; do
  corpus="$work/corpus/$t"
  mkdir -p "$corpus"
  for d in seeds regressions; do
    if [[ -d "$fuzz/$d/$t" ]]; then cp "$fuzz/$d/$t"/* "$corpus"/; fi
  done
  extra=()
  # sse: let inputs grow past the decoder's 4096-byte block limit.
  if [[ "$t" == sse ]]; then extra+=(-max_len=12288); fi
  log="$work/$t.log"
  start=$(date +%s)
  status=ok
  cargo fuzz run "${flags[@]}" "$t" "$corpus" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
    "${extra[@]}" >"$log" 2>&1 || status=CRASH
  took=$(($(date +%s) - start))
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -oE '^#[0-9]+.*cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$' || echo '?')
  echo "fuzz $t: $status, $execs executions in ${took}s, coverage $cov"
  if [[ $status != ok ]]; then
    failed+=("$t")
    grep -m1 -A3 'panicked at' "$log" | sed 's/^/  | /' || tail -n 20 "$log" | sed 's/^/  | /'
    grep -m1 -o 'Test unit written to .*' "$log" | sed 's/^/  | /' || true
  fi
done

if ((${#failed[@]})); then
  echo "fuzz-smoke: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz-smoke: all targets ok"
