/**
 * The admin `/metrics` numbers move with real traffic, and the access log has one JSON line per
 * request with the documented fields.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpPeer, ProxyHttp } from '../../src/index.ts';
import type { CairnError, Session } from '../../src/index.ts';
import { RawClient, httpRequest, startCairn, startOrigin } from '../helpers/servers.ts';
import type { Cairn, LogLine } from '../helpers/servers.ts';
import { unusedPort } from '../helpers/cli.ts';

const LIMIT = { timeout: 20_000 };

class ToPeers extends ProxyHttp {
  readonly peers: readonly HttpPeer[];
  constructor(peers: readonly HttpPeer[]) {
    super();
    this.peers = peers;
  }
  override upstreamPeer(session: Session): HttpPeer {
    return this.peers[Math.min(session.attempts, this.peers.length) - 1]!;
  }
}

/** Wait for the access line of `path` (written right after the request's metrics are recorded). */
function logged(cairn: Cairn, path: string): Promise<LogLine> {
  return cairn.logs.waitFor((l) => l.msg === 'request' && l.path === path);
}

test(
  'N sequential requests over keep-alive: 1 connection created, N-1 reused; requests, outcomes and durations counted',
  LIMIT,
  async (t) => {
    const origin = await startOrigin(t, (_req, res) => res.end('ok'));
    const cairn = await startCairn(t, new ToPeers([origin.peer()]));
    const before = await cairn.metrics();
    const n = 5;

    for (let i = 0; i < n; i++) {
      const res = await httpRequest(`${cairn.url}/k${i}`);
      assert.equal(res.status, 200);
      await logged(cairn, `/k${i}`);
    }
    const after = await cairn.metrics();
    const delta = (name: string, labels?: Record<string, string>): number =>
      after.value(name, labels) - before.value(name, labels);

    assert.equal(origin.sockets, 1);
    assert.equal(delta('cairn_upstream_connections_created_total'), 1);
    assert.equal(delta('cairn_upstream_connections_reused_total'), n - 1);
    assert.equal(delta('cairn_requests_total', { status_class: '2xx' }), n);
    assert.equal(delta('cairn_requests_total', { status_class: '5xx' }), 0);
    assert.equal(delta('cairn_upstream_requests_total', { outcome: 'response' }), n);
    assert.equal(delta('cairn_request_duration_seconds_count'), n);
    assert.ok(delta('cairn_request_duration_seconds_sum') > 0);
    // Every observation falls in the +Inf bucket; the buckets are cumulative.
    assert.equal(delta('cairn_request_duration_seconds_bucket', { le: '+Inf' }), n);
    assert.equal(after.value('cairn_requests_in_flight'), 0);
  },
);

test(
  'status classes and upstream outcomes: 4xx from the origin, connect errors, timeouts, retries',
  LIMIT,
  async (t) => {
    const origin = await startOrigin(t, (req, res) => {
      if (req.url === '/missing') {
        res.writeHead(404);
        res.end();
      }
      // '/hang' never answers
    });
    const dead = new HttpPeer(`http://127.0.0.1:${await unusedPort()}`);
    class Routes extends ProxyHttp {
      override upstreamPeer(session: Session): HttpPeer {
        if (session.path === '/dead') return dead;
        if (session.path === '/retry') return session.attempts === 1 ? dead : origin.peer();
        return origin.peer({ headersTimeout: 300 });
      }
      override failToConnect(
        session: Session,
        _p: HttpPeer,
        _c: Record<string, never>,
        error: CairnError,
      ): CairnError {
        error.retry = session.path === '/retry';
        return error;
      }
    }
    const cairn = await startCairn(t, new Routes());
    const before = await cairn.metrics();

    assert.equal((await httpRequest(`${cairn.url}/missing`)).status, 404);
    await logged(cairn, '/missing');
    assert.equal((await httpRequest(`${cairn.url}/dead`)).status, 502);
    await logged(cairn, '/dead');
    assert.equal((await httpRequest(`${cairn.url}/hang`)).status, 504);
    await logged(cairn, '/hang');
    // Retried onto the live origin, which answers /retry with... nothing: a second timeout.
    assert.equal((await httpRequest(`${cairn.url}/retry`)).status, 504);
    await logged(cairn, '/retry');
    const after = await cairn.metrics();
    const delta = (name: string, labels?: Record<string, string>): number =>
      after.value(name, labels) - before.value(name, labels);

    assert.equal(delta('cairn_requests_total', { status_class: '4xx' }), 1);
    assert.equal(delta('cairn_requests_total', { status_class: '5xx' }), 3);
    assert.equal(delta('cairn_upstream_requests_total', { outcome: 'response' }), 1);
    assert.equal(delta('cairn_upstream_requests_total', { outcome: 'connect_error' }), 2);
    assert.equal(delta('cairn_upstream_requests_total', { outcome: 'timeout' }), 2);
    assert.equal(delta('cairn_upstream_retries_total'), 1);
  },
);

