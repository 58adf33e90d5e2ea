/**
 * HTTP/2 from clients: h2c with prior knowledge and h2 over TLS (ALPN) share one port with
 * HTTP/1.1; the same phases run for both; HTTP/1.1 <-> HTTP/2 translation (`:authority` <-> Host, no
 * connection-specific fields on h2, bodies without length, trailers) is correct; and the session
 * limits hold against a client that sends too many streams, a rapid-reset flood, and header floods.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import type { ClientHttp2Session, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import { connect as netConnect } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { test } from 'node:test';
import { ProxyHttp } from '../../src/index.ts';
import type { HttpPeer, ResponseHead, Session } from '../../src/index.ts';
import { makeCa } from '../helpers/certs.ts';
import { httpRequest, startCairn, startOrigin } from '../helpers/servers.ts';
import type { Cleanup } from '../helpers/servers.ts';

const { NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;

/** Echoes what the origin saw: method, path, headers, body length; sends trailers on /trailers. */
function echoOrigin(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const seen = JSON.stringify({
      method: req.method,
      url: req.url,
      headers: req.headers,
      bodyLength: body.length,
      httpVersion: req.httpVersion,
    });
    if (req.url === '/trailers') {
      res.writeHead(200, {
        'content-type': 'application/json',
        trailer: 'x-checksum',
        connection: 'keep-alive',
        'keep-alive': 'timeout=5',
      });
      res.write(seen);
      res.addTrailers({ 'x-checksum': 'abc123' });
      res.end();
      return;
    }
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(seen),
      connection: 'keep-alive',
      'keep-alive': 'timeout=5',
      'x-origin': 'yes',
    });
    res.end(seen);
  });
}

/** Counts what ran, answers 403 for /forbidden in requestFilter, adds a response header. */
class PhaseProxy extends ProxyHttp {
  readonly seen: string[] = [];
  readonly logged: { path: string; status: number }[] = [];
  readonly peer: HttpPeer;
  constructor(peer: HttpPeer) {
    super();
    this.peer = peer;
  }
  override requestFilter(session: Session): boolean {
    this.seen.push(`${session.request.httpVersion} ${session.method} ${session.path} host=${session.host}`);
    if (session.path === '/forbidden') {
      session.respond(403, { 'content-type': 'text/plain', connection: 'close' }, 'no\n');
      return true;
    }
    return false;
  }
  override upstreamPeer(): HttpPeer {
    return this.peer;
  }
  override responseFilter(_session: Session, response: ResponseHead): void {
    response.headers['x-phase'] = 'response';
  }
  override logging(session: Session): void {
    this.logged.push({ path: session.path, status: session.status });
  }
}

interface H2Result {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  trailers: IncomingHttpHeaders;
}

function h2Request(
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  body?: Buffer,
): Promise<H2Result> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let responseHeaders: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      status = Number(h[':status']);
      responseHeaders = h;
    });
    stream.on('trailers', (h) => {
      trailers = h;
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () =>
      resolve({ status, headers: responseHeaders, body: Buffer.concat(chunks), trailers }),
    );
    stream.on('error', reject);
    if (body !== undefined) stream.end(body);
  });
}

function h2Connect(
  t: Cleanup,
  url: string,
  options: http2.SecureClientSessionOptions = {},
): ClientHttp2Session {
  const session = http2.connect(url, options);
  session.on('error', () => undefined);
  t.after(() => session.destroy());
  return session;
}

const CONNECTION_SPECIFIC = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'];

