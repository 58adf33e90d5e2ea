/**
 * Instructions per cache hit, counted by valgrind's callgrind: Cairn's memory and LMDB tiers against
 * the Node ceiling (the bench origin program answering from a Buffer), in the same run.
 *
 *   node --import tsx bench/instructions.ts                       # 1 KiB, 20k warm-up, 5k counted
 *   node --import tsx bench/instructions.ts --sizes 1k,64k --requests 3000
 *
 * Wall-clock numbers on a shared machine move by a third between runs of the same code; a count of
 * instructions does not (the same total twice, whatever else the machine does), so a change to the
 * hit path can be judged here before the throughput bench confirms it. Each target runs under
 * `valgrind --tool=callgrind` with instrumentation off; a fixed number of keep-alive requests warms
 * it (the JIT settles), then instrumentation is switched on for exactly `--requests` more and the
 * counts are dumped. Reported per request: the main thread (where requests are served) and all
 * threads (the JIT compiler and GC helpers too). Instructions are not time: `rep movsb` counts once
 * per byte, so a 64 KiB copy weighs far more here than on the clock; compare like with like.
 *
 * Writes bench/results/instructions.json (a generic section of bench/RESULTS.md).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  freePort,
  installCleanupHandlers,
  startChild,
  stopAll,
  waitReady,
  type RunningChild,
} from './lib/children.ts';
import { writeLmdbConfig } from './cache-hit.ts';
import { positive, UsageError, writeResults } from './lib/cli.ts';
import { machineInfo } from './lib/machine.ts';
import type { GenericResults } from './lib/results.ts';
import { parseSize } from './lib/sizes.ts';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
const HIT_TARGETS = ['node-ceiling', 'cairn-memory', 'cairn-lmdb'] as const;
/** Pass-through: the same programs as bench/run.ts's targets of those names, asked for `/<size>` (no-store). */
const PASS_TARGETS = ['cairn', 'cairn-bare', 'http-proxy', 'reply-from', 'node-floor-proxy'] as const;
type TargetName = (typeof HIT_TARGETS)[number] | (typeof PASS_TARGETS)[number];
type Scenario = 'cache-hit' | 'passthrough';

const HELP = `Usage: node --import tsx bench/instructions.ts [options]

  --scenario NAME     cache-hit (default): ${HIT_TARGETS.join(', ')}, GET /cacheable/<size>, every answer a hit;
                      passthrough: ${PASS_TARGETS.join(', ')}, GET /<size> (no-store), every answer from the origin
  --targets a,b       some of the scenario's targets (default: all of them)
  --sizes 1k,64k      object sizes (default: 1k)
  --warmup N          requests before counting (default: 20000)
  --requests N        requests counted (default: 5000)
  --keep-dumps DIR    keep each target's callgrind dumps in DIR/<target>-<size>/ (for callgrind_annotate)
  --results-dir DIR   where instructions.json (instructions-passthrough.json) goes (default: bench/results)
  --report FILE       the RESULTS.md to regenerate (default: bench/RESULTS.md; "none" to skip)
  --help
`;

interface Options {
  readonly scenario: Scenario;
  readonly targets: readonly TargetName[];
  readonly sizes: readonly string[];
  readonly warmup: number;
  readonly requests: number;
  readonly resultsDir: string;
  readonly reportFile: string | null;
  readonly keepDumps: string | null;
}

function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenario: { type: 'string', default: 'cache-hit' },
      targets: { type: 'string' },
      sizes: { type: 'string', default: '1k' },
      warmup: { type: 'string' },
      requests: { type: 'string' },
      'keep-dumps': { type: 'string' },
      'results-dir': { type: 'string', default: path.join(BENCH_DIR, 'results') },
      report: { type: 'string', default: path.join(BENCH_DIR, 'RESULTS.md') },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return null;
  }
  const scenario = values.scenario;
  if (scenario !== 'cache-hit' && scenario !== 'passthrough')
    throw new UsageError(`--scenario: "${scenario}" is neither cache-hit nor passthrough`);
  const known: readonly string[] = scenario === 'cache-hit' ? HIT_TARGETS : PASS_TARGETS;
  const targets = (values.targets ?? known.join(',')).split(',').map((t) => t.trim());
  for (const t of targets) {
    if (!known.includes(t))
      throw new UsageError(`--targets: "${t}" is not a ${scenario} target (${known.join(', ')})`);
  }
  const sizes = values.sizes.split(',').map((s) => s.trim());
  for (const s of sizes) if (parseSize(s) === null) throw new UsageError(`--sizes: not a size: "${s}"`);
  return {
    scenario,
    targets: targets as TargetName[],
    sizes,
    warmup: Math.floor(positive('warmup', values.warmup, 20_000)),
    requests: Math.floor(positive('requests', values.requests, 5_000)),
    resultsDir: values['results-dir'],
    reportFile: values.report === 'none' ? null : values.report,
    keepDumps: values['keep-dumps'] ?? null,
  };
}

