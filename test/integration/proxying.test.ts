/**
 * HTTP/1.1 proxying over real sockets: hop-by-hop fields (RFC 9110 §7.6.1), Via and the forwarding
 * fields, Host, bodiless responses, chunked bodies both ways, trailers, and client aborts reaching
 * the origin. Byte-level checks use a raw `net` client or origin.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ProxyHttp } from '../../src/index.ts';
import type { HttpPeer, ProxyHttpOptions } from '../../src/index.ts';
import {
  RawClient,
  httpRequest,
  rawRequest,
  startCairn,
  startOrigin,
  startRawOrigin,
} from '../helpers/servers.ts';
import type { Cleanup } from '../helpers/servers.ts';

const LIMIT = { timeout: 15_000 };

/** The smallest proxy: one peer. */
class ToPeer extends ProxyHttp {
  readonly #peer: HttpPeer;
  constructor(peer: HttpPeer, options?: ProxyHttpOptions) {
    super(options);
    this.#peer = peer;
  }
  override upstreamPeer(): HttpPeer {
    return this.#peer;
  }
}

interface Echo {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  body: string;
}

/** An origin that answers every request with a JSON echo of what it received. */
async function echoOrigin(t: Cleanup): ReturnType<typeof startOrigin> {
  return startOrigin(t, (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const echo: Echo = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks).toString(),
      };
      const body = JSON.stringify(echo);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
}

function parseEcho(body: Buffer): Echo {
  return JSON.parse(body.toString()) as Echo;
}

/** The head of a raw response (status line + fields), lower-cased names. */
function rawHead(text: string): { status: string; fields: Map<string, string[]> } {
  const end = text.indexOf('\r\n\r\n');
  const lines = text.slice(0, end).split('\r\n');
  const fields = new Map<string, string[]>();
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    const name = line.slice(0, i).toLowerCase();
    fields.set(name, [...(fields.get(name) ?? []), line.slice(i + 1).trim()]);
  }
  return { status: lines[0] ?? '', fields };
}

test(
  'hop-by-hop request fields are not forwarded, including every field named in Connection',
  LIMIT,
  async (t) => {
    const origin = await echoOrigin(t);
    const cairn = await startCairn(t, new ToPeer(origin.peer()));

    const text = await rawRequest(
      cairn.port,
      'GET /hop HTTP/1.1\r\nHost: example.test\r\n' +
        'Connection: close, X-Secret, x-other-secret\r\n' +
        'X-Secret: 1\r\nX-Other-Secret: 2\r\n' +
        'Keep-Alive: timeout=99\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n' +
        'X-End-To-End: kept\r\n\r\n',
    );
    const echo = parseEcho(Buffer.from(text.slice(text.indexOf('\r\n\r\n') + 4), 'latin1'));

    assert.equal(echo.headers['x-end-to-end'], 'kept');
    for (const name of ['x-secret', 'x-other-secret', 'keep-alive', 'proxy-connection', 'te']) {
      assert.equal(echo.headers[name], undefined, `${name} must not reach the origin`);
    }
    // undici may open its own connection semantics, but never with the client's tokens.
    assert.doesNotMatch(String(echo.headers.connection ?? ''), /secret/i);
  },
);

