/**
 * Scenario: gRPC unary calls per second through Cairn — native gRPC and both gRPC-web bridges —
 * against the same calls made directly, in the same run. Writes bench/results/grpc.json (rendered
 * into RESULTS.md by bench/report.ts).
 *
 *   node --import tsx bench/grpc.ts [--rounds 3] [--duration 3] [--concurrency 32] [--bytes 100] [--no-pin] [--quick]
 *
 * | target              | path                                                                          |
 * | ------------------- | ----------------------------------------------------------------------------- |
 * | `direct-grpc`       | grpc-js client → grpc-js server (h2c)                                          |
 * | `cairn-native`      | grpc-js client → Cairn (h2c) → grpc-js server (HTTP/2, `http2: true` peer)     |
 * | `direct-grpc-web`   | connect-es gRPC-web client → connect-es gRPC-web server (HTTP/1.1)             |
 * | `cairn-web-to-grpc` | connect-es gRPC-web client → Cairn (`GrpcWebToGrpc`) → grpc-js server          |
 * | `cairn-grpc-to-web` | grpc-js client → Cairn (h2c, `GrpcToGrpcWeb`) → connect-es gRPC-web server     |
 *
 * Pinning as in the other jobs: each Cairn process on core 0, the origins and the load generator
 * (a child running `bench/targets/grpc-load.ts`) on core 1. Every round measures every target once,
 * in an order that rotates between rounds; the report uses medians. Bounded: each start has a 20 s
 * limit, each load run a hard limit of warm-up + duration + 15 s; the whole run takes about
 * rounds × 5 × (warm-up + duration + ~1 s). Every child is stopped by PID at the end, also on an
 * error or Ctrl-C.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { RunningChild } from './lib/children.ts';
import { installCleanupHandlers, isStopping, startChild, stopAll, tasksetAvailable } from './lib/children.ts';
import { cpuSeconds, machineInfo } from './lib/machine.ts';
import type { GenericResults } from './lib/results.ts';
import { median, spread } from './lib/stats.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '32' },
    bytes: { type: 'string', default: '100' },
    'no-pin': { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: join(ROOT, 'bench', 'results', 'grpc.json') },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write(
    'node --import tsx bench/grpc.ts [--rounds 3] [--duration 3] [--warmup 1] [--concurrency 32] [--bytes 100] [--no-pin] [--quick] [--out FILE]\n',
  );
  process.exit(0);
}
const quick = values.quick;
const rounds = quick ? 1 : Number(values.rounds);
const durationSec = quick ? 1 : Number(values.duration);
const warmupSec = quick ? 0.5 : Number(values.warmup);
const concurrency = Number(values.concurrency);
const bytes = Number(values.bytes);
if (
  !(rounds >= 1 && rounds <= 20) ||
  !(durationSec > 0 && durationSec <= 60) ||
  !(warmupSec >= 0 && warmupSec <= 10) ||
  !(concurrency >= 1 && concurrency <= 1000) ||
  !(bytes >= 0 && bytes <= 4 * 1024 * 1024)
) {
  process.stderr.write(
    'grpc bench: --rounds 1-20, --duration 1-60, --warmup 0-10, --concurrency 1-1000, --bytes 0-4194304\n',
  );
  process.exit(2);
}
const pin = !values['no-pin'] && tasksetAvailable();
const machine = machineInfo(ROOT);
installCleanupHandlers();

const START_LIMIT_MS = 20_000;

/** Start a child that prints `READY <port>` and wait for that line (or its exit, or the limit). */
async function startReady(
  name: string,
  args: readonly string[],
  core: number,
): Promise<{ child: RunningChild; port: number }> {
  const child = startChild({
    name,
    command: process.execPath,
    args: ['--import', 'tsx', ...args],
    core: pin ? core : null,
    cwd: ROOT,
  });
  let text = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name}: not ready after ${START_LIMIT_MS} ms: ${child.outputTail()}`)),
      START_LIMIT_MS,
    );
    child.process.stdout?.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const m = /READY (\d+)/.exec(text);
      if (m !== null) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    void child.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${name}: exited during start (code ${String(code)}): ${child.outputTail()}`));
    });
  });
  return { child, port };
}

