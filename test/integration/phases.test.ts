/**
 * The phase contract: a recording subclass that overrides every hook proves the order the engine
 * runs them in and that each one's effect reaches the wire, in sync and async (Promise) variants.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { CairnError, HOOK_NAMES, ProxyHttp, phasePlan } from '../../src/index.ts';
import type {
  BodyFilterResult,
  HeaderMap,
  HttpPeer,
  MaybePromise,
  ResponseHead,
  Session,
  UpstreamRequest,
} from '../../src/index.ts';
import { RawClient, httpRequest, startCairn, startOrigin } from '../helpers/servers.ts';

type Mode = 'sync' | 'async';

/** A hang is a failure, not a stuck run. */
const LIMIT = { timeout: 15_000 };

interface Ctx {
  early: boolean;
  firstOut: boolean;
  reused: boolean | undefined;
}

interface Logged {
  session: Session;
  error: CairnError | undefined;
  ctx: Ctx;
}

/** Resolve `value` after a real turn of the event loop (so "async" is never secretly sync). */
function later<T>(value: T): Promise<T> {
  return new Promise((resolve) => setImmediate(() => resolve(value)));
}

/** Overrides every hook, records each call, and leaves a visible mark on the request or response. */
class Recorder extends ProxyHttp<Ctx> {
  readonly calls: string[] = [];
  readonly logged: Logged[] = [];
  readonly #peer: HttpPeer;
  readonly #mode: Mode;
  #onLogged: (() => void) | undefined;

  constructor(peer: HttpPeer, mode: Mode) {
    super();
    this.#peer = peer;
    this.#mode = mode;
  }

  /** Resolves when `logging` has run (once). */
  loggedOnce(): Promise<void> {
    if (this.logged.length > 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#onLogged = resolve;
    });
  }

  #v<T>(value: T): MaybePromise<T> {
    return this.#mode === 'async' ? later(value) : value;
  }

  override newCtx(): Ctx {
    return { early: false, firstOut: true, reused: undefined };
  }

  override earlyRequestFilter(_session: Session, ctx: Ctx): MaybePromise<void> {
    this.calls.push('earlyRequestFilter');
    ctx.early = true;
    return this.#v(undefined);
  }

  override requestFilter(session: Session, ctx: Ctx): MaybePromise<boolean> {
    this.calls.push('requestFilter');
    // Effect: request headers changed here are the ones copied for the origin.
    session.headers['x-request-filter'] = ctx.early ? 'after-early' : 'early-missing';
    return this.#v(false);
  }

  override requestBodyFilter(
    _session: Session,
    chunk: Buffer | null,
    end: boolean,
  ): MaybePromise<BodyFilterResult> {
    this.calls.push('requestBodyFilter');
    const out = end ? Buffer.from('<eof>') : Buffer.from(chunk!.toString('latin1').toUpperCase(), 'latin1');
    return this.#v(out);
  }

  override proxyUpstreamFilter(_session: Session, _ctx: Ctx): MaybePromise<boolean> {
    this.calls.push('proxyUpstreamFilter');
    return this.#v(true);
  }

  override upstreamPeer(): MaybePromise<HttpPeer> {
    this.calls.push('upstreamPeer');
    return this.#v(this.#peer);
  }

  override connectedToUpstream(_session: Session, reused: boolean, _peer: HttpPeer, ctx: Ctx): void {
    this.calls.push('connectedToUpstream');
    ctx.reused = reused;
  }

  override failToConnect(_session: Session, _peer: HttpPeer, _ctx: Ctx, error: CairnError): CairnError {
    this.calls.push('failToConnect');
    return error;
  }

  override upstreamRequestFilter(_session: Session, request: UpstreamRequest): MaybePromise<void> {
    this.calls.push('upstreamRequestFilter');
    request.path = `/rewritten${request.path}`;
    request.headers['x-upstream-request-filter'] = '1';
    return this.#v(undefined);
  }

  override upstreamResponseFilter(_session: Session, response: ResponseHead): MaybePromise<void> {
    this.calls.push('upstreamResponseFilter');
    response.headers['x-upstream-response-filter'] = String(response.status);
    return this.#v(undefined);
  }

  override upstreamResponseBodyFilter(
    _session: Session,
    chunk: Buffer | null,
    end: boolean,
  ): MaybePromise<BodyFilterResult> {
    this.calls.push('upstreamResponseBodyFilter');
    const out = end ? Buffer.from('!') : Buffer.from(chunk!.toString('latin1').toUpperCase(), 'latin1');
    return this.#v(out);
  }

  override responseFilter(_session: Session, response: ResponseHead): MaybePromise<void> {
    this.calls.push('responseFilter');
    response.headers['x-response-filter'] =
      response.headers['x-upstream-response-filter'] === undefined ? 'no' : 'yes';
    delete response.headers['content-length'];
    return this.#v(undefined);
  }

  override responseBodyFilter(
    _session: Session,
    chunk: Buffer | null,
    end: boolean,
    ctx: Ctx,
  ): MaybePromise<BodyFilterResult> {
    this.calls.push('responseBodyFilter');
    let out: Buffer = chunk ?? Buffer.alloc(0);
    if (ctx.firstOut) {
      ctx.firstOut = false;
      out = Buffer.concat([Buffer.from('['), out]);
    }
    if (end) out = Buffer.concat([out, Buffer.from(']')]);
    return this.#v(out);
  }

  override responseTrailerFilter(_session: Session, trailers: HeaderMap): void {
    this.calls.push('responseTrailerFilter');
    trailers['x-checksum'] = `filtered-${String(trailers['x-checksum'])}`;
  }

  override errorWhileProxy(
    peer: HttpPeer,
    session: Session,
    error: CairnError,
    ctx: Ctx,
    reused: boolean,
  ): CairnError {
    this.calls.push('errorWhileProxy');
    return super.errorWhileProxy(peer, session, error, ctx, reused);
  }

  override failToProxy(session: Session, error: CairnError, ctx: Ctx): MaybePromise<number> {
    this.calls.push('failToProxy');
    return super.failToProxy(session, error, ctx);
  }

  override logging(session: Session, error: CairnError | undefined, ctx: Ctx): MaybePromise<void> {
    this.calls.push('logging');
    this.logged.push({ session, error, ctx });
    this.#onLogged?.();
    return this.#v(undefined);
  }
}