test('h2c with prior knowledge and HTTP/1.1 on one port run the same phases', async (t) => {
  const origin = await startOrigin(t, echoOrigin);
  const proxy = new PhaseProxy(origin.peer());
  const cairn = await startCairn(t, proxy, { h2c: true });
  const client = h2Connect(t, cairn.url);

  const r2 = await h2Request(client, {
    ':path': '/a?b=1',
    ':authority': 'example.test:8443',
    'x-custom': 'one',
  });
  assert.equal(r2.status, 200);
  const seen2 = JSON.parse(r2.body.toString()) as {
    headers: Record<string, string>;
    url: string;
    httpVersion: string;
  };
  // :authority became Host; no pseudo-header reached the origin; the origin spoke HTTP/1.1.
  assert.equal(seen2.headers.host, 'example.test:8443');
  assert.equal(seen2.url, '/a?b=1');
  assert.equal(seen2.headers['x-custom'], 'one');
  assert.equal(seen2.httpVersion, '1.1');
  assert.ok(
    Object.keys(seen2.headers).every((name) => !name.startsWith(':')),
    JSON.stringify(seen2.headers),
  );
  // The origin's connection-specific fields did not make it onto the HTTP/2 response.
  for (const name of CONNECTION_SPECIFIC) assert.equal(r2.headers[name], undefined, name);
  assert.equal(r2.headers['x-phase'], 'response');
  assert.equal(r2.headers['x-origin'], 'yes');

  const r1 = await httpRequest(`${cairn.url}/a?b=1`, { headers: { host: 'example.test:8443' } });
  assert.equal(r1.status, 200);
  assert.equal(r1.headers['x-phase'], 'response');

  // requestFilter answers for both protocols; on HTTP/2 its `connection: close` is dropped.
  const denied2 = await h2Request(client, { ':path': '/forbidden', ':authority': 'example.test' });
  assert.equal(denied2.status, 403);
  assert.equal(denied2.headers.connection, undefined);
  assert.equal(denied2.body.toString(), 'no\n');
  const denied1 = await httpRequest(`${cairn.url}/forbidden`);
  assert.equal(denied1.status, 403);

  assert.deepEqual(proxy.seen, [
    '2.0 GET /a?b=1 host=example.test:8443',
    '1.1 GET /a?b=1 host=example.test:8443',
    '2.0 GET /forbidden host=example.test',
    `1.1 GET /forbidden host=127.0.0.1:${cairn.port}`,
  ]);
  assert.equal(origin.requests, 2);
});

test('h2c: a request body without content-length is forwarded; trailers come back as HTTP/2 trailers', async (t) => {
  const origin = await startOrigin(t, echoOrigin);
  const cairn = await startCairn(t, new PhaseProxy(origin.peer()), { h2c: true });
  const client = h2Connect(t, cairn.url);

  const body = Buffer.alloc(300_000, 7);
  const posted = await h2Request(
    client,
    { ':method': 'POST', ':path': '/upload', 'content-type': 'application/octet-stream' },
    body,
  );
  assert.equal(posted.status, 200);
  const seen = JSON.parse(posted.body.toString()) as { bodyLength: number; method: string };
  assert.equal(seen.method, 'POST');
  assert.equal(seen.bodyLength, body.length);

  const withTrailers = await h2Request(client, { ':path': '/trailers' });
  assert.equal(withTrailers.status, 200);
  assert.equal(withTrailers.trailers['x-checksum'], 'abc123');
  for (const name of [...CONNECTION_SPECIFIC, 'trailer']) {
    if (name === 'trailer') continue; // `Trailer` is end-to-end and may stay
    assert.equal(withTrailers.headers[name], undefined, name);
  }
});

test('TLS: h2 and http/1.1 by ALPN on one port, with the same phases and x-forwarded-proto https', async (t) => {
  const ca = await makeCa(t);
  const cert = await ca.issue(['proxy.test', '127.0.0.1']);
  const origin = await startOrigin(t, echoOrigin);
  const proxy = new PhaseProxy(origin.peer());
  const cairn = await startCairn(t, proxy, { tls: { cert: cert.cert, key: cert.key } });
  const url = `https://127.0.0.1:${cairn.port}`;

  const client = h2Connect(t, url, { ca: ca.cert, servername: 'proxy.test' });
  const r2 = await h2Request(client, { ':path': '/secure', ':authority': 'proxy.test' });
  assert.equal(client.alpnProtocol, 'h2');
  assert.equal(r2.status, 200);
  const seen2 = JSON.parse(r2.body.toString()) as { headers: Record<string, string> };
  assert.equal(seen2.headers['x-forwarded-proto'], 'https');
  assert.equal(seen2.headers.host, 'proxy.test');

  const r1 = await new Promise<{ status: number; alpn: string | false | null; body: string }>(
    (resolve, reject) => {
      const req = httpsRequest(
        `${url}/secure`,
        { ca: ca.cert, servername: 'proxy.test', agent: false, headers: { host: 'proxy.test' } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              alpn: (res.socket as import('node:tls').TLSSocket).alpnProtocol,
              body: text,
            }),
          );
        },
      );
      req.on('error', reject);
      req.end();
    },
  );
  assert.equal(r1.status, 200);
  assert.equal(r1.alpn, false); // node:https offers no ALPN: the listener falls back to HTTP/1.1
  assert.equal(
    (JSON.parse(r1.body) as { headers: Record<string, string> }).headers['x-forwarded-proto'],
    'https',
  );
  assert.deepEqual(proxy.seen, ['2.0 GET /secure host=proxy.test', '1.1 GET /secure host=proxy.test']);
});

