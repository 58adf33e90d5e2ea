/**
 * The cache's behaviour on the wire, end to end: a real origin, a real CdnProxy, real sockets.
 * Each test checks what the client sees (status, body, `Cache-Status`) and what the origin saw.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseCacheStatus } from '../../src/index.ts';
import { httpRequest, startOrigin, startRawOrigin } from '../helpers/servers.ts';
import type { HttpRequestOptions, HttpResult } from '../helpers/servers.ts';
import { signal, startCdn, statusOf } from '../helpers/cache.ts';
import { CdnProxy } from '../../hooks/index.ts';

const LIMIT = { timeout: 15_000 };

function get(
  base: string,
  path: string,
  headers: Record<string, string> = {},
  options: HttpRequestOptions = {},
): Promise<HttpResult> {
  return httpRequest(base + path, { ...options, headers: { ...headers, ...options.headers } });
}

function send(
  res: ServerResponse,
  status: number,
  headers: Record<string, string | string[]>,
  body: string,
): void {
  res.writeHead(status, { 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** The first (our) Cache-Status entry, parsed. */
function entry(res: HttpResult): { hit: boolean; fwd: string | undefined; params: Record<string, unknown> } {
  const [first] = parseCacheStatus(statusOf(res));
  assert.ok(first !== undefined, `no Cache-Status in ${JSON.stringify(res.headers)}`);
  return {
    hit: first.params.hit === true,
    fwd: first.params.fwd as string | undefined,
    params: first.params,
  };
}

test('Cache-Status is on every response: miss, hit, bypass, uncacheable, origin error', LIMIT, async (t) => {
  const origin = await startOrigin(t, (req, res) => {
    if (req.url === '/private') send(res, 200, { 'cache-control': 'private' }, 'mine');
    else send(res, 200, { 'cache-control': 'max-age=60' }, `body ${req.method}`);
  });
  const { cairn } = await startCdn(t, origin);
  const miss = await get(cairn.url, '/a');
  assert.equal(statusOf(miss), 'Cairn; fwd=uri-miss; stored');
  const hit = await get(cairn.url, '/a');
  assert.match(statusOf(hit), /^Cairn; hit; ttl=\d+$/);
  assert.equal(hit.body.toString(), 'body GET');
  const post = await get(cairn.url, '/form', {}, { method: 'POST', body: 'x' });
  assert.equal(statusOf(post), 'Cairn; fwd=method');
  const uncacheable = await get(cairn.url, '/private');
  assert.equal(entry(uncacheable).params.detail, 'private');
  assert.equal(entry(uncacheable).params.stored, undefined);
  await origin.close();
  const error = await get(cairn.url, '/down');
  assert.equal(error.status, 502);
  assert.equal(entry(error).fwd, 'uri-miss');
  const stillHit = await get(cairn.url, '/a');
  assert.equal(stillHit.status, 200);
  assert.equal(entry(stillHit).hit, true);
});

test(
  'a hit carries the stored fields plus Age, Via and Cache-Status; Via off leaves it out',
  LIMIT,
  async (t) => {
    const origin = await startOrigin(t, (_req, res) => {
      send(
        res,
        200,
        { 'cache-control': 'max-age=60', 'content-type': 'text/plain', 'x-origin': 'o' },
        'stored body',
      );
    });
    const withVia = await startCdn(t, origin);
    const withoutVia = await startCdn(t, origin, {
      make: (options) => new CdnProxy({ ...options, forwarding: { via: false } }),
    });
    for (const { cairn } of [withVia, withoutVia]) await get(cairn.url, '/v');
    const hit = await get(withVia.cairn.url, '/v');
    assert.match(statusOf(hit), /^Cairn; hit; ttl=\d+$/);
    assert.equal(hit.headers.via, '1.1 cairn');
    assert.match(String(hit.headers.age), /^\d+$/);
    assert.equal(hit.headers['x-origin'], 'o');
    assert.equal(hit.headers['content-length'], '11');
    assert.equal(hit.body.toString(), 'stored body');
    const bare = await get(withoutVia.cairn.url, '/v');
    assert.match(statusOf(bare), /^Cairn; hit; ttl=\d+$/);
    assert.equal(bare.headers.via, undefined);
    assert.match(String(bare.headers.age), /^\d+$/);
    assert.equal(bare.headers['x-origin'], 'o');
    assert.equal(bare.body.toString(), 'stored body');
    // Exactly one of each: a slot the hit did not fill would show up as an empty field.
    for (const res of [hit, bare]) {
      const names = res.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      assert.equal(names.filter((n) => n === 'age').length, 1);
      assert.equal(names.filter((n) => n === 'cache-status').length, 1);
      assert.ok(!res.rawHeaders.includes(''), JSON.stringify(res.rawHeaders));
    }
  },
);