/** Exactly `n` GETs over 10 keep-alive connections; every answer must be a 200 of `length` bytes. */
async function requests(url: string, n: number, length: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
  let sent = 0;
  let done = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      const next = (): void => {
        if (sent >= n) return;
        sent++;
        http
          .get(url, { agent }, (res) => {
            let bytes = 0;
            res.on('data', (c: Buffer) => (bytes += c.length));
            res.on('end', () => {
              if (res.statusCode !== 200 || bytes !== length) {
                reject(
                  new Error(
                    `GET ${url} answered ${res.statusCode} with ${bytes} bytes (want 200 with ${length})`,
                  ),
                );
                return;
              }
              if (++done === n) resolve();
              else next();
            });
          })
          .on('error', reject);
      };
      for (let i = 0; i < 10; i++) next();
    });
  } finally {
    agent.destroy();
  }
}

function callgrindControl(args: string[]): void {
  const r = spawnSync('callgrind_control', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`callgrind_control ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
}

/** `totals:` of each thread's dump (`<out>.1-NN`), by thread number. */
function threadTotals(dir: string, base: string): Map<number, number> {
  const totals = new Map<number, number>();
  for (const file of readdirSync(dir)) {
    const m = new RegExp(`^${base}\\.1-(\\d+)$`).exec(file);
    if (m === null) continue;
    const line = readFileSync(path.join(dir, file), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('totals:'))
      .pop();
    totals.set(Number(m[1]), line === undefined ? 0 : Number(line.split(/\s+/)[1]));
  }
  return totals;
}

function targetArgs(name: TargetName, port: number, originUrl: string, tmp: string): string[] {
  if (name === 'node-ceiling') return [path.join(BENCH_DIR, 'targets/origin.ts'), '--port', String(port)];
  if (name === 'cairn-bare' || name === 'http-proxy' || name === 'reply-from' || name === 'node-floor-proxy')
    return [path.join(BENCH_DIR, `targets/${name}.ts`), '--port', String(port), '--origin', originUrl];
  const cli = [
    path.join(ROOT, 'src/cli.ts'),
    '--listen',
    `127.0.0.1:${port}`,
    '--origin',
    originUrl,
    '--log-level',
    'silent',
  ];
  if (name === 'cairn') return [...cli, '--no-cache'];
  // The default tiers, as in cache-hit.ts: a memory hit reads nothing from the disk tier.
  if (name === 'cairn-memory') return [...cli, '--cache-dir', path.join(tmp, 'lmdb-default')];
  // Every object is over the memory tier's limit, so every hit is an LMDB read (as in cache-hit.ts).
  return [...cli, '--config', writeLmdbConfig(tmp)];
}

interface Count {
  readonly target: TargetName;
  readonly size: string;
  readonly mainPerRequest: number;
  readonly allPerRequest: number;
}

async function count(opts: Options, name: TargetName, size: string, originUrl: string): Promise<Count> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), `cairn-instructions-${name}-`));
  const port = await freePort();
  const out = path.join(tmp, 'callgrind.out');
  const child: RunningChild = startChild({
    name,
    command: 'valgrind',
    args: [
      '--tool=callgrind',
      '--instr-atstart=no',
      '--separate-threads=yes',
      `--callgrind-out-file=${out}`,
      process.execPath,
      '--import',
      'tsx',
      ...targetArgs(name, port, originUrl, tmp),
    ],
    core: null,
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: 'production' },
  });
  try {
    const url = `http://127.0.0.1:${port}${opts.scenario === 'cache-hit' ? '/cacheable' : ''}/${size}`;
    const length = parseSize(size)!;
    await waitReady(child, url, 180_000);
    await requests(url, opts.warmup, length);
    callgrindControl(['-i', 'on', String(child.pid)]);
    await requests(url, opts.requests, length);
    callgrindControl(['-i', 'off', String(child.pid)]);
    callgrindControl(['-d', String(child.pid)]);
    const totals = threadTotals(tmp, 'callgrind.out');
    const main = totals.get(1);
    if (main === undefined) throw new Error(`${name}: no callgrind dump for the main thread in ${tmp}`);
    let all = 0;
    for (const v of totals.values()) all += v;
    return {
      target: name,
      size,
      mainPerRequest: Math.round(main / opts.requests),
      allPerRequest: Math.round(all / opts.requests),
    };
  } finally {
    await child.stop();
    if (opts.keepDumps !== null) {
      const dir = path.join(opts.keepDumps, `${name}-${size}`);
      mkdirSync(dir, { recursive: true });
      for (const f of readdirSync(tmp))
        if (f.startsWith('callgrind.out')) copyFileSync(path.join(tmp, f), path.join(dir, f));
    }
    rmSync(tmp, { recursive: true, force: true });
  }
}