interface LoadResult {
  calls: number;
  errors: number;
  seconds: number;
  callsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

/** One load run in a child on core 1, with a hard limit. */
async function runLoad(client: 'grpc-js' | 'connect-grpc-web', target: string): Promise<LoadResult> {
  const child = startChild({
    name: `load ${client}`,
    command: process.execPath,
    args: [
      '--import',
      'tsx',
      'bench/targets/grpc-load.ts',
      '--client',
      client,
      '--target',
      target,
      '--duration',
      String(durationSec),
      '--warmup',
      String(warmupSec),
      '--concurrency',
      String(concurrency),
      '--bytes',
      String(bytes),
    ],
    core: pin ? 1 : null,
    cwd: ROOT,
  });
  let text = '';
  child.process.stdout?.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const limit = setTimeout(() => void child.stop(), (warmupSec + durationSec + 15) * 1000);
  await child.exited;
  clearTimeout(limit);
  const m = /RESULT (\{.*\})/.exec(text);
  if (m === null) throw new Error(`load ${client} -> ${target} gave no result: ${child.outputTail()}`);
  return JSON.parse(m[1] as string) as LoadResult;
}

interface Target {
  readonly name: string;
  readonly client: 'grpc-js' | 'connect-grpc-web';
  readonly address: string;
  /** The Cairn process, for CPU µs per call (none for direct targets). */
  readonly cairn: RunningChild | null;
  readonly path: string;
}

interface Sample {
  round: number;
  target: string;
  order: number;
  callsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  cairnCpuUsPerCall: number | null;
}

try {
  const grpcOrigin = await startReady(
    'grpc-js origin',
    ['bench/targets/grpc-origin.ts', '--stack', 'grpc-js'],
    1,
  );
  const webOrigin = await startReady(
    'connect gRPC-web origin',
    ['bench/targets/grpc-origin.ts', '--stack', 'connect-grpc-web'],
    1,
  );
  const grpcUrl = `http://127.0.0.1:${grpcOrigin.port}`;
  const webUrl = `http://127.0.0.1:${webOrigin.port}`;
  const native = await startReady(
    'cairn native',
    ['bench/targets/cairn-grpc.ts', '--mode', 'native', '--origin', grpcUrl],
    0,
  );
  const webToGrpc = await startReady(
    'cairn web-to-grpc',
    ['bench/targets/cairn-grpc.ts', '--mode', 'web-to-grpc', '--origin', grpcUrl],
    0,
  );
  const grpcToWeb = await startReady(
    'cairn grpc-to-web',
    ['bench/targets/cairn-grpc.ts', '--mode', 'grpc-to-web', '--origin', webUrl],
    0,
  );
  const at = (port: number): string => `127.0.0.1:${port}`;
  const targets: Target[] = [
    {
      name: 'direct-grpc',
      client: 'grpc-js',
      address: at(grpcOrigin.port),
      cairn: null,
      path: 'grpc-js client → grpc-js server',
    },
    {
      name: 'cairn-native',
      client: 'grpc-js',
      address: at(native.port),
      cairn: native.child,
      path: 'grpc-js → Cairn → grpc-js (HTTP/2 both sides)',
    },
    {
      name: 'direct-grpc-web',
      client: 'connect-grpc-web',
      address: at(webOrigin.port),
      cairn: null,
      path: 'connect gRPC-web client → connect gRPC-web server (HTTP/1.1)',
    },
    {
      name: 'cairn-web-to-grpc',
      client: 'connect-grpc-web',
      address: at(webToGrpc.port),
      cairn: webToGrpc.child,
      path: 'connect gRPC-web → Cairn GrpcWebToGrpc → grpc-js',
    },
    {
      name: 'cairn-grpc-to-web',
      client: 'grpc-js',
      address: at(grpcToWeb.port),
      cairn: grpcToWeb.child,
      path: 'grpc-js → Cairn GrpcToGrpcWeb → connect gRPC-web',
    },
  ];
  const samples: Sample[] = [];
  for (let round = 0; round < rounds && !isStopping(); round++) {
    for (let i = 0; i < targets.length && !isStopping(); i++) {
      const target = targets[(i + round) % targets.length] as Target;
      const pids = target.cairn === null ? [] : [target.cairn.pid];
      const cpuBefore = pids.length > 0 ? cpuSeconds(pids) : null;
      const result = await runLoad(target.client, target.address);
      const cpuAfter = pids.length > 0 ? cpuSeconds(pids) : null;
      // CPU over warm-up + measured window, divided by every call made in it (approximated from the
      // measured rate): the cost of one call in the Cairn process.
      const allCalls = result.callsPerSec * (warmupSec + durationSec);
      const cpu =
        cpuBefore !== null && cpuAfter !== null && allCalls > 0
          ? ((cpuAfter - cpuBefore) / allCalls) * 1e6
          : null;
      samples.push({
        round,
        target: target.name,
        order: i,
        callsPerSec: result.callsPerSec,
        p50Ms: result.p50Ms,
        p99Ms: result.p99Ms,
        errors: result.errors,
        cairnCpuUsPerCall: cpu,
      });
      process.stdout.write(
        `round ${round + 1}/${rounds} ${target.name}: ${Math.round(result.callsPerSec)} calls/s, p99 ${result.p99Ms.toFixed(2)} ms, ${result.errors} errors\n`,
      );
    }
  }
  const summary = targets.map((t) => {
    const mine = samples.filter((s) => s.target === t.name);
    const rates = mine.map((s) => s.callsPerSec);
    const cpu = mine.map((s) => s.cairnCpuUsPerCall).filter((x): x is number => x !== null);
    return {
      target: t,
      rate: median(rates),
      spread: spread(rates),
      p99: median(mine.map((s) => s.p99Ms)),
      errors: mine.reduce((a, s) => a + s.errors, 0),
      cpu: cpu.length > 0 ? median(cpu) : null,
    };
  });
  const rateOf = (name: string): number => summary.find((s) => s.target.name === name)?.rate ?? 0;
  const ratio = (a: string, b: string): string =>
    rateOf(b) > 0 ? `${(rateOf(a) / rateOf(b)).toFixed(2)}x` : 'n/a';
  const result: GenericResults & { samples: Sample[] } = {
    kind: 'grpc',
    schemaVersion: 1,
    machine,
    smoke: quick,
    title: 'gRPC unary calls per second: through Cairn (native and bridged) vs direct',
    tables: [
      {
        caption: `Unary Echo, ${bytes}-byte payload, ${concurrency} calls in flight from one client process, ${durationSec} s per sample after ${warmupSec} s warm-up, ${rounds} round(s); medians`,
        columns: ['target', 'path', 'calls/s', 'spread', 'p99 ms', 'errors', 'Cairn CPU µs/call'],
        rows: summary.map((s) => [
          s.target.name,
          s.target.path,
          Math.round(s.rate),
          `${(s.spread * 100).toFixed(1)}%`,
          Number(s.p99.toFixed(2)),
          s.errors,
          s.cpu === null ? '—' : Math.round(s.cpu),
        ]),
      },
      {
        caption: 'Ratios (same run)',
        columns: ['ratio', 'value'],
        rows: [
          [
            'cairn-native / direct-grpc (same client, same origin: the proxy hop)',
            ratio('cairn-native', 'direct-grpc'),
          ],
          [
            'cairn-web-to-grpc / direct-grpc-web (same client, origin grpc-js instead of connect)',
            ratio('cairn-web-to-grpc', 'direct-grpc-web'),
          ],
          [
            'cairn-grpc-to-web / direct-grpc (same client, origin connect gRPC-web instead of grpc-js)',
            ratio('cairn-grpc-to-web', 'direct-grpc'),
          ],
        ],
      },
    ],
    notes: [
      pin
        ? 'Each Cairn process pinned to core 0; the origins and the load generator to core 1 (they share it: a ceiling for every target, compressing ratios toward 1 — see bench/README.md "Pinning, and its bias").'
        : 'Not pinned.',
      'The load generator is the interop fixtures’ client (grpc-js over one HTTP/2 connection, or connect-es gRPC-web over keep-alive HTTP/1.1 connections) in one process: Node gRPC clients, not a C load generator, so direct numbers are bounded by the client too.',
      'Only cairn-native has a direct twin with the same client and origin. A bridge changes the protocol, so its origin is a different stack than its client’s direct target: its ratio mixes the proxy hop with the difference between the two servers.',
      'Cairn CPU µs/call is the Cairn process’s CPU time over warm-up + sample divided by the calls made in it (estimated from the measured rate).',
    ],
    samples,
  };
  await mkdir(dirname(values.out), { recursive: true });
  await writeFile(values.out, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`written to ${values.out}\n`);
} finally {
  await stopAll();
}