test(
  'hop-by-hop response fields are not forwarded, including every field named in Connection',
  LIMIT,
  async (t) => {
    const origin = await startRawOrigin(t, (socket) => {
      let seen = '';
      socket.on('data', (chunk: Buffer) => {
        seen += chunk.toString('latin1');
        if (!seen.includes('\r\n\r\n')) return;
        seen = '';
        socket.write(
          'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n' +
            'Connection: X-Origin-Secret\r\nX-Origin-Secret: s\r\n' +
            'Keep-Alive: timeout=99\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\n' +
            'X-Kept: yes\r\n\r\nok',
        );
      });
    });
    const cairn = await startCairn(t, new ToPeer(origin.peer()));

    const text = await rawRequest(cairn.port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    const head = rawHead(text);

    assert.match(head.status, /^HTTP\/1\.1 200 /);
    assert.deepEqual(head.fields.get('x-kept'), ['yes']);
    for (const name of ['x-origin-secret', 'keep-alive', 'proxy-connection', 'upgrade']) {
      assert.equal(head.fields.get(name), undefined, `${name} must not reach the client`);
    }
    // The only Connection field is Node's own for this hop.
    assert.deepEqual(head.fields.get('connection'), ['close']);
    assert.ok(text.endsWith('\r\n\r\nok'));
  },
);

test('Via is appended both ways; X-Forwarded-For/-Proto/-Host are set; Host is kept', LIMIT, async (t) => {
  const origin = await startOrigin(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', via: '1.1 origin-cache' });
    res.end(JSON.stringify({ headers: req.headers }));
  });
  const cairn = await startCairn(t, new ToPeer(origin.peer()));

  const res = await httpRequest(`${cairn.url}/fwd`, {
    headers: { host: 'example.test', via: '1.0 fred', 'x-forwarded-for': '203.0.113.9' },
  });
  const seen = (JSON.parse(res.body.toString()) as { headers: IncomingMessage['headers'] }).headers;

  assert.equal(seen.host, 'example.test');
  assert.equal(seen.via, '1.0 fred, 1.1 cairn');
  assert.equal(seen['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
  assert.equal(seen['x-forwarded-proto'], 'http');
  assert.equal(seen['x-forwarded-host'], 'example.test');
  assert.equal(seen.forwarded, undefined, 'Forwarded is off by default');
  assert.equal(res.headers.via, '1.1 origin-cache, 1.1 cairn');
});

test(
  'Forwarded (RFC 7239) is appended when enabled; Via and X-Forwarded can be turned off',
  LIMIT,
  async (t) => {
    const origin = await echoOrigin(t);
    const cairn = await startCairn(
      t,
      new ToPeer(origin.peer(), { forwarding: { forwarded: true, xForwarded: false, via: false } }),
    );

    const res = await httpRequest(`${cairn.url}/`, {
      headers: { host: 'example.test', forwarded: 'for=198.51.100.7' },
    });
    const echo = parseEcho(res.body);

    assert.equal(echo.headers.forwarded, 'for=198.51.100.7, for=127.0.0.1;proto=http;host="example.test"');
    assert.equal(echo.headers['x-forwarded-for'], undefined);
    assert.equal(echo.headers.via, undefined);
    assert.equal(res.headers.via, undefined);
  },
);

test(
  "HttpPeer hostHeader 'peer' sends the origin's own host:port; a string sends that value",
  LIMIT,
  async (t) => {
    const origin = await echoOrigin(t);
    const byPeer = await startCairn(t, new ToPeer(origin.peer({ hostHeader: 'peer' })));
    const fixed = await startCairn(t, new ToPeer(origin.peer({ hostHeader: 'origin.internal' })));

    const a = parseEcho((await httpRequest(`${byPeer.url}/`, { headers: { host: 'example.test' } })).body);
    const b = parseEcho((await httpRequest(`${fixed.url}/`, { headers: { host: 'example.test' } })).body);

    assert.equal(a.headers.host, `127.0.0.1:${origin.port}`);
    assert.equal(a.headers['x-forwarded-host'], 'example.test');
    assert.equal(b.headers.host, 'origin.internal');
  },
);

test(
  'HEAD, 204 and 304 carry no body, and the client connection stays usable after each',
  LIMIT,
  async (t) => {
    const origin = await startOrigin(t, (req, res) => {
      if (req.url === '/head') {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
        res.end();
      } else if (req.url === '/204') {
        res.writeHead(204, { 'x-kind': 'no-content' });
        res.end();
      } else if (req.url === '/304') {
        res.writeHead(304, { etag: '"v1"' });
        res.end();
      } else {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '4' });
        res.end('last');
      }
    });
    const cairn = await startCairn(t, new ToPeer(origin.peer()));
    const client = await RawClient.connect(cairn.port);
    t.after(() => client.destroy());

    client.write(
      'HEAD /head HTTP/1.1\r\nHost: a\r\n\r\n' +
        'GET /204 HTTP/1.1\r\nHost: a\r\n\r\n' +
        'GET /304 HTTP/1.1\r\nHost: a\r\nIf-None-Match: "v1"\r\n\r\n' +
        'GET /last HTTP/1.1\r\nHost: a\r\n\r\n',
    );
    const text = await client.waitFor('\r\n\r\nlast');
    // Split into the four responses: each starts with a status line.
    const responses = text.split(/(?=HTTP\/1\.1 \d{3} )/);

    assert.equal(responses.length, 4, text);
    assert.match(responses[0]!, /^HTTP\/1\.1 200 /);
    assert.deepEqual(rawHead(responses[0]!).fields.get('content-length'), ['1000']);
    assert.ok(responses[0]!.endsWith('\r\n\r\n'), 'HEAD: no body');
    assert.match(responses[1]!, /^HTTP\/1\.1 204 /);
    assert.deepEqual(rawHead(responses[1]!).fields.get('x-kind'), ['no-content']);
    assert.ok(responses[1]!.endsWith('\r\n\r\n'), '204: no body');
    assert.match(responses[2]!, /^HTTP\/1\.1 304 /);
    assert.deepEqual(rawHead(responses[2]!).fields.get('etag'), ['"v1"']);
    assert.ok(responses[2]!.endsWith('\r\n\r\n'), '304: no body');
    assert.match(responses[3]!, /^HTTP\/1\.1 200 /);
    assert.equal(origin.requests, 4);
  },
);

