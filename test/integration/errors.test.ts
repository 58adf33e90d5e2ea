/**
 * Every way the origin can fail, against real sockets on 127.0.0.1: the status the client gets,
 * the coded error `logging` sees (code, source, retryable), and when the engine retries.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { CairnError, ERROR_CODES, HttpPeer, ProxyHttp } from '../../src/index.ts';
import type { ErrorCode, MaybePromise, ProxyHttpOptions, Session } from '../../src/index.ts';
import {
  RawClient,
  httpRequest,
  spawnFixture,
  startCairn,
  startOrigin,
  startRawOrigin,
} from '../helpers/servers.ts';
import type { Cairn, Cleanup, LogLine } from '../helpers/servers.ts';
import { unusedPort } from '../helpers/cli.ts';

const LIMIT = { timeout: 20_000 };
const STALLED_LISTENER = fileURLToPath(new URL('./fixtures/engine-stalled-listener.ts', import.meta.url));

/** Proxies to `peers[attempt - 1]` (the last one for later attempts). */
class ToPeers extends ProxyHttp {
  readonly peers: readonly HttpPeer[];
  constructor(peers: readonly HttpPeer[], options?: ProxyHttpOptions) {
    super(options);
    this.peers = peers;
  }
  override upstreamPeer(session: Session): HttpPeer {
    return this.peers[Math.min(session.attempts, this.peers.length) - 1]!;
  }
}

/** The access line for `path`, once written. */
function accessLine(cairn: Cairn, path: string): Promise<LogLine> {
  return cairn.logs.waitFor((l) => l.msg === 'request' && l.path === path);
}

/** The access line names the error with its code, source and retryable from the table. */
function assertLoggedError(line: LogLine, code: ErrorCode): void {
  assert.equal(line.err, code);
  assert.equal(line.errSource, ERROR_CODES[code].source, `${code}: source`);
  assert.equal(line.errRetryable, ERROR_CODES[code].retryable, `${code}: retryable`);
}

/** Read one request head (and nothing else) from a raw origin socket, calling `onHead` for each. */
function onRequestHeads(socket: Socket, onHead: (head: string, index: number) => void): void {
  let buffered = '';
  let index = 0;
  socket.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('latin1');
    for (;;) {
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buffered.slice(0, end);
      buffered = buffered.slice(end + 4);
      onHead(head, index++);
    }
  });
}

test(
  'connection refused: 502 CAIRN_ERR_UPSTREAM_CONNECT with the default failToProxy page',
  LIMIT,
  async (t) => {
    const cairn = await startCairn(t, new ToPeers([new HttpPeer(`http://127.0.0.1:${await unusedPort()}`)]));

    const res = await httpRequest(`${cairn.url}/refused`);
    const line = await accessLine(cairn, '/refused');

    assert.equal(res.status, 502);
    assert.equal(res.body.toString(), '502 Bad Gateway\n');
    assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(res.headers['cache-control'], 'no-store');
    assertLoggedError(line, 'CAIRN_ERR_UPSTREAM_CONNECT');
    assert.equal(line.status, 502);
    assert.equal(line.attempts, 1, 'no failToConnect override: no retry');
  },
);

test(
  'connect timeout (a loopback listener that never accepts): 504 CAIRN_ERR_UPSTREAM_CONNECT_TIMEOUT',
  LIMIT,
  async (t) => {
    const fixture = spawnFixture(t, STALLED_LISTENER);
    const { port } = await fixture.message<{ port?: number }>((m) => typeof m.port === 'number');
    // Stopped, the listener accepts nothing; once its queue is full the kernel drops new SYNs.
    process.kill(fixture.child.pid!, 'SIGSTOP');
    const fillers = Array.from({ length: 6 }, () => {
      const socket = connect(port!, '127.0.0.1');
      socket.on('error', () => {});
      t.after(() => socket.destroy());
      return socket;
    });
    await Promise.race(fillers.map((s) => once(s, 'connect')));
    const cairn = await startCairn(
      t,
      new ToPeers([new HttpPeer(`http://127.0.0.1:${port}`, { connectTimeout: 300 })]),
    );

    const res = await httpRequest(`${cairn.url}/stalled`);
    const line = await accessLine(cairn, '/stalled');

    assert.equal(res.status, 504);
    assert.equal(res.body.toString(), '504 Gateway Timeout\n');
    assertLoggedError(line, 'CAIRN_ERR_UPSTREAM_CONNECT_TIMEOUT');
  },
);

