/**
 * Running a check file: each scenario's requests in order against a Cairn started in front of the
 * origin (a fresh cache per scenario) or against a running cache by URL, each response judged
 * against its step's expectations.
 */
import { randomBytes } from 'node:crypto';
import { CairnError } from '../../src/index.ts';
import type {
  CheckExpectation,
  CheckFile,
  CheckRange,
  CheckScenario,
  CheckStep,
  HeaderExpectation,
} from './check-file.ts';
import { routesOf } from './check-file.ts';
import { describeObservation, describeResponse } from './expect.ts';
import { formatSeconds } from './explain.ts';
import { startCacheTest } from './harness.ts';
import type { CacheTest, CacheTestResponse } from './harness.ts';
import type { CacheOutcome } from './observe.ts';

/** How one step or check ended. `not-judged`: the facts it needs cannot be seen from outside. */
export type CheckVerdict = 'passed' | 'failed' | 'not-judged';

/** One request of a step (a step with `repeat: N` gives N). */
export interface StepResult {
  readonly scenario: string;
  /** `step name` or `step N`, with `(i/N)` for repeats. */
  readonly label: string;
  readonly method: string;
  /** Path and query as sent. */
  readonly path: string;
  readonly status: number | undefined;
  readonly outcome: CacheOutcome | undefined;
  /** The raw `Cache-Status` (or the fallback signal's value). */
  readonly cacheSignal: string | undefined;
  readonly verdict: CheckVerdict;
  readonly failures: readonly string[];
  /** Expectations that could not be judged here, and why. */
  readonly notJudged: readonly string[];
  /** On failure: the request, the response headers and why it was (not) stored. */
  readonly details: string | undefined;
  readonly durationMs: number;
}

/** A scenario-level check: `originHits` or `hitRatio`. */
export interface ScenarioCheckResult {
  readonly scenario: string;
  readonly label: string;
  readonly verdict: CheckVerdict;
  readonly message: string;
}

export interface ScenarioResult {
  readonly name: string;
  readonly verdict: CheckVerdict;
  readonly durationMs: number;
  readonly steps: readonly StepResult[];
  readonly checks: readonly ScenarioCheckResult[];
}

/** The whole run. */
export interface CheckReport {
  readonly source: string;
  /** `origin`: a Cairn was started in front of `url`; `target`: `url` is the running cache tested. */
  readonly mode: 'origin' | 'target';
  /** The origin URL, `scripted` for routes declared in the file, or the target URL. */
  readonly url: string;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly passed: number;
  readonly failed: number;
  readonly notJudged: number;
  readonly scenarios: readonly ScenarioResult[];
}

/** Options of {@link runCheck}; flags win over the file. */
export interface RunCheckOptions {
  /** An origin URL to start a Cairn in front of (overrides the file's `origin`). */
  readonly origin?: string;
  /** A running cache to test instead (overrides the file's `target`). */
  readonly target?: string;
  /** Called after every request with the number done and the total. */
  readonly onProgress?: (done: number, total: number) => void;
  /** Replaces `{{run}}` in paths (default: random), so first fetches miss on a long-running cache. */
  readonly runId?: string;
}

/**
 * Requests a file will send (repeats included).
 *
 * @example
 * ```ts
 * const bar = new ProgressBar(process.stderr, countRequests(file));
 * ```
 */
export function countRequests(file: CheckFile): number {
  let n = 0;
  for (const s of file.scenarios) for (const step of s.steps) n += step.repeat;
  return n;
}

function inRange(value: number, r: CheckRange): boolean {
  if (typeof r === 'number') return value === r;
  return (r.min === undefined || value >= r.min) && (r.max === undefined || value <= r.max);
}

function rangeText(r: CheckRange): string {
  if (typeof r === 'number') return `${r}`;
  if (r.min !== undefined && r.max !== undefined) return `between ${r.min} and ${r.max}`;
  return r.min !== undefined ? `>= ${r.min}` : `<= ${r.max ?? ''}`;
}

