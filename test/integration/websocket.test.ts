/**
 * WebSocket (and any `Upgrade`) over HTTP/1.1, with the `ws` package on both ends: the request
 * phases run first (auth, routing), bytes flow both ways after the origin's 101 and not before,
 * close codes and abrupt closes propagate in both directions, a refused upgrade is forwarded as a
 * normal response, and an idle tunnel is closed after the configured timeout.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import type { RawData } from 'ws';
import { HttpPeer, ProxyHttp } from '../../src/index.ts';
import type { CairnError, ResponseHead, Session } from '../../src/index.ts';
import { makeCa } from '../helpers/certs.ts';
import { RawClient, httpRequest, startCairn } from '../helpers/servers.ts';
import type { Cleanup } from '../helpers/servers.ts';

interface WsOrigin {
  readonly server: WebSocketServer;
  readonly url: string;
  readonly peer: HttpPeer;
  /** Upgrade requests the origin saw (path and selected headers). */
  readonly upgrades: { path: string; auth: string | undefined; via: string | undefined }[];
}

/** A text message's payload (`ws` hands out a Buffer, or Buffer[] / ArrayBuffer by binaryType). */
function text(data: RawData): string {
  return Array.isArray(data) ? Buffer.concat(data).toString() : Buffer.from(data as ArrayBuffer).toString();
}

/** A `ws` origin that echoes every message back, prefixed with its name. */
async function startWsOrigin(t: Cleanup, name: string): Promise<WsOrigin> {
  const upgrades: WsOrigin['upgrades'] = [];
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  server.on('connection', (socket, req) => {
    upgrades.push({
      path: req.url ?? '',
      auth: req.headers.authorization,
      via: req.headers.via,
    });
    socket.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) socket.send(data, { binary: true });
      else socket.send(`${name}: ${text(data)}`);
    });
  });
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const client of server.clients) client.terminate();
        server.close(() => resolve());
      }),
  );
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    peer: new HttpPeer(`http://127.0.0.1:${port}`),
    upgrades,
  };
}

/** Requires `Authorization`, routes /b/* to the second origin, and tags the 101. */
class WsProxy extends ProxyHttp {
  readonly a: HttpPeer;
  readonly b: HttpPeer;
  readonly logged: { path: string; status: number; err: string | undefined }[] = [];
  constructor(a: HttpPeer, b: HttpPeer) {
    super();
    this.a = a;
    this.b = b;
  }
  override requestFilter(session: Session): boolean {
    if (session.headers.authorization !== 'Bearer ok') {
      session.respond(401, { 'www-authenticate': 'Bearer', 'content-type': 'text/plain' }, 'login first\n');
      return true;
    }
    return false;
  }
  override upstreamPeer(session: Session): HttpPeer {
    return session.path.startsWith('/b/') ? this.b : this.a;
  }
  override responseFilter(_session: Session, response: ResponseHead): void {
    response.headers['x-proxied'] = 'cairn';
  }
  override logging(session: Session, error: CairnError | undefined, ctx: Record<string, never>): void {
    this.logged.push({ path: session.path, status: session.status, err: error?.code });
    void super.logging(session, error, ctx);
  }
}

function open(
  t: Cleanup,
  url: string,
  headers: Record<string, string> = { authorization: 'Bearer ok' },
): WebSocket {
  const ws = new WebSocket(url, { headers });
  ws.on('error', () => undefined);
  t.after(() => ws.terminate());
  return ws;
}

async function nextMessage(ws: WebSocket): Promise<{ data: Buffer; binary: boolean }> {
  const [data, binary] = (await once(ws, 'message')) as [Buffer, boolean];
  return { data, binary };
}

test('the request phases run (auth, routing), then messages flow both ways', async (t) => {
  const a = await startWsOrigin(t, 'a');
  const b = await startWsOrigin(t, 'b');
  const proxy = new WsProxy(a.peer, b.peer);
  const cairn = await startCairn(t, proxy);
  const wsUrl = cairn.url.replace('http:', 'ws:');

  // No credentials: requestFilter answers 401 and the origin never sees the request.
  const denied = open(t, `${wsUrl}/a/chat`, {});
  const [, response] = (await once(denied, 'unexpected-response')) as [unknown, { statusCode: number }];
  assert.equal(response.statusCode, 401);
  assert.equal(a.upgrades.length + b.upgrades.length, 0);

  const ws = open(t, `${wsUrl}/a/chat?room=1`);
  // ws emits 'upgrade' and 'open' in one go: listen for both before waiting.
  const upgraded = once(ws, 'upgrade') as Promise<[{ headers: Record<string, string> }]>;
  const opened = once(ws, 'open');
  const [upgradeResponse] = await upgraded;
  await opened;
  assert.equal(upgradeResponse.headers['x-proxied'], 'cairn');
  ws.send('hello');
  assert.equal(String((await nextMessage(ws)).data), 'a: hello');
  const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
  ws.send(bytes);
  const echoed = await nextMessage(ws);
  assert.equal(echoed.binary, true);
  assert.deepEqual(Buffer.from(echoed.data), bytes);
  assert.deepEqual(a.upgrades, [{ path: '/a/chat?room=1', auth: 'Bearer ok', via: '1.1 cairn' }]);

  const other = open(t, `${wsUrl}/b/feed`);
  await once(other, 'open');
  other.send('x');
  assert.equal(String((await nextMessage(other)).data), 'b: x');

  // Many messages in both directions keep their order (several may arrive in one tick: collect them).
  const got: string[] = [];
  const all = new Promise<void>((resolve) => {
    ws.on('message', (data: RawData) => {
      got.push(text(data));
      if (got.length === 200) resolve();
    });
  });
  for (let i = 0; i < 200; i++) ws.send(`m${i}`);
  await all;
  assert.deepEqual(
    got,
    Array.from({ length: 200 }, (_, i) => `a: m${i}`),
  );
});

