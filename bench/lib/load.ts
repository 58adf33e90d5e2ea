/**
 * The load generator: wrk when it is installed (C, one thread on its own core: it leaves the most
 * CPU for the side being measured), autocannon from node_modules otherwise. Both run as a pinned
 * child process with a hard time limit, and both are read into the same `LoadSample`.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startChild, stopChild } from './children.ts';
import type { LoadSample } from './results.ts';

export type LoadGeneratorName = 'wrk' | 'autocannon';

export interface LoadOptions {
  readonly url: string;
  readonly connections: number;
  readonly durationSec: number;
  readonly core: number | null;
}

const WRK_SCRIPT = fileURLToPath(new URL('./wrk-summary.lua', import.meta.url));
const AUTOCANNON = fileURLToPath(new URL('../../node_modules/autocannon/autocannon.js', import.meta.url));

/** wrk if it runs here, else autocannon. */
export function pickLoadGenerator(wanted: LoadGeneratorName | 'auto'): LoadGeneratorName {
  if (wanted !== 'auto') return wanted;
  const r = spawnSync('wrk', ['-v'], { stdio: 'ignore' });
  return r.error === undefined ? 'wrk' : 'autocannon';
}

/** One load run. Throws if the generator fails, prints nothing parseable, or overruns. */
export async function runLoad(generator: LoadGeneratorName, opts: LoadOptions): Promise<LoadSample> {
  const spec =
    generator === 'wrk'
      ? {
          command: 'wrk',
          // One thread: the generator has one core. --timeout above any sane p99 so slow answers
          // count as latency, not as errors.
          args: [
            '-t1',
            `-c${opts.connections}`,
            `-d${opts.durationSec}s`,
            '--timeout',
            '10s',
            '-s',
            WRK_SCRIPT,
            opts.url,
          ],
        }
      : {
          command: process.execPath,
          args: [
            AUTOCANNON,
            '-c',
            String(opts.connections),
            '-d',
            String(opts.durationSec),
            '-j',
            '-t',
            '10',
            opts.url,
          ],
        };
  const child = startChild({ name: generator, ...spec, core: opts.core });
  let out = '';
  child.process.stdout?.on('data', (c: Buffer) => {
    out += c.toString('utf8');
  });
  const limitMs = (opts.durationSec + 15) * 1000;
  const result = await Promise.race([child.exited, sleep(limitMs).then(() => 'overran' as const)]);
  if (result === 'overran') {
    await stopChild(child);
    throw new Error(`${generator} did not finish within ${limitMs} ms`);
  }
  if (result !== 0)
    throw new Error(
      `${generator} exited with ${String(result)}: ${child.outputTail().split('\n').slice(0, 3).join(' | ')}`,
    );
  return generator === 'wrk' ? parseWrk(out) : parseAutocannon(out);
}

interface WrkJson {
  requests: number;
  duration_us: number;
  bytes: number;
  connect: number;
  read: number;
  write: number;
  status: number;
  timeout: number;
  mean_us: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  max_us: number;
}

const ms = (us: number): number => Math.round(us) / 1000;

export function parseWrk(stdout: string): LoadSample {
  const line = stdout.split('\n').find((l) => l.startsWith('WRK_JSON '));
  if (line === undefined) throw new Error(`wrk printed no summary:\n${stdout.slice(-1000)}`);
  const j = JSON.parse(line.slice('WRK_JSON '.length)) as WrkJson;
  const sec = j.duration_us / 1e6;
  return {
    requests: j.requests,
    durationSec: sec,
    rps: sec > 0 ? j.requests / sec : 0,
    bytesPerSec: sec > 0 ? j.bytes / sec : 0,
    latencyMs: {
      mean: ms(j.mean_us),
      p50: ms(j.p50_us),
      p90: ms(j.p90_us),
      p99: ms(j.p99_us),
      max: ms(j.max_us),
    },
    errors: { connect: j.connect, read: j.read, write: j.write, timeout: j.timeout, status: j.status },
  };
}

interface AutocannonJson {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  requests: { total: number };
  throughput: { total: number };
  latency: { mean: number; p50: number; p90: number; p99: number; max: number };
}

export function parseAutocannon(stdout: string): LoadSample {
  const start = stdout.indexOf('{');
  if (start < 0) throw new Error(`autocannon printed no JSON:\n${stdout.slice(-1000)}`);
  const j = JSON.parse(stdout.slice(start)) as AutocannonJson;
  return {
    requests: j.requests.total,
    durationSec: j.duration,
    rps: j.duration > 0 ? j.requests.total / j.duration : 0,
    bytesPerSec: j.duration > 0 ? j.throughput.total / j.duration : 0,
    latencyMs: {
      mean: j.latency.mean,
      p50: j.latency.p50,
      p90: j.latency.p90,
      p99: j.latency.p99,
      max: j.latency.max,
    },
    errors: { connect: 0, read: j.errors, write: 0, timeout: j.timeouts, status: j.non2xx },
  };
}
