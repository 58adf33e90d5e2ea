/**
 * Bad input never crashes the process and never reaches the origin: each case is raw bytes over a
 * `net` socket, and asserts the status, that Cairn closed the connection, that the origin received
 * not one byte, that the refusal was counted, and that a good request still works afterwards.
 * Then the other direction: an origin that answers with garbage gives the client a 502.
 */
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { ReverseProxy } from '../../hooks/index.ts';
import type { Cairn, Cleanup, RawOrigin } from '../helpers/servers.ts';
import { RawClient, httpRequest, startCairn, startOrigin, startRawOrigin } from '../helpers/servers.ts';

const CRLF = '\r\n';
const MAX_HEADERS = 20;

interface BadCase {
  readonly name: string;
  readonly bytes: string;
  readonly status: number;
}

const head = (lines: readonly string[]): string => `${lines.join(CRLF)}${CRLF}${CRLF}`;
const post = (framing: readonly string[], body: string): string =>
  head(['POST /upload HTTP/1.1', 'Host: example.test', ...framing]) + body;

const CASES: readonly BadCase[] = [
  // ---- request line
  { name: 'request line with an extra token', bytes: head(['GET / HTTP/1.1 extra', 'Host: a']), status: 400 },
  { name: 'request line that is not HTTP at all', bytes: head(['HELLO THERE']), status: 400 },
  { name: 'unknown HTTP/1.2 version', bytes: head(['GET / HTTP/1.2', 'Host: a']), status: 400 },
  { name: 'HTTP/0.9 request line (no version)', bytes: 'GET /\r\n\r\n', status: 400 },
  {
    name: 'HTTP/2.0 request line on an HTTP/1 listener',
    bytes: head(['GET / HTTP/2.0', 'Host: a']),
    status: 505,
  },
  { name: 'lower-case method', bytes: head(['get / HTTP/1.1', 'Host: a']), status: 400 },
  { name: 'target without a leading slash', bytes: head(['GET foo HTTP/1.1', 'Host: a']), status: 400 },
  { name: 'asterisk-form on a GET', bytes: head(['GET * HTTP/1.1', 'Host: a']), status: 400 },
  {
    name: 'absolute-form with a broken IPv6 authority',
    bytes: head(['GET http://[::1:bad/ HTTP/1.1', 'Host: a']),
    status: 400,
  },
  {
    name: 'absolute-form with a non-http scheme',
    bytes: head(['GET ftp://b.test/x HTTP/1.1', 'Host: a']),
    status: 400,
  },
  {
    name: 'absolute-form with userinfo',
    bytes: head(['GET http://user:pw@b.test/x HTTP/1.1', 'Host: a']),
    status: 400,
  },
  {
    name: 'absolute-form with an empty authority',
    bytes: head(['GET http:///x HTTP/1.1', 'Host: a']),
    status: 400,
  },
  {
    name: 'absolute-form with a space in the authority',
    bytes: head(['GET http://a b/ HTTP/1.1', 'Host: a']),
    status: 400,
  },
  // ---- header section
  {
    name: 'header line without a colon',
    bytes: head(['GET / HTTP/1.1', 'Host: a', 'NoColonHere']),
    status: 400,
  },
  { name: 'bare LF line endings', bytes: 'GET / HTTP/1.1\nHost: a\n\n', status: 400 },
  {
    name: 'bare LF inside an otherwise CRLF head',
    bytes: 'GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n',
    status: 400,
  },
  {
    name: 'obs-fold continuation line',
    bytes: head(['GET / HTTP/1.1', 'Host: a', 'X-A: b', ' c']),
    status: 400,
  },
  { name: 'whitespace before the first header', bytes: head(['GET / HTTP/1.1', ' Host: a']), status: 400 },
  {
    name: 'header name with a parenthesis',
    bytes: head(['GET / HTTP/1.1', 'Host: a', 'X(A): b']),
    status: 400,
  },
  { name: 'header name with an @', bytes: head(['GET / HTTP/1.1', 'Host: a', 'X@A: b']), status: 400 },
  { name: 'NUL in a header value', bytes: head(['GET / HTTP/1.1', 'Host: a', 'X-A: a\0b']), status: 400 },
  { name: 'bare CR in a header value', bytes: head(['GET / HTTP/1.1', 'Host: a', 'X-A: a\rb']), status: 400 },
  { name: 'missing Host on HTTP/1.1', bytes: head(['GET / HTTP/1.1', 'Accept: */*']), status: 400 },
  {
    name: 'two Host header lines',
    bytes: head(['GET / HTTP/1.1', 'Host: a.test', 'Host: b.test']),
    status: 400,
  },
  { name: 'Host value with a space', bytes: head(['GET / HTTP/1.1', 'Host: a b']), status: 400 },
  { name: 'Host value with a path', bytes: head(['GET / HTTP/1.1', 'Host: a.test/evil']), status: 400 },
  { name: 'Host value with userinfo', bytes: head(['GET / HTTP/1.1', 'Host: user@a.test']), status: 400 },
  {
    name: 'header section larger than maxHeaderSize',
    bytes: head(['GET / HTTP/1.1', 'Host: a', `X-Big: ${'a'.repeat(20_000)}`]),
    status: 431,
  },
  {
    name: 'more header fields than maxHeadersCount',
    bytes: head([
      'GET / HTTP/1.1',
      'Host: a',
      ...Array.from({ length: MAX_HEADERS + 5 }, (_, i) => `X-F${i}: v`),
    ]),
    status: 431,
  },
  // ---- message framing (request smuggling)
  {
    name: 'Content-Length with Transfer-Encoding',
    bytes: post(['Content-Length: 5', 'Transfer-Encoding: chunked'], '0\r\n\r\n'),
    status: 400,
  },
  {
    name: 'Transfer-Encoding before Content-Length',
    bytes: post(['Transfer-Encoding: chunked', 'Content-Length: 3'], '0\r\n\r\n'),
    status: 400,
  },
  {
    name: 'two differing Content-Length lines',
    bytes: post(['Content-Length: 5', 'Content-Length: 6'], 'hello!'),
    status: 400,
  },
  {
    name: 'two identical Content-Length lines',
    bytes: post(['Content-Length: 5', 'Content-Length: 5'], 'hello'),
    status: 400,
  },
  { name: 'Content-Length list "5, 6"', bytes: post(['Content-Length: 5, 6'], 'hello!'), status: 400 },
  { name: 'negative Content-Length', bytes: post(['Content-Length: -1'], ''), status: 400 },
  { name: 'Content-Length with a plus sign', bytes: post(['Content-Length: +5'], 'hello'), status: 400 },
  {
    name: 'non-hex chunk size',
    bytes: post(['Transfer-Encoding: chunked'], 'zz\r\nhello\r\n0\r\n\r\n'),
    status: 400,
  },
  {
    name: 'chunk size overflowing 64 bits',
    bytes: post(['Transfer-Encoding: chunked'], 'fffffffffffffffffff\r\nhello\r\n0\r\n\r\n'),
    status: 400,
  },
  {
    name: 'negative chunk size',
    bytes: post(['Transfer-Encoding: chunked'], '-5\r\nhello\r\n0\r\n\r\n'),
    status: 400,
  },
  {
    name: 'chunk data longer than its size',
    bytes: post(['Transfer-Encoding: chunked'], '5\r\nhelloXX\r\n0\r\n\r\n'),
    status: 400,
  },
  {
    name: 'bare LF after a chunk size',
    bytes: post(['Transfer-Encoding: chunked'], '5\nhello\n0\n\n'),
    status: 400,
  },
  {
    name: 'control character in a chunk extension',
    bytes: post(['Transfer-Encoding: chunked'], '5;a=\x01\r\nhello\r\n0\r\n\r\n'),
    status: 400,
  },
  {
    name: 'malformed trailer line',
    bytes: post(['Transfer-Encoding: chunked'], '5\r\nhello\r\n0\r\nBad Trailer\r\n\r\n'),
    status: 400,
  },
  {
    name: 'Transfer-Encoding: chunked, identity',
    bytes: post(['Transfer-Encoding: chunked, identity'], '5\r\nhello\r\n0\r\n\r\n'),
    status: 400,
  },
  {
    name: 'Transfer-Encoding: identity, chunked',
    bytes: post(['Transfer-Encoding: identity, chunked'], '5\r\nhello\r\n0\r\n\r\n'),
    status: 400,
  },
  {
    name: 'Transfer-Encoding: gzip (not chunked last)',
    bytes: post(['Transfer-Encoding: gzip'], 'hello'),
    status: 400,
  },
  {
    name: 'Transfer-Encoding: xchunked',
    bytes: post(['Transfer-Encoding: xchunked'], '5\r\nhello\r\n0\r\n\r\n'),
    status: 400,
  },
  {
    name: 'space before the colon of Transfer-Encoding',
    bytes: post(['Transfer-Encoding : chunked'], '5\r\nhello\r\n0\r\n\r\n'),
    status: 400,
  },
  {
    name: 'duplicate Transfer-Encoding: chunked lines',
    bytes: post(['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], '5\r\nhello\r\n0\r\n\r\n'),
    status: 400,
  },
  {
    name: 'Transfer-Encoding gzip then chunked on two lines',
    bytes: post(['Transfer-Encoding: gzip', 'Transfer-Encoding: chunked'], '5\r\nhello\r\n0\r\n\r\n'),
    status: 400,
  },
  {
    name: 'Transfer-Encoding in an HTTP/1.0 request',
    bytes:
      head(['POST / HTTP/1.0', 'Host: a', 'Transfer-Encoding: chunked', 'Connection: keep-alive']) +
      '5\r\nhello\r\n0\r\n\r\n',
    status: 400,
  },
  {
    name: 'request pipelined behind an ambiguous Transfer-Encoding',
    bytes:
      post(['Transfer-Encoding: identity, chunked'], '0\r\n\r\n') +
      head(['GET /smuggled HTTP/1.1', 'Host: example.test']),
    status: 400,
  },
  {
    name: 'request pipelined behind an HTTP/1.0 chunked body',
    bytes:
      head(['POST / HTTP/1.0', 'Host: a', 'Transfer-Encoding: chunked', 'Connection: keep-alive']) +
      '0\r\n\r\n' +
      head(['GET /smuggled HTTP/1.1', 'Host: example.test']),
    status: 400,
  },
  // ---- methods a reverse proxy does not serve
  {
    name: 'CONNECT',
    bytes: head(['CONNECT example.test:443 HTTP/1.1', 'Host: example.test:443']),
    status: 501,
  },
];

/** A raw origin that answers every request head with 200 "ok" and keeps every byte it received. */
interface CountingOrigin {
  readonly raw: RawOrigin;
  /** Everything received, across all connections, as latin1 text. */
  received(): string;
}

async function startCountingOrigin(t: Cleanup): Promise<CountingOrigin> {
  let received = '';
  const raw = await startRawOrigin(t, (socket) => {
    let pending = '';
    socket.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      received += text;
      pending += text;
      let end: number;
      while ((end = pending.indexOf('\r\n\r\n')) >= 0) {
        pending = pending.slice(end + 4);
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      }
    });
  });
  return { raw, received: () => received };
}

