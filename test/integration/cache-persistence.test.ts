/**
 * The LMDB tier through the CLI, as an operator runs it: it survives a restart, it is shared by
 * `--workers` processes, and a cache directory that cannot be opened costs the disk tier only
 * (a coded error in the log, hits from memory).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LmdbStore } from '../../src/index.ts';
import { freePort, startCli, type CliProcess } from '../helpers/cli.ts';
import { httpRequest, startOrigin, type Cleanup, type LogLine } from '../helpers/servers.ts';
import { statusOf, tempDir } from '../helpers/cache.ts';

const LIMIT = { timeout: 60_000 };

async function startCairnCli(
  t: Cleanup,
  origin: string,
  extra: readonly string[],
): Promise<{ cli: CliProcess; url: string }> {
  const port = await freePort();
  const cli = startCli(t, [
    '--listen',
    `127.0.0.1:${port}`,
    '--origin',
    origin,
    '--log-level',
    'info',
    ...extra,
  ]);
  await cli.waitForLog('listening');
  return { cli, url: `http://127.0.0.1:${port}` };
}

async function stop(cli: CliProcess): Promise<void> {
  process.kill(cli.pid, 'SIGTERM');
  const exit = await cli.exited;
  assert.equal(exit.code, 0, `exit after SIGTERM\n${cli.stderr()}`);
}

/** Wait until `check` holds, looking again after each short pause (another process's disk write). */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 10));
}

function cacheOf(line: LogLine): string {
  return String(line.cache);
}

test('a restarted Cairn serves Cache-Status: Cairn; hit for what it stored before', LIMIT, async (t) => {
  const origin = await startOrigin(t, (req, res) => {
    const body = `stored before the restart: ${req.url}`;
    res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  const dir = await tempDir(t);
  const first = await startCairnCli(t, origin.url, ['--cache-dir', dir]);
  // The key includes the host: the same Host on both runs, whatever port each one listens on.
  const host = { host: 'cdn.example' };
  const stored = await httpRequest(`${first.url}/kept`, { headers: host });
  assert.equal(statusOf(stored), 'Cairn; fwd=uri-miss; stored');
  // SIGTERM right away: a graceful stop must not lose a write that was still committing.
  await stop(first.cli);

  const second = await startCairnCli(t, origin.url, ['--cache-dir', dir]);
  const hit = await httpRequest(`${second.url}/kept`, { headers: host });
  assert.equal(hit.status, 200);
  assert.match(statusOf(hit), /^Cairn; hit; ttl=\d+$/);
  assert.equal(hit.body.toString(), 'stored before the restart: /kept');
  assert.equal(origin.requests, 1);
  await stop(second.cli);
});

test(
  'with --workers 2 each worker hits what the other stored (LMDB is shared; memory tiers are not)',
  LIMIT,
  async (t) => {
    const origin = await startOrigin(t, (req, res) => {
      const body = `shared ${req.url}`;
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    const dir = await tempDir(t);
    const { cli, url } = await startCairnCli(t, origin.url, ['--cache-dir', dir, '--workers', '2']);
    // Both workers listening (the primary logs too: count distinct worker pids).
    await until(() => new Set(cli.logs.filter((l) => l.msg === 'listening').map((l) => l.pid)).size >= 2);

    const first = await httpRequest(`${url}/shared`);
    assert.equal(statusOf(first), 'Cairn; fwd=uri-miss; stored');
    const storedBy = (await cli.waitForLog('request', (l) => l.path === '/shared')).pid;
    // Wait until the object is on disk, as another process sees it.
    const observer = await LmdbStore.open({ path: dir, maxBytes: 1024 ** 3 });
    t.after(() => observer.close());
    await until(() => observer.stats().objects === 1);

    // New connections are dealt round robin across the workers: a few requests reach both.
    for (let i = 0; i < 6; i++) {
      const res = await httpRequest(`${url}/shared`);
      assert.equal(res.body.toString(), 'shared /shared');
      assert.match(statusOf(res), /^Cairn; hit/);
    }
    await until(() => cli.logs.filter((l) => l.msg === 'request' && l.path === '/shared').length === 7);
    const hits = cli.logs.filter(
      (l) => l.msg === 'request' && l.path === '/shared' && /hit/.test(cacheOf(l)),
    );
    const pids = new Set(hits.map((l) => l.pid));
    assert.equal(
      pids.size,
      2,
      `hits from both workers: ${JSON.stringify(hits.map((l) => [l.pid, l.cache]))}`,
    );
    assert.ok(
      hits.some((l) => l.pid !== storedBy),
      'the worker that never fetched the object hit it (from the shared disk tier)',
    );
    assert.equal(origin.requests, 1);
    await stop(cli);
  },
);

test(
  'a cache directory that cannot be opened: CAIRN_ERR_CACHE_STORE_OPEN in the log, hits from memory',
  LIMIT,
  async (t) => {
    const origin = await startOrigin(t, (_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': 6 });
      res.end('memory');
    });
    const dir = await tempDir(t);
    const file = join(dir, 'a-regular-file');
    await writeFile(file, 'not a directory');
    const { cli, url } = await startCairnCli(t, origin.url, ['--cache-dir', join(file, 'cache')]);
    const line = cli.logs.find((l) => JSON.stringify(l).includes('CAIRN_ERR_CACHE_STORE_OPEN'));
    assert.ok(line !== undefined, `no coded error in the log:\n${cli.stdout()}\n${cli.stderr()}`);
    assert.ok(line.level >= 40, 'logged as a warning or worse');
    const err = line.err as { code?: string } | undefined;
    assert.equal(err?.code ?? line.code, 'CAIRN_ERR_CACHE_STORE_OPEN');
    const miss = await httpRequest(`${url}/m`);
    assert.equal(statusOf(miss), 'Cairn; fwd=uri-miss; stored');
    const hit = await httpRequest(`${url}/m`);
    assert.match(statusOf(hit), /^Cairn; hit/);
    assert.equal(hit.body.toString(), 'memory');
    assert.equal(origin.requests, 1);
    await stop(cli);
  },
);