test('no response head in time: 504 CAIRN_ERR_UPSTREAM_HEADERS_TIMEOUT', LIMIT, async (t) => {
  const origin = await startOrigin(t, () => {
    // Never answers.
  });
  const cairn = await startCairn(t, new ToPeers([origin.peer({ headersTimeout: 300 })]));

  const res = await httpRequest(`${cairn.url}/silent`);
  const line = await accessLine(cairn, '/silent');

  assert.equal(res.status, 504);
  assertLoggedError(line, 'CAIRN_ERR_UPSTREAM_HEADERS_TIMEOUT');
  assert.equal(origin.requests, 1, 'a timed-out request is not retried');
});

test(
  'the body stalls past the idle timeout: the client response is cut off, logged CAIRN_ERR_UPSTREAM_BODY_TIMEOUT',
  LIMIT,
  async (t) => {
    const origin = await startOrigin(t, (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
      res.write('only ten b');
      // ... and nothing more.
    });
    const cairn = await startCairn(t, new ToPeers([origin.peer({ idleTimeout: 300 })]));

    const res = await httpRequest(`${cairn.url}/stall-body`);
    const line = await accessLine(cairn, '/stall-body');

    assert.equal(res.status, 200);
    assert.equal(res.complete, false, 'a cut-off body must not look complete');
    assert.equal(res.body.toString(), 'only ten b');
    assertLoggedError(line, 'CAIRN_ERR_UPSTREAM_BODY_TIMEOUT');
  },
);

test('the body stalls on a chunked response: cut off too (no terminating chunk)', LIMIT, async (t) => {
  const origin = await startOrigin(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('partial');
  });
  const cairn = await startCairn(t, new ToPeers([origin.peer({ idleTimeout: 300 })]));
  const client = await RawClient.connect(cairn.port);

  client.write('GET /chunked-stall HTTP/1.1\r\nHost: a\r\n\r\n');
  await client.closed;
  const line = await accessLine(cairn, '/chunked-stall');

  assert.match(client.text(), /partial/);
  assert.doesNotMatch(client.text(), /\r\n0\r\n\r\n$/, 'no terminating chunk');
  assertLoggedError(line, 'CAIRN_ERR_UPSTREAM_BODY_TIMEOUT');
});

test('the origin answers garbage: 502 CAIRN_ERR_UPSTREAM_PROTOCOL', LIMIT, async (t) => {
  const origin = await startRawOrigin(t, (socket) => {
    onRequestHeads(socket, () => socket.end('SSH-2.0-OpenSSH_9.6\r\nthis is not http\r\n\r\n'));
  });
  const cairn = await startCairn(t, new ToPeers([origin.peer()]));

  const res = await httpRequest(`${cairn.url}/garbage`);
  const line = await accessLine(cairn, '/garbage');

  assert.equal(res.status, 502);
  assertLoggedError(line, 'CAIRN_ERR_UPSTREAM_PROTOCOL');
});

test('the origin resets mid-body: the client sees the truncation', LIMIT, async (t) => {
  const origin = await startRawOrigin(t, (socket) => {
    onRequestHeads(socket, () => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n' + 'x'.repeat(100), () =>
        socket.resetAndDestroy(),
      );
    });
  });
  const cairn = await startCairn(t, new ToPeers([origin.peer()]));

  const res = await httpRequest(`${cairn.url}/reset`);
  const line = await accessLine(cairn, '/reset');

  assert.equal(res.status, 200);
  assert.equal(res.complete, false);
  assert.ok(res.body.length < 1000);
  assertLoggedError(line, 'CAIRN_ERR_UPSTREAM_CLOSED');
});