function headerText(v: string | readonly string[] | undefined): string | undefined {
  return v === undefined ? undefined : typeof v === 'string' ? v : v.join(', ');
}

function judgeHeader(name: string, want: HeaderExpectation, got: string | undefined): string | undefined {
  const shown = got === undefined ? 'absent' : `"${got}"`;
  if (typeof want === 'string' || 'equals' in want) {
    const v = typeof want === 'string' ? want : want.equals;
    return got === v ? undefined : `header ${name}: expected "${v}", got ${shown}`;
  }
  if ('contains' in want)
    return got !== undefined && got.includes(want.contains)
      ? undefined
      : `header ${name}: expected it to contain "${want.contains}", got ${shown}`;
  if ('matches' in want)
    return got !== undefined && new RegExp(want.matches).test(got)
      ? undefined
      : `header ${name}: expected it to match /${want.matches}/, got ${shown}`;
  if ('present' in want)
    return got !== undefined ? undefined : `header ${name}: expected it to be present, it is absent`;
  return got === undefined ? undefined : `header ${name}: expected it to be absent, got ${shown}`;
}

/**
 * Judge one response against a step's expectations: failures and what could not be judged.
 *
 * @example
 * ```ts
 * judgeResponse(await test.get('/api/user'), { stored: false }); // { failures: [], notJudged: [] }
 * ```
 */
export function judgeResponse(
  res: CacheTestResponse,
  want: CheckExpectation,
): { failures: string[]; notJudged: string[] } {
  const failures: string[] = [];
  const notJudged: string[] = [];
  const obs = res.cache;
  if (want.status !== undefined && res.status !== want.status)
    failures.push(`status: expected ${want.status}, got ${res.status}`);
  if (want.cache !== undefined) {
    const list = want.cache;
    if (!list.includes(obs.outcome))
      failures.push(`cache: expected ${list.join(' or ')}, got ${describeObservation(obs)}`);
  }
  if (want.stored !== undefined) {
    if (obs.stored === want.stored) {
      // as expected
    } else if (obs.stored === undefined && (obs.outcome === 'hit' || obs.outcome === 'stale')) {
      failures.push(
        `stored: expected ${want.stored ? 'the response to be stored by this request' : 'it not to be stored'}, but it was served from the cache`,
      );
    } else if (obs.stored === undefined) {
      notJudged.push(
        `stored: the response does not say whether it was stored (${obs.signal === 'none' ? 'no cache headers' : `only ${obs.signal}`}; needs Cache-Status)`,
      );
    } else
      failures.push(
        `stored: expected ${want.stored ? 'stored' : 'not stored'}, got ${obs.stored ? 'stored' : `not stored${obs.entry?.detail === undefined ? '' : ` (detail=${obs.entry.detail})`}`}`,
      );
  }
  for (const [name, h] of Object.entries(want.headers ?? {})) {
    const problem = judgeHeader(name.toLowerCase(), h, headerText(res.headers[name.toLowerCase()]));
    if (problem !== undefined) failures.push(problem);
  }
  if (want.maxAge !== undefined) {
    const e = res.explain();
    if (e.lifetime === undefined)
      failures.push(
        `maxAge: expected a freshness lifetime ${rangeText(want.maxAge)} s, but the response is not storable (${e.reason ?? ''})`,
      );
    else if (!inRange(e.lifetime, want.maxAge)) {
      failures.push(
        `maxAge: expected a freshness lifetime ${rangeText(want.maxAge)} s, got ${e.lifetime} s (${formatSeconds(e.lifetime)})`,
      );
    }
  }
  if (want.ttl !== undefined) {
    if (obs.signal !== 'cache-status') notJudged.push('ttl: needs a Cache-Status header with ttl');
    else if (obs.ttl === undefined)
      failures.push(`ttl: expected ${rangeText(want.ttl)}, but Cache-Status has no ttl`);
    else if (!inRange(obs.ttl, want.ttl))
      failures.push(`ttl: expected ${rangeText(want.ttl)}, got ${obs.ttl}`);
  }
  if (want.age !== undefined) {
    if (obs.age === undefined)
      failures.push(`age: expected ${rangeText(want.age)}, but there is no valid Age header`);
    else if (!inRange(obs.age, want.age))
      failures.push(`age: expected ${rangeText(want.age)}, got ${obs.age}`);
  }
  return { failures, notJudged };
}