test('close codes propagate both ways, and so do abrupt closes', async (t) => {
  const a = await startWsOrigin(t, 'a');
  const proxy = new WsProxy(a.peer, a.peer);
  const cairn = await startCairn(t, proxy);
  const wsUrl = cairn.url.replace('http:', 'ws:');

  // Client closes with a code: the origin sees it, and the client gets the origin's echo of it.
  const first = open(t, `${wsUrl}/one`);
  const [originSide] = (await once(a.server, 'connection')) as [WebSocket];
  await once(first, 'open');
  const originClosed = once(originSide, 'close');
  first.close(4001, 'bye now');
  const [code, reason] = (await originClosed) as [number, Buffer];
  assert.equal(code, 4001);
  assert.equal(String(reason), 'bye now');
  const [clientCode] = (await once(first, 'close')) as [number];
  assert.equal(clientCode, 4001);

  // The origin closes with a code.
  const second = open(t, `${wsUrl}/two`);
  const [origin2] = (await once(a.server, 'connection')) as [WebSocket];
  await once(second, 'open');
  origin2.close(4002, 'server says bye');
  const [code2, reason2] = (await once(second, 'close')) as [number, Buffer];
  assert.equal(code2, 4002);
  assert.equal(String(reason2), 'server says bye');

  // The origin drops the connection without a close frame: the client sees 1006.
  const third = open(t, `${wsUrl}/three`);
  const [origin3] = (await once(a.server, 'connection')) as [WebSocket];
  await once(third, 'open');
  origin3.terminate();
  const [code3] = (await once(third, 'close')) as [number];
  assert.equal(code3, 1006);

  // The client drops its connection: the origin sees 1006.
  const fourth = open(t, `${wsUrl}/four`);
  const [origin4] = (await once(a.server, 'connection')) as [WebSocket];
  await once(fourth, 'open');
  const origin4Closed = once(origin4, 'close');
  fourth.terminate();
  const [code4] = (await origin4Closed) as [number];
  assert.equal(code4, 1006);

  // Each tunnel was logged once, with the 101.
  for (const path of ['/one', '/two', '/three', '/four']) {
    await cairn.logs.waitFor((l) => l.msg === 'request' && l.path === path);
  }
  assert.deepEqual(proxy.logged.map((l) => `${l.path} ${l.status}`).sort(), [
    '/four 101',
    '/one 101',
    '/three 101',
    '/two 101',
  ]);
});

