/**
 * The pass-through benchmark: Cairn against the origin, a bare Node server, http-proxy,
 * @fastify/reply-from and nginx, in one run, alternating targets within every round.
 *
 *   npm run bench                              # the full run (3 rounds, 5 s each, 1k + 64k)
 *   npm run bench -- --quick                   # smoke run: 1 round, 2 s (not a result)
 *   npm run bench -- --targets cairn,nginx --sizes 1k --rounds 5
 *
 * Writes bench/results/passthrough.json (raw, per round) and regenerates bench/RESULTS.md from
 * every results file (bench/report.ts). See bench/README.md for the method and how to read it.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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
  type ManagedProcess,
  type RunningChild,
} from './lib/children.ts';
import { core, methodRecord, positive, roundSlots, UsageError, writeResults } from './lib/cli.ts';
import { pickLoadGenerator, runLoad, type LoadGeneratorName } from './lib/load.ts';
import { coreBusyBetween, cpuSeconds, machineInfo, readCoreTimes } from './lib/machine.ts';
import { scrapeReuse } from './lib/metrics.ts';
import type { PassthroughResults, PassthroughSample, TargetStatus } from './lib/results.ts';
import { parseSize } from './lib/sizes.ts';
import { TARGETS, TARGET_NAMES, type Launch, type TargetDef } from './lib/targets.ts';
import { renderPassthrough } from './report/passthrough.ts';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);

const HELP = `Usage: npm run bench -- [options]

  --targets a,b,c     targets to run (default: all)
                      ${TARGET_NAMES.join(', ')}
  --sizes 1k,64k      response body sizes (default: 1k,64k)
  --rounds N          rounds; every target runs once per size per round (default: 3)
  --passes K          measuring passes per round: every target, every size, K times between restarts
                      (default: 1); ratios are then paired by pass (see bench/README.md)
  --duration S        measured seconds per sample, whole (default: 5)
  --warmup S          unmeasured seconds before each sample, whole (default: 1)
  --connections N     concurrent connections (default: 50)
  --quick             smoke run: 1 round, 2 s; marked as not a result
  --keep-processes    start each target once for the whole run (default: afresh every round)
  --loadgen NAME      wrk | autocannon | auto (default: auto = wrk if installed)
  --proxy-core N      core for the target under test (default: 0)
  --loadgen-core N    core for the load generator (default: 1)
  --origin-core N     core for the origin (default: 1, shared with the load generator)
  --no-pin            do not use taskset
  --results-dir DIR   where passthrough.json goes (default: bench/results)
  --report FILE       the RESULTS.md to regenerate (default: bench/RESULTS.md; "none" to skip)
  --scenario NAME     passthrough (default, this job) or cache-hit (bench/cache-hit.ts: its own --help)
  --help
`;

/** A bad command line: reported as one line and a pointer to --help, without a stack. */