test(
  'the key includes the host: two Hosts are two objects, and X-Forwarded-Host does not poison it',
  LIMIT,
  async (t) => {
    const origin = await startOrigin(t, (req, res) => {
      // Like an origin that builds absolute links from the forwarded host.
      send(
        res,
        200,
        { 'cache-control': 'max-age=60' },
        `host=${req.headers.host} xfh=${String(req.headers['x-forwarded-host'])}`,
      );
    });
    const { cairn } = await startCdn(t, origin);
    const a = await get(cairn.url, '/page', { host: 'a.example' });
    const b = await get(cairn.url, '/page', { host: 'b.example' });
    assert.equal(a.body.toString(), 'host=a.example xfh=a.example');
    assert.equal(b.body.toString(), 'host=b.example xfh=b.example');
    assert.equal(origin.requests, 2);
    const poison = await get(cairn.url, '/other', { host: 'a.example', 'x-forwarded-host': 'evil.example' });
    assert.equal(
      poison.body.toString(),
      'host=a.example xfh=a.example',
      'the client X-Forwarded-Host never reaches the origin',
    );
    const victim = await get(cairn.url, '/other', { host: 'a.example' });
    assert.equal(entry(victim).hit, true);
    assert.doesNotMatch(victim.body.toString(), /evil/);
    const aAgain = await get(cairn.url, '/page', { host: 'A.EXAMPLE:80' });
    assert.equal(entry(aAgain).hit, true, 'host case and the default port do not split the key');
    assert.equal(aAgain.body.toString(), 'host=a.example xfh=a.example');
  },
);

test('private, no-store, Authorization and Set-Cookie responses are not stored', LIMIT, async (t) => {
  const origin = await startOrigin(t, (req, res) => {
    switch (req.url ?? '') {
      case '/private':
        send(res, 200, { 'cache-control': 'private, max-age=60' }, 'p');
        return;
      case '/no-store':
        send(res, 200, { 'cache-control': 'no-store, max-age=60' }, 'n');
        return;
      case '/auth':
        send(res, 200, { 'cache-control': 'max-age=60' }, `for ${String(req.headers.authorization)}`);
        return;
      case '/cookie':
        send(res, 200, { 'cache-control': 'max-age=60', 'set-cookie': `sid=${origin.requests}` }, 'c');
        return;
      default:
        send(res, 404, {}, '');
    }
  });
  const { cairn, store } = await startCdn(t, origin);
  const cases: [string, Record<string, string>, string][] = [
    ['/private', {}, 'private'],
    ['/no-store', {}, 'no-store'],
    ['/auth', { authorization: 'Bearer alice' }, 'authorization'],
    ['/cookie', {}, 'set-cookie'],
  ];
  for (const [path, headers, reason] of cases) {
    const before = origin.requests;
    const first = await get(cairn.url, path, headers);
    const second = await get(cairn.url, path, path === '/auth' ? { authorization: 'Bearer bob' } : headers);
    assert.equal(origin.requests - before, 2, `${path}: both requests reach the origin`);
    assert.equal(entry(first).params.detail, reason, path);
    assert.equal(entry(second).hit, false, path);
    if (path === '/auth')
      assert.equal(second.body.toString(), 'for Bearer bob', "never another user's response");
    if (path === '/cookie')
      assert.notEqual(first.headers['set-cookie']?.[0], second.headers['set-cookie']?.[0]);
  }
  assert.equal(store.commits.length, 0);
});