/** Collapse runs of the same call (body filters run once per chunk). */
function compact(calls: readonly string[]): string[] {
  return calls.filter((name, i) => i === 0 || calls[i - 1] !== name);
}

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** An origin that records what it got and answers a two-chunk body with a trailer. */
async function trailerOrigin(
  t: Parameters<typeof startOrigin>[0],
): Promise<{ peer: HttpPeer; seen: Seen[]; requests: () => number }> {
  const seen: Seen[] = [];
  const origin = await startOrigin(t, (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
      res.write('hello ');
      setImmediate(() => {
        res.addTrailers({ 'x-checksum': 'abc' });
        res.end('world');
      });
    });
  });
  return { peer: origin.peer(), seen, requests: () => origin.requests };
}

for (const mode of ['sync', 'async'] as const) {
  test(
    `${mode} hooks run in order, each once (body filters per chunk), logging last, and each effect reaches the wire`,
    LIMIT,
    async (t) => {
      const origin = await trailerOrigin(t);
      const proxy = new Recorder(origin.peer, mode);
      const cairn = await startCairn(t, proxy);

      const res = await httpRequest(`${cairn.url}/path?q=1`);
      await proxy.loggedOnce();

      assert.deepEqual(compact(proxy.calls), [
        'earlyRequestFilter',
        'requestFilter',
        'proxyUpstreamFilter',
        'upstreamPeer',
        'upstreamRequestFilter',
        'connectedToUpstream',
        'upstreamResponseFilter',
        'responseFilter',
        'upstreamResponseBodyFilter',
        'responseBodyFilter',
        'upstreamResponseBodyFilter',
        'responseBodyFilter',
        'upstreamResponseBodyFilter',
        'responseBodyFilter',
        'responseTrailerFilter',
        'logging',
      ]);
      // Effects, upstream side.
      assert.equal(origin.seen.length, 1);
      assert.equal(origin.seen[0]!.url, '/rewritten/path?q=1');
      assert.equal(origin.seen[0]!.headers['x-upstream-request-filter'], '1');
      assert.equal(origin.seen[0]!.headers['x-request-filter'], 'after-early');
      // Effects, downstream side.
      assert.equal(res.status, 200);
      assert.equal(res.headers['x-upstream-response-filter'], '200');
      assert.equal(res.headers['x-response-filter'], 'yes');
      assert.equal(res.body.toString(), '[HELLO WORLD!]');
      assert.equal(res.trailers['x-checksum'], 'filtered-abc');
      assert.equal(proxy.logged[0]!.ctx.reused, false);
      assert.equal(proxy.logged[0]!.error, undefined);
      assert.equal(proxy.logged[0]!.session.status, 200);
      assert.equal(proxy.logged[0]!.session.bytesSent, '[HELLO WORLD!]'.length);

      // logging ran exactly once, even after the server is gone.
      await cairn.server.close();
      assert.equal(proxy.calls.filter((c) => c === 'logging').length, 1);
    },
  );

  test(
    `${mode} requestBodyFilter transforms the upload (sent chunked) between upstreamRequestFilter and the response`,
    LIMIT,
    async (t) => {
      const origin = await trailerOrigin(t);
      const proxy = new Recorder(origin.peer, mode);
      const cairn = await startCairn(t, proxy);

      const res = await httpRequest(`${cairn.url}/up`, {
        method: 'POST',
        headers: { 'content-length': '11' },
        body: 'hello there',
      });
      await proxy.loggedOnce();

      assert.equal(res.status, 200);
      assert.equal(origin.seen[0]!.body, 'HELLO THERE<eof>');
      assert.equal(origin.seen[0]!.headers['content-length'], undefined);
      assert.equal(origin.seen[0]!.headers['transfer-encoding'], 'chunked');
      const calls = compact(proxy.calls);
      const body = calls.indexOf('requestBodyFilter');
      assert.ok(body > calls.indexOf('upstreamRequestFilter'), calls.join(' '));
      assert.ok(body < calls.indexOf('upstreamResponseFilter'), calls.join(' '));
    },
  );

  test(`${mode} requestFilter returning true ends the request: the origin gets nothing`, LIMIT, async (t) => {
    const origin = await trailerOrigin(t);
    const peer = origin.peer;
    class Refuse extends Recorder {
      override requestFilter(session: Session): MaybePromise<boolean> {
        this.calls.push('requestFilter');
        session.respond(403, { 'content-type': 'text/plain' }, 'no\n');
        return mode === 'async' ? later(true) : true;
      }
    }
    const proxy = new Refuse(peer, mode);
    const cairn = await startCairn(t, proxy);

    const res = await httpRequest(`${cairn.url}/secret`);
    await proxy.loggedOnce();

    assert.equal(res.status, 403);
    assert.equal(res.body.toString(), 'no\n');
    assert.deepEqual(proxy.calls, ['earlyRequestFilter', 'requestFilter', 'logging']);
    assert.equal(origin.requests(), 0);
    assert.equal(proxy.logged[0]!.session.status, 403);
    assert.equal(proxy.logged[0]!.error, undefined);
  });

  test(`${mode} proxyUpstreamFilter returning false after answering skips the origin`, LIMIT, async (t) => {
    const origin = await trailerOrigin(t);
    class Answer extends Recorder {
      override proxyUpstreamFilter(session: Session): MaybePromise<boolean> {
        this.calls.push('proxyUpstreamFilter');
        session.respond(200, { 'x-answered': 'proxyUpstreamFilter' }, 'local\n');
        return mode === 'async' ? later(false) : false;
      }
    }
    const proxy = new Answer(origin.peer, mode);
    const cairn = await startCairn(t, proxy);

    const res = await httpRequest(`${cairn.url}/`);
    await proxy.loggedOnce();

    assert.equal(res.status, 200);
    assert.equal(res.headers['x-answered'], 'proxyUpstreamFilter');
    assert.equal(res.body.toString(), 'local\n');
    assert.deepEqual(proxy.calls, ['earlyRequestFilter', 'requestFilter', 'proxyUpstreamFilter', 'logging']);
    assert.equal(origin.requests(), 0);
  });

  test(
    `${mode} proxyUpstreamFilter returning false without answering gets the documented 502`,
    LIMIT,
    async (t) => {
      const origin = await trailerOrigin(t);
      class Decline extends Recorder {
        override proxyUpstreamFilter(): MaybePromise<boolean> {
          this.calls.push('proxyUpstreamFilter');
          return mode === 'async' ? later(false) : false;
        }
      }
      const proxy = new Decline(origin.peer, mode);
      const cairn = await startCairn(t, proxy);

      const res = await httpRequest(`${cairn.url}/`);
      await proxy.loggedOnce();

      assert.equal(res.status, 502);
      assert.equal(origin.requests(), 0);
      assert.equal(proxy.logged[0]!.error?.code, 'CAIRN_ERR_INTERNAL');
    },
  );
}