/**
 * A `Cleanup` for servers made in a suite's `before`: `after()` called from inside a hook would
 * run at once, so the closers are collected here and run by one suite-level `after`.
 */
function suiteCleanup(): Cleanup {
  const closers: (() => unknown)[] = [];
  after(async () => {
    for (const close of closers.reverse()) await close();
  });
  return { after: (fn) => closers.push(fn) };
}

function rejectionReason(status: number): string {
  return status === 431 ? 'headers_too_large' : 'bad_request';
}

describe('bad input from clients', () => {
  let origin: CountingOrigin;
  let cairn: Cairn;
  let goodRequests = 0;

  const cleanup = suiteCleanup();

  before(async () => {
    origin = await startCountingOrigin(cleanup);
    cairn = await startCairn(cleanup, new ReverseProxy({ origins: [origin.raw.url] }), {
      limits: { maxHeadersCount: MAX_HEADERS },
    });
  });

  for (const c of CASES) {
    test(`${c.name} -> ${c.status}, connection closed, nothing forwarded`, { timeout: 10_000 }, async () => {
      const receivedBefore = origin.received().length;
      const connectionsBefore = origin.raw.connections;
      const reason = rejectionReason(c.status);
      const rejectedBefore = (await cairn.metrics()).value('cairn_downstream_rejected_total', { reason });

      const client = await RawClient.connect(cairn.port);
      client.write(c.bytes);
      await client.closed; // Cairn must close the connection by itself.
      const reply = client.text();
      assert.match(
        reply,
        new RegExp(`^HTTP/1\\.1 ${c.status} `),
        `reply was: ${JSON.stringify(reply.slice(0, 120))}`,
      );
      assert.equal(reply.split('HTTP/1.1 ').length - 1, 1, 'exactly one response on the connection');
      assert.match(reply, /\r\nconnection: close\r\n/i);

      // The proxy still works, and the origin saw that request and nothing else.
      const path = `/after-${++goodRequests}`;
      const good = await httpRequest(`${cairn.url}${path}`);
      assert.equal(good.status, 200);
      assert.equal(good.body.toString(), 'ok');
      const seen = origin.received().slice(receivedBefore);
      assert.ok(
        seen.startsWith(`GET ${path} HTTP/1.1\r\n`),
        `origin received: ${JSON.stringify(seen.slice(0, 200))}`,
      );
      assert.equal(seen.indexOf('\r\n\r\n'), seen.length - 4, 'the origin received one request head only');
      assert.ok(origin.raw.connections <= connectionsBefore + 1);

      const rejectedAfter = (await cairn.metrics()).value('cairn_downstream_rejected_total', { reason });
      assert.equal(rejectedAfter, rejectedBefore + 1, `cairn_downstream_rejected_total{reason="${reason}"}`);
    });
  }
});

