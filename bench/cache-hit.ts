/**
 * The cache-hit benchmark (issue 3): hit throughput for 1 KiB and 64 KiB objects from Cairn's
 * memory tier and from its LMDB tier, against the Node ceiling (a bare `node:http` server
 * answering from a Buffer), nginx `proxy_cache`, Varnish and a `node:http` front with undici's
 * cache interceptor — same run, rounds alternating, medians.
 *
 *   npm run bench -- --scenario cache-hit                   # full run (3 rounds, 5 s, 1k + 64k)
 *   node --import tsx bench/cache-hit.ts --quick            # smoke run: 1 round, 2 s (not a result)
 *   node --import tsx bench/cache-hit.ts --targets node-ceiling,cairn-memory --sizes 1k --rounds 5
 *   node --import tsx bench/cache-hit.ts --cpu-prof /tmp/prof --targets cairn-lmdb --sizes 1k
 *
 * Every target is warmed and checked before it is measured: the same `/cacheable/<size>` is asked
 * until the origin's request count stops moving (a hit), and the hit's evidence is recorded
 * (`Cache-Status`, `X-Cache-Status`, `X-Varnish`, Cairn's per-tier object counts). During every
 * sample the origin's count is read before the warm-up and after the measured run: it must not
 * move. Writes bench/results/cache-hit.json and regenerates bench/RESULTS.md.
 * Method, pinning and targets: bench/README.md ("The cache-hit job").
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  descendants,
  freePort,
  installCleanupHandlers,
  isStopping,
  probe,
  startChild,
  stopAll,
  tasksetAvailable,
  waitReady,
  type ChildSpec,
  type ManagedProcess,
  type RunningChild,
} from './lib/children.ts';
import { core, methodRecord, positive, roundSlots, UsageError, writeResults } from './lib/cli.ts';
import { pickLoadGenerator, runLoad, type LoadGeneratorName } from './lib/load.ts';
import { coreBusyBetween, cpuSeconds, machineInfo, readCoreTimes } from './lib/machine.ts';
import { scrapeCache } from './lib/metrics.ts';
import type { CacheCounters, CacheHitResults, CacheHitSample, CacheHitTargetStatus } from './lib/results.ts';
import { parseSize } from './lib/sizes.ts';
import { startBenchNginx } from './targets/nginx.ts';
import { varnishSpec } from './targets/varnish.ts';
import { renderCacheHit } from './report/cache-hit.ts';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);

/** Where a target is started: origin, its port, a spare admin port, its core, a temp dir it owns. */
interface Ctx {
  readonly originUrl: string;
  readonly port: number;
  readonly adminPort: number;
  readonly core: number | null;
  readonly tmp: string;
  readonly cpuProfDir: string | null;
}

interface Started {
  readonly process: ManagedProcess;
  readonly port: number;
  /** Cairn's admin `/metrics`, for the cache counters. */
  readonly metricsUrl: string | null;
}

interface CacheTarget {
  readonly name: string;
  readonly description: string;
  start(ctx: Ctx): Promise<Started>;
  /** Evidence of a hit in a response's headers, or null when the headers say it was not one. */
  hitEvidence(headers: http.IncomingHttpHeaders): string | null;
  /** After warming: a check of where hits come from (Cairn's tiers); throws when wrong. */
  checkTiers?(counters: CacheCounters | null, objects: number): string;
}

function nodeSpec(
  name: string,
  file: string,
  args: readonly string[],
  ctx: Ctx,
  profile: boolean,
): ChildSpec {
  // One directory per target: with tsx the loader's worker thread writes a profile of its own.
  const prof =
    profile && ctx.cpuProfDir !== null
      ? ['--cpu-prof', '--cpu-prof-dir', path.join(ctx.cpuProfDir, name)]
      : [];
  return {
    name,
    command: process.execPath,
    args: [...prof, '--import', 'tsx', file, ...args],
    core: ctx.core,
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: 'production' },
  };
}