interface Options {
  targets: TargetDef[];
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
      'results-dir': { type: 'string' },
      report: { type: 'string' },
      scenario: { type: 'string', default: 'passthrough' },
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
  const targets = names.map((n) => {
    const t = TARGETS.find((d) => d.name === n);
    if (t === undefined) throw new UsageError(`unknown target "${n}"; known: ${TARGET_NAMES.join(', ')}`);
    return t;
  });
  const sizes = values.sizes
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '');
  for (const s of sizes)
    if (parseSize(s) === null)
      throw new UsageError(`bad size "${s}" (examples: 512, 1k, 64k, 1m; at most 16m)`);
  if (values.loadgen !== 'auto' && values.loadgen !== 'wrk' && values.loadgen !== 'autocannon')
    throw new UsageError('--loadgen must be wrk, autocannon or auto');
  const quick = values.quick;
  const cores = os.availableParallelism();
  const pin = !values['no-pin'] && cores >= 2 && tasksetAvailable();
  if (!values['no-pin'] && !pin)
    console.warn(
      `warning: not pinning (${cores < 2 ? `${cores} core(s)` : 'taskset not available'}); numbers mix target and load generator CPU`,
    );
  const opts: Options = {
    targets,
    sizes,
    rounds: Math.floor(positive('rounds', values.rounds, quick ? 1 : 3)),
    passes: Math.floor(positive('passes', values.passes, 1)),
    // wrk and autocannon take whole seconds.
    durationSec: Math.ceil(positive('duration', values.duration, quick ? 2 : 5)),
    warmupSec: Math.ceil(positive('warmup', values.warmup, 1)),
    connections: Math.floor(positive('connections', values.connections, 50)),
    smoke: quick,
    freshPerRound: !values['keep-processes'],
    loadgen: pickLoadGenerator(values.loadgen),
    proxyCore: pin ? core('proxy-core', values['proxy-core'], 0) : null,
    loadgenCore: pin ? core('loadgen-core', values['loadgen-core'], 1) : null,
    originCore: pin ? core('origin-core', values['origin-core'], 1) : null,
    resultsDir: path.resolve(values['results-dir'] ?? path.join(BENCH_DIR, 'results')),
    reportFile:
      values.report === 'none' ? null : path.resolve(values.report ?? path.join(BENCH_DIR, 'RESULTS.md')),
  };
  for (const c of [opts.proxyCore, opts.loadgenCore, opts.originCore]) {
    if (c !== null && c >= cores)
      throw new UsageError(`core ${c} does not exist (this machine has ${cores})`);
  }
  return opts;
}

/** A target that is up: its process (null for `direct`), URL and what to scrape. */
interface LiveTarget {
  readonly def: TargetDef;
  readonly port: number;
  readonly child: ManagedProcess | null;
  readonly metricsUrl: string | null;
  /** Set when the target stops answering or its process dies mid-run: it is skipped from then on. */
  dropped: string | null;
}

const statuses = new Map<string, TargetStatus>();

function setStatus(def: TargetDef, s: Omit<TargetStatus, 'name' | 'description'>): void {
  statuses.set(def.name, { name: def.name, description: def.description, ...s });
}

/** Starts one launch (and its fallback if the first fails); returns the child or throws. */
async function startLaunch(
  launch: Launch,
  port: number,
): Promise<{ child: RunningChild; metricsUrl: string | null }> {
  const spec = launch.spec!;
  const child = startChild(spec);
  try {
    await waitReady(child, `http://127.0.0.1:${port}/1k`, 20_000);
    return { child, metricsUrl: launch.metricsUrl };
  } catch (err) {
    await child.stop();
    launch.cleanup?.();
    if (launch.fallback?.spec == null) throw err;
    console.warn(
      `  ${spec.name}: ${(err as Error).message.split('\n')[0]}; retrying without the admin listener`,
    );
    return startLaunch(launch.fallback, port);
  }
}

/** Every size must come back 200 with the right number of bytes before we measure it. */
async function sanityCheck(port: number, sizes: readonly string[]): Promise<void> {
  for (const size of sizes) {
    const r = await probe(`http://127.0.0.1:${port}/${size}`);
    const want = parseSize(size)!;
    if (r.status !== 200 || r.length !== want)
      throw new Error(`GET /${size} answered ${r.status} with ${r.length} bytes (want 200 with ${want})`);
  }
}