function requestOf(
  step: CheckStep,
  runId: string,
): { method: string; path: string; headers: Record<string, string>; body: string | undefined } {
  const r = step.request;
  let method = 'GET';
  let path: string;
  let headers: Record<string, string> = {};
  let body: string | undefined;
  if (typeof r === 'string') {
    const m = /^([A-Za-z]+)\s+(\S+)$/.exec(r.trim());
    if (m !== null) {
      method = m[1]!.toUpperCase();
      path = m[2]!;
    } else path = r.trim();
  } else {
    method = (r.method ?? 'GET').toUpperCase();
    path = r.path;
    headers = { ...r.headers };
    body = r.body;
  }
  return { method, path: path.replaceAll('{{run}}', runId), headers, body };
}

async function runScenario(
  test: CacheTest,
  scenario: CheckScenario,
  mode: 'origin' | 'target',
  runId: string,
  progress: () => void,
): Promise<ScenarioResult> {
  const started = Date.now();
  const steps: StepResult[] = [];
  const first = test.responses.length;
  for (const [i, step] of scenario.steps.entries()) {
    const req = requestOf(step, runId);
    const base = step.name ?? `step ${i + 1}`;
    for (let n = 1; n <= step.repeat; n++) {
      const label = step.repeat === 1 ? base : `${base} (${n}/${step.repeat})`;
      const t0 = Date.now();
      let res: CacheTestResponse;
      try {
        res = await test.request(req.path, {
          method: req.method,
          headers: req.headers,
          ...(req.body === undefined ? {} : { body: req.body }),
        });
      } catch (error) {
        const message = `request failed: ${(error as Error).message}`;
        steps.push({
          scenario: scenario.name,
          label,
          method: req.method,
          path: req.path,
          status: undefined,
          outcome: undefined,
          cacheSignal: undefined,
          verdict: 'failed',
          failures: [message],
          notJudged: [],
          details: `  request:  ${req.method} ${test.url}${req.path}\n  ${message}`,
          durationMs: Date.now() - t0,
        });
        progress();
        continue;
      }
      const { failures, notJudged } = judgeResponse(res, step.expect);
      const judged = Object.keys(step.expect).length;
      const verdict: CheckVerdict =
        failures.length > 0 ? 'failed' : judged > 0 && notJudged.length >= judged ? 'not-judged' : 'passed';
      steps.push({
        scenario: scenario.name,
        label,
        method: req.method,
        path: req.path,
        status: res.status,
        outcome: res.outcome,
        cacheSignal: res.cache.evidence,
        verdict,
        failures,
        notJudged,
        details: failures.length > 0 ? describeResponse(res) : undefined,
        durationMs: Date.now() - t0,
      });
      progress();
    }
  }
  const checks: ScenarioCheckResult[] = [];
  if (scenario.originHits !== undefined) {
    const wanted: [string | undefined, number][] =
      typeof scenario.originHits === 'number'
        ? [[undefined, scenario.originHits]]
        : Object.entries(scenario.originHits);
    for (const [pattern, n] of wanted) {
      const label = `originHits ${pattern ?? '(all)'}`;
      if (mode === 'target' || test.origin === undefined) {
        checks.push({
          scenario: scenario.name,
          label,
          verdict: 'not-judged',
          message: 'cannot count origin hits against a running cache (--target)',
        });
        continue;
      }
      const got = test.origin.hits(pattern);
      checks.push({
        scenario: scenario.name,
        label,
        verdict: got === n ? 'passed' : 'failed',
        message: `expected ${n} origin request${n === 1 ? '' : 's'}, got ${got}`,
      });
    }
  }
  if (scenario.hitRatio !== undefined) {
    const mine = test.responses.slice(first);
    const hits = mine.filter((r) => r.outcome === 'hit' || r.outcome === 'stale').length;
    const ratio = mine.length === 0 ? 0 : hits / mine.length;
    const want: CheckRange =
      typeof scenario.hitRatio === 'number' ? { min: scenario.hitRatio } : scenario.hitRatio;
    checks.push({
      scenario: scenario.name,
      label: 'hitRatio',
      verdict: inRange(ratio, want) ? 'passed' : 'failed',
      message: `expected a hit ratio ${rangeText(want)}, got ${ratio.toFixed(3)} (${hits} of ${mine.length} served from cache)`,
    });
  }
  const all = [...steps.map((s) => s.verdict), ...checks.map((c) => c.verdict)];
  const verdict: CheckVerdict = all.includes('failed')
    ? 'failed'
    : all.every((v) => v === 'not-judged')
      ? 'not-judged'
      : 'passed';
  return { name: scenario.name, verdict, durationMs: Date.now() - started, steps, checks };
}