async function startSpec(spec: ChildSpec, port: number, metricsUrl: string | null): Promise<Started> {
  const child = startChild(spec);
  try {
    // Readiness on a URL no target caches differently from the bench objects.
    await waitReady(child, `http://127.0.0.1:${port}/1k`, 20_000);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return { process: child, port, metricsUrl };
}

function header(headers: http.IncomingHttpHeaders, name: string): string {
  const v = headers[name];
  return Array.isArray(v) ? v.join(', ') : (v ?? '');
}

function cairnHit(headers: http.IncomingHttpHeaders): string | null {
  const cs = header(headers, 'cache-status');
  return /;\s*hit\b/.test(cs) ? `Cache-Status: ${cs}` : null;
}

function cairnSpec(name: string, ctx: Ctx, extra: readonly string[], root = ROOT): ChildSpec {
  const spec = nodeSpec(
    name,
    path.join(root, 'src/cli.ts'),
    [
      '--listen',
      `127.0.0.1:${ctx.port}`,
      '--origin',
      ctx.originUrl,
      '--log-level',
      'silent',
      '--admin',
      `127.0.0.1:${ctx.adminPort}`,
      ...extra,
    ],
    ctx,
    true,
  );
  return root === ROOT ? spec : { ...spec, cwd: root };
}

/** Memory-tier limit for `cairn-lmdb`: below the smallest object (1 KiB), so every hit is a disk read. */
const LMDB_MEMORY_MAX_OBJECT_BYTES = 512;

/**
 * The `cairn-lmdb` config in `dir` (an LMDB tier in `dir/lmdb`, a memory tier no bench object fits
 * in); returns its path. Also used by bench/instructions.ts, which counts the same target.
 */
export function writeLmdbConfig(dir: string): string {
  const config = path.join(dir, 'cairn-lmdb.json');
  writeFileSync(
    config,
    JSON.stringify({
      cache: {
        memory: { maxBytes: 64 * 2 ** 20, maxObjectBytes: LMDB_MEMORY_MAX_OBJECT_BYTES },
        disk: { path: path.join(dir, 'lmdb'), maxBytes: 2 ** 30 },
      },
    }),
  );
  return config;
}

/** The two Cairn targets, run from the Cairn tree at `root` (`suffix` names a tree other than this one). */
function cairnTargets(root: string, suffix: string): CacheTarget[] {
  return [
    {
      name: `cairn-memory${suffix}`,
      description:
        'the Cairn CLI on its default tiers (memory over LMDB, `--cache-dir` in a temp dir), access log off: hits from the memory tier',
      start: (ctx) =>
        startSpec(
          cairnSpec(`cairn-memory${suffix}`, ctx, ['--cache-dir', path.join(ctx.tmp, 'lmdb-default')], root),
          ctx.port,
          `http://127.0.0.1:${ctx.adminPort}/metrics`,
        ),
      hitEvidence: cairnHit,
      checkTiers: (c, objects) => {
        if (c === null) throw new Error('no cache counters on the admin /metrics');
        const mem = c.objects.memory ?? 0;
        if (mem < objects)
          throw new Error(`expected ${objects} objects in the memory tier, /metrics says ${mem}`);
        return `${mem} objects in the memory tier`;
      },
    },
    {
      name: `cairn-lmdb${suffix}`,
      description: `the Cairn CLI with the LMDB tier in a temp dir and \`cache.memory.maxObjectBytes: ${LMDB_MEMORY_MAX_OBJECT_BYTES}\` (config file), so no object fits in memory: every hit is an LMDB read`,
      start: (ctx) => {
        const config = writeLmdbConfig(ctx.tmp);
        return startSpec(
          cairnSpec(`cairn-lmdb${suffix}`, ctx, ['--config', config], root),
          ctx.port,
          `http://127.0.0.1:${ctx.adminPort}/metrics`,
        );
      },
      hitEvidence: cairnHit,
      checkTiers: (c, objects) => {
        if (c === null) throw new Error('no cache counters on the admin /metrics');
        const mem = c.objects.memory ?? 0;
        const disk = c.objects.disk ?? 0;
        if (mem !== 0 || disk < objects)
          throw new Error(
            `expected ${objects} objects on disk and none in memory, /metrics says disk ${disk}, memory ${mem}`,
          );
        return `${disk} objects in the disk tier, ${mem} in memory`;
      },
    },
  ];
}

const TARGETS: readonly CacheTarget[] = [
  {
    name: 'node-ceiling',
    description:
      'a bare node:http server answering from a preallocated Buffer (the bench origin program) on the proxy core: the most one Node process can serve there',
    start: (ctx) =>
      startSpec(
        nodeSpec(
          'node-ceiling',
          path.join(BENCH_DIR, 'targets/origin.ts'),
          ['--port', String(ctx.port)],
          ctx,
          false,
        ),
        ctx.port,
        null,
      ),
    hitEvidence: () => 'answers from a Buffer (it is an origin)',
  },
  ...cairnTargets(ROOT, ''),
  {
    name: 'nginx-proxy-cache',
    description:
      'Debian nginx `proxy_cache` (cache dir in a temp prefix, key $uri, sendfile on), one worker, upstream keepalive 64, access log off',
    start: async (ctx) => {
      const n = await startBenchNginx({ origin: ctx.originUrl, core: ctx.core, cache: true });
      return { process: n.process, port: n.port, metricsUrl: null };
    },
    hitEvidence: (h) => (header(h, 'x-cache-status') === 'HIT' ? 'X-Cache-Status: HIT' : null),
  },
  {
    name: 'varnish',
    description: 'Debian varnishd -F, `-b` origin (builtin VCL), `-s malloc,256m`, temp `-n` work dir',
    start: async (ctx) => {
      const { spec, cleanup } = varnishSpec(ctx.port, ctx.originUrl, ctx.core);
      process.once('exit', cleanup);
      return startSpec(spec, ctx.port, null);
    },
    // A hit carries two transaction ids (this request's and the one that fetched the object).
    hitEvidence: (h) =>
      /^\d+ \d+$/.test(header(h, 'x-varnish')) ? `X-Varnish: ${header(h, 'x-varnish')}` : null,
  },
  {
    name: 'undici-cache-interceptor',
    description:
      "reference: a node:http front forwarding through an undici Agent composed with undici's `interceptors.cache()` (in-memory store)",
    start: (ctx) =>
      startSpec(
        nodeSpec(
          'undici-cache-interceptor',
          path.join(BENCH_DIR, 'targets/undici-cache.ts'),
          ['--port', String(ctx.port), '--origin', ctx.originUrl],
          ctx,
          false,
        ),
        ctx.port,
        null,
      ),
    // The interceptor adds no header; the origin count staying flat is the proof.
    hitEvidence: () => 'origin count did not move',
  },
];

const TARGET_NAMES = TARGETS.map((t) => t.name);

const HELP = `Usage: node --import tsx bench/cache-hit.ts [options]    (or: npm run bench -- --scenario cache-hit [options])

  --targets a,b,c     targets (default: all): ${TARGET_NAMES.join(', ')}
  --sizes 1k,64k      object sizes (default: 1k,64k)
  --rounds N          rounds; every target runs once per size per round (default: 3)
  --passes K          measuring passes per round: every target, every size, K times between restarts
                      (default: 1); ratios are then paired by pass (see bench/README.md)
  --duration S        measured seconds per sample (default: 5)
  --warmup S          unmeasured seconds before each sample (default: 1)
  --connections N     concurrent connections (default: 50)
  --quick             smoke run: 1 round, 2 s; marked as not a result
  --keep-processes    start each target once for the whole run (default: afresh every round)
  --loadgen NAME      wrk | autocannon | auto (default: auto)
  --proxy-core N      core for the target (default: 0)
  --loadgen-core N    core for the load generator (default: 1)
  --origin-core N     core for the origin (default: 1; it serves nothing while hits are measured)
  --no-pin            do not use taskset
  --compare-tree DIR  also run cairn-memory@base and cairn-lmdb@base from another checkout of Cairn
                      (e.g. \`git worktree add /tmp/base HEAD~1\` + a node_modules symlink): an A/B
                      in the same rounds, so a change is measured against the same machine noise
  --cpu-prof DIR      run the Cairn targets with node --cpu-prof: profiles in DIR/<target>/ at the end
                      (the largest file is the main thread's)
  --results-dir DIR   where cache-hit.json goes (default: bench/results)
  --report FILE       the RESULTS.md to regenerate (default: bench/RESULTS.md; "none" to skip)
  --help
`;

interface Options {
  targets: CacheTarget[];
  sizes: string[];
  rounds: number;
  passes: number;
  durationSec: number;
  warmupSec: number;
  connections: number;
  smoke: boolean;
  /** Start every target afresh for each round (see bench/README.md, "Fresh processes"). */
  freshPerRound: boolean;
  loadgen: LoadGeneratorName;
  proxyCore: number | null;
  loadgenCore: number | null;
  originCore: number | null;
  cpuProfDir: string | null;
  resultsDir: string;
  reportFile: string | null;
}

function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      targets: { type: 'string' },
      sizes: { type: 'string', default: '1k,64k' },
      rounds: { type: 'string' },
      passes: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'keep-processes': { type: 'boolean', default: false },
      loadgen: { type: 'string', default: 'auto' },
      'proxy-core': { type: 'string' },
      'loadgen-core': { type: 'string' },
      'origin-core': { type: 'string' },
      'no-pin': { type: 'boolean', default: false },
      'cpu-prof': { type: 'string' },
      'compare-tree': { type: 'string' },
      'results-dir': { type: 'string' },
      report: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return null;
  }
  const names =
    values.targets === undefined
      ? TARGET_NAMES
      : values.targets
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '');
  const compare = values['compare-tree'] === undefined ? null : path.resolve(values['compare-tree']);
  if (compare !== null && !existsSync(path.join(compare, 'src/cli.ts')))
    throw new UsageError(`--compare-tree ${compare} has no src/cli.ts`);
  const catalog = compare === null ? TARGETS : [...TARGETS, ...cairnTargets(compare, '@base')];
  const targets = names.flatMap((n) => {
    const t = catalog.find((d) => d.name === n);
    if (t === undefined) throw new UsageError(`unknown target "${n}"; known: ${TARGET_NAMES.join(', ')}`);
    // The baseline of each Cairn target runs next to it.
    const base = compare === null ? undefined : catalog.find((d) => d.name === `${n}@base`);
    return base === undefined ? [t] : [t, base];
  });
  const sizes = values.sizes
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '');
  for (const s of sizes)
    if (parseSize(s) === null) throw new UsageError(`bad size "${s}" (examples: 512, 1k, 64k, 1m)`);
  if (values.loadgen !== 'auto' && values.loadgen !== 'wrk' && values.loadgen !== 'autocannon')
    throw new UsageError('--loadgen must be wrk, autocannon or auto');
  const cores = os.availableParallelism();
  const pin = !values['no-pin'] && cores >= 2 && tasksetAvailable();
  if (!values['no-pin'] && !pin)
    console.warn('warning: not pinning; numbers mix target and load generator CPU');
  const quick = values.quick;
  return {
    targets,
    sizes,
    rounds: Math.floor(positive('rounds', values.rounds, quick ? 1 : 3)),
    passes: Math.floor(positive('passes', values.passes, 1)),
    durationSec: Math.ceil(positive('duration', values.duration, quick ? 2 : 5)),
    warmupSec: Math.ceil(positive('warmup', values.warmup, 1)),
    connections: Math.floor(positive('connections', values.connections, 50)),
    smoke: quick,
    freshPerRound: !values['keep-processes'],
    loadgen: pickLoadGenerator(values.loadgen),
    proxyCore: pin ? core('proxy-core', values['proxy-core'], 0, cores) : null,
    loadgenCore: pin ? core('loadgen-core', values['loadgen-core'], 1, cores) : null,
    originCore: pin ? core('origin-core', values['origin-core'], 1, cores) : null,
    cpuProfDir: values['cpu-prof'] === undefined ? null : path.resolve(values['cpu-prof']),
    resultsDir: path.resolve(values['results-dir'] ?? path.join(BENCH_DIR, 'results')),
    reportFile:
      values.report === 'none' ? null : path.resolve(values.report ?? path.join(BENCH_DIR, 'RESULTS.md')),
  };
}

