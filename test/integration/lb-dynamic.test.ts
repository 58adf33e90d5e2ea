/**
 * Dynamic membership with nothing dropped: steady load runs through Cairn while backends are added,
 * re-weighted, drained and removed — through the admin API (in process) and through the watched
 * config file (the real CLI as a child process) — and not one request may fail. A backend's server
 * is closed only once Cairn reported it drained. An invalid config file is rejected with its code and
 * the old config keeps serving.
 *
 * Bounded: the load stops when the change script ends or after MAX_REQUESTS, whichever is first.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { ReverseProxy } from '../../hooks/index.ts';
import {
  httpRequest,
  startCairn,
  startOrigin,
  type Cleanup,
  type LogLine,
  type Origin,
} from '../helpers/servers.ts';
import { freePort } from '../helpers/nginx.ts';

const MAX_REQUESTS = 20_000;
const CONCURRENCY = 8;
const REPO = fileURLToPath(new URL('../..', import.meta.url));

interface Load {
  readonly ok: number;
  readonly failures: string[];
  readonly byOrigin: Map<string, number>;
  /** Resolves once at least `n` more requests have completed. */
  after(n: number): Promise<void>;
  stop(): Promise<void>;
}

/** `CONCURRENCY` keep-alive loops of GETs against `url` until `stop()` (or MAX_REQUESTS). */
function steadyLoad(t: Cleanup, url: string): Load {
  const client = new Pool(url, { connections: CONCURRENCY });
  t.after(() => client.destroy());
  let stopped = false;
  let ok = 0;
  const failures: string[] = [];
  const byOrigin = new Map<string, number>();
  const waiters: { at: number; resolve: () => void }[] = [];
  const loop = async (): Promise<void> => {
    while (!stopped && ok + failures.length < MAX_REQUESTS) {
      try {
        const res = await client.request({ path: `/load/${ok}`, method: 'GET' });
        const body = await res.body.text();
        if (res.statusCode === 200) {
          ok++;
          byOrigin.set(body, (byOrigin.get(body) ?? 0) + 1);
        } else failures.push(`${res.statusCode} ${body}`);
      } catch (error) {
        failures.push(String(error));
      }
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (ok + failures.length >= waiters[i]!.at) waiters.splice(i, 1)[0]!.resolve();
      }
    }
    for (const w of waiters.splice(0)) w.resolve();
  };
  const loops = Array.from({ length: CONCURRENCY }, () => loop());
  return {
    get ok() {
      return ok;
    },
    failures,
    byOrigin,
    after(n) {
      return new Promise((resolve) => waiters.push({ at: ok + failures.length + n, resolve }));
    },
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

async function named(t: Cleanup, name: string): Promise<Origin & { id: string }> {
  const origin = await startOrigin(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' }).end(name);
  });
  return Object.assign(origin, { id: `127.0.0.1:${origin.port}` });
}

void test('admin API: add, re-weight, drain and remove backends under steady load with zero failed requests', async (t) => {
  const [a, b, c, d] = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c'), await named(t, 'd')];
  const proxy = new ReverseProxy({ upstream: { algorithm: 'least-connections', backends: [a.id, b.id] } });
  const cairn = await startCairn(t, proxy, {
    services: [proxy],
    adminRoutes: (x) => proxy.adminRoutes(x),
    logLevel: 'warn',
  });
  const admin = async (method: string, path: string, body?: unknown): Promise<number> => {
    const res = await httpRequest(`${cairn.adminUrl}${path}`, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return res.status;
  };
  const load = steadyLoad(t, cairn.url);
  await load.after(200);
  assert.equal(await admin('PUT', '/upstreams/default/backends/c', { address: c.id, weight: 3 }), 201);
  await load.after(300);
  assert.equal(await admin('PATCH', '/upstreams/default/backends/c', { weight: 1 }), 200);
  assert.equal(await admin('PATCH', '/upstreams/default', { algorithm: 'weighted-round-robin' }), 200);
  await load.after(300);
  // Drain b, wait until Cairn says it is gone, then shut its server down.
  assert.equal(await admin('DELETE', `/upstreams/default/backends/${encodeURIComponent(b.id)}?wait=1`), 200);
  await b.close();
  await load.after(300);
  assert.equal(await admin('PUT', '/upstreams/default/backends/d', { address: d.id }), 201);
  assert.equal(await admin('PATCH', '/upstreams/default', { algorithm: 'ketama' }), 200);
  await load.after(300);
  assert.equal(await admin('DELETE', `/upstreams/default/backends/${encodeURIComponent(a.id)}?wait=1`), 200);
  await a.close();
  await load.after(300);
  await load.stop();
  assert.deepEqual(load.failures, []);
  assert.ok(load.ok >= 1700, `steady load ran (${load.ok} requests)`);
  for (const name of ['a', 'b', 'c', 'd'])
    assert.ok((load.byOrigin.get(name) ?? 0) > 0, `${name} served some of the load`);
});

/** The CLI as a child process; its stdout is pino JSON. */
function startCli(
  t: Cleanup,
  args: string[],
): { lines: LogLine[]; waitFor: (p: (l: LogLine) => boolean) => Promise<LogLine> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
  });
  const lines: LogLine[] = [];
  const waiting = new Set<{
    p: (l: LogLine) => boolean;
    resolve: (l: LogLine) => void;
    reject: (e: Error) => void;
  }>();
  createInterface({ input: child.stdout }).on('line', (text) => {
    if (!text.startsWith('{')) return;
    const line = JSON.parse(text) as LogLine;
    if (line.msg === 'request') return; // access lines: not needed, not kept
    lines.push(line);
    for (const w of waiting) {
      if (!w.p(line)) continue;
      waiting.delete(w);
      w.resolve(line);
    }
  });
  child.once('exit', (code) => {
    for (const w of waiting)
      w.reject(new Error(`cairn exited (${String(code)}) before the expected log line`));
  });
  return {
    lines,
    waitFor(p) {
      const seen = lines.find(p);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => waiting.add({ p, resolve, reject }));
    },
  };
}