/**
 * 'cut off' when the response was reset before its head or ended short; else the whole body (a
 * failure after the head may reach the client before the head was flushed, or after).
 */
async function cutOff(url: string): Promise<string> {
  try {
    const res = await httpRequest(url);
    return res.complete ? res.body.toString() : 'cut off';
  } catch {
    return 'cut off';
  }
}

/** Hooks that run before the response head is written: a throw there must become a 500. */
const BEFORE_HEAD = [
  'earlyRequestFilter',
  'requestFilter',
  'proxyUpstreamFilter',
  'upstreamPeer',
  'upstreamRequestFilter',
  'upstreamResponseFilter',
  'responseFilter',
] as const;

/** A proxy whose hook `name` throws (sync) or rejects (async); everything else passes through. */
function throwingProxy(peer: HttpPeer, name: string, mode: Mode): ProxyHttp & { logged: Promise<Logged> } {
  let onLogged: (l: Logged) => void = () => {};
  const logged = new Promise<Logged>((resolve) => {
    onLogged = resolve;
  });
  const fail = (): never => {
    throw new Error(`${name} exploded`);
  };
  const run = <T>(_ok: T): MaybePromise<T> => {
    if (mode === 'sync') return fail();
    return later(null).then(fail);
  };
  class Thrower extends ProxyHttp {
    readonly logged = logged;
    override upstreamPeer(): MaybePromise<HttpPeer> {
      return name === 'upstreamPeer' ? run(peer) : peer;
    }
    override earlyRequestFilter(): MaybePromise<void> {
      return name === 'earlyRequestFilter' ? run(undefined) : undefined;
    }
    override requestFilter(): MaybePromise<boolean> {
      return name === 'requestFilter' ? run(false) : false;
    }
    override proxyUpstreamFilter(): MaybePromise<boolean> {
      return name === 'proxyUpstreamFilter' ? run(true) : true;
    }
    override upstreamRequestFilter(): MaybePromise<void> {
      return name === 'upstreamRequestFilter' ? run(undefined) : undefined;
    }
    override upstreamResponseFilter(): MaybePromise<void> {
      return name === 'upstreamResponseFilter' ? run(undefined) : undefined;
    }
    override responseFilter(): MaybePromise<void> {
      return name === 'responseFilter' ? run(undefined) : undefined;
    }
    override upstreamResponseBodyFilter(
      _s: Session,
      _c: Buffer | null,
      end: boolean,
    ): MaybePromise<BodyFilterResult> {
      return name === 'upstreamResponseBodyFilter' && !end ? run(undefined) : undefined;
    }
    override responseBodyFilter(
      _s: Session,
      _c: Buffer | null,
      end: boolean,
    ): MaybePromise<BodyFilterResult> {
      return name === 'responseBodyFilter(end)' && end ? run(undefined) : undefined;
    }
    override requestBodyFilter(): MaybePromise<BodyFilterResult> {
      return name === 'requestBodyFilter' ? run(undefined) : undefined;
    }
    override responseTrailerFilter(): void {
      if (name === 'responseTrailerFilter') fail();
    }
    override logging(session: Session, error: CairnError | undefined, ctx: Record<string, never>): void {
      onLogged({ session, error, ctx: ctx as unknown as Ctx });
    }
  }
  return new Thrower();
}

