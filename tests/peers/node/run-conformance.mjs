#!/usr/bin/env node
/**
 * run-conformance.mjs — runs the pinned MCP conformance suite (server mode) against an MCP server
 * that is ALREADY running, and writes a machine-readable summary.
 *
 *   node run-conformance.mjs --url http://localhost:PORT/mcp --requirements 2025-11-25|2026-07-28 \
 *        [--out results.json] [--scenario NAME] [--timeout MS] [--raw-dir DIR]
 *
 * The suite needs Node >= 22, so it is always run with the node@22 binary installed by package.json
 * (this script itself may run on any Node >= 18). Use a `localhost` URL: the dns-rebinding scenario
 * requires one. --scenario runs one scenario at `--spec-version <requirements>` (the suite does not
 * allow it together with --requirements); --raw-dir keeps the suite's per-scenario checks.json files.
 *
 * Output (stdout, and --out if given): {
 *   "scenarios": { NAME: { passed, failed, warnings, skipped, status, scored, not_scored_reason?, failures? } },
 *   "passed_checks", "failed_checks", "passed_scenarios", "failed_scenarios",   // every scenario run
 *   "scored": { same four totals, restricted to the scenarios the revision scores },
 *   "requirements", "url", "suite", "suite_exit_code" }
 * status: "passed" | "failed" (>=1 FAILURE check) | "warning" (WARNING checks only) | "skipped" (no
 * pass/fail checks). A scenario counts as passed when it has no FAILURE and no WARNING check (the
 * suite's own ✓). The suite's console output goes to stderr.
 *
 * Exit code: 0 whenever the suite ran (even with failing checks: the caller compares); 2 on bad
 * arguments, unreachable server, missing node@22, or a suite run that produced no results.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const SUITE = '@modelcontextprotocol/conformance';
const SUITE_JS = join(HERE, 'node_modules', SUITE, 'dist', 'index.js');

function die(msg) {
  console.error(`run-conformance: ${msg}`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    if (!['url', 'requirements', 'out', 'scenario', 'timeout', 'raw-dir'].includes(key) || i + 1 >= argv.length) {
      die(`unknown or incomplete argument ${argv[i]}`);
    }
    opts[key] = argv[++i];
  }
  if (!opts.url || !opts.requirements) die('usage: --url URL --requirements 2025-11-25|2026-07-28 [--out FILE]');
  return opts;
}

/** The node@22 binary from the `node` npm package (two layouts exist depending on install scripts). */
function findNode22() {
  const candidates = [
    join(HERE, 'node_modules', 'node', 'bin', 'node'),
    join(HERE, 'node_modules', '.bin', 'node'),
    join(HERE, 'node_modules', 'node', 'node_modules', `node-${process.platform}-${process.arch}`, 'bin', 'node'),
  ];
  for (const bin of candidates) {
    if (!existsSync(bin)) continue;
    const v = spawnSync(bin, ['--version'], { encoding: 'utf8' });
    if (v.status === 0 && Number(v.stdout.trim().replace(/^v/, '').split('.')[0]) >= 22) return bin;
  }
  die('no Node >= 22 binary under node_modules (run `npm ci` in tests/peers/node)');
}

/** Any HTTP answer means the server is up; a refused/failed connection means the suite cannot run. */
async function assertReachable(url) {
  try {
    await fetch(url, { method: 'GET', signal: AbortSignal.timeout(5000) });
  } catch (e) {
    die(`server not reachable at ${url}: ${e.cause?.code ?? e.message}`);
  }
}

/** Results dirs are named `server-<scenario>-<ISO timestamp with - for : and .>`. */
function scenarioName(dir) {
  return dir.replace(/^server-/, '').replace(/-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/, '');
}

/**
 * Which server scenarios a revision scores, from `conformance list --requirements REV`: the names
 * under "Server scenarios" are scored; "[server]" lines under "Run and reported, but never scored"
 * carry the reason heading they sit under (extension, pending, added-after-release).
 */