test(
  'a chunked request body reaches the origin whole; a chunked response reaches the client whole',
  LIMIT,
  async (t) => {
    let firstData!: () => void;
    const originGotData = new Promise<void>((resolve) => {
      firstData = resolve;
    });
    const origin = await startOrigin(t, (req, res) => {
      const chunks: Buffer[] = [];
      req.once('data', () => firstData());
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        res.writeHead(200, {
          'content-type': 'text/plain',
          'x-te': String(req.headers['transfer-encoding']),
        });
        // Several writes without a length: chunked to Cairn.
        for (const part of body.split(',')) res.write(`${part.toUpperCase()};`);
        res.end();
      });
    });
    const cairn = await startCairn(t, new ToPeer(origin.peer()));

    const client = await RawClient.connect(cairn.port);
    client.write(
      'POST /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nalph\r\n',
    );
    // The rest only once the origin is reading: the body is streamed, not gathered first.
    await originGotData;
    client.write('6\r\na,beta\r\n6\r\n,gamma\r\n0\r\n\r\n');
    await client.closed;
    const text = client.text();
    const head = rawHead(text);
    const body = text.slice(text.indexOf('\r\n\r\n') + 4);

    assert.match(head.status, /^HTTP\/1\.1 200 /);
    assert.deepEqual(head.fields.get('x-te'), ['chunked']);
    assert.deepEqual(head.fields.get('transfer-encoding'), ['chunked']);
    assert.equal(head.fields.get('content-length'), undefined);
    // Decode the chunked body.
    let decoded = '';
    let rest = body;
    for (;;) {
      const nl = rest.indexOf('\r\n');
      const size = parseInt(rest.slice(0, nl), 16);
      if (size === 0) break;
      decoded += rest.slice(nl + 2, nl + 2 + size);
      rest = rest.slice(nl + 2 + size + 2);
    }
    assert.equal(decoded, 'ALPHA;BETA;GAMMA;');
    assert.ok(body.endsWith('0\r\n\r\n'), 'the chunked body is terminated');
  },
);

test('trailers from the origin reach the client', LIMIT, async (t) => {
  const origin = await startOrigin(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum, x-status' });
    res.write('body');
    res.addTrailers({ 'x-checksum': 'deadbeef', 'x-status': '0' });
    res.end();
  });
  const cairn = await startCairn(t, new ToPeer(origin.peer()));

  const res = await httpRequest(`${cairn.url}/`, { headers: { te: 'trailers' } });

  assert.equal(res.body.toString(), 'body');
  assert.equal(res.headers.trailer, 'x-checksum, x-status');
  assert.deepEqual(res.trailers, { 'x-checksum': 'deadbeef', 'x-status': '0' });
});