for (const mode of ['sync', 'async'] as const) {
  for (const name of BEFORE_HEAD) {
    test(`${mode} ${name} that throws gives 500 and CAIRN_ERR_INTERNAL_HOOK in logging`, LIMIT, async (t) => {
      const origin = await trailerOrigin(t);
      const proxy = throwingProxy(origin.peer, name, mode);
      const cairn = await startCairn(t, proxy);

      const res = await httpRequest(`${cairn.url}/`);
      const logged = await proxy.logged;

      assert.equal(res.status, 500);
      assert.equal(res.complete, true);
      assert.equal(logged.error?.code, 'CAIRN_ERR_INTERNAL_HOOK');
      assert.equal(logged.error.source, 'internal');
      assert.equal(logged.error.retryable, false);
      assert.match((logged.error.cause as Error).message, new RegExp(`${name} exploded`));
      assert.equal(logged.session.status, 500);
    });
  }

  test(`${mode} requestBodyFilter that throws gives 500 and CAIRN_ERR_INTERNAL_HOOK`, LIMIT, async (t) => {
    const origin = await trailerOrigin(t);
    const proxy = throwingProxy(origin.peer, 'requestBodyFilter', mode);
    const cairn = await startCairn(t, proxy);

    const res = await httpRequest(`${cairn.url}/`, { method: 'PUT', body: 'payload' });
    const logged = await proxy.logged;

    assert.equal(res.status, 500);
    assert.equal(logged.error?.code, 'CAIRN_ERR_INTERNAL_HOOK');
  });

  for (const name of ['upstreamResponseBodyFilter', 'responseBodyFilter(end)'] as const) {
    test(
      `${mode} ${name} that throws after the head cuts the response off and logs CAIRN_ERR_INTERNAL_HOOK`,
      LIMIT,
      async (t) => {
        const origin = await trailerOrigin(t);
        const proxy = throwingProxy(origin.peer, name, mode);
        const cairn = await startCairn(t, proxy);

        const res = await cutOff(`${cairn.url}/`);
        const logged = await proxy.logged;

        assert.equal(res, 'cut off', 'a response cut by a failed filter must not look complete');
        assert.equal(logged.error?.code, 'CAIRN_ERR_INTERNAL_HOOK');
      },
    );
  }
}

