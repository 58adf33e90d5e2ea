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
import { freePort, startCli, startTwoWorkers } from '../helpers/cli.ts';
import { httpRequest, startOrigin, type Cleanup } from '../helpers/servers.ts';

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

test(
  'with --workers 2 the upstream API changes the backends of both workers',
  { timeout: 90_000 },
  async (t) => {
    const a = await named(t, 'a');
    const b = await named(t, 'b');
    const { cli, url, adminUrl } = await startTwoWorkers(t, a.url);
    const { call: admin, backends } = upstreamApi(adminUrl);

    const [original] = await backends();
    assert.ok(original !== undefined);
    assert.equal((await admin('PUT', '/upstreams/default/backends/b', { address: b.url })).status, 201);
    const removed = await admin(
      'DELETE',
      `/upstreams/default/backends/${encodeURIComponent(original)}?wait=1`,
    );
    assert.equal(removed.status, 200, removed.body.toString());
    assert.deepEqual(await backends(), ['b']);

    // New connections are dealt round robin: both workers answer, and both now send to b only.
    const before = a.requests;
    for (let i = 0; i < 8; i++) {
      const res = await httpRequest(`${url}/after-${i}`);
      assert.equal(res.body.toString(), 'b', `request ${i + 1} after the change`);
    }
    assert.equal(a.requests, before);
    const pids = new Set<unknown>();
    for (let i = 0; i < 8; i++)
      pids.add((await cli.waitForLog('request', (l) => l.path === `/after-${i}`)).pid);
    assert.equal(pids.size, 2, 'both workers served traffic after the change');

    // A bad request is refused the same way by every worker: their common answer, not a 502.
    const bad = await admin('PATCH', '/upstreams/default', { algorithm: 'fastest' });
    assert.equal(bad.status, 400, bad.body.toString());

    process.kill(cli.pid, 'SIGTERM');
    assert.deepEqual(await cli.exited, { code: 0, signal: null });
  },
);

test(
  'a worker started after one was killed gets the upstream changes the others took, and the dead one leaves no socket behind',
  { timeout: 90_000 },
  async (t) => {
    const a = await named(t, 'a');
    const b = await named(t, 'b');
    const { cli, url, adminUrl } = await startTwoWorkers(t, a.url);
    const { call: admin, backends } = upstreamApi(adminUrl);
    const [original] = await backends();
    assert.ok(original !== undefined);
    assert.equal((await admin('PUT', '/upstreams/default/backends/b', { address: b.url })).status, 201);
    const removed = await admin(
      'DELETE',
      `/upstreams/default/backends/${encodeURIComponent(original)}?now=1`,
    );
    assert.equal(removed.status, 200, removed.body.toString());

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
    assert.deepEqual(await backends(), ['b']);
    const before = a.requests;
    const pids = new Set<unknown>();
    for (let i = 0; i < 8; i++) {
      const res = await httpRequest(`${url}/after-restart-${i}`);
      assert.equal(res.body.toString(), 'b', `request ${i + 1} after the restart`);
      pids.add((await cli.waitForLog('request', (l) => l.path === `/after-restart-${i}`)).pid);
    }
    assert.equal(a.requests, before);
    assert.ok(pids.has(replayed.workerPid), 'the new worker served traffic');

    process.kill(cli.pid, 'SIGTERM');
    assert.deepEqual(await cli.exited, { code: 0, signal: null });
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
    const { call: admin, backends } = upstreamApi(`http://127.0.0.1:${adminPort}`);
    assert.equal((await admin('PUT', '/upstreams/default/backends/b', { address: b.url })).status, 201);
    assert.equal((await backends()).length, 2);

    // The same file again: each worker re-applies it, so b goes from both (the file is the state again).
    writeConfig();
    const reloads = () => cli.logs.filter((l) => l.msg === 'config reloaded').length;
    await cli.waitForLog('config reloaded', () => reloads() >= 2);
    assert.deepEqual(await backends(), [new URL(a.url).host]);

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
    assert.deepEqual(await backends(), [new URL(a.url).host]);
    const pids = new Set<unknown>();
    for (let i = 0; i < 8; i++) {
      const res = await httpRequest(`http://127.0.0.1:${port}/after-reload-${i}`);
      assert.equal(res.body.toString(), 'a', `request ${i + 1} after the reload and the restart`);
      pids.add((await cli.waitForLog('request', (l) => l.path === `/after-reload-${i}`)).pid);
    }
    assert.ok(pids.has(admitted.workerPid), 'the new worker served traffic');

    process.kill(cli.pid, 'SIGTERM');
    assert.deepEqual(await cli.exited, { code: 0, signal: null });
  },
);