test(
  'CDN-Cache-Control wins over Cache-Control and is stripped from the client response',
  LIMIT,
  async (t) => {
    const origin = await startOrigin(t, (req, res) => {
      if (req.url === '/cdn-store')
        send(res, 200, { 'cache-control': 'no-store', 'cdn-cache-control': 'max-age=60' }, 'stored');
      else send(res, 200, { 'cache-control': 'max-age=60', 'cdn-cache-control': 'no-store' }, 'not stored');
    });
    const { cairn } = await startCdn(t, origin);
    const first = await get(cairn.url, '/cdn-store');
    const second = await get(cairn.url, '/cdn-store');
    assert.equal(entry(first).params.stored, true);
    assert.equal(entry(second).hit, true);
    assert.equal(second.headers['cache-control'], 'no-store', 'Cache-Control still goes to the browser');
    assert.equal(first.headers['cdn-cache-control'], undefined);
    assert.equal(second.headers['cdn-cache-control'], undefined);
    const other1 = await get(cairn.url, '/cdn-no-store');
    const other2 = await get(cairn.url, '/cdn-no-store');
    assert.equal(entry(other1).params.detail, 'no-store');
    assert.equal(entry(other2).hit, false);
    assert.equal(other2.headers['cdn-cache-control'], undefined);
    assert.equal(origin.requests, 3);
  },
);

test(
  'stale-while-revalidate serves stale and revalidates in the background exactly once per key',
  LIMIT,
  async (t) => {
    const release = signal();
    const revalidations: (string | undefined)[] = [];
    const origin = await startOrigin(t, (req, res) => {
      const inm = req.headers['if-none-match'];
      if (inm === undefined) {
        // Stale on arrival (Age > max-age) but inside the SWR window.
        send(
          res,
          200,
          { 'cache-control': 'max-age=10, stale-while-revalidate=600', age: '20', etag: '"v1"' },
          'version 1',
        );
        return;
      }
      revalidations.push(inm);
      void release.promise.then(() =>
        send(res, 200, { 'cache-control': 'max-age=600', etag: '"v2"' }, 'version 2'),
      );
    });
    const { cairn, store } = await startCdn(t, origin);
    const stored = store.committed();
    await get(cairn.url, '/swr');
    await stored;
    const stale = await Promise.all(Array.from({ length: 5 }, () => get(cairn.url, '/swr')));
    for (const res of stale) {
      assert.equal(res.body.toString(), 'version 1');
      assert.match(statusOf(res), /^Cairn; hit; ttl=-\d+; detail=stale$/);
    }
    assert.deepEqual(revalidations, ['"v1"'], 'one background revalidation, with the stored validator');
    const refreshed = store.committed();
    release.resolve();
    await refreshed;
    const fresh = await get(cairn.url, '/swr');
    assert.equal(fresh.body.toString(), 'version 2');
    assert.match(statusOf(fresh), /^Cairn; hit; ttl=/);
    assert.equal(origin.requests, 2);
  },
);

test('stale-if-error serves the stale copy when the origin refuses connections', LIMIT, async (t) => {
  const origin = await startOrigin(t, (_req, res) => {
    send(res, 200, { 'cache-control': 'max-age=10, stale-if-error=600', age: '20', etag: '"e"' }, 'keep me');
  });
  const { cairn, store } = await startCdn(t, origin);
  const stored = store.committed();
  await get(cairn.url, '/sie');
  await stored;
  await origin.close();
  const res = await get(cairn.url, '/sie');
  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), 'keep me');
  assert.equal(statusOf(res), 'Cairn; fwd=stale; detail=stale-if-error');
});

test('stale-if-error serves the stale copy when the origin answers 5xx', LIMIT, async (t) => {
  let broken = false;
  const origin = await startOrigin(t, (_req, res) => {
    if (broken) send(res, 503, { 'cache-control': 'max-age=60' }, 'down for maintenance');
    else
      send(
        res,
        200,
        { 'cache-control': 'max-age=10, stale-if-error=600', age: '20', etag: '"e"' },
        'keep me',
      );
  });
  const { cairn, store } = await startCdn(t, origin);
  const stored = store.committed();
  await get(cairn.url, '/sie');
  await stored;
  broken = true;
  const res = await get(cairn.url, '/sie');
  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), 'keep me');
  assert.equal(statusOf(res), 'Cairn; fwd=stale; fwd-status=503; detail=stale-if-error');
  assert.equal(store.commits.length, 1, 'the 503 was not stored');
});