async function startTargets(opts: Options, origin: RunningChild, originPort: number): Promise<LiveTarget[]> {
  const live: LiveTarget[] = [];
  const cleanups: (() => void)[] = [];
  for (const def of opts.targets) {
    const port = def.name === 'direct' ? originPort : await freePort();
    const launch = def.launch({
      originUrl: `http://127.0.0.1:${originPort}`,
      port,
      adminPort: await freePort(),
      core: opts.proxyCore,
    });
    if (launch.cleanup !== undefined) cleanups.push(launch.cleanup);
    process.stdout.write(`starting ${def.name.padEnd(16)} `);
    let proc: ManagedProcess | null = null;
    try {
      let targetPort = port;
      let metricsUrl: string | null = null;
      if (launch.start !== undefined) {
        ({ process: proc, port: targetPort } = await launch.start());
      } else if (launch.spec !== null) {
        const started = await startLaunch(launch, port);
        proc = started.child;
        metricsUrl = started.metricsUrl;
      }
      await sanityCheck(targetPort, opts.sizes);
      live.push({ def, port: targetPort, child: proc, metricsUrl, dropped: null });
      const core = proc === null ? opts.originCore : opts.proxyCore;
      const pid = (proc ?? origin).pid;
      setStatus(def, { started: true, error: null, core, pid });
      console.log(
        `ok (pid ${pid}, port ${targetPort}${core === null ? '' : `, core ${core}`}${metricsUrl === null ? '' : ', metrics'})`,
      );
    } catch (err) {
      await proc?.stop();
      const msg = (err as Error).message;
      setStatus(def, { started: false, error: msg, core: null, pid: null });
      console.log(`FAILED TO START — skipped\n    ${msg.replace(/\n/g, '\n    ')}`);
    }
  }
  process.once('exit', () => {
    for (const c of cleanups) c();
  });
  return live;
}

/**
 * Stop every target and start it again: a process that happens to run slow (memory placement,
 * a neighbour on the host) then counts in one round's sample, not in all of them.
 */
async function restartTargets(
  opts: Options,
  live: readonly LiveTarget[],
  origin: RunningChild,
  originPort: number,
): Promise<LiveTarget[]> {
  for (const t of live) await t.child?.stop();
  const wanted = new Set(live.filter((t) => t.dropped === null).map((t) => t.def.name));
  console.log('starting every target afresh for this round');
  return startTargets(
    { ...opts, targets: opts.targets.filter((d) => wanted.has(d.name)) },
    origin,
    originPort,
  );
}

/** Round r runs the targets rotated by r, so no target is always first (or last) after a pause. */
async function measure(
  opts: Options,
  t: LiveTarget,
  origin: RunningChild,
  size: string,
  round: number,
  order: number,
): Promise<PassthroughSample> {
  const url = `http://127.0.0.1:${t.port}/${size}`;
  const load = { url, connections: opts.connections, core: opts.loadgenCore };
  await runLoad(opts.loadgen, { ...load, durationSec: opts.warmupSec });
  const proc = t.child ?? origin;
  const pids = [proc.pid, ...descendants(proc.pid)];
  const coresBefore = readCoreTimes();
  const cpuBefore = cpuSeconds(pids);
  const sample = await runLoad(opts.loadgen, { ...load, durationSec: opts.durationSec });
  const cpuAfter = cpuSeconds(pids);
  const coreBusy = coreBusyBetween(coresBefore, readCoreTimes());
  const reuse = t.metricsUrl === null ? null : await scrapeReuse(t.metricsUrl);
  return {
    ...sample,
    round,
    target: t.def.name,
    size,
    order,
    coreBusy,
    targetCpuSec:
      cpuBefore === null || cpuAfter === null ? null : Math.round((cpuAfter - cpuBefore) * 1000) / 1000,
    reuse,
  };
}

