/**
 * The upstream API under `--workers`: each worker holds its own upstream groups, and the primary
 * serves the admin listener but no requests, so it forwards each `/upstreams` request to every
 * worker. A backend added and one removed through the API change where both workers send traffic,
 * and still do after a worker is killed and replaced by one started from the config.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { freePort, startCli, startTwoWorkers, type CliProcess } from '../helpers/cli.ts';
import { httpRequest, startOrigin, type Cleanup, type Origin } from '../helpers/servers.ts';

/** An origin that answers every request with its own name. */
function named(t: Cleanup, name: string) {
  return startOrigin(t, (_req, res) => {
    res.writeHead(200, { 'cache-control': 'no-store', 'content-length': name.length });
    res.end(name);
  });
}

/** The admin API at `adminUrl`: requests, and the ids of the default group's backends. */
function upstreamApi(adminUrl: string) {
  const call = (method: string, path: string, body?: unknown) =>
    httpRequest(`${adminUrl}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  const backends = async (): Promise<string[]> => {
    const res = await call('GET', '/upstreams/default');
    assert.equal(res.status, 200, res.body.toString());
    const group = JSON.parse(res.body.toString()) as { backends: { id: string; address: string }[] };
    return group.backends.map((x) => x.id);
  };
  return { call, backends };
}

type UpstreamApi = ReturnType<typeof upstreamApi>;

/** Through the API: add backend `b`, then remove the group's original one (`?wait=1` or `?now=1`). */
async function replaceOriginalWith(api: UpstreamApi, b: Origin, removal: 'wait' | 'now'): Promise<void> {
  const [original] = await api.backends();
  assert.ok(original !== undefined);
  assert.equal((await api.call('PUT', '/upstreams/default/backends/b', { address: b.url })).status, 201);
  const removed = await api.call(
    'DELETE',
    `/upstreams/default/backends/${encodeURIComponent(original)}?${removal}=1`,
  );
  assert.equal(removed.status, 200, removed.body.toString());
}

/**
 * Eight requests on new connections (dealt round robin to the workers), each answered `body`;
 * resolves to the pids of the workers that served them.
 */
async function expectEvery(cli: CliProcess, url: string, tag: string, body: string): Promise<Set<unknown>> {
  const pids = new Set<unknown>();
  for (let i = 0; i < 8; i++) {
    const res = await httpRequest(`${url}/${tag}-${i}`);
    assert.equal(res.body.toString(), body, `request ${i + 1} (${tag})`);
    pids.add((await cli.waitForLog('request', (l) => l.path === `/${tag}-${i}`)).pid);
  }
  return pids;
}

async function stop(cli: CliProcess): Promise<void> {
  process.kill(cli.pid, 'SIGTERM');
  assert.deepEqual(await cli.exited, { code: 0, signal: null });
}

test(
  'with --workers 2 the upstream API changes the backends of both workers',
  { timeout: 90_000 },
  async (t) => {
    const a = await named(t, 'a');
    const b = await named(t, 'b');
    const { cli, url, adminUrl } = await startTwoWorkers(t, a.url);
    const api = upstreamApi(adminUrl);
    await replaceOriginalWith(api, b, 'wait');
    assert.deepEqual(await api.backends(), ['b']);

    // New connections are dealt round robin: both workers answer, and both now send to b only.
    const before = a.requests;
    const pids = await expectEvery(cli, url, 'after', 'b');
    assert.equal(a.requests, before);
    assert.equal(pids.size, 2, 'both workers served traffic after the change');

    // A bad request is refused the same way by every worker: their common answer, not a 502.
    const bad = await api.call('PATCH', '/upstreams/default', { algorithm: 'fastest' });
    assert.equal(bad.status, 400, bad.body.toString());

    await stop(cli);
  },
);

test(
  'a worker started after one was killed gets the upstream changes the others took, and the dead one leaves no socket behind',
  { timeout: 90_000 },
  async (t) => {
    const a = await named(t, 'a');
    const b = await named(t, 'b');
    const { cli, url, adminUrl } = await startTwoWorkers(t, a.url);
    const api = upstreamApi(adminUrl);
    await replaceOriginalWith(api, b, 'now');

    const sockets = () => cli.logs.filter((l) => l.msg === 'worker admin socket');
    assert.equal(sockets().length, 2, 'both workers announced their admin socket');
    const [victim] = sockets();
    assert.ok(victim !== undefined && typeof victim.pid === 'number' && typeof victim.path === 'string');
    process.kill(victim.pid, 'SIGKILL');
    const replayed = await cli.waitForLog('worker takes admin requests', (l) => l.replayed !== 0);
    assert.notEqual(replayed.workerPid, victim.pid);
    assert.equal(replayed.replayed, 2, 'the PUT and the DELETE, in order');
    // Without the primary's clean-up the killed worker's directory (and its socket) stays behind.
    assert.equal(existsSync(dirname(victim.path)), false, 'the killed worker left its socket directory');

    // Every worker, the new one included, holds b alone: one common answer, not a 502.
    assert.deepEqual(await api.backends(), ['b']);
    const before = a.requests;
    const pids = await expectEvery(cli, url, 'after-restart', 'b');
    assert.equal(a.requests, before);
    assert.ok(pids.has(replayed.workerPid), 'the new worker served traffic');

    await stop(cli);
  },
);

test(
  'after a config reload a worker started in place of a dead one holds what the file says, like the others',
  { timeout: 90_000 },
  async (t) => {
    const a = await named(t, 'a');
    const b = await named(t, 'b');
    const dir = mkdtempSync(join(tmpdir(), 'cairn-cluster-admin-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'cairn.json');
    const [port, adminPort] = [await freePort(), await freePort()];
    let version = 0;
    const writeConfig = (): void => {
      // Write-then-rename, as deploy tools do: the watchers never read a half-written file.
      const next = join(dir, `next-${version++}.tmp`);
      writeFileSync(
        next,
        JSON.stringify({
          listen: `127.0.0.1:${port}`,
          admin: `127.0.0.1:${adminPort}`,
          workers: 2,
          cache: { enabled: false },
          log: { level: 'info' },
          upstream: { backends: [new URL(a.url).host] },
        }),
      );
      renameSync(next, file);
    };
    writeConfig();
    const cli = startCli(t, ['--config', file]);
    await cli.waitForLog('cluster listening');
    const api = upstreamApi(`http://127.0.0.1:${adminPort}`);
    assert.equal((await api.call('PUT', '/upstreams/default/backends/b', { address: b.url })).status, 201);
    assert.equal((await api.backends()).length, 2);

    // The same file again: each worker re-applies it, so b goes from both (the file is the state again).
    writeConfig();
    const reloads = () => cli.logs.filter((l) => l.msg === 'config reloaded').length;
    await cli.waitForLog('config reloaded', () => reloads() >= 2);
    assert.deepEqual(await api.backends(), [new URL(a.url).host]);

    const victim = await cli.waitForLog('worker admin socket');
    assert.ok(typeof victim.pid === 'number');
    process.kill(victim.pid, 'SIGKILL');
    // Without the journal emptied by the reload, the new worker would be given the PUT again.
    const admissions = () => cli.logs.filter((l) => l.msg === 'worker takes admin requests');
    const admitted = await cli.waitForLog(
      'worker takes admin requests',
      (l) => admissions().indexOf(l) === 2,
    );
    assert.notEqual(admitted.workerPid, victim.pid);
    assert.equal(admitted.replayed, 0);
    assert.deepEqual(await api.backends(), [new URL(a.url).host]);
    const pids = await expectEvery(cli, `http://127.0.0.1:${port}`, 'after-reload', 'a');
    assert.ok(pids.has(admitted.workerPid), 'the new worker served traffic');

    await stop(cli);
  },
);
