/**
 * The upstream API under `--workers`: each worker holds its own upstream groups, and the primary
 * serves the admin listener but no requests, so it forwards each `/upstreams` request to every
 * worker. A backend added and one removed through the API change where both workers send traffic.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTwoWorkers } from '../helpers/cli.ts';
import { httpRequest, startOrigin } from '../helpers/servers.ts';

test(
  'with --workers 2 the upstream API changes the backends of both workers',
  { timeout: 90_000 },
  async (t) => {
    const named = (name: string) =>
      startOrigin(t, (_req, res) => {
        res.writeHead(200, { 'cache-control': 'no-store', 'content-length': name.length });
        res.end(name);
      });
    const a = await named('a');
    const b = await named('b');
    const { cli, url, adminUrl } = await startTwoWorkers(t, a.url);
    const admin = (method: string, path: string, body?: unknown) =>
      httpRequest(`${adminUrl}${path}`, {
        method,
        headers: { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    const backends = async (): Promise<string[]> => {
      const res = await admin('GET', '/upstreams/default');
      assert.equal(res.status, 200, res.body.toString());
      const group = JSON.parse(res.body.toString()) as { backends: { id: string; address: string }[] };
      return group.backends.map((x) => x.id);
    };

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