test('HTTP/2 limits: the stream limit is advertised and enforced', async (t) => {
  const held: ServerResponse[] = [];
  const origin = await startOrigin(t, (req, res) => {
    held.push(res);
    req.resume();
  });
  t.after(() => {
    for (const res of held) res.destroy();
  });
  const cairn = await startCairn(t, new PhaseProxy(origin.peer()), {
    h2c: true,
    http2: { maxConcurrentStreams: 3 },
  });
  const client = h2Connect(t, cairn.url);
  await once(client, 'remoteSettings');
  assert.equal(client.remoteSettings.maxConcurrentStreams, 3);
  // Node's client queues streams over the peer's limit; a raw flood is refused instead (below).
  const streams = [0, 1, 2].map(() => client.request({ ':path': '/hold' }));
  for (const s of streams) s.on('error', () => undefined);
  while (held.length < 3) await once(origin.server, 'request');
  assert.equal(held.length, 3);
  // A fourth stream on a raw connection that ignores the limit is refused (RST_STREAM REFUSED_STREAM
  // or PROTOCOL_ERROR), never proxied.
  const raw = await rawH2(cairn.port);
  t.after(() => raw.destroy());
  for (let id = 1; id <= 9; id += 2) raw.write(headersFrame(id, true));
  // Streams 7 and 9 are over the limit: reset (REFUSED_STREAM), never proxied.
  const seen = await raw.waitFor((frames) => frames.filter((f) => f.type === 3).length >= 2);
  const reset = seen.filter((f) => f.type === 3).map((f) => f.stream);
  assert.deepEqual(reset.sort(), [7, 9]);
  // The three within the limit do reach the origin.
  while (held.length < 6) await once(origin.server, 'request');
  assert.equal(held.length, 6);
});

test('rapid reset: a client that cancels stream after stream gets GOAWAY(ENHANCE_YOUR_CALM); the server stays up', async (t) => {
  const held: ServerResponse[] = [];
  const origin = await startOrigin(t, (req, res) => {
    held.push(res);
    req.resume();
  });
  t.after(() => {
    for (const res of held) res.destroy();
  });
  const cairn = await startCairn(t, new PhaseProxy(origin.peer()), { h2c: true, http2: { maxResets: 50 } });
  const raw = await rawH2(cairn.port);
  t.after(() => raw.destroy());
  // HEADERS then RST_STREAM(CANCEL) right away, 1000 times, written in one go: CVE-2023-44487.
  const frames: Buffer[] = [];
  for (let i = 0; i < 1000; i++) {
    const id = 1 + 2 * i;
    frames.push(headersFrame(id, true), frame(3, 0, id, u32(NGHTTP2_CANCEL)));
  }
  raw.write(Buffer.concat(frames));
  const seen = await raw.waitFor((f) => f.some((x) => x.type === 7));
  const goaway = seen.find((f) => f.type === 7);
  assert.ok(goaway !== undefined);
  assert.equal(goaway.payload.readUInt32BE(4), NGHTTP2_ENHANCE_YOUR_CALM);
  await raw.closed;
  // Fewer than all of the streams got anywhere near the origin, and the proxy still serves.
  assert.ok(held.length < 1000, `${held.length} reached the origin`);
  const fresh = h2Connect(t, cairn.url);
  const ok = await h2Request(fresh, { ':path': '/forbidden' });
  assert.equal(ok.status, 403);
});