/** The origin's request count (its `/__bench/requests`). */
async function originCount(originPort: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      `http://127.0.0.1:${originPort}/__bench/requests`,
      { agent: false, timeout: 2000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => {
          const n = Number(body);
          if (res.statusCode === 200 && Number.isInteger(n)) resolve(n);
          else reject(new Error(`origin /__bench/requests answered ${res.statusCode}: ${body.slice(0, 80)}`));
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('origin /__bench/requests timed out')));
    req.on('error', reject);
  });
}

const objectPath = (size: string): string => `/cacheable/${size}`;

/**
 * Fill the target's cache with every size, then ask again until an answer leaves the origin's count
 * where it was and its headers show a hit. Returns the evidence, per size.
 */
async function warmAndVerify(
  t: CacheTarget,
  port: number,
  originPort: number,
  sizes: readonly string[],
): Promise<string[]> {
  const evidence: string[] = [];
  for (const size of sizes) {
    const url = `http://127.0.0.1:${port}${objectPath(size)}`;
    const want = parseSize(size)!;
    let last = 'no answer';
    let ok = false;
    for (let attempt = 0; attempt < 40 && !ok; attempt++) {
      const before = await originCount(originPort);
      const r = await probe(url);
      const after = await originCount(originPort);
      if (r.status !== 200 || r.length !== want) {
        last = `answered ${r.status} with ${r.length} bytes (want 200 with ${want})`;
      } else if (after !== before) {
        last = `the origin was asked (${after - before} request(s))`;
      } else {
        const e = t.hitEvidence(r.headers);
        if (e !== null) {
          evidence.push(`${size}: ${e}`);
          ok = true;
          break;
        }
        last = `no hit in the headers: ${JSON.stringify(r.headers)}`;
      }
      // A store commits asynchronously (LMDB): give it a moment.
      await sleep(100);
    }
    if (!ok) throw new Error(`GET ${objectPath(size)} never became a hit: ${last}`);
  }
  return evidence;
}