describe('unusual but valid input is proxied, not refused', () => {
  interface Seen {
    url: string;
    host: string | undefined;
    body: string;
  }
  let cairn: Cairn;
  const seen: Seen[] = [];

  const cleanup = suiteCleanup();

  before(async () => {
    const origin = await startOrigin(cleanup, (req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ url: req.url ?? '', host: req.headers.host, body: Buffer.concat(chunks).toString() });
        res.end('ok');
      });
    });
    cairn = await startCairn(
      cleanup,
      new ReverseProxy({ origins: [origin.url], peer: { hostHeader: 'keep' } }),
    );
  });

  async function exchange(bytes: string): Promise<{ reply: string; seen: Seen | undefined }> {
    const count = seen.length;
    const client = await RawClient.connect(cairn.port);
    client.write(bytes);
    await client.closed;
    return { reply: client.text(), seen: seen[count] };
  }

  test('Transfer-Encoding: CHUNKED (codings are case-insensitive) with a tab before the value', async () => {
    const { reply, seen: at } = await exchange(
      head(['POST /up HTTP/1.1', 'Host: a.test', 'Transfer-Encoding:\tCHUNKED', 'Connection: close']) +
        '5\r\nhello\r\n0\r\n\r\n',
    );
    assert.match(reply, /^HTTP\/1\.1 200 /);
    assert.equal(at?.body, 'hello');
  });

  test('absolute-form target: the origin gets origin-form and the target authority as Host', async () => {
    const { reply, seen: at } = await exchange(
      head(['GET http://b.test:8080/x?y=1 HTTP/1.1', 'Host: a.test', 'Connection: close']),
    );
    assert.match(reply, /^HTTP\/1\.1 200 /);
    assert.deepEqual(at && { url: at.url, host: at.host }, { url: '/x?y=1', host: 'b.test:8080' });
  });

  test('HTTP/1.0 without Host', async () => {
    const { reply, seen: at } = await exchange(head(['GET /ten HTTP/1.0']));
    assert.match(reply, /^HTTP\/1\.1 200 /);
    assert.equal(at?.url, '/ten');
  });
});

