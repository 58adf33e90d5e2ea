/**
 * One test per cache hook: a subclass overriding it changes what the client gets or what the
 * origin sees, compared with the default behaviour in the same test.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import type { HttpCache, ObjectMeta, ResponseHead, ResponseVerdict, Session } from '../../src/index.ts';
import { CdnProxy, ReverseProxy } from '../../hooks/index.ts';
import { httpRequest, startCairn, startOrigin } from '../helpers/servers.ts';
import type { HttpResult, Origin } from '../helpers/servers.ts';
import { memoryCache, startCdn, statusOf } from '../helpers/cache.ts';

const LIMIT = { timeout: 15_000 };

function send(res: ServerResponse, status: number, headers: Record<string, string>, body: string): void {
  res.writeHead(status, { 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** An origin whose body counts its requests, so a cached answer is told from a fresh one. */
function countingOrigin(
  t: Parameters<typeof startOrigin>[0],
  headers: Record<string, string> = { 'cache-control': 'max-age=600', etag: '"e"' },
): Promise<Origin> {
  let n = 0;
  return startOrigin(t, (req, res) => {
    n++;
    if (req.method === 'GET' && req.headers['if-none-match'] === '"e"' && headers.etag === '"e"') {
      res.writeHead(304, { 'cache-control': headers['cache-control'] ?? 'max-age=600', etag: '"e"' });
      res.end();
      return;
    }
    send(res, 200, headers, `response #${n} for ${req.url} (${String(req.headers['x-seen'])})`);
  });
}