export async function main(argv: string[]): Promise<void> {
  const opts = parseOptions(argv);
  if (opts === null) return;
  if (spawnSync('valgrind', ['--version']).status !== 0)
    throw new UsageError('valgrind is not installed (Debian package valgrind)');
  installCleanupHandlers();
  const machine = machineInfo(ROOT);
  const originPort = await freePort();
  const origin = startChild({
    name: 'origin',
    command: process.execPath,
    args: ['--import', 'tsx', path.join(BENCH_DIR, 'targets/origin.ts'), '--port', String(originPort)],
    core: null,
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: 'production' },
  });
  const originUrl = `http://127.0.0.1:${originPort}`;
  await waitReady(origin, `${originUrl}/1k`, 30_000);
  const counts: Count[] = [];
  for (const size of opts.sizes) {
    for (const name of opts.targets) {
      const c = await count(opts, name, size, originUrl);
      counts.push(c);
      console.log(
        `${size.padStart(4)} ${name.padEnd(14)} main thread ${c.mainPerRequest} / all threads ${c.allPerRequest} instructions per request`,
      );
    }
  }
  await stopAll();

  writeResults(
    opts.resultsDir,
    `${SCENARIO_REPORT[opts.scenario].kind}.json`,
    countResults(opts, counts, machine),
    opts.reportFile,
  );
}

const COUNT_NOTE =
  'Counted by `node --import tsx bench/instructions.ts` (valgrind callgrind, instrumentation on only for the counted requests). The counts repeat to within a few percent run to run (the JIT does not always make the same choices: the ceiling counted 65.5k to 70.1k over several runs) on a busy machine, where throughput moves by a third; they are a guide, the throughput job is the verdict.';

/** How each scenario's results are labelled and compared: the hits with the ceiling, the proxies with Cairn. */
const SCENARIO_REPORT = {
  'cache-hit': {
    kind: 'instructions',
    title: 'Instructions per cache hit (callgrind): Cairn vs the Node ceiling',
    request: '`GET /cacheable/<size>`, every answer a hit',
    base: 'node-ceiling',
    column: 'ceiling / target (main thread)',
    ratio: (base: number, target: number): string => `${Math.round((base / target) * 100)}%`,
    note: 'User-space instructions only: the kernel work of each request (the same for every target here) is not in them, so the ratio is lower than the CPU-time ratio of the cache-hit job. `rep movsb` counts once per byte: a body copy weighs far more here than on the clock.',
  },
  passthrough: {
    kind: 'instructions-passthrough',
    title: 'Instructions per pass-through request (callgrind): Cairn vs the Node proxies',
    request: '`GET /<size>` answered `no-store` by the origin, which is not counted',
    base: 'cairn',
    column: 'target / cairn (main thread)',
    ratio: (base: number, target: number): string => `${(target / base).toFixed(2)}x`,
    note: 'User-space instructions of the proxy process only. Each proxy also makes four socket calls per request (a read and a write on each side), whose kernel work is not counted: the pass-through target (RPS >= 1.3x the better Node peer) needs a peer / cairn ratio here well above 1.3x.',
  },
} as const;

function countResults(
  opts: Options,
  counts: readonly Count[],
  machine: GenericResults['machine'],
): GenericResults & { readonly counts: readonly Count[] } {
  const r = SCENARIO_REPORT[opts.scenario];
  const rows = counts.map((c) => {
    const base = counts.find((x) => x.size === c.size && x.target === r.base);
    return [
      `\`${c.target}\``,
      c.size,
      c.mainPerRequest,
      c.allPerRequest,
      base === undefined ? 'n/a' : r.ratio(base.mainPerRequest, c.mainPerRequest),
    ];
  });
  return {
    kind: r.kind,
    schemaVersion: 1,
    machine,
    smoke: false,
    title: r.title,
    tables: [
      {
        caption: `${opts.warmup} requests to warm each target, then ${opts.requests} counted (10 keep-alive connections, ${r.request}).`,
        columns: ['target', 'size', 'main thread / request', 'all threads / request', r.column],
        rows,
      },
    ],
    notes: [COUNT_NOTE, r.note],
    counts,
  };
}

try {
  await main(process.argv.slice(2));
} catch (err) {
  await stopAll();
  if (err instanceof UsageError) {
    console.error(`bench/instructions.ts: ${err.message} (see --help)`);
    process.exitCode = 2;
  } else {
    throw err;
  }
}