interface Live {
  readonly def: CacheTarget;
  readonly port: number;
  readonly child: ManagedProcess;
  readonly metricsUrl: string | null;
  dropped: string | null;
}

const statuses = new Map<string, CacheHitTargetStatus>();

function setStatus(def: CacheTarget, s: Omit<CacheHitTargetStatus, 'name' | 'description'>): void {
  statuses.set(def.name, { name: def.name, description: def.description, ...s });
}

async function startTargets(opts: Options, originPort: number, tmp: string): Promise<Live[]> {
  const live: Live[] = [];
  for (const def of opts.targets) {
    process.stdout.write(`starting ${def.name.padEnd(26)} `);
    let started: Started | null = null;
    try {
      const ctx: Ctx = {
        originUrl: `http://127.0.0.1:${originPort}`,
        port: await freePort(),
        adminPort: await freePort(),
        core: opts.proxyCore,
        tmp: mkdtempSync(path.join(tmp, `${def.name}-`)),
        cpuProfDir: opts.cpuProfDir,
      };
      started = await def.start(ctx);
      const evidence = await warmAndVerify(def, started.port, originPort, opts.sizes);
      if (def.checkTiers !== undefined) {
        const counters = started.metricsUrl === null ? null : await scrapeCache(started.metricsUrl);
        evidence.push(def.checkTiers(counters, opts.sizes.length));
      }
      live.push({
        def,
        port: started.port,
        child: started.process,
        metricsUrl: started.metricsUrl,
        dropped: null,
      });
      setStatus(def, {
        started: true,
        error: null,
        core: opts.proxyCore,
        pid: started.process.pid,
        verified: evidence.join('; '),
      });
      console.log(`ok (pid ${started.process.pid}, port ${started.port}); ${evidence.join('; ')}`);
    } catch (err) {
      await started?.process.stop();
      const msg = (err as Error).message;
      setStatus(def, { started: false, error: msg, core: null, pid: null, verified: null });
      console.log(`FAILED TO START — skipped\n    ${msg.replace(/\n/g, '\n    ')}`);
    }
  }
  return live;
}