test(
  'responseTrailerFilter that throws cuts the response off and logs CAIRN_ERR_INTERNAL_HOOK',
  LIMIT,
  async (t) => {
    const origin = await trailerOrigin(t);
    const proxy = throwingProxy(origin.peer, 'responseTrailerFilter', 'sync');
    const cairn = await startCairn(t, proxy);

    const res = await cutOff(`${cairn.url}/`);
    const logged = await proxy.logged;

    assert.equal(res, 'cut off');
    assert.equal(logged.error?.code, 'CAIRN_ERR_INTERNAL_HOOK');
  },
);

test('an async body filter keeps many chunks in order while the origin is paused', LIMIT, async (t) => {
  const count = 200;
  const origin = await startOrigin(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    Readable.from(
      (function* () {
        for (let i = 0; i < count; i++) yield Buffer.from(`${String(i).padStart(4, '0')},`);
      })(),
    ).pipe(res);
  });
  let calls = 0;
  class SlowUpper extends ProxyHttp {
    override upstreamPeer(): HttpPeer {
      return origin.peer();
    }
    override responseBodyFilter(_s: Session, chunk: Buffer | null): Promise<BodyFilterResult> {
      calls++;
      // Every other chunk is async, so sync and async results interleave.
      if (calls % 2 === 0)
        return Promise.resolve(chunk === null ? null : Buffer.from(`<${chunk.toString()}>`));
      return later(chunk === null ? Buffer.from('END') : Buffer.from(`<${chunk.toString()}>`));
    }
  }
  const cairn = await startCairn(t, new SlowUpper());

  const res = await httpRequest(`${cairn.url}/`);

  const numbers = [...res.body.toString().matchAll(/(\d{4}),/g)].map((m) => Number(m[1]));
  assert.deepEqual(
    numbers,
    Array.from({ length: count }, (_, i) => i),
  );
  assert.ok(res.complete);
});

test('logging is called exactly once when the client aborts mid-download', LIMIT, async (t) => {
  let originClosed!: () => void;
  const originSawClose = new Promise<void>((resolve) => {
    originClosed = resolve;
  });
  const origin = await startOrigin(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first chunk');
    res.on('close', originClosed);
  });
  const proxy = new Recorder(origin.peer(), 'sync');
  const cairn = await startCairn(t, proxy);

  const client = await RawClient.connect(cairn.port);
  client.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
  await client.waitFor('[FIRST CHUNK'); // through the recorder's body filters
  client.destroy();
  await proxy.loggedOnce();
  await originSawClose;
  await cairn.server.close();

  assert.equal(proxy.calls.filter((c) => c === 'logging').length, 1);
  assert.equal(proxy.calls.at(-1), 'logging');
  assert.equal(proxy.logged[0]!.error?.code, 'CAIRN_ERR_DOWNSTREAM_CLOSED');
  assert.equal(proxy.logged[0]!.session.aborted, true);
  assert.ok(!proxy.calls.includes('failToProxy'));
});

test('phasePlan marks exactly the overridden hooks', LIMIT, () => {
  class Some extends ProxyHttp {
    override requestFilter(): boolean {
      return false;
    }
    override logging(): void {}
  }
  class More extends Some {
    override responseBodyFilter(): undefined {
      return undefined;
    }
  }
  const plan = phasePlan(new More());
  const on = HOOK_NAMES.filter((n) => plan[n]);
  assert.deepEqual(on, ['requestFilter', 'responseBodyFilter', 'logging']);
  const none = phasePlan(new ProxyHttp());
  assert.deepEqual(
    HOOK_NAMES.filter((n) => none[n]),
    [],
  );
});