describe('an origin that answers with garbage', () => {
  const BAD_GATEWAY: Readonly<Record<string, string | null>> = {
    'a line that is not a status line': 'garbage\r\n\r\n',
    'a four-digit status code': 'HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n',
    'a header line without a colon': 'HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 0\r\n\r\n',
    'two differing Content-Length lines':
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
    'Content-Length with Transfer-Encoding':
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    'a non-numeric Content-Length': 'HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n',
    'binary junk': '\x00\x01\x02\xff\xfe\r\n\r\n',
    'an HTTP/0.9-style bare body': 'hello world',
    'nothing: the connection closes at once': null,
  };
  // The head is fine, so it is already on its way to the client when the body turns bad.
  const CUT: Readonly<Record<string, string>> = {
    'a chunk size that is not hex, after a good head':
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n',
    'a body shorter than its Content-Length': 'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello',
  };
  const REPLIES: Readonly<Record<string, string | null>> = { ...BAD_GATEWAY, ...CUT };
  let mode = '';
  let cairn: Cairn;

  const cleanup = suiteCleanup();

  before(async () => {
    const origin = await startRawOrigin(cleanup, (socket) => {
      socket.once('data', () => {
        const reply = REPLIES[mode];
        if (reply === null || reply === undefined) socket.destroy();
        else socket.end(reply, 'latin1');
      });
    });
    cairn = await startCairn(cleanup, new ReverseProxy({ origins: [origin.url], maxRetries: 0 }));
  });

  for (const name of Object.keys(BAD_GATEWAY)) {
    test(`${name} -> 502`, { timeout: 10_000 }, async () => {
      mode = name;
      const res = await httpRequest(`${cairn.url}/`);
      assert.equal(res.status, 502);
      assert.equal(res.body.toString(), '502 Bad Gateway\n');
      assert.equal(res.complete, true);
    });
  }

  for (const name of Object.keys(CUT)) {
    test(`${name}: the client never sees a complete response`, { timeout: 10_000 }, async () => {
      mode = name;
      const client = await RawClient.connect(cairn.port);
      client.write(head(['GET / HTTP/1.1', 'Host: a']));
      await client.closed;
      const text = client.text();
      // Either no head at all, or a head whose body is cut short: never a 200 that looks whole.
      if (text !== '') {
        assert.match(text, /^HTTP\/1\.1 200 /);
        const chunked = /transfer-encoding: chunked/i.test(text);
        if (chunked) assert.ok(!text.endsWith('0\r\n\r\n'), 'the chunked body must not be terminated');
        else
          assert.ok(text.length - text.indexOf('\r\n\r\n') - 4 < 50, 'the body must be short of its length');
      }
    });
  }

  test('the proxy is still up after all of that', async () => {
    mode = 'a line that is not a status line';
    const res = await httpRequest(`${cairn.url}/`);
    assert.equal(res.status, 502);
    const metrics = await cairn.metrics();
    assert.ok(
      metrics.value('cairn_requests_total', { status_class: '5xx' }) >= Object.keys(BAD_GATEWAY).length,
    );
  });
});