function delta(before: CacheCounters | null, after: CacheCounters | null): CacheCounters | null {
  if (before === null || after === null) return null;
  return { hits: after.hits - before.hits, notHits: after.notHits - before.notHits, objects: after.objects };
}

async function measure(
  opts: Options,
  t: Live,
  originPort: number,
  size: string,
  round: number,
  order: number,
): Promise<CacheHitSample> {
  const load = {
    url: `http://127.0.0.1:${t.port}${objectPath(size)}`,
    connections: opts.connections,
    core: opts.loadgenCore,
  };
  const originBefore = await originCount(originPort);
  await runLoad(opts.loadgen, { ...load, durationSec: opts.warmupSec });
  const pids = [t.child.pid, ...descendants(t.child.pid)];
  const cacheBefore = t.metricsUrl === null ? null : await scrapeCache(t.metricsUrl);
  const coresBefore = readCoreTimes();
  const cpuBefore = cpuSeconds(pids);
  const sample = await runLoad(opts.loadgen, { ...load, durationSec: opts.durationSec });
  const cpuAfter = cpuSeconds(pids);
  const coreBusy = coreBusyBetween(coresBefore, readCoreTimes());
  const cacheAfter = t.metricsUrl === null ? null : await scrapeCache(t.metricsUrl);
  const originAfter = await originCount(originPort);
  return {
    ...sample,
    round,
    target: t.def.name,
    size,
    order,
    coreBusy,
    targetCpuSec:
      cpuBefore === null || cpuAfter === null ? null : Math.round((cpuAfter - cpuBefore) * 1000) / 1000,
    originRequests: originAfter - originBefore,
    cache: delta(cacheBefore, cacheAfter),
  };
}