test('the engine never calls a hook the proxy did not override', LIMIT, async (t) => {
  const origin = await trailerOrigin(t);
  class OnlyPeer extends ProxyHttp {
    override upstreamPeer(): HttpPeer {
      return origin.peer;
    }
  }
  // logLevel silent: the default logging writes nothing, so the engine may skip it too.
  const cairn = await startCairn(t, new OnlyPeer(), { logLevel: 'silent' });
  const base = ProxyHttp.prototype as unknown as Record<string, unknown>;
  const saved = new Map(HOOK_NAMES.map((n) => [n, base[n]]));
  const called: string[] = [];
  // The plan was made at construction; any base hook the runner still calls now shows up here.
  for (const name of HOOK_NAMES) {
    const original = saved.get(name) as (...args: unknown[]) => unknown;
    base[name] = function (this: unknown, ...args: unknown[]): unknown {
      called.push(name);
      return original.apply(this, args);
    };
  }
  try {
    const res = await httpRequest(`${cairn.url}/x`, { method: 'POST', body: 'abc' });
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'hello world');
    assert.equal(res.trailers['x-checksum'], 'abc');
    await cairn.server.close();
  } finally {
    for (const [name, fn] of saved) base[name] = fn;
  }
  assert.deepEqual(called, []);
});

test(
  'an Expect: 100-continue request refused by requestFilter gets the refusal and no 100 Continue',
  LIMIT,
  async (t) => {
    const origin = await trailerOrigin(t);
    class Refuse extends ProxyHttp {
      override upstreamPeer(): HttpPeer {
        return origin.peer;
      }
      override requestFilter(session: Session): boolean {
        session.respond(401, { 'www-authenticate': 'Bearer' }, 'login first\n');
        return true;
      }
    }
    const cairn = await startCairn(t, new Refuse());
    const client = await RawClient.connect(cairn.port);
    client.write('PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    const text = await client.waitFor('login first\n');
    client.destroy();

    assert.match(text, /^HTTP\/1\.1 401 /);
    assert.doesNotMatch(text, /100 Continue/);
    assert.equal(origin.requests(), 0);
  },
);

test(
  'an Expect: 100-continue request gets 100 Continue only after requestFilter let it through',
  LIMIT,
  async (t) => {
    const origin = await trailerOrigin(t);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let filterEntered!: () => void;
    const entered = new Promise<void>((resolve) => {
      filterEntered = resolve;
    });
    class Gate extends ProxyHttp {
      override upstreamPeer(): HttpPeer {
        return origin.peer;
      }
      override async requestFilter(): Promise<boolean> {
        filterEntered();
        await gate;
        return false;
      }
    }
    const cairn = await startCairn(t, new Gate());
    const client = await RawClient.connect(cairn.port);
    client.write('PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    await entered;
    // Nothing may have been written while requestFilter is deciding; the proof is the order of bytes below.
    const before = client.text();
    release();
    await client.waitFor('HTTP/1.1 100 Continue\r\n\r\n');
    client.write('abcde');
    const text = await client.waitFor('world');
    client.destroy();

    assert.equal(before, '');
    assert.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    assert.equal(origin.seen[0]!.body, 'abcde');
    assert.equal(origin.seen[0]!.headers.expect, undefined, 'Expect is hop-by-hop here: Cairn answered it');
  },
);

for (const mode of ['sync', 'async'] as const) {
  test(
    `${mode} responseFilter leaving an invalid header value gets 500, not a crash (unhandled rejection)`,
    LIMIT,
    async (t) => {
      const origin = await trailerOrigin(t);
      let logged!: (error: CairnError | undefined) => void;
      const loggedError = new Promise<CairnError | undefined>((resolve) => {
        logged = resolve;
      });
      class BadHeader extends ProxyHttp {
        override upstreamPeer(): HttpPeer {
          return origin.peer;
        }
        override responseFilter(_s: Session, response: ResponseHead): MaybePromise<void> {
          response.headers['x-bad'] = 'line\nbreak';
          return mode === 'async' ? later(undefined) : undefined;
        }
        override logging(_s: Session, error: CairnError | undefined): void {
          logged(error);
        }
      }
      const cairn = await startCairn(t, new BadHeader());

      const res = await httpRequest(`${cairn.url}/`);

      assert.equal(res.status, 500);
      assert.equal(res.headers['x-bad'], undefined);
      assert.equal((await loggedError)?.code, 'CAIRN_ERR_INTERNAL_HOOK');
    },
  );
}