test('a 5xx never replaces a good stored object', LIMIT, async (t) => {
  let broken = false;
  const origin = await startOrigin(t, (_req, res) => {
    // The 500 is explicitly cacheable: only the "never replace good with bad" rule keeps it out.
    if (broken) send(res, 500, { 'cache-control': 'max-age=60' }, 'oops');
    else send(res, 200, { 'cache-control': 'max-age=60', etag: '"good"' }, 'good');
  });
  const { cairn, store } = await startCdn(t, origin);
  const stored = store.committed();
  await get(cairn.url, '/x');
  await stored;
  broken = true;
  const forced = await get(cairn.url, '/x', { 'cache-control': 'no-cache' });
  assert.equal(forced.status, 500, 'the client that forced a refresh sees the error');
  const after = await get(cairn.url, '/x');
  assert.equal(after.status, 200);
  assert.equal(after.body.toString(), 'good');
  assert.equal(entry(after).hit, true);
  assert.equal(store.commits.length, 1);
});

test(
  'a truncated origin body (socket destroyed after half the Content-Length) is never stored',
  LIMIT,
  async (t) => {
    const origin = await startRawOrigin(t, (socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 100\r\n\r\n');
        socket.write('x'.repeat(50), () => socket.destroy());
      });
    });
    const { cairn, store } = await startCdn(t, origin);
    const first = await get(cairn.url, '/cut');
    assert.equal(first.complete, false, 'the client sees the body cut off');
    const second = await get(cairn.url, '/cut');
    assert.equal(second.complete, false);
    assert.equal(entry(second).hit, false);
    assert.equal(origin.connections, 2, 'the second request went to the origin again');
    assert.equal(store.commits.length, 0);
    assert.deepEqual(await store.variants('http://127.0.0.1/cut'), []);
  },
);

test('304 revalidation merges the new headers into the stored response', LIMIT, async (t) => {
  const conditionals: string[] = [];
  const origin = await startOrigin(t, (req, res) => {
    const inm = req.headers['if-none-match'];
    if (inm === undefined) {
      send(
        res,
        200,
        { 'cache-control': 'max-age=0', etag: '"v1"', 'x-version': 'old', 'content-type': 'text/plain' },
        'the body',
      );
      return;
    }
    conditionals.push(inm);
    res.writeHead(304, { 'cache-control': 'max-age=600', etag: '"v1"', 'x-version': 'new' });
    res.end();
  });
  const { cairn, store } = await startCdn(t, origin);
  const stored = store.committed();
  await get(cairn.url, '/r');
  await stored;
  const updated = store.updated();
  const revalidated = await get(cairn.url, '/r', { 'if-none-match': '"client-copy"' });
  assert.deepEqual(conditionals, ['"v1"'], "the origin gets the stored validator, not the client's");
  assert.equal(revalidated.status, 200);
  assert.equal(revalidated.body.toString(), 'the body');
  assert.equal(statusOf(revalidated), 'Cairn; fwd=stale; fwd-status=304');
  assert.equal(revalidated.headers['x-version'], 'new');
  assert.equal(revalidated.headers['content-type'], 'text/plain');
  await updated;
  const hit = await get(cairn.url, '/r');
  assert.match(statusOf(hit), /^Cairn; hit; ttl=/);
  assert.equal(hit.headers['x-version'], 'new');
  assert.equal(hit.headers['cache-control'], 'max-age=600');
  assert.equal(hit.body.toString(), 'the body');
  assert.equal(origin.requests, 2);
});