function fmtSample(s: PassthroughSample): string {
  const errs = s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout + s.errors.status;
  const busy =
    s.coreBusy === null ? '' : `  cores ${s.coreBusy.map((b) => `${Math.round(b * 100)}%`).join('/')}`;
  return `${Math.round(s.rps).toString().padStart(7)} rps  p99 ${s.latencyMs.p99.toFixed(2).padStart(7)} ms${busy}${errs > 0 ? `  ERRORS ${errs}` : ''}`;
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  if (opts === null) return;
  installCleanupHandlers();
  const machine = machineInfo(ROOT);
  const perSample = opts.warmupSec + opts.durationSec + 0.3;
  const estimate = Math.ceil(
    (opts.targets.length * opts.sizes.length * opts.rounds * opts.passes * perSample) / 60,
  );
  console.log(
    `cairn bench: ${opts.targets.length} targets x ${opts.sizes.join('/')} x ${opts.rounds} round(s)${opts.passes > 1 ? ` x ${opts.passes} passes` : ''}, ${opts.durationSec} s + ${opts.warmupSec} s warm-up, ` +
      `${opts.connections} connections, ${opts.loadgen}; about ${estimate} min${opts.smoke ? '  [SMOKE RUN: not a result]' : ''}`,
  );
  console.log(
    `pinning: target core ${opts.proxyCore ?? '-'}, load generator core ${opts.loadgenCore ?? '-'}, origin core ${opts.originCore ?? '-'}; ` +
      `load average ${machine.loadAverageAtStart.join(' ')}`,
  );
  if ((machine.loadAverageAtStart[0] ?? 0) > machine.cores * 0.25)
    console.warn('warning: the machine is busy; numbers from this run will be noisy');

  const originPort = await freePort();
  const origin = startChild({
    name: 'origin',
    command: process.execPath,
    args: ['--import', 'tsx', path.join(BENCH_DIR, 'targets/origin.ts'), '--port', String(originPort)],
    core: opts.originCore,
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: 'production' },
  });
  await waitReady(origin, `http://127.0.0.1:${originPort}/1k`, 30_000);
  console.log(`origin on port ${originPort} (pid ${origin.pid})`);

  let live = await startTargets(opts, origin, originPort);
  const samples: PassthroughSample[] = [];
  const started = Date.now();
  if (live.length === 0) console.error('no target started; nothing to measure');

  for (let round = 0; round < opts.rounds && live.length > 0; round++) {
    if (round > 0 && opts.freshPerRound) live = await restartTargets(opts, live, origin, originPort);
    for (const slot of roundSlots(opts, live, round)) {
      const t = slot.target;
      if (isStopping()) return;
      if (t.dropped !== null) continue;
      const label = `${slot.label} ${t.def.name.padEnd(16)}`;
      if (origin.hasExited()) throw new Error(`the origin died: ${origin.outputTail()}`);
      if (t.child?.hasExited() === true) {
        t.dropped = `process exited mid-run: ${t.child.outputTail().split('\n').slice(-3).join(' | ')}`;
      } else {
        try {
          const s = await measure(opts, t, origin, slot.size, slot.sampleRound, slot.order);
          samples.push(s);
          console.log(`${label} ${fmtSample(s)}`);
          continue;
        } catch (err) {
          if (isStopping()) return; // the load generator was stopped by our own signal handler
          t.dropped = (err as Error).message;
        }
      }
      console.log(`${label} DROPPED: ${t.dropped}`);
      const prev = statuses.get(t.def.name)!;
      setStatus(t.def, { ...prev, error: t.dropped });
      if (t.child !== null) await t.child.stop();
    }
  }
  console.log(`measured for ${Math.round((Date.now() - started) / 1000)} s`);
  await stopAll();
  await sleep(100);

  const results: PassthroughResults = {
    kind: 'passthrough',
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
        },
    ),
    samples,
  };
  writeResults(opts.resultsDir, 'passthrough.json', results, opts.reportFile);
  console.log(`\n${renderPassthrough(results)}`);
}

/** `--scenario cache-hit` hands the rest of the command line to bench/cache-hit.ts. */
async function dispatch(argv: readonly string[]): Promise<void> {
  const at = argv.findIndex((a) => a === '--scenario' || a.startsWith('--scenario='));
  const inline = at >= 0 && argv[at]!.includes('=');
  const scenario =
    at < 0 ? 'passthrough' : inline ? argv[at]!.slice('--scenario='.length) : (argv[at + 1] ?? '');
  if (scenario === 'cache-hit') {
    const rest = argv.filter((_, i) => i !== at && (inline || i !== at + 1));
    const { runCli } = await import('./cache-hit.ts');
    await runCli(rest);
    return;
  }
  if (scenario !== 'passthrough') {
    console.error(`unknown --scenario "${scenario}": passthrough (default) or cache-hit`);
    process.exitCode = 2;
    return;
  }
  try {
    await main();
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

await dispatch(process.argv.slice(2));