describe('a bad chunk arriving after the request was already forwarded', () => {
  test(
    'the client gets 400 and the origin sees its request aborted, never completed',
    { timeout: 10_000 },
    async (t) => {
      let completed = false;
      let arrived!: () => void;
      const arrival = new Promise<void>((resolve) => (arrived = resolve));
      let gone!: () => void;
      const aborted = new Promise<void>((resolve) => (gone = resolve));
      const origin = await startOrigin(t, (req, res) => {
        if (req.url !== '/stream') {
          res.end('ok');
          return;
        }
        arrived();
        req.resume();
        req.on('end', () => {
          completed = true;
        });
        req.on('close', () => gone());
      });
      const cairn = await startCairn(t, new ReverseProxy({ origins: [origin.url] }));
      const client = await RawClient.connect(cairn.port);
      client.write(
        head(['POST /stream HTTP/1.1', 'Host: a', 'Transfer-Encoding: chunked']) + '5\r\nhello\r\n',
      );
      await arrival;
      client.write('not-hex\r\nworld\r\n0\r\n\r\n');
      await client.closed;
      assert.match(client.text(), /^HTTP\/1\.1 400 /);
      await aborted;
      assert.equal(completed, false, 'the origin must never see the request body end normally');
      const ok = await httpRequest(`${cairn.url}/`);
      assert.equal(ok.status, 200);
    },
  );
});

describe('Expect: 100-continue on a refused request', () => {
  test('a refused request gets no 100 Continue', { timeout: 10_000 }, async (t) => {
    const origin = await startOrigin(t, (_req, res) => res.end('ok'));
    const cairn = await startCairn(t, new ReverseProxy({ origins: [origin.url] }));
    const client = await RawClient.connect(cairn.port);
    client.write(
      head(['POST / HTTP/1.1', 'Host: a', 'Host: b', 'Content-Length: 5', 'Expect: 100-continue']),
    );
    await client.closed;
    assert.match(client.text(), /^HTTP\/1\.1 400 /);
    assert.equal(origin.requests, 0);
  });
});