function fmtSample(s: CacheHitSample): string {
  const errs = s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout + s.errors.status;
  const busy =
    s.coreBusy === null ? '' : `  cores ${s.coreBusy.map((b) => `${Math.round(b * 100)}%`).join('/')}`;
  const cpu =
    s.targetCpuSec === null || s.requests === 0
      ? ''
      : `  ${((s.targetCpuSec / s.requests) * 1e6).toFixed(1)} µs/req`;
  const origin = s.originRequests === 0 ? '' : `  ORIGIN ASKED ${s.originRequests}x`;
  return `${Math.round(s.rps).toString().padStart(7)} rps  p99 ${s.latencyMs.p99.toFixed(2).padStart(6)} ms${cpu}${busy}${origin}${errs > 0 ? `  ERRORS ${errs}` : ''}`;
}

export async function main(argv: string[]): Promise<void> {
  const opts = parseOptions(argv);
  if (opts === null) return;
  installCleanupHandlers();
  const machine = machineInfo(ROOT);
  const estimate = Math.ceil(
    (opts.targets.length *
      opts.sizes.length *
      opts.rounds *
      opts.passes *
      (opts.warmupSec + opts.durationSec + 0.5)) /
      60,
  );
  console.log(
    `cairn cache-hit bench: ${opts.targets.length} targets x ${opts.sizes.join('/')} x ${opts.rounds} round(s)${opts.passes > 1 ? ` x ${opts.passes} passes` : ''}, ${opts.durationSec} s + ${opts.warmupSec} s warm-up, ` +
      `${opts.connections} connections, ${opts.loadgen}; about ${estimate} min${opts.smoke ? '  [SMOKE RUN: not a result]' : ''}`,
  );
  console.log(
    `pinning: target core ${opts.proxyCore ?? '-'}, load generator core ${opts.loadgenCore ?? '-'}, origin core ${opts.originCore ?? '-'}; load average ${machine.loadAverageAtStart.join(' ')}`,
  );
  if ((machine.loadAverageAtStart[0] ?? 0) > machine.cores * 0.25)
    console.warn('warning: the machine is busy; numbers from this run will be noisy');
  if (opts.cpuProfDir !== null) mkdirSync(opts.cpuProfDir, { recursive: true });
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'cairn-cache-hit-'));
  process.once('exit', () => rmSync(tmp, { recursive: true, force: true }));

  const originPort = await freePort();
  const origin: RunningChild = startChild({
    name: 'origin',
    command: process.execPath,
    args: ['--import', 'tsx', path.join(BENCH_DIR, 'targets/origin.ts'), '--port', String(originPort)],
    core: opts.originCore,
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: 'production' },
  });
  await waitReady(origin, `http://127.0.0.1:${originPort}/1k`, 30_000);
  console.log(`origin on port ${originPort} (pid ${origin.pid})`);

  let live = await startTargets(opts, originPort, tmp);
  const samples: CacheHitSample[] = [];
  const started = Date.now();
  for (let round = 0; round < opts.rounds && live.length > 0; round++) {
    if (round > 0 && opts.freshPerRound) {
      // A process that happens to run slow then counts in one round's sample, not in all of them.
      for (const t of live) await t.child.stop();
      const wanted = new Set(live.filter((t) => t.dropped === null).map((t) => t.def.name));
      console.log('starting every target afresh for this round (caches warmed again)');
      live = await startTargets(
        { ...opts, targets: opts.targets.filter((d) => wanted.has(d.name)) },
        originPort,
        tmp,
      );
    }
    for (const slot of roundSlots(opts, live, round)) {
      const t = slot.target;
      if (isStopping()) return;
      if (t.dropped !== null) continue;
      const label = `${slot.label} ${t.def.name.padEnd(26)}`;
      if (origin.hasExited()) throw new Error(`the origin died: ${origin.outputTail()}`);
      if (t.child.hasExited()) {
        t.dropped = `process exited mid-run: ${t.child.outputTail().split('\n').slice(-3).join(' | ')}`;
      } else {
        try {
          const s = await measure(opts, t, originPort, slot.size, slot.sampleRound, slot.order);
          samples.push(s);
          console.log(`${label} ${fmtSample(s)}`);
          continue;
        } catch (err) {
          if (isStopping()) return;
          t.dropped = (err as Error).message;
        }
      }
      console.log(`${label} DROPPED: ${t.dropped}`);
      const prev = statuses.get(t.def.name)!;
      setStatus(t.def, { ...prev, error: t.dropped });
      await t.child.stop();
    }
  }
  console.log(`measured for ${Math.round((Date.now() - started) / 1000)} s`);
  await stopAll();
  await sleep(100);

  const results: CacheHitResults = {
    kind: 'cache-hit',
    schemaVersion: 1,
    machine,
    smoke: opts.smoke,
    method: methodRecord(opts, machine.tools.wrk),
    targets: opts.targets.map(
      (d) =>
        statuses.get(d.name) ?? {
          name: d.name,
          description: d.description,
          started: false,
          error: 'not started',
          core: null,
          pid: null,
          verified: null,
        },
    ),
    samples,
  };
  writeResults(opts.resultsDir, 'cache-hit.json', results, opts.reportFile);
  if (opts.cpuProfDir !== null) console.log(`CPU profiles of the Cairn targets: ${opts.cpuProfDir}`);
  console.log(`\n${renderCacheHit(results)}`);
}

/** Runs `main`, reporting usage errors in one line; always stops every child. */
export async function runCli(argv: string[]): Promise<void> {
  try {
    await main(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`${err.message} (see --help)`);
      process.exitCode = 2;
    } else {
      console.error(`bench failed: ${(err as Error).stack ?? String(err)}`);
      process.exitCode = 1;
    }
  } finally {
    await stopAll();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runCli(process.argv.slice(2));
}