test('header floods: too many fields are reset, endless CONTINUATION closes the connection; the server stays up', async (t) => {
  const origin = await startOrigin(t, echoOrigin);
  const cairn = await startCairn(t, new PhaseProxy(origin.peer()), {
    h2c: true,
    limits: { maxHeadersCount: 20, maxHeaderSize: 4096 },
  });

  // 60 fields: over maxHeadersCount.
  const client = h2Connect(t, cairn.url);
  const many: OutgoingHttpHeaders = { ':path': '/many' };
  for (let i = 0; i < 60; i++) many[`x-h-${i}`] = 'v';
  const outcome = await h2Request(client, many).then(
    (r) => `status ${r.status}`,
    (error: NodeJS.ErrnoException) => `error ${error.code ?? ''}`,
  );
  // nghttp2 refuses the header block (maxHeaderListPairs) with RST_STREAM before any phase runs.
  assert.equal(outcome, 'error ERR_HTTP2_STREAM_ERROR');

  // One header block split over 10000 CONTINUATION frames, never ending (CVE-2024-27983 class).
  const raw = await rawH2(cairn.port);
  t.after(() => raw.destroy());
  const flood: Buffer[] = [frame(1, 0x1 /* END_STREAM, no END_HEADERS */, 1, hpackRequest('/flood'))];
  const junk = hpackLiteral('x-junk', 'y'.repeat(100));
  for (let i = 0; i < 10_000; i++) flood.push(frame(9, 0, 1, junk));
  raw.write(Buffer.concat(flood));
  await raw.closed;
  assert.ok(
    raw.frames.some((f) => f.type === 7),
    'the connection was closed with GOAWAY, not left reading CONTINUATION frames',
  );
  assert.equal(origin.requests, 0, 'nothing of either flood reached the origin');

  const fresh = h2Connect(t, cairn.url);
  const ok = await h2Request(fresh, { ':path': '/after' });
  assert.equal(ok.status, 200);
});

// ---- a raw HTTP/2 connection, for what a well-behaved client library will not send ----------------

interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

interface RawH2 {
  frames: Frame[];
  write(data: Buffer): void;
  waitFor(predicate: (frames: Frame[]) => boolean): Promise<Frame[]>;
  closed: Promise<void>;
  destroy(): void;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** HPACK "literal header field without indexing — new name" (RFC 7541 §6.2.2), no Huffman. */
function hpackLiteral(name: string, value: string): Buffer {
  const n = Buffer.from(name);
  const v = Buffer.from(value);
  return Buffer.concat([Buffer.from([0x00]), hpackLength(n.length), n, hpackLength(v.length), v]);
}

function hpackLength(n: number): Buffer {
  if (n < 127) return Buffer.from([n]);
  const out = [127];
  let rest = n - 127;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return Buffer.from(out);
}

function hpackRequest(path: string): Buffer {
  // Indexed :method GET (2), :scheme http (6); literal :path and :authority.
  return Buffer.concat([
    Buffer.from([0x82, 0x86]),
    hpackLiteral(':path', path),
    hpackLiteral(':authority', 'raw.test'),
  ]);
}

function headersFrame(stream: number, endStream: boolean): Buffer {
  return frame(1, 0x4 | (endStream ? 0x1 : 0), stream, hpackRequest('/raw'));
}

async function rawH2(port: number): Promise<RawH2> {
  const socket = netConnect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'));
  socket.write(frame(4, 0, 0, Buffer.alloc(0)));
  const frames: Frame[] = [];
  let buffered = Buffer.alloc(0);
  const waiters: (() => void)[] = [];
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 9) {
      const length = buffered.readUIntBE(0, 3);
      if (buffered.length < 9 + length) break;
      const f: Frame = {
        type: buffered[3] ?? 0,
        flags: buffered[4] ?? 0,
        stream: buffered.readUInt32BE(5) & 0x7fffffff,
        payload: buffered.subarray(9, 9 + length),
      };
      buffered = buffered.subarray(9 + length);
      frames.push(f);
      // Acknowledge the server's SETTINGS so it does not wait on us.
      if (f.type === 4 && (f.flags & 1) === 0 && !socket.destroyed)
        socket.write(frame(4, 1, 0, Buffer.alloc(0)));
    }
    for (const w of waiters.splice(0)) w();
  });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  void closed.then(() => {
    for (const w of waiters.splice(0)) w();
  });
  return {
    frames,
    write: (data) => {
      if (!socket.destroyed) socket.write(data);
    },
    waitFor: async (predicate) => {
      for (;;) {
        if (predicate(frames)) return frames;
        if (socket.destroyed)
          throw new Error(`connection closed; frames seen: ${frames.map((f) => f.type).join(',')}`);
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
    closed,
    destroy: () => socket.destroy(),
  };
}