test('failToConnect asking for a retry goes to the next peer and succeeds', LIMIT, async (t) => {
  const good = await startOrigin(t, (_req, res) => res.end('from the second peer'));
  const dead = new HttpPeer(`http://127.0.0.1:${await unusedPort()}`);
  const seen: string[] = [];
  class NextPeer extends ToPeers {
    override failToConnect(
      session: Session,
      peer: HttpPeer,
      _ctx: Record<string, never>,
      error: CairnError,
    ): CairnError {
      seen.push(`${peer.address} ${error.code} attempt ${session.attempts}`);
      error.retry = true;
      return error;
    }
  }
  const cairn = await startCairn(t, new NextPeer([dead, good.peer()]));

  const res = await httpRequest(`${cairn.url}/retry`);
  const line = await accessLine(cairn, '/retry');

  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), 'from the second peer');
  assert.deepEqual(seen, [`${dead.address} CAIRN_ERR_UPSTREAM_CONNECT attempt 1`]);
  assert.equal(line.attempts, 2);
  assert.equal(line.upstream, `127.0.0.1:${good.port}`);
  assert.equal(line.err, undefined);
});

test('failToConnect retries stop at maxRetries', LIMIT, async (t) => {
  const dead = new HttpPeer(`http://127.0.0.1:${await unusedPort()}`);
  class AlwaysRetry extends ToPeers {
    override failToConnect(
      _s: Session,
      _p: HttpPeer,
      _c: Record<string, never>,
      error: CairnError,
    ): CairnError {
      error.retry = true;
      return error;
    }
  }
  const cairn = await startCairn(t, new AlwaysRetry([dead], { maxRetries: 2 }));

  const res = await httpRequest(`${cairn.url}/give-up`);
  const line = await accessLine(cairn, '/give-up');

  assert.equal(res.status, 502);
  assert.equal(line.attempts, 3, 'the first attempt and two retries');
  assertLoggedError(line, 'CAIRN_ERR_UPSTREAM_CONNECT');
});

/**
 * An origin whose first connection answers one request with keep-alive and then, on the next
 * request over it, closes without answering: the keep-alive race, made deterministic.
 */
