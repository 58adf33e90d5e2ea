/**
 * HTTP/2 to origins (`HttpPeer({ http2: true })`, src/h2-origin.ts): h2c with prior knowledge and
 * TLS + ALPN h2; concurrent requests of any method multiplexed over one connection; the origin's
 * stream limit respected; bodies streamed both ways; trailers delivered to HTTP/1.1 and HTTP/2
 * clients; resets, GOAWAY, timeouts and refused connections mapped to Cairn's error codes; created
 * vs reused connections exported per peer.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import http2 from 'node:http2';
import type { Http2Server, Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { HttpPeer, ProxyHttp } from '../../src/index.ts';
import type { HttpPeerOptions } from '../../src/index.ts';
import { makeCa } from '../helpers/certs.ts';
import { httpRequest, startCairn } from '../helpers/servers.ts';
import type { Cleanup } from '../helpers/servers.ts';

class ToPeer extends ProxyHttp {
  readonly peer: HttpPeer;
  constructor(peer: HttpPeer) {
    super();
    this.peer = peer;
  }
  override upstreamPeer(): HttpPeer {
    return this.peer;
  }
}

interface H2Origin {
  readonly server: Http2Server;
  readonly url: string;
  readonly address: string;
  /** Sessions (connections) accepted. */
  readonly sessions: ServerHttp2Session[];
  /** Most streams the origin was handling at once. */
  maxActive: number;
}

type Handler = (req: Http2ServerRequest, res: Http2ServerResponse, origin: H2Origin) => void;

async function startH2Origin(
  t: Cleanup,
  handler: Handler,
  options: http2.SecureServerOptions & { secure?: boolean } = {},
): Promise<H2Origin> {
  const server = options.secure === true ? http2.createSecureServer(options) : http2.createServer(options);
  const sessions: ServerHttp2Session[] = [];
  let active = 0;
  const origin: H2Origin = {
    server,
    url: '',
    address: '',
    sessions,
    maxActive: 0,
  };
  server.on('session', (session: ServerHttp2Session) => sessions.push(session));
  server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => {
    active++;
    origin.maxActive = Math.max(origin.maxActive, active);
    res.once('close', () => active--);
    handler(req, res, origin);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  Object.assign(origin, {
    url: `${options.secure === true ? 'https' : 'http'}://127.0.0.1:${port}`,
    address: `127.0.0.1:${port}`,
  });
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  );
  return origin;
}

/** Answers with a digest of the request body, after `gate` (if any) opens. */
function digestHandler(gate?: Promise<void>): Handler {
  return (req, res) => {
    const hash = createHash('sha256');
    let length = 0;
    req.on('data', (c: Buffer) => {
      hash.update(c);
      length += c.length;
    });
    req.on('end', () => {
      const reply = (): void => {
        res.writeHead(200, {
          'content-type': 'text/plain',
          'x-protocol': req.httpVersion,
          'x-te': String(req.headers.te),
        });
        res.end(
          `${req.method} ${req.url} ${length} ${hash.digest('hex')} ${req.headers[':authority'] ?? ''}`,
        );
      };
      if (gate === undefined) reply();
      else void gate.then(reply);
    });
  };
}

function peer(url: string, options: HttpPeerOptions = {}): HttpPeer {
  return new HttpPeer(url, { http2: true, ...options });
}

test('h2c: concurrent POSTs with bodies are multiplexed on one connection, reuse counted per peer', async (t) => {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const origin = await startH2Origin(t, digestHandler(gate));
  const cairn = await startCairn(t, new ToPeer(peer(origin.url)));
  const bodies = Array.from({ length: 8 }, (_, i) => Buffer.alloc(10_000 + i, i));
  const pending = bodies.map((body, i) =>
    httpRequest(`${cairn.url}/upload/${i}`, {
      method: 'POST',
      body,
      headers: { host: 'site.test', te: 'trailers' },
    }),
  );
  // All eight are at the origin at once before any is answered: they share connections.
  while (origin.maxActive < 8) await once(origin.server, 'request');
  open();
  const results = await Promise.all(pending);
  for (const [i, res] of results.entries()) {
    const digest = createHash('sha256')
      .update(bodies[i] as Buffer)
      .digest('hex');
    assert.equal(res.status, 200);
    assert.equal(
      res.body.toString(),
      `POST /upload/${i} ${(bodies[i] as Buffer).length} ${digest} site.test`,
    );
    assert.equal(res.headers['x-protocol'], '2.0');
    assert.equal(res.headers['x-te'], 'trailers');
  }
  assert.equal(origin.sessions.length, 1);
  const metrics = await cairn.metrics();
  assert.equal(metrics.value('cairn_upstream_peer_connections_created_total', { peer: origin.address }), 1);
  assert.equal(metrics.value('cairn_upstream_peer_connections_reused_total', { peer: origin.address }), 7);
});