test('nothing the client sends reaches the origin before its 101', async (t) => {
  // A raw origin: reads the request head, waits to be told to answer, then switches protocols.
  const received: Buffer[] = [];
  let headDone!: () => void;
  const headSeen = new Promise<void>((resolve) => (headDone = resolve));
  let originSocket: Socket | undefined;
  const server = createNetServer((socket) => {
    originSocket = socket;
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      if (Buffer.concat(received).includes('\r\n\r\n')) headDone();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    originSocket?.destroy();
    server.close();
  });
  const peer = new HttpPeer(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const proxy = new WsProxy(peer, peer);
  const cairn = await startCairn(t, proxy);

  const client = await RawClient.connect(cairn.port);
  t.after(() => client.socket.destroy());
  // The request head and the client's first bytes of the new protocol, in one write.
  client.write(
    'GET /raw HTTP/1.1\r\nHost: x.test\r\nAuthorization: Bearer ok\r\nConnection: Upgrade\r\nUpgrade: cairn-test\r\n\r\nEARLY-BYTES',
  );
  await headSeen;
  // Let Cairn's event loop turn over many times (a whole request on another connection) before
  // looking: whatever it was going to forward early would have been written by now.
  assert.equal((await httpRequest(`${cairn.url}/other`)).status, 401);
  const head = Buffer.concat(received).toString('latin1');
  assert.ok(
    head.endsWith('\r\n\r\n'),
    `the origin got only the head before its 101, got: ${JSON.stringify(head)}`,
  );
  assert.match(head, /^GET \/raw HTTP\/1\.1\r\n/);
  assert.match(head, /\r\nupgrade: cairn-test\r\n/i);
  assert.match(head, /\r\nconnection: upgrade\r\n/i);

  // Now the origin switches: the early bytes follow, and the origin's bytes reach the client.
  const socket = originSocket as Socket;
  const early = new Promise<void>((resolve) => {
    const check = (): void => {
      if (Buffer.concat(received).toString('latin1').endsWith('EARLY-BYTES')) resolve();
      else socket.once('data', check);
    };
    check();
  });
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: cairn-test\r\n\r\nFROM-ORIGIN',
  );
  await early;
  await client.waitFor('FROM-ORIGIN');
  assert.match(client.text(), /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(client.text(), /\r\nx-proxied: cairn\r\n/);
});

test('an origin that does not switch protocols is answered as a normal response', async (t) => {
  const server = createNetServer((socket) => {
    socket.once('data', () => {
      socket.end(
        'HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 8\r\nConnection: close\r\n\r\nno ws!\r\n',
      );
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const peer = new HttpPeer(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const cairn = await startCairn(t, new WsProxy(peer, peer));
  const ws = open(t, `${cairn.url.replace('http:', 'ws:')}/refused`);
  const [, res] = (await once(ws, 'unexpected-response')) as [unknown, import('node:http').IncomingMessage];
  assert.equal(res.statusCode, 403);
  assert.equal(res.headers['x-proxied'], 'cairn');
  let body = '';
  for await (const chunk of res) body += String(chunk);
  assert.equal(body, 'no ws!\r\n');
});

test('an origin that cannot be reached gets the client a 502, logged with its code', async (t) => {
  const gone = createNetServer();
  gone.listen(0, '127.0.0.1');
  await once(gone, 'listening');
  const port = (gone.address() as AddressInfo).port;
  await new Promise<void>((resolve) => gone.close(() => resolve()));
  const peer = new HttpPeer(`http://127.0.0.1:${port}`);
  const proxy = new WsProxy(peer, peer);
  const cairn = await startCairn(t, proxy);
  const ws = open(t, `${cairn.url.replace('http:', 'ws:')}/down`);
  const [, res] = (await once(ws, 'unexpected-response')) as [unknown, { statusCode: number }];
  assert.equal(res.statusCode, 502);
  const line = await cairn.logs.waitFor((l) => l.msg === 'request' && l.path === '/down');
  assert.equal(line.err, 'CAIRN_ERR_UPSTREAM_CONNECT');
  assert.equal(line.status, 502);
  assert.deepEqual(proxy.logged, [{ path: '/down', status: 502, err: 'CAIRN_ERR_UPSTREAM_CONNECT' }]);
});

test('an idle tunnel is closed after upgrade.idleTimeout, on both sides', async (t) => {
  const a = await startWsOrigin(t, 'a');
  const proxy = new WsProxy(a.peer, a.peer);
  const cairn = await startCairn(t, proxy, { upgrade: { idleTimeout: 300 } });
  const ws = open(t, `${cairn.url.replace('http:', 'ws:')}/idle`);
  const [originSide] = (await once(a.server, 'connection')) as [WebSocket];
  await once(ws, 'open');
  ws.send('still here');
  await nextMessage(ws);
  // Then nothing: both ends are closed by the proxy (abruptly: 1006).
  const [[clientCode], [originCode]] = (await Promise.all([
    once(ws, 'close'),
    once(originSide, 'close'),
  ])) as [[number], [number]];
  assert.equal(clientCode, 1006);
  assert.equal(originCode, 1006);
  const line = await cairn.logs.waitFor((l) => l.msg === 'request' && l.path === '/idle');
  assert.equal(line.err, 'CAIRN_ERR_UPGRADE_IDLE_TIMEOUT');
  assert.equal(line.status, 101);
});

test('wss: a WebSocket over the TLS listener (HTTP/1.1 by ALPN) is tunnelled the same way', async (t) => {
  const ca = await makeCa(t);
  const cert = await ca.issue(['ws.test', '127.0.0.1']);
  const a = await startWsOrigin(t, 'a');
  const cairn = await startCairn(t, new WsProxy(a.peer, a.peer), { tls: { cert: cert.cert, key: cert.key } });
  const ws = new WebSocket(`wss://127.0.0.1:${cairn.port}/secure`, {
    headers: { authorization: 'Bearer ok' },
    ca: ca.cert,
  });
  ws.on('error', () => undefined);
  t.after(() => ws.terminate());
  await once(ws, 'open');
  ws.send('over tls');
  assert.equal(text((await nextMessage(ws)).data), 'a: over tls');
  assert.equal(a.upgrades.at(-1)?.path, '/secure');
});