/**
 * Run a check file. Throws `CAIRN_ERR_CONFIG_INVALID` when neither an origin nor a target is
 * given; every other problem (an unreachable origin included) is a failed step in the report.
 *
 * @example
 * ```ts
 * const report = await runCheck(await loadCheckFile('checks.yaml'), 'checks.yaml', { origin: 'http://127.0.0.1:3000' });
 * process.exitCode = report.failed > 0 ? 1 : 0;
 * ```
 */
export async function runCheck(
  file: CheckFile,
  source: string,
  options: RunCheckOptions = {},
): Promise<CheckReport> {
  const startedAt = new Date();
  const runId = options.runId ?? randomBytes(4).toString('hex');
  const total = countRequests(file);
  let done = 0;
  const progress = (): void => {
    done++;
    options.onProgress?.(done, total);
  };
  const target = options.target ?? (options.origin === undefined ? file.target : undefined);
  const origin = options.origin ?? file.origin;
  const headers = file.headers ?? {};
  const scenarios: ScenarioResult[] = [];
  let mode: 'origin' | 'target';
  let url: string;
  if (target !== undefined) {
    mode = 'target';
    url = target;
    const test = await startCacheTest({
      target,
      headers,
      ...(file.cache?.name === undefined ? {} : { cacheName: file.cache.name }),
    });
    try {
      for (const s of file.scenarios) scenarios.push(await runScenario(test, s, mode, runId, progress));
    } finally {
      await test.close();
    }
  } else if (origin !== undefined) {
    mode = 'origin';
    url = typeof origin === 'string' ? origin : 'scripted';
    for (const s of file.scenarios) {
      // A fresh Cairn (and cache) per scenario: scenarios do not depend on each other's order.
      const test = await startCacheTest({
        origin: typeof origin === 'string' ? origin : routesOf(origin.routes),
        headers,
        cache: {
          ...(file.cache?.policy === undefined ? {} : { policy: file.cache.policy }),
          ...(file.cache?.name === undefined ? {} : { name: file.cache.name }),
        },
      });
      try {
        scenarios.push(await runScenario(test, s, mode, runId, progress));
      } finally {
        await test.close();
      }
    }
  } else {
    throw new CairnError(
      'CAIRN_ERR_CONFIG_INVALID',
      `${source}: nothing to test: give --origin URL (or origin: in the file) or --target URL`,
    );
  }
  let passed = 0;
  let failed = 0;
  let notJudged = 0;
  for (const s of scenarios) {
    for (const v of [...s.steps.map((x) => x.verdict), ...s.checks.map((x) => x.verdict)]) {
      if (v === 'passed') passed++;
      else if (v === 'failed') failed++;
      else notJudged++;
    }
  }
  return {
    source,
    mode,
    url,
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - startedAt.getTime(),
    passed,
    failed,
    notJudged,
    scenarios,
  };
}