test("the origin's stream limit is respected: requests wait for a free stream instead of failing", async (t) => {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const origin = await startH2Origin(t, digestHandler(gate), { settings: { maxConcurrentStreams: 2 } });
  const cairn = await startCairn(t, new ToPeer(peer(origin.url, { maxConnections: 1 })));
  const pending = Array.from({ length: 6 }, (_, i) => httpRequest(`${cairn.url}/q/${i}`));
  while (origin.maxActive < 2) await once(origin.server, 'request');
  open();
  const results = await Promise.all(pending);
  assert.deepEqual(
    results.map((r) => r.status),
    [200, 200, 200, 200, 200, 200],
  );
  assert.equal(origin.maxActive, 2);
  assert.equal(origin.sessions.length, 1);
});

test('large bodies stream both ways; origin trailers reach HTTP/1.1 and HTTP/2 clients', async (t) => {
  const big = Buffer.alloc(8 * 1024 * 1024, 'x');
  const origin = await startH2Origin(t, (req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.addTrailers({ 'x-digest': createHash('sha256').update(big).digest('hex') });
      res.end(big);
    });
  });
  const cairn = await startCairn(t, new ToPeer(peer(origin.url)), { h2c: true });
  const h1 = await httpRequest(`${cairn.url}/big`, { method: 'POST', body: big });
  assert.equal(h1.status, 200);
  assert.ok(h1.body.equals(big));
  assert.equal(h1.trailers['x-digest'], createHash('sha256').update(big).digest('hex'));

  const client = http2.connect(cairn.url);
  t.after(() => client.destroy());
  const stream = client.request({ ':path': '/big' });
  const chunks: Buffer[] = [];
  const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve) => {
    let got: http2.IncomingHttpHeaders = {};
    stream.on('trailers', (h: http2.IncomingHttpHeaders) => {
      got = h;
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve(got));
  });
  assert.ok(Buffer.concat(chunks).equals(big));
  assert.equal(trailers['x-digest'], createHash('sha256').update(big).digest('hex'));
});

test('TLS origin over ALPN h2, with SNI and a pinned CA', async (t) => {
  const ca = await makeCa(t);
  const cert = await ca.issue(['h2-origin.test']);
  const origin = await startH2Origin(t, digestHandler(), { secure: true, cert: cert.cert, key: cert.key });
  const refused = await startCairn(t, new ToPeer(peer(origin.url, { sni: 'h2-origin.test' })));
  const r1 = await httpRequest(`${refused.url}/x`);
  assert.equal(r1.status, 502);
  assert.equal((await refused.logs.waitFor((l) => l.msg === 'request')).err, 'CAIRN_ERR_UPSTREAM_TLS');

  const pinned = await startCairn(
    t,
    new ToPeer(peer(origin.url, { sni: 'h2-origin.test', tls: { ca: ca.cert } })),
  );
  const r2 = await httpRequest(`${pinned.url}/x`, { headers: { host: 'site.test' } });
  assert.equal(r2.status, 200);
  assert.equal(r2.headers['x-protocol'], '2.0');
  assert.match(r2.body.toString(), /^GET \/x 0 [0-9a-f]{64} site\.test$/);
});

test('resets, GOAWAY, timeouts and refused connections become coded errors', async (t) => {
  const origin = await startH2Origin(t, (req, res, o) => {
    if (req.url === '/reset') {
      req.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    if (req.url === '/goaway') {
      // Answer, then tell the client this connection takes no new streams.
      res.end('last on this connection');
      req.stream.session?.goaway();
      return;
    }
    if (req.url === '/silent') return; // never answers
    res.end(`ok ${o.sessions.length}`);
  });
  const cairn = await startCairn(t, new ToPeer(peer(origin.url, { headersTimeout: 300 })));

  const reset = await httpRequest(`${cairn.url}/reset`);
  assert.equal(reset.status, 502);
  assert.equal(
    (await cairn.logs.waitFor((l) => l.msg === 'request' && l.path === '/reset')).err,
    'CAIRN_ERR_UPSTREAM_CLOSED',
  );

  const silent = await httpRequest(`${cairn.url}/silent`);
  assert.equal(silent.status, 504);
  assert.equal(
    (await cairn.logs.waitFor((l) => l.msg === 'request' && l.path === '/silent')).err,
    'CAIRN_ERR_UPSTREAM_HEADERS_TIMEOUT',
  );

  const before = origin.sessions.length;
  const last = await httpRequest(`${cairn.url}/goaway`);
  assert.equal(last.body.toString(), 'last on this connection');
  const after = await httpRequest(`${cairn.url}/next`);
  assert.equal(after.status, 200);
  assert.equal(origin.sessions.length, before + 1, 'a new connection after GOAWAY');

  const closed = await startH2Origin(t, () => undefined);
  const url = closed.url;
  await new Promise<void>((resolve) => closed.server.close(() => resolve()));
  const down = await startCairn(t, new ToPeer(peer(url)));
  const refused = await httpRequest(`${down.url}/`);
  assert.equal(refused.status, 502);
  assert.equal((await down.logs.waitFor((l) => l.msg === 'request')).err, 'CAIRN_ERR_UPSTREAM_CONNECT');
});