test('HEAD is answered from a stored GET', LIMIT, async (t) => {
  const origin = await startOrigin(t, (_req, res) =>
    send(res, 200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' }, 'twelve bytes'),
  );
  const { cairn, store } = await startCdn(t, origin);
  const stored = store.committed();
  await get(cairn.url, '/h');
  await stored;
  const head = await get(cairn.url, '/h', {}, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  assert.equal(head.headers['content-length'], '12');
  assert.equal(head.headers['content-type'], 'text/plain');
  assert.equal(entry(head).hit, true);
  assert.equal(origin.requests, 1);
});

test('client conditionals get 304 (and 412) from the cache', LIMIT, async (t) => {
  const lastModified = new Date(Date.now() - 3_600_000).toUTCString();
  const origin = await startOrigin(t, (_req, res) =>
    send(
      res,
      200,
      { 'cache-control': 'max-age=60', etag: '"abc"', 'last-modified': lastModified },
      'content',
    ),
  );
  const { cairn, store } = await startCdn(t, origin);
  const stored = store.committed();
  await get(cairn.url, '/c');
  await stored;
  const byEtag = await get(cairn.url, '/c', { 'if-none-match': 'W/"abc", "zzz"' });
  assert.equal(byEtag.status, 304);
  assert.equal(byEtag.headers.etag, '"abc"');
  assert.equal(byEtag.body.length, 0);
  const byDate = await get(cairn.url, '/c', { 'if-modified-since': new Date().toUTCString() });
  assert.equal(byDate.status, 304);
  const changed = await get(cairn.url, '/c', { 'if-none-match': '"other"' });
  assert.equal(changed.status, 200);
  assert.equal(changed.body.toString(), 'content');
  const failed = await get(cairn.url, '/c', { 'if-match': '"other"' });
  assert.equal(failed.status, 412);
  assert.equal(origin.requests, 1);
});

test('ranges from the cache: 206, 416 and multipart/byteranges', LIMIT, async (t) => {
  const body = 'abcdefghijklmnopqrstuvwxyz';
  const origin = await startOrigin(t, (_req, res) =>
    send(res, 200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain', etag: '"az"' }, body),
  );
  const { cairn, store } = await startCdn(t, origin);
  const stored = store.committed();
  await get(cairn.url, '/z');
  await stored;
  const single = await get(cairn.url, '/z', { range: 'bytes=2-5' });
  assert.equal(single.status, 206);
  assert.equal(single.body.toString(), 'cdef');
  assert.equal(single.headers['content-range'], 'bytes 2-5/26');
  assert.equal(single.headers['content-length'], '4');
  const suffix = await get(cairn.url, '/z', { range: 'bytes=-3' });
  assert.equal(suffix.body.toString(), 'xyz');
  const unsatisfiable = await get(cairn.url, '/z', { range: 'bytes=100-' });
  assert.equal(unsatisfiable.status, 416);
  assert.equal(unsatisfiable.headers['content-range'], 'bytes */26');
  const multi = await get(cairn.url, '/z', { range: 'bytes=0-1,24-25' });
  assert.equal(multi.status, 206);
  const type = multi.headers['content-type'] ?? '';
  const boundary = /^multipart\/byteranges; boundary=(\S+)$/.exec(type)?.[1];
  assert.ok(boundary !== undefined, type);
  assert.equal(Number(multi.headers['content-length']), multi.body.length);
  const parts = multi.body
    .toString()
    .split(`--${boundary}`)
    .slice(1, -1)
    .map((p) => {
      const [head = '', content = ''] = p.split('\r\n\r\n');
      return { range: /content-range: (.*)/i.exec(head)?.[1], content: content.replace(/\r\n$/, '') };
    });
  assert.deepEqual(parts, [
    { range: 'bytes 0-1/26', content: 'ab' },
    { range: 'bytes 24-25/26', content: 'yz' },
  ]);
  const staleIfRange = await get(cairn.url, '/z', { range: 'bytes=0-1', 'if-range': '"old"' });
  assert.equal(staleIfRange.status, 200, 'If-Range that does not match: the whole body');
  assert.equal(staleIfRange.body.toString(), body);
  assert.equal(origin.requests, 1);
});

test('Vary: Accept-Encoding variants are normalised by cacheVaryFilter', LIMIT, async (t) => {
  const origin = await startOrigin(t, (req: IncomingMessage, res) => {
    const gzip = /gzip/.test(req.headers['accept-encoding'] ?? '');
    send(
      res,
      200,
      { 'cache-control': 'max-age=60', vary: 'Accept-Encoding' },
      gzip ? 'gzip-variant' : 'identity-variant',
    );
  });
  const { cairn } = await startCdn(t, origin);
  const a = await get(cairn.url, '/v', { 'accept-encoding': 'gzip, deflate' });
  const b = await get(cairn.url, '/v', { 'accept-encoding': 'deflate;q=0.5, gzip;q=0.8' });
  const c = await get(cairn.url, '/v', { 'accept-encoding': 'identity' });
  const d = await get(cairn.url, '/v', { 'accept-encoding': 'deflate' });
  assert.equal(a.body.toString(), 'gzip-variant');
  assert.equal(b.body.toString(), 'gzip-variant');
  assert.equal(entry(b).hit, true, 'a different spelling of "gzip" is the same variant');
  assert.equal(c.body.toString(), 'identity-variant');
  assert.equal(entry(c).fwd, 'vary-miss');
  assert.equal(d.body.toString(), 'identity-variant');
  assert.equal(entry(d).hit, true);
  assert.equal(origin.requests, 2);
});

test('a successful POST invalidates its URL, Location and Content-Location', LIMIT, async (t) => {
  const origin = await startOrigin(t, (req, res) => {
    if (req.method === 'POST') {
      req.resume();
      req.on('end', () =>
        send(res, 201, { location: '/b', 'content-location': `http://${req.headers.host}/c` }, 'created'),
      );
      return;
    }
    send(res, 200, { 'cache-control': 'max-age=600' }, `${req.url} #${origin.requests}`);
  });
  const { cairn } = await startCdn(t, origin);
  for (const path of ['/a', '/b', '/c', '/d']) await get(cairn.url, path);
  for (const path of ['/a', '/b', '/c', '/d'])
    assert.equal(entry(await get(cairn.url, path)).hit, true, path);
  const post = await get(cairn.url, '/a', {}, { method: 'POST', body: 'new' });
  assert.equal(post.status, 201);
  for (const path of ['/a', '/b', '/c']) {
    const res = await get(cairn.url, path);
    assert.equal(entry(res).hit, false, `${path} was invalidated`);
  }
  assert.equal(entry(await get(cairn.url, '/d')).hit, true, 'an unrelated URL stays');
});

test(
  'regression: a background stale-while-revalidate refresh lands in the cacheVaryFilter-normalised variant',
  LIMIT,
  async (t) => {
    // It used to be stored under the raw `Accept-Encoding` ("gzip,deflate"), where no lookup looks:
    // the stale copy was served forever and every request refreshed it again.
    let version = 1;
    const origin = await startOrigin(t, (_req, res) => {
      send(
        res,
        200,
        { 'cache-control': 'max-age=10, stale-while-revalidate=600', age: '20', vary: 'Accept-Encoding' },
        `v${version}`,
      );
    });
    const { cairn, store } = await startCdn(t, origin);
    const headers = { 'accept-encoding': 'gzip, deflate' };
    let committed = store.committed();
    await get(cairn.url, '/swr-vary', headers);
    const first = await committed;
    version = 2;
    committed = store.committed();
    const stale = await get(cairn.url, '/swr-vary', headers);
    assert.equal(stale.body.toString(), 'v1');
    const refreshed = await committed;
    assert.equal(refreshed.variant, first.variant);
    const next = await get(cairn.url, '/swr-vary', headers);
    assert.equal(next.body.toString(), 'v2');
  },
);

test(
  'a hit sends the stored fields with Age, Via and Cache-Status: the same with or without a responseFilter',
  LIMIT,
  async (t) => {
    const origin = await startOrigin(t, (req, res) => {
      const headers: Record<string, string> = {
        'cache-control': 'max-age=60',
        'content-type': 'text/plain',
        'x-tag': 'a',
      };
      if (req.url === '/via') headers.via = '1.0 origin-cache';
      if (req.url === '/status') headers['cache-status'] = 'Origin; hit';
      res.writeHead(200, headers);
      // No Content-Length: the origin's body arrives chunked.
      res.write('chunked ');
      res.end('body');
    });
    const plain = await startCdn(t, origin);
    const filtered = await startCdn(t, origin, {
      make: (o) =>
        new (class extends CdnProxy {
          override responseFilter(): void {}
        })(o),
    });
    for (const path of ['/plain', '/via', '/status']) {
      const seen: Record<string, string | string[] | undefined>[] = [];
      for (const { cairn } of [plain, filtered]) {
        await get(cairn.url, path);
        const hit = await get(cairn.url, path);
        assert.equal(hit.body.toString(), 'chunked body');
        assert.match(statusOf(hit), /Cairn; hit; ttl=\d+$/, path);
        // The stored length is said, though the origin sent the body chunked.
        assert.equal(hit.headers['content-length'], '12', path);
        assert.equal(hit.headers['transfer-encoding'], undefined, path);
        assert.match(String(hit.headers.age), /^\d+$/, path);
        const { date: _date, age: _age, 'cache-status': cs, ...rest } = hit.headers;
        seen.push({ ...rest, 'cache-status': typeof cs === 'string' ? cs.replace(/ttl=\d+/, 'ttl') : cs });
      }
      // The hook-free path and the field-map path agree field for field.
      assert.deepEqual(seen[0], seen[1], path);
      if (path === '/via') assert.equal(seen[0]!.via, '1.0 origin-cache, 1.1 cairn');
      if (path === '/status') assert.equal(seen[0]!['cache-status'], 'Origin; hit, Cairn; hit; ttl');
      if (path === '/plain') assert.equal(seen[0]!.via, '1.1 cairn');
    }
  },
);