function get(
  base: string,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<HttpResult> {
  return httpRequest(base + path, { method, headers });
}

test('requestCacheFilter: returning no cache bypasses it for that request', LIMIT, async (t) => {
  const origin = await countingOrigin(t);
  const { cache } = memoryCache();
  const proxy = new (class extends ReverseProxy {
    override requestCacheFilter(session: Session): HttpCache | undefined {
      return session.path.startsWith('/live/') ? undefined : cache;
    }
  })({ origins: [origin.url] });
  const cairn = await startCairn(t, proxy);
  await get(cairn.url, '/live/score');
  const live = await get(cairn.url, '/live/score');
  assert.equal(live.headers['cache-status'], undefined, 'the cache never saw it');
  assert.equal(live.body.toString(), 'response #2 for /live/score (undefined)');
  await get(cairn.url, '/static');
  assert.match(statusOf(await get(cairn.url, '/static')), /^Cairn; hit/);
  assert.equal(origin.requests, 3);
});

test('cacheKey: a custom key shares one object across URLs; undefined bypasses', LIMIT, async (t) => {
  const origin = await countingOrigin(t);
  const { cairn } = await startCdn(t, origin, {
    make: (o) =>
      new (class extends CdnProxy {
        override cacheKey(session: Session): string | undefined {
          if (session.path.startsWith('/private/')) return undefined;
          // Tracking parameters do not make a different page.
          return `${session.host}${session.path.replace(/[?&]utm_[^&]*/g, '')}`;
        }
      })(o),
  });
  const first = await get(cairn.url, '/page?utm_source=mail');
  const second = await get(cairn.url, '/page?utm_source=ads&utm_medium=x');
  assert.match(statusOf(second), /^Cairn; hit/);
  assert.equal(second.body.toString(), first.body.toString());
  const bypass = await get(cairn.url, '/private/x');
  assert.equal(statusOf(bypass), 'Cairn; fwd=bypass; detail=no-key');
  await get(cairn.url, '/private/x');
  assert.equal(origin.requests, 3);
});

test('cacheHitFilter: returning true revalidates a fresh stored response', LIMIT, async (t) => {
  const origin = await countingOrigin(t);
  const { cairn, store } = await startCdn(t, origin, {
    make: (o) =>
      new (class extends CdnProxy {
        override cacheHitFilter(session: Session, meta: ObjectMeta): boolean {
          assert.equal(meta.status, 200);
          return session.headers['x-refresh'] === '1';
        }
      })(o),
  });
  const stored = store.committed();
  await get(cairn.url, '/h');
  await stored;
  assert.match(statusOf(await get(cairn.url, '/h')), /^Cairn; hit/);
  const forced = await get(cairn.url, '/h', { 'x-refresh': '1' });
  assert.equal(statusOf(forced), 'Cairn; fwd=stale; fwd-status=304');
  assert.equal(forced.body.toString(), 'response #1 for /h (undefined)');
  assert.equal(origin.requests, 2);
});

test('cacheMiss: runs on a miss only, and what it sets reaches the origin', LIMIT, async (t) => {
  const origin = await countingOrigin(t);
  let calls = 0;
  const { cairn, store } = await startCdn(t, origin, {
    make: (o) =>
      new (class extends CdnProxy {
        override cacheMiss(session: Session): void {
          calls++;
          session.headers['x-seen'] = 'cache-miss';
        }
      })(o),
  });
  const stored = store.committed();
  const miss = await get(cairn.url, '/m');
  await stored;
  assert.equal(miss.body.toString(), 'response #1 for /m (cache-miss)');
  await get(cairn.url, '/m');
  assert.equal(calls, 1);
});

test(
  'responseCacheFilter: its verdict decides storing, for foreground and background fetches',
  LIMIT,
  async (t) => {
    let version = 1;
    const origin = await startOrigin(t, (req, res) => {
      const headers: Record<string, string> = {
        'cache-control': 'max-age=10, stale-while-revalidate=600',
        age: '20',
      };
      if (req.url === '/draft' || version > 1) headers['x-draft'] = '1';
      send(res, 200, headers, `v${version}`);
    });
    const verdicts: string[] = [];
    const { cairn, store } = await startCdn(t, origin, {
      make: (o) =>
        new (class extends CdnProxy {
          override responseCacheFilter(
            _s: Session,
            response: ResponseHead,
            verdict: ResponseVerdict,
          ): ResponseVerdict {
            verdicts.push(String(response.headers['x-draft']));
            if (response.headers['x-draft'] === '1')
              return { storable: false, reason: 'status', targetedBy: undefined };
            return verdict;
          }
        })(o),
    });
    const draft = await get(cairn.url, '/draft');
    assert.match(statusOf(draft), /^Cairn; fwd=uri-miss;.* detail=status$/);
    assert.notEqual(statusOf(await get(cairn.url, '/draft')).slice(0, 10), 'Cairn; hit');

    const stored = store.committed();
    await get(cairn.url, '/page');
    await stored;
    version = 2;
    // Served stale; the background refresh gets a draft, which the hook refuses to store.
    const before = verdicts.length;
    const stale = await get(cairn.url, '/page');
    assert.equal(stale.body.toString(), 'v1');
    while (verdicts.length === before) await new Promise((resolve) => setImmediate(resolve));
    const again = await get(cairn.url, '/page');
    assert.equal(again.body.toString(), 'v1', 'the refused refresh did not replace the stored response');
    assert.equal(store.commits.length, 1);
  },
);

test('cacheVaryFilter: normalising a Vary header merges variants', LIMIT, async (t) => {
  const origin = await startOrigin(t, (req, res) => {
    send(
      res,
      200,
      { 'cache-control': 'max-age=600', vary: 'Accept-Language' },
      `lang ${String(req.headers['accept-language'])}`,
    );
  });
  const plain = await startCdn(t, origin);
  const custom = await startCdn(t, origin, {
    make: (o) =>
      new (class extends CdnProxy {
        override cacheVaryFilter(_s: Session, name: string, value: string | undefined): string | undefined {
          // One variant per primary language.
          return name === 'accept-language' ? (value ?? 'en').split(/[-,;]/)[0] : value;
        }
      })(o),
  });
  for (const c of [plain, custom]) {
    await get(c.cairn.url, '/l', { 'accept-language': 'en-US' });
  }
  assert.equal(
    statusOf(await get(plain.cairn.url, '/l', { 'accept-language': 'en-GB' })),
    'Cairn; fwd=vary-miss; stored',
  );
  const merged = await get(custom.cairn.url, '/l', { 'accept-language': 'en-GB' });
  assert.match(statusOf(merged), /^Cairn; hit/);
  assert.equal(merged.body.toString(), 'lang en-US');
});

test(
  'shouldServeStale: refusing stale makes stale-while-revalidate and stale-if-error go to the origin',
  LIMIT,
  async (t) => {
    let failing = false;
    const origin = await startOrigin(t, (_req, res) => {
      if (failing) send(res, 503, {}, 'down');
      else
        send(
          res,
          200,
          {
            'cache-control': 'max-age=10, stale-while-revalidate=600, stale-if-error=600',
            age: '20',
            etag: '"s"',
          },
          `fresh #${origin.requests}`,
        );
    });
    const decisions: string[] = [];
    const { cairn, store } = await startCdn(t, origin, {
      make: (o) =>
        new (class extends CdnProxy {
          override shouldServeStale(
            session: Session,
            _ctx: unknown,
            error: unknown,
            allowed: boolean,
          ): boolean {
            decisions.push(`${error === undefined ? 'swr' : 'error'}:${String(allowed)}`);
            return session.headers['x-stale-ok'] === '1' && allowed;
          }
        })(o),
    });
    const stored = store.committed();
    await get(cairn.url, '/s');
    await stored;
    const ok = await get(cairn.url, '/s', { 'x-stale-ok': '1' });
    assert.match(statusOf(ok), /detail=stale/);
    const refused = await get(cairn.url, '/s');
    assert.doesNotMatch(statusOf(refused), /hit/, 'not served stale: fetched');
    failing = true;
    const staleIfError = await get(cairn.url, '/s', { 'x-stale-ok': '1', 'cache-control': 'max-stale=0' });
    const noStale = await get(cairn.url, '/s', { 'cache-control': 'max-stale=0' });
    assert.deepEqual([staleIfError.status, noStale.status], [200, 503]);
    assert.ok(decisions.includes('swr:true') && decisions.includes('error:true'), decisions.join());
  },
);

test(
  'cacheNotModifiedFilter: returning false sends the full stored response to a conditional request',
  LIMIT,
  async (t) => {
    const origin = await countingOrigin(t);
    const normal = await startCdn(t, origin);
    const always200 = await startCdn(t, origin, {
      make: (o) =>
        new (class extends CdnProxy {
          override cacheNotModifiedFilter(): boolean {
            return false;
          }
        })(o),
    });
    for (const c of [normal, always200]) {
      const stored = c.store.committed();
      await get(c.cairn.url, '/n');
      await stored;
    }
    assert.equal((await get(normal.cairn.url, '/n', { 'if-none-match': '"e"' })).status, 304);
    const full = await get(always200.cairn.url, '/n', { 'if-none-match': '"e"' });
    assert.equal(full.status, 200);
    assert.match(full.body.toString(), /^response #\d for \/n/);
  },
);

test('isPurge and purgeResponseFilter: another purge request and a custom purge answer', LIMIT, async (t) => {
  const origin = await countingOrigin(t);
  const { cairn, store } = await startCdn(t, origin, {
    make: (o) =>
      new (class extends CdnProxy {
        override isPurge(session: Session): boolean {
          return (
            session.method === 'PURGE' ||
            (session.method === 'DELETE' && session.headers['x-purge'] === 'yes')
          );
        }
        override purgeResponseFilter(_s: Session, response: ResponseHead): void {
          response.status = response.status === 200 ? 202 : response.status;
          response.headers['x-purged-by'] = 'test';
        }
      })(o),
  });
  const stored = store.committed();
  await get(cairn.url, '/p');
  await stored;
  const ban = await get(cairn.url, '/p', { 'x-purge': 'yes' }, 'DELETE');
  assert.equal(ban.status, 202);
  assert.equal(ban.headers['x-purged-by'], 'test');
  assert.deepEqual(JSON.parse(ban.body.toString()), { purged: 1 });
  assert.equal(statusOf(await get(cairn.url, '/p')), 'Cairn; fwd=uri-miss; stored');
  assert.equal(origin.requests, 2, 'the purging DELETE was answered by the cache, not sent to the origin');
});