test('cairn_requests_in_flight counts a request while it is being proxied', LIMIT, async (t) => {
  let release!: () => void;
  let arrived!: () => void;
  const atOrigin = new Promise<void>((resolve) => {
    arrived = resolve;
  });
  const origin = await startOrigin(t, (_req, res) => {
    release = () => res.end('done');
    arrived();
  });
  const cairn = await startCairn(t, new ToPeers([origin.peer()]));

  const pending = httpRequest(`${cairn.url}/held`);
  await atOrigin;
  const during = await cairn.metrics();
  release();
  assert.equal((await pending).status, 200);
  await logged(cairn, '/held');
  const after = await cairn.metrics();

  assert.equal(during.value('cairn_requests_in_flight'), 1);
  assert.equal(after.value('cairn_requests_in_flight'), 0);
});

test(
  'the access log: one JSON line per request with id, method, host, path, status, bytes, duration, upstream, reused, error',
  LIMIT,
  async (t) => {
    const origin = await startOrigin(t, (_req, res) => res.end('twelve bytes'));
    const dead = new HttpPeer(`http://127.0.0.1:${await unusedPort()}`);
    class Routes extends ProxyHttp {
      override upstreamPeer(session: Session): HttpPeer {
        return session.path === '/dead' ? dead : origin.peer();
      }
    }
    const cairn = await startCairn(t, new Routes());

    await httpRequest(`${cairn.url}/a?x=1`, { headers: { host: 'site.test', 'x-request-id': 'req-abc.1' } });
    await httpRequest(`${cairn.url}/b`, { method: 'HEAD', headers: { host: 'site.test' } });
    await httpRequest(`${cairn.url}/dead`);
    // A client that sends an unusable id gets a generated one.
    await httpRequest(`${cairn.url}/c`, { headers: { 'x-request-id': 'bad id with spaces' } });
    const a = await logged(cairn, '/a?x=1');
    const b = await logged(cairn, '/b');
    const dead1 = await logged(cairn, '/dead');
    const c = await logged(cairn, '/c');
    await cairn.server.close();

    assert.equal(cairn.logs.accessLines().length, 4, 'exactly one line per request');
    assert.equal(a.reqId, 'req-abc.1');
    assert.equal(a.method, 'GET');
    assert.equal(a.host, 'site.test');
    assert.equal(a.status, 200);
    assert.equal(a.bytes, 12);
    assert.equal(typeof a.durationMs, 'number');
    assert.ok((a.durationMs as number) >= 0);
    assert.equal(a.upstream, `127.0.0.1:${origin.port}`);
    assert.equal(a.reused, false);
    assert.equal(a.err, undefined);
    assert.equal(b.method, 'HEAD');
    assert.equal(b.bytes, 0);
    assert.equal(b.reused, true, 'the second request re-used the pooled connection');
    assert.equal(dead1.status, 502);
    assert.equal(dead1.upstream, dead.address);
    assert.equal(dead1.err, 'CAIRN_ERR_UPSTREAM_CONNECT');
    assert.equal(dead1.errSource, 'upstream');
    assert.equal(dead1.errRetryable, true);
    assert.notEqual(c.reqId, 'bad id with spaces');
    assert.match(c.reqId as string, /^[0-9a-f]{8}-[0-9a-z]+$/);
    const ids = new Set([a.reqId, b.reqId, dead1.reqId, c.reqId]);
    assert.equal(ids.size, 4);
  },
);

test(
  'a client that leaves mid-response is one access line with the status sent and CAIRN_ERR_DOWNSTREAM_CLOSED',
  LIMIT,
  async (t) => {
    const origin = await startOrigin(t, (_req, res) => {
      res.writeHead(200);
      res.write('partial');
    });
    const cairn = await startCairn(t, new ToPeers([origin.peer()]));
    const before = await cairn.metrics();
    const client = await RawClient.connect(cairn.port);

    client.write('GET /leave HTTP/1.1\r\nHost: a\r\n\r\n');
    await client.waitFor('partial');
    client.destroy();
    const line = await logged(cairn, '/leave');
    const after = await cairn.metrics();

    assert.equal(line.status, 200, 'the status that was sent');
    assert.equal(line.err, 'CAIRN_ERR_DOWNSTREAM_CLOSED');
    assert.equal(after.value('cairn_requests_in_flight'), 0);
    assert.equal(
      after.value('cairn_request_duration_seconds_count') -
        before.value('cairn_request_duration_seconds_count'),
      1,
    );
  },
);
