// `cairn explain URL`: one fetch, and in words why Cairn's policy would (not) store the response,
// for how long, what makes it vary and what would change that.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { explainCommand, explainStorability, startCacheTest } from '../../hooks/testing/index.ts';
import type { UrlExplanation } from '../../hooks/testing/index.ts';
import { runCli } from '../helpers/cli.ts';
import { startOrigin } from '../helpers/servers.ts';
import type { Origin } from '../helpers/servers.ts';

const ROUTES: Readonly<Record<string, Record<string, string>>> = {
  '/asset': {
    'cache-control': 'public, max-age=86400, stale-while-revalidate=60',
    etag: '"a1"',
    vary: 'Accept-Encoding',
  },
  '/api': { 'cache-control': 'no-store' },
  '/account': { 'cache-control': 'private, max-age=300' },
  '/cdn-only': { 'cache-control': 'private', 'cdn-cache-control': 'max-age=600, must-revalidate' },
  '/login': { 'cache-control': 'max-age=60', 'set-cookie': 'sid=1' },
  '/by-ua': { 'cache-control': 's-maxage=30, max-age=5', vary: 'User-Agent' },
  '/plain': {},
  '/aged': { 'cache-control': 'max-age=100', age: '40' },
  '/whoami': { 'cache-control': 'max-age=60' },
};

async function site(t: { after(fn: () => unknown): void }): Promise<Origin> {
  return startOrigin(t, (req, res) => {
    res.writeHead(200, ROUTES[req.url ?? ''] ?? { 'cache-control': 'no-cache' });
    res.end('body');
  });
}

async function explain(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await explainCommand(argv, {
    stdout: { write: (c: string) => ((stdout += c), true) },
    stderr: { write: (c: string) => ((stderr += c), true) },
  });
  return { code, stdout, stderr };
}

