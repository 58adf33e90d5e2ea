/**
 * Scenario: origin connection reuse under steady load with 8 backends. Cairn (the CLI, no cache,
 * round robin over 8 loopback origins) takes `wrk -c50` (or autocannon) for a bounded time; its
 * admin `/metrics` is scraped before and after, and reuse = 1 − connections created / origin
 * requests over the measured window must be >= 99%. Also shows how selections spread over the 8.
 * Writes bench/results/lb-reuse.json (rendered into RESULTS.md by bench/report.ts).
 *
 *   node --import tsx bench/lb-reuse.ts [--duration 5] [--connections 50] [--no-pin]
 *
 * Bounded: start limit 20 s, one warm-up (1 s) and one measured run (default 5 s), each with the
 * load generator's hard limit; every child is stopped by PID at the end, also on error or Ctrl-C.
 */
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  freePort,
  installCleanupHandlers,
  startChild,
  stopAll,
  tasksetAvailable,
  waitReady,
} from './lib/children.ts';
import { pickLoadGenerator, runLoad } from './lib/load.ts';
import { machineInfo } from './lib/machine.ts';
import type { GenericResults } from './lib/results.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BACKENDS = 8;
const TARGET = 0.99;

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    'no-pin': { type: 'boolean', default: false },
    out: { type: 'string', default: join(ROOT, 'bench', 'results', 'lb-reuse.json') },
  },
});
const durationSec = Number(values.duration);
const connections = Number(values.connections);
if (!(durationSec > 0 && durationSec <= 60) || !(connections > 0 && connections <= 1000)) {
  process.stderr.write('lb-reuse: --duration 1-60 and --connections 1-1000\n');
  process.exit(2);
}
const pin = !values['no-pin'] && tasksetAvailable();

installCleanupHandlers();

/** The origins live in this (otherwise idle) process: 1 KiB, no-store, keep-alive. */
const body = Buffer.alloc(1024, 'x');
const origins: Server[] = [];
for (let i = 0; i < BACKENDS; i++) {
  const server = createServer((_req, res) => {
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': body.length,
      'cache-control': 'no-store',
    });
    res.end(body);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  origins.push(server);
}
const ports = origins.map((s) => (s.address() as { port: number }).port);

const [listen, admin] = [await freePort(), await freePort()];
const cairn = startChild({
  name: 'cairn',
  command: process.execPath,
  args: [
    '--import',
    'tsx',
    'src/cli.ts',
    '--listen',
    `127.0.0.1:${listen}`,
    '--admin',
    `127.0.0.1:${admin}`,
    '--no-cache',
    '--log-level',
    'silent',
    ...ports.flatMap((p) => ['--origin', `http://127.0.0.1:${p}`]),
  ],
  core: pin ? 0 : null,
  cwd: ROOT,
});

interface Counters {
  created: number;
  requests: number;
  reused: number;
  selections: Map<string, number>;
}

async function scrape(): Promise<Counters> {
  const res = await fetch(`http://127.0.0.1:${admin}/metrics`);
  const text = await res.text();
  const out: Counters = { created: 0, requests: 0, reused: 0, selections: new Map() };
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (m === null) continue;
    const v = Number(m[3]);
    if (m[1] === 'cairn_upstream_connections_created_total') out.created += v;
    else if (m[1] === 'cairn_upstream_connections_reused_total') out.reused += v;
    else if (m[1] === 'cairn_upstream_requests_total') out.requests += v;
    else if (m[1] === 'cairn_upstream_backend_selections_total') {
      const backend = /backend="([^"]+)"/.exec(m[2] ?? '')?.[1] ?? '?';
      out.selections.set(backend, v);
    }
  }
  return out;
}

try {
  await waitReady(cairn, `http://127.0.0.1:${listen}/`, 20_000);
  const generator = pickLoadGenerator('auto');
  const url = `http://127.0.0.1:${listen}/`;
  await runLoad(generator, { url, connections, durationSec: 1, core: pin ? 1 : null });
  const before = await scrape();
  const sample = await runLoad(generator, { url, connections, durationSec, core: pin ? 1 : null });
  const after = await scrape();
  const requests = after.requests - before.requests;
  const created = after.created - before.created;
  const reused = after.reused - before.reused;
  const reuse = requests > 0 ? 1 - created / requests : 0;
  const total = after.requests > 0 ? 1 - after.created / after.requests : 0;
  const perBackend = [...after.selections.entries()].map(
    ([backend, n]) => [backend, n - (before.selections.get(backend) ?? 0)] as const,
  );
  const errors = Object.values(sample.errors).reduce((a, b) => a + b, 0);
  const pass = reuse >= TARGET && errors === 0;
  const result: GenericResults & Record<string, unknown> = {
    kind: 'lb-reuse',
    schemaVersion: 1,
    machine: machineInfo(ROOT),
    smoke: false,
    title: `Origin connection reuse under steady load, ${BACKENDS} backends (round robin)`,
    tables: [
      {
        caption: `Measured window: ${generator} -c${connections}, ${durationSec} s, 1 KiB no-store bodies, Cairn CLI --no-cache with ${BACKENDS} --origin`,
        columns: [
          'RPS',
          'p99 ms',
          'errors',
          'origin requests',
          'connections created',
          'requests on a reused connection',
          'reuse',
          'target',
          'verdict',
        ],
        rows: [
          [
            Math.round(sample.rps),
            sample.latencyMs.p99,
            errors,
            requests,
            created,
            reused,
            `${(reuse * 100).toFixed(2)}%`,
            `>= ${TARGET * 100}%`,
            pass ? 'pass' : 'FAIL',
          ],
        ],
      },
      {
        caption: 'Selections per backend in the measured window',
        columns: ['backend', 'selections'],
        rows: perBackend.map(([b, n]) => [b, n]),
      },
    ],
    notes: [
      `Reuse = 1 − cairn_upstream_connections_created_total / cairn_upstream_requests_total, deltas over the measured window (warm-up excluded); over the whole run, including warm-up and the first connection to each backend: ${(total * 100).toFixed(2)}%.`,
      pin
        ? 'Cairn pinned to core 0, the load generator and the origins (in the runner process) to core 1.'
        : 'Not pinned.',
    ],
  };
  await mkdir(dirname(values.out), { recursive: true });
  await writeFile(values.out, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(
    `reuse ${(reuse * 100).toFixed(2)}% over ${requests} origin requests (${created} connections created), ${Math.round(sample.rps)} RPS, ${errors} errors: ${pass ? 'pass' : 'FAIL'}\nwritten to ${values.out}\n`,
  );
  process.exitCode = pass ? 0 : 1;
} finally {
  await stopAll();
  for (const s of origins) {
    s.closeAllConnections();
    s.close();
  }
}