void test('config file: backends change under steady load with zero failed requests; an invalid file is rejected and the old config stays', async (t) => {
  const [a, b, c] = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c')];
  const dir = await mkdtemp(join(tmpdir(), 'cairn-lb-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'cairn.json');
  const [port, adminPort] = [await freePort(), await freePort()];
  let version = 0;
  const writeConfig = async (config: unknown): Promise<void> => {
    // Write-then-rename, as deploy tools do: the watcher never reads a half-written file.
    const tmp = join(dir, `next-${version++}.tmp`);
    await writeFile(tmp, typeof config === 'string' ? config : JSON.stringify(config));
    await rename(tmp, file);
  };
  const config = (upstream: unknown): unknown => ({
    listen: `127.0.0.1:${port}`,
    admin: `127.0.0.1:${adminPort}`,
    cache: { enabled: false },
    upstream,
  });
  await writeConfig(config({ backends: [a.id, b.id] }));
  const cli = startCli(t, ['--config', file]);
  await cli.waitFor((l) => l.msg === 'listening');
  const reloads = (): number => cli.lines.filter((l) => l.msg === 'config reloaded').length;

  const load = steadyLoad(t, `http://127.0.0.1:${port}`);
  await load.after(200);
  // Add c with weight 3.
  let seen = reloads();
  await writeConfig(config({ backends: [a.id, b.id, { address: c.id, weight: 3 }] }));
  await cli.waitFor(() => reloads() > seen);
  await load.after(300);
  // An invalid file: rejected with a code; the running config stays.
  await writeConfig('{"upstream": {"algorithm": "fastest", "backends": [');
  const rejected = await cli.waitFor((l) => l.msg === 'config file rejected; the running config stays');
  assert.equal(rejected.code, 'CAIRN_ERR_CONFIG_INVALID');
  await writeConfig(config({ algorithm: 'fastest', backends: [a.id] }));
  const rejected2 = await cli.waitFor(
    (l) => l.msg === 'config file rejected; the running config stays' && l !== rejected,
  );
  assert.equal(rejected2.code, 'CAIRN_ERR_CONFIG_INVALID');
  assert.match(String(rejected2.err), /upstream\.algorithm/);
  await load.after(300);
  // Re-weight, switch algorithm, and remove b (drained: its server closes only once Cairn says so).
  seen = reloads();
  await writeConfig(
    config({
      algorithm: 'ketama',
      backends: [
        { address: a.id, weight: 2 },
        { address: c.id, weight: 1 },
      ],
    }),
  );
  await cli.waitFor(() => reloads() > seen);
  await cli.waitFor((l) => l.msg === 'backend drained and removed' && l.backend === b.id);
  await b.close();
  await load.after(400);
  await load.stop();

  assert.deepEqual(load.failures, []);
  assert.ok(load.ok >= 1000, `steady load ran (${load.ok} requests)`);
  for (const name of ['a', 'b', 'c'])
    assert.ok((load.byOrigin.get(name) ?? 0) > 0, `${name} served some of the load`);
  const state = JSON.parse(
    (await httpRequest(`http://127.0.0.1:${adminPort}/upstreams/default`)).body.toString(),
  ) as {
    algorithm: string;
    backends: { id: string; weight: number }[];
  };
  assert.equal(state.algorithm, 'ketama');
  assert.deepEqual(
    state.backends.map((x) => [x.id, x.weight]),
    [
      [a.id, 2],
      [c.id, 1],
    ],
  );
});