test('a cacheable asset: lifetime, stale-while-revalidate, validator, Vary and what would change it', async (t) => {
  const origin = await site(t);
  const run = await explain([`${origin.url}/asset`]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(
    run.stdout,
    new RegExp(`^GET ${origin.url}/asset\n200 in \\d+ ms; the headers that decide caching:\n`),
  );
  assert.match(
    run.stdout,
    /\n {2}cache-control: public, max-age=86400, stale-while-revalidate=60\n {2}date: .*\n {2}etag: "a1"\n {2}vary: Accept-Encoding\n/,
  );
  assert.match(
    run.stdout,
    /\nCairn: Stored: served from cache for 24 h \(max-age=86400 in Cache-Control\)\.\n/,
  );
  assert.match(
    run.stdout,
    /Once stale it may be served for 60 s more while Cairn revalidates in the background \(stale-while-revalidate\)/,
  );
  assert.match(run.stdout, /It has ETag: once stale, Cairn revalidates with a conditional request/);
  assert.match(run.stdout, /It varies on accept-encoding: one copy per content coding/);
  assert.match(run.stdout, /What would change that:\n {2}- To keep it longer \(or shorter\), change max-age/);
  assert.equal(origin.requests, 1, 'fetched once');
});

test('each reason not to store, in words, with the fix', async (t) => {
  const origin = await site(t);
  const cases: [string, RegExp, RegExp][] = [
    [
      '/api',
      /Cairn: Not stored: the response has no-store in Cache-Control \(RFC 9111 §5\.2\.2\.5\)\./,
      /add CDN-Cache-Control: max-age=N/,
    ],
    [
      '/account',
      /Cairn: Not stored: the response is private \(Cache-Control\): only the user's own browser may store it/,
      /send public or s-maxage=N instead of private/,
    ],
    ['/login', /Cairn: Not stored: the response sets a cookie \(Set-Cookie\)/, /policy\.setCookie: 'strip'/],
    [
      '/plain',
      /Cairn: Not stored: it would be stale on arrival \(no explicit freshness and no Last-Modified for a heuristic\) and has no ETag or Last-Modified/,
      /Send Cache-Control: max-age=N/,
    ],
  ];
  for (const [path, why, fix] of cases) {
    const run = await explain([origin.url + path]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, why, path);
    assert.match(run.stdout, fix, path);
  }
  const post = await explain([`${origin.url}/whoami`, '-X', 'POST']);
  assert.match(post.stdout, /^POST .*\/whoami\n/);
  assert.match(post.stdout, /Not stored: the request method is POST/);
  const auth = await explain([`${origin.url}/whoami`, '-H', 'Authorization: Bearer x']);
  assert.match(auth.stdout, /Not stored: the request carries Authorization/);
  assert.match(auth.stdout, /add Cache-Control: public \(or s-maxage=N\)/);
});

test('CDN-Cache-Control, s-maxage, Age and a costly Vary are explained', async (t) => {
  const origin = await site(t);
  let run = await explain([`${origin.url}/cdn-only`]);
  assert.match(
    run.stdout,
    /Cairn: Stored: served from cache for 10 min \(max-age=600 in CDN-Cache-Control\)/,
  );
  assert.match(
    run.stdout,
    /CDN-Cache-Control is addressed to CDNs like Cairn and replaces Cache-Control and Expires for it \(RFC 9213\)/,
  );
  assert.match(run.stdout, /Never served stale: must-revalidate/);
  run = await explain([`${origin.url}/by-ua`]);
  assert.match(
    run.stdout,
    /served from cache for 30 s \(s-maxage=30 in Cache-Control, which shared caches read before max-age\)\./,
  );
  assert.match(
    run.stdout,
    /It varies on user-agent: one copy per User-Agent string: there are thousands, so expect a low hit ratio/,
  );
  run = await explain([`${origin.url}/aged`]);
  assert.match(run.stdout, /served from cache for 60 s \(max-age=100 in Cache-Control\)/);
  assert.match(run.stdout, /It arrived 40 s old \(Age\), so it stays fresh for 60 s/);
  run = await explain([`${origin.url}/login`, '--set-cookie', 'strip']);
  assert.match(run.stdout, /Cairn: Stored: served from cache for 60 s/);
  assert.match(run.stdout, /Set-Cookie is removed from the stored copy/);
});

test('--json gives the explanation as data', async (t) => {
  const origin = await site(t);
  const run = await explain([`${origin.url}/api`, '--json']);
  assert.equal(run.code, 0);
  const e = JSON.parse(run.stdout) as UrlExplanation;
  assert.equal(e.status, 200);
  assert.equal(e.explanation.storable, false);
  assert.equal(e.explanation.reason, 'no-store');
  assert.equal(e.caches.signal, 'none');
});

test('the explanation agrees with the cache path: the reason is the Cache-Status detail a Cairn sends', async (t) => {
  const routes: Record<string, { status?: number; headers: Record<string, string> }> = {
    '/no-store': { headers: { 'cache-control': 'no-store' } },
    '/private': { headers: { 'cache-control': 'private, max-age=60' } },
    '/vary-star': { headers: { 'cache-control': 'max-age=60', vary: '*' } },
    '/cookie': { headers: { 'cache-control': 'max-age=60', 'set-cookie': 'a=b' } },
    '/no-freshness': { headers: {} },
    '/error': { status: 500, headers: {} },
    '/ok': { headers: { 'cache-control': 'max-age=60' } },
  };
  const kit = await startCacheTest({ origin: routes });
  t.after(() => kit.close());
  for (const path of Object.keys(routes)) {
    const res = await kit.get(path);
    const detail = res.cache.entry?.detail;
    assert.equal(res.explain().reason, detail, path);
    assert.equal(res.explain().storable, res.stored, path);
  }
  assert.equal(
    explainStorability({ status: 206, headers: { 'cache-control': 'max-age=60' } }).reason,
    'partial-content',
  );
});

test('bin/cairn.js explain: through the real CLI; bad input exits 2, an unreachable URL 1', async (t) => {
  const origin = await site(t);
  const ok = await runCli(['explain', `${origin.url}/api`], { script: 'bin/cairn.js', plainNode: true });
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /Cairn: Not stored: the response has no-store in Cache-Control/);
  const bad = await explain(['not a url']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /CAIRN_ERR_CONFIG_INVALID: explain: "not a url" is not a URL/);
  const ftp = await explain(['ftp://127.0.0.1/x']);
  assert.equal(ftp.code, 2);
  const header = await explain([origin.url, '-H', 'no colon']);
  assert.equal(header.code, 2);
  assert.match(header.stderr, /header "no colon" is not 'Name: value'/);
  assert.equal((await explain([])).code, 2);
  const url = origin.url;
  await origin.close();
  const down = await explain([url]);
  assert.equal(down.code, 1);
  assert.match(
    down.stderr,
    /CAIRN_ERR_UPSTREAM_CONNECT: explain: cannot fetch http:\/\/127\.0\.0\.1:\d+\/: connect ECONNREFUSED/,
  );
});