function requirementSet(node, revision) {
  const out = spawnSync(node, [SUITE_JS, 'list', '--requirements', revision], { encoding: 'utf8' });
  if (out.status !== 0) die(`unknown requirement set ${revision}: ${out.stderr || out.stdout}`);
  const scored = new Set();
  const unscored = {};
  let section = '';
  let reason = '';
  for (const line of out.stdout.split('\n')) {
    if (/^\S/.test(line)) section = line;
    const heading = line.match(/^\s+([\w-]+) \(\d+\):$/);
    if (heading) reason = heading[1];
    const item = line.match(/^\s+- (\S+)(?: \[(\w+)\])?$/);
    if (!item) continue;
    if (section.startsWith('Server scenarios')) scored.add(item[1]);
    else if (section.startsWith('Run and reported') && item[2] === 'server') unscored[item[1]] = reason;
  }
  if (scored.size === 0) die(`could not read the scenario list of ${revision}`);
  return { scored, unscored };
}

function totals(entries) {
  const t = { passed_checks: 0, failed_checks: 0, passed_scenarios: 0, failed_scenarios: 0 };
  for (const s of entries) {
    t.passed_checks += s.passed;
    t.failed_checks += s.failed;
    if (s.failed === 0 && s.warnings === 0) t.passed_scenarios++;
    else t.failed_scenarios++;
  }
  return t;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!existsSync(SUITE_JS)) die(`${SUITE} is not installed (run \`npm ci\` in ${HERE})`);
  const node = findNode22();
  if (!/^https?:\/\/localhost[:/]/.test(opts.url)) console.error('run-conformance: warning: dns-rebinding-protection needs a localhost URL');
  await assertReachable(opts.url);

  const rawDir = opts['raw-dir'] ?? mkdtempSync(join(tmpdir(), 'conformance-'));
  const { scored, unscored } = requirementSet(node, opts.requirements);
  // The suite refuses --scenario together with --requirements; one scenario runs at --spec-version.
  const selection = opts.scenario ? ['--scenario', opts.scenario, '--spec-version', opts.requirements] : ['--requirements', opts.requirements];
  const args = [SUITE_JS, 'server', '--url', opts.url, ...selection, '-o', rawDir];
  if (opts.timeout) args.push('--timeout', opts.timeout);
  const run = spawnSync(node, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, stdio: ['ignore', 'pipe', 'pipe'] });
  process.stderr.write(run.stdout ?? '');
  process.stderr.write(run.stderr ?? '');
  if (run.error) die(`could not start the suite: ${run.error.message}`);

  const dirs = existsSync(rawDir) ? readdirSync(rawDir).filter((d) => d.startsWith('server-')).sort() : [];
  if (dirs.length === 0) die(`the suite produced no results (exit ${run.status}); see its output above`);

  const scenarios = {};
  for (const dir of dirs) {
    const name = scenarioName(dir);
    const checks = JSON.parse(readFileSync(join(rawDir, dir, 'checks.json'), 'utf8'));
    const count = (st) => checks.filter((c) => c.status === st).length;
    const s = { passed: count('SUCCESS'), failed: count('FAILURE'), warnings: count('WARNING'), skipped: count('SKIPPED') };
    s.status = s.failed > 0 ? 'failed' : s.warnings > 0 ? 'warning' : s.passed > 0 ? 'passed' : 'skipped';
    s.scored = scored.has(name);
    if (!s.scored) s.not_scored_reason = unscored[name] ?? 'not in this requirement set';
    const failures = checks.filter((c) => c.status === 'FAILURE' || c.status === 'WARNING').map((c) => ({ id: c.id, status: c.status, message: c.errorMessage ?? c.description }));
    if (failures.length) s.failures = failures;
    scenarios[name] = s;
  }
  const all = Object.values(scenarios);
  const suiteVersion = JSON.parse(readFileSync(join(HERE, 'node_modules', SUITE, 'package.json'), 'utf8')).version;
  const summary = {
    requirements: opts.requirements,
    url: opts.url,
    suite: `${SUITE}@${suiteVersion}`,
    suite_exit_code: run.status,
    scenarios,
    ...totals(all),
    scored: totals(all.filter((s) => s.scored)),
  };
  const json = JSON.stringify(summary, null, 2) + '\n';
  if (opts.out) writeFileSync(opts.out, json);
  process.stdout.write(json);
  if (!opts['raw-dir']) rmSync(rawDir, { recursive: true, force: true });
}

main().catch((e) => die(e.stack ?? String(e)));