test('a streamed body reaches the client as it arrives, not held for the end', LIMIT, async (t) => {
  // The origin sends its second part only once the client has the first: a proxy that held
  // chunks back (to batch writes) until the body ended would stall here until the test timed out.
  let clientHasFirst!: () => void;
  const firstSeen = new Promise<void>((resolve) => {
    clientHasFirst = resolve;
  });
  const origin = await startOrigin(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: one\n\n');
    void firstSeen.then(() => res.end('data: two\n\n'));
  });
  const cairn = await startCairn(t, new ToPeer(origin.peer()));
  const client = await RawClient.connect(cairn.port);

  client.write('GET /events HTTP/1.1\r\nHost: a\r\n\r\n');
  await client.waitFor((s) => s.includes('data: one'));
  assert.ok(!client.bytes().toString().includes('data: two'), 'the origin has not sent the second part yet');
  clientHasFirst();
  const whole = await client.waitFor((s) => s.includes('0\r\n\r\n'));
  assert.match(whole, /data: one\n\n[\s\S]*data: two\n\n/);
  client.destroy();
});

test('a client abort mid-download cancels the origin request', LIMIT, async (t) => {
  let closedEarly!: (early: boolean) => void;
  const originClosed = new Promise<boolean>((resolve) => {
    closedEarly = resolve;
  });
  const block = Buffer.alloc(64 * 1024, 0x61);
  const origin = await startOrigin(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    // An endless body, written as fast as the proxy takes it.
    const pump = (): void => {
      while (!res.destroyed && res.write(block));
    };
    res.on('drain', pump);
    res.on('close', () => closedEarly(!res.writableFinished));
    pump();
  });
  const cairn = await startCairn(t, new ToPeer(origin.peer()));
  const client = await RawClient.connect(cairn.port);

  client.write('GET /endless HTTP/1.1\r\nHost: a\r\n\r\n');
  await client.waitFor((s) => s.length > 256 * 1024);
  client.destroy();

  assert.equal(await originClosed, true, 'the origin saw its response closed before it ended');
  const line = await cairn.logs.waitFor((l) => l.msg === 'request');
  assert.equal(line.err, 'CAIRN_ERR_DOWNSTREAM_CLOSED');
  assert.equal(line.errSource, 'downstream');
});

test('a client abort mid-upload cancels the origin request', LIMIT, async (t) => {
  let gotData!: () => void;
  const originGotData = new Promise<void>((resolve) => {
    gotData = resolve;
  });
  let closed!: (complete: boolean) => void;
  const originClosed = new Promise<boolean>((resolve) => {
    closed = resolve;
  });
  const origin = await startOrigin(t, (req) => {
    req.once('data', () => gotData());
    req.resume();
    req.on('close', () => closed(req.complete));
  });
  const cairn = await startCairn(t, new ToPeer(origin.peer()));
  const client = await RawClient.connect(cairn.port);

  client.write('PUT /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n');
  client.write(Buffer.alloc(64 * 1024, 0x62));
  await originGotData;
  client.destroy();

  assert.equal(await originClosed, false, 'the origin saw its request end incomplete');
  const line = await cairn.logs.waitFor((l) => l.msg === 'request');
  assert.equal(line.err, 'CAIRN_ERR_DOWNSTREAM_BODY');
  assert.equal(line.errSource, 'downstream', 'the client left: not an origin failure');
  assert.equal(line.status, 0);
});

test(
  'Expect: 100-continue through to an origin: body sent after 100, Expect not forwarded',
  LIMIT,
  async (t) => {
    const origin = await echoOrigin(t);
    const cairn = await startCairn(t, new ToPeer(origin.peer()));
    const client = await RawClient.connect(cairn.port);
    t.after(() => client.destroy());

    client.write('POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    await client.waitFor('HTTP/1.1 100 Continue\r\n\r\n');
    client.write('hello');
    const text = await client.waitFor((s) => s.includes('"body":"hello"'));

    assert.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    const echo = parseEcho(Buffer.from(text.slice(text.lastIndexOf('\r\n\r\n') + 4), 'latin1'));
    assert.equal(echo.headers.expect, undefined);
    assert.equal(echo.headers['content-length'], '5');
  },
);
