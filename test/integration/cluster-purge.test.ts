/**
 * Purges under `--workers`: the workers share the LMDB tier but each keeps its own memory tier, so
 * a purge must reach every worker's memory before it is answered. Otherwise a worker that did not
 * take the purge keeps serving the old object from memory as a hit until it expires. Covered: a
 * `PURGE` request (taken by one worker), the admin API's `POST /purge` (served by the primary),
 * a surrogate-key purge, and the invalidation after an unsafe method.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTwoWorkers, type CliProcess } from '../helpers/cli.ts';
import { httpRequest, startOrigin, type LogLine } from '../helpers/servers.ts';
import { statusOf, tempDir } from '../helpers/cache.ts';

const LIMIT = { timeout: 90_000 };

/** Wait until `check` holds, looking again after each short pause (another process's log line). */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 10));
}

function accessLines(cli: CliProcess, path: string, from: number): LogLine[] {
  return cli.logs.slice(from).filter((l) => l.msg === 'request' && l.path === path);
}

/**
 * GET `path` on new connections (dealt round robin across the workers) until both workers have
 * answered it as a hit, so both hold it in memory. Resolves to the versions served meanwhile (two,
 * when the second worker asked before the first one's copy reached the shared disk tier).
 */
async function hitInBothWorkers(cli: CliProcess, url: string, path: string): Promise<ReadonlySet<string>> {
  const from = cli.logs.length;
  const served = new Set<string>();
  for (let i = 1; i <= 30; i++) {
    const res = await httpRequest(url + path);
    assert.equal(res.status, 200);
    served.add(res.body.toString());
    await until(() => accessLines(cli, path, from).length === i);
    const hitters = new Set(
      accessLines(cli, path, from)
        .filter((l) => String(l.cache).startsWith('Cairn; hit'))
        .map((l) => l.pid),
    );
    if (hitters.size === 2) return served;
  }
  assert.fail(`${path} was not a hit in both workers after 30 requests`);
}

/** Eight GETs on new connections: none may be a version served before the purge. */
async function neverServes(url: string, path: string, purged: ReadonlySet<string>): Promise<void> {
  for (let i = 0; i < 8; i++) {
    const res = await httpRequest(url + path);
    assert.equal(res.status, 200);
    const body = res.body.toString();
    assert.ok(!purged.has(body), `request ${i + 1} after the purge got ${body}: ${statusOf(res)}`);
  }
}

test(
  "with --workers 2 a purge reaches both workers' memory tiers: PURGE, the admin API, by tag, after a POST",
  LIMIT,
  async (t) => {
    // Each fetch of a path answers a new version, so a copy that survived a purge shows.
    const versions = new Map<string, number>();
    const origin = await startOrigin(t, (req, res) => {
      const path = req.url ?? '/';
      const version = (versions.get(path) ?? 0) + 1;
      versions.set(path, version);
      const body = `${path} v${version}`;
      res.writeHead(200, {
        'cache-control': 'max-age=600',
        'surrogate-key': 'group-a',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    });
    const dir = await tempDir(t);
    const { cli, url, adminUrl } = await startTwoWorkers(t, origin.url, ['--cache-dir', dir]);

    // 1. A PURGE request: one worker takes it, the other must drop its memory copy too.
    const a = await hitInBothWorkers(cli, url, '/a');
    const purge = await httpRequest(`${url}/a`, { method: 'PURGE' });
    assert.equal(purge.status, 200);
    assert.deepEqual(JSON.parse(purge.body.toString()), { purged: 1 });
    await neverServes(url, '/a', a);

    // 2. The admin API, which the primary serves: it holds no requests' objects itself.
    const b = await hitInBothWorkers(cli, url, '/b');
    const admin = await httpRequest(`${adminUrl}/purge`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: `${url}/b` }),
    });
    assert.equal(admin.status, 200);
    assert.deepEqual(JSON.parse(admin.body.toString()), { purged: 1 });
    await neverServes(url, '/b', b);

    // 3. A surrogate-key purge taken by one worker.
    const c = await hitInBothWorkers(cli, url, '/c');
    const byTag = await httpRequest(`${url}/`, { method: 'PURGE', headers: { 'surrogate-key': 'group-a' } });
    assert.equal(byTag.status, 200);
    await neverServes(url, '/c', c);

    // 4. An unsafe method's invalidation (RFC 9111 §4.4): applied after the response, in the
    // background, so the other worker drops its copy shortly after rather than before the answer.
    const d = await hitInBothWorkers(cli, url, '/d');
    const post = await httpRequest(`${url}/d`, { method: 'POST', body: 'change' });
    assert.equal(post.status, 200);
    const deadline = Date.now() + 5_000;
    let fresh = 0;
    while (fresh < 8) {
      const res = await httpRequest(`${url}/d`);
      fresh = d.has(res.body.toString()) ? 0 : fresh + 1;
      assert.ok(
        Date.now() < deadline,
        `a worker still serves ${res.body.toString()} from memory: ${statusOf(res)}`,
      );
    }

    process.kill(cli.pid, 'SIGTERM');
    assert.deepEqual(await cli.exited, { code: 0, signal: null });
  },
);