async function keepAliveRaceOrigin(t: Cleanup): Promise<{ peer: HttpPeer; heads: string[] }> {
  const heads: string[] = [];
  const origin = await startRawOrigin(t, (socket, connection) => {
    onRequestHeads(socket, (head, index) => {
      heads.push(head.split('\r\n')[0]!);
      if (connection === 0 && index === 1) {
        socket.destroy();
        return;
      }
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
  });
  return { peer: origin.peer(), heads };
}

test('a GET that fails on a re-used connection is retried once, on a new one', LIMIT, async (t) => {
  const origin = await keepAliveRaceOrigin(t);
  const cairn = await startCairn(t, new ToPeers([origin.peer]));

  const first = await httpRequest(`${cairn.url}/one`);
  const second = await httpRequest(`${cairn.url}/two`);
  const line = await accessLine(cairn, '/two');

  assert.equal(first.status, 200);
  assert.equal(second.status, 200);
  assert.equal(second.body.toString(), 'ok');
  assert.deepEqual(origin.heads, ['GET /one HTTP/1.1', 'GET /two HTTP/1.1', 'GET /two HTTP/1.1']);
  assert.equal(line.attempts, 2);
  assert.equal(line.reused, false, 'the retry went over a fresh connection');
  assert.equal(line.err, undefined);
});

test(
  'a POST that fails on a re-used connection is not retried: 502, the origin saw it once',
  LIMIT,
  async (t) => {
    const origin = await keepAliveRaceOrigin(t);
    const cairn = await startCairn(t, new ToPeers([origin.peer]));

    const first = await httpRequest(`${cairn.url}/one`);
    // No body, so only the method's non-idempotence (RFC 9110 §9.2.2) stands in the way.
    const second = await httpRequest(`${cairn.url}/two`, {
      method: 'POST',
      headers: { 'content-length': '0' },
    });
    const line = await accessLine(cairn, '/two');

    assert.equal(first.status, 200);
    assert.equal(second.status, 502);
    assert.deepEqual(origin.heads, ['GET /one HTTP/1.1', 'POST /two HTTP/1.1']);
    assert.equal(line.attempts, 1);
    assert.equal(line.reused, true);
    assertLoggedError(line, 'CAIRN_ERR_UPSTREAM_CLOSED');
  },
);

test('failToProxy defaults: 503 for CAIRN_ERR_UPSTREAM_UNAVAILABLE, 502 for no peer', LIMIT, async (t) => {
  class Unavailable extends ProxyHttp {
    override upstreamPeer(session: Session): HttpPeer {
      if (session.path === '/none') return undefined as unknown as HttpPeer;
      throw new CairnError('CAIRN_ERR_UPSTREAM_UNAVAILABLE', 'no healthy backend');
    }
  }
  const cairn = await startCairn(t, new Unavailable());

  const unavailable = await httpRequest(`${cairn.url}/down`);
  const none = await httpRequest(`${cairn.url}/none`);

  assert.equal(unavailable.status, 503);
  assert.equal(unavailable.body.toString(), '503 Service Unavailable\n');
  assertLoggedError(await accessLine(cairn, '/down'), 'CAIRN_ERR_UPSTREAM_UNAVAILABLE');
  assert.equal(none.status, 502);
  assertLoggedError(await accessLine(cairn, '/none'), 'CAIRN_ERR_INTERNAL_NO_PEER');
});

test('a custom failToProxy writes its own page and its status is what gets logged', LIMIT, async (t) => {
  const dead = new HttpPeer(`http://127.0.0.1:${await unusedPort()}`);
  const seen: CairnError[] = [];
  class OwnPage extends ToPeers {
    override async failToProxy(session: Session, error: CairnError): Promise<number> {
      seen.push(error);
      await new Promise((resolve) => setImmediate(resolve));
      session.respond(503, { 'content-type': 'text/html', 'retry-after': '5' }, `<h1>${error.code}</h1>`);
      return 503;
    }
  }
  const cairn = await startCairn(t, new OwnPage([dead]));

  const res = await httpRequest(`${cairn.url}/own`);
  const line = await accessLine(cairn, '/own');

  assert.equal(res.status, 503);
  assert.equal(res.headers['retry-after'], '5');
  assert.equal(res.body.toString(), '<h1>CAIRN_ERR_UPSTREAM_CONNECT</h1>');
  assert.equal(seen.length, 1);
  assert.equal(line.status, 503);
  assertLoggedError(line, 'CAIRN_ERR_UPSTREAM_CONNECT');
});

test('a failToProxy that writes nothing does not leave the client waiting', LIMIT, async (t) => {
  const dead = new HttpPeer(`http://127.0.0.1:${await unusedPort()}`);
  class Silent extends ToPeers {
    override failToProxy(): MaybePromise<number> {
      return 0;
    }
  }
  const cairn = await startCairn(t, new Silent([dead]));

  await assert.rejects(httpRequest(`${cairn.url}/silent-fail`), /socket hang up|ECONNRESET/);
  assertLoggedError(await accessLine(cairn, '/silent-fail'), 'CAIRN_ERR_UPSTREAM_CONNECT');
});

test(
  'a client that is gone gets nothing written: failToProxy is not asked, the origin request is cancelled',
  LIMIT,
  async (t) => {
    let originRequest!: () => void;
    const arrived = new Promise<void>((resolve) => {
      originRequest = resolve;
    });
    let originClosed!: () => void;
    const closed = new Promise<void>((resolve) => {
      originClosed = resolve;
    });
    const origin = await startOrigin(t, (req) => {
      req.on('close', originClosed);
      originRequest();
      // Never answers: the client leaves first.
    });
    const asked: string[] = [];
    class Watch extends ToPeers {
      override failToProxy(
        session: Session,
        error: CairnError,
        ctx: Record<string, never>,
      ): MaybePromise<number> {
        asked.push(error.code);
        return super.failToProxy(session, error, ctx);
      }
    }
    const cairn = await startCairn(t, new Watch([origin.peer()]));
    const client = await RawClient.connect(cairn.port);

    client.write('GET /gone HTTP/1.1\r\nHost: a\r\n\r\n');
    await arrived;
    client.destroy();
    await closed;
    const line = await accessLine(cairn, '/gone');

    assert.deepEqual(asked, []);
    assert.equal(line.status, 0);
    assert.equal(line.bytes, 0);
    assertLoggedError(line, 'CAIRN_ERR_DOWNSTREAM_CLOSED');
    assert.equal(client.text(), '');
  },
);
