/**
 * gRPC <-> gRPC-web translation through Cairn, both ways, with real stacks:
 * - gRPC-web -> gRPC (`GrpcWebToGrpc`): the connect-es gRPC-web client (HTTP/1.1) calls a grpc-js
 *   server and a connect-es gRPC server (HTTP/2 to the origin); text mode with the codec-built raw
 *   client (no installed stack speaks it); CORS preflight.
 * - gRPC -> gRPC-web (`GrpcToGrpcWeb`): grpc-js and connect-es gRPC clients (h2c) call the connect-es
 *   gRPC-web server (HTTP/1.1 to the origin); HTTP errors from the origin become gRPC statuses.
 * Every pairing passes the shared scenarios (proxy-scenarios.ts): unary, streaming, metadata, error
 * statuses with messages, deadlines, 4 MiB.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { HttpPeer, ProxyHttp, serve } from '../../src/index.ts';
import type {
  BodyFilterResult,
  CairnError,
  HeaderMap,
  MaybePromise,
  ResponseHead,
  Session,
  UpstreamRequest,
} from '../../src/index.ts';
import { GrpcToGrpcWeb, GrpcWebToGrpc } from '../../hooks/index.ts';
import type { GrpcWebToGrpcOptions } from '../../hooks/index.ts';
import { EchoResponse } from './fixtures/echo-service.ts';
import { collectingLogger, httpRequest } from '../helpers/servers.ts';
import {
  ECHO_PATH,
  EchoRequest,
  connectGrpcClient,
  connectGrpcWebClient,
  grpcJsClient,
  rawGrpcWebCall,
  startConnectGrpcServer,
  startConnectGrpcWebServer,
  startGrpcJsServer,
} from './fixtures/index.ts';
import type { FixtureClient, FixtureServer } from './fixtures/index.ts';
import { defineProxyScenarios } from './proxy-scenarios.ts';
import type { ProxiedPairing } from './proxy-scenarios.ts';

const UNAVAILABLE = 14;
const UNIMPLEMENTED = 12;
const NOT_FOUND = 5;

/** A gateway for gRPC-web clients in front of a gRPC origin, delegating to the bridge. */
class WebGateway extends ProxyHttp {
  readonly bridge: GrpcWebToGrpc;
  readonly peer: HttpPeer;
  constructor(origin: string, options: GrpcWebToGrpcOptions = {}) {
    super();
    this.bridge = new GrpcWebToGrpc(options);
    this.peer = new HttpPeer(origin, { http2: true });
  }
  override requestFilter(session: Session): boolean {
    return this.bridge.requestFilter(session);
  }
  override upstreamPeer(): HttpPeer {
    return this.peer;
  }
  override upstreamRequestFilter(session: Session, request: UpstreamRequest): void {
    this.bridge.upstreamRequestFilter(session, request);
  }
  override requestBodyFilter(session: Session, chunk: Buffer | null, end: boolean): BodyFilterResult {
    return this.bridge.requestBodyFilter(session, chunk, end);
  }
  override upstreamResponseFilter(session: Session, response: ResponseHead): void {
    this.bridge.upstreamResponseFilter(session, response);
  }
  override responseBodyFilter(session: Session, chunk: Buffer | null, end: boolean): BodyFilterResult {
    return this.bridge.responseBodyFilter(session, chunk, end);
  }
  override responseTrailerFilter(session: Session, trailers: HeaderMap): Buffer | void {
    return this.bridge.responseTrailerFilter(session, trailers);
  }
  override failToProxy(
    session: Session,
    error: CairnError,
    ctx: Record<string, never>,
  ): MaybePromise<number> {
    return this.bridge.failToProxy(session, error) ?? super.failToProxy(session, error, ctx);
  }
}

/** A gateway for native gRPC clients in front of a gRPC-web origin. */
class GrpcGateway extends ProxyHttp {
  readonly bridge = new GrpcToGrpcWeb();
  readonly peer: HttpPeer;
  constructor(origin: string) {
    super();
    this.peer = new HttpPeer(origin);
  }
  override upstreamPeer(): HttpPeer {
    return this.peer;
  }
  override upstreamRequestFilter(session: Session, request: UpstreamRequest): void {
    this.bridge.upstreamRequestFilter(session, request);
  }
  override upstreamResponseFilter(session: Session, response: ResponseHead): void {
    this.bridge.upstreamResponseFilter(session, response);
  }
  override responseBodyFilter(session: Session, chunk: Buffer | null, end: boolean): BodyFilterResult {
    return this.bridge.responseBodyFilter(session, chunk, end);
  }
  override responseTrailerFilter(session: Session, trailers: HeaderMap): Buffer | void {
    return this.bridge.responseTrailerFilter(session, trailers);
  }
  override failToProxy(
    session: Session,
    error: CairnError,
    ctx: Record<string, never>,
  ): MaybePromise<number> {
    return this.bridge.failToProxy(session, error) ?? super.failToProxy(session, error, ctx);
  }
}

interface Running {
  readonly url: string;
  readonly address: string;
  close(): Promise<void>;
}

async function startGateway(proxy: ProxyHttp, h2c: boolean): Promise<Running> {
  const server = await serve(proxy, {
    listen: '127.0.0.1:0',
    h2c,
    logger: collectingLogger('warn').logger,
    shutdownTimeout: 1000,
  });
  const address = `${server.address.host}:${server.address.port}`;
  return { url: `http://${address}`, address, close: () => server.close() };
}

async function bridged(
  start: () => Promise<FixtureServer>,
  gateway: (origin: FixtureServer) => ProxyHttp,
  h2c: boolean,
  connect: (cairn: Running) => FixtureClient,
): Promise<ProxiedPairing> {
  const origin = await start();
  const cairn = await startGateway(gateway(origin), h2c);
  const client = connect(cairn);
  return {
    origin,
    client,
    close: async () => {
      client.close();
      await cairn.close();
      await origin.close();
    },
  };
}

// ---- gRPC-web clients -> gRPC origins --------------------------------------------------------

defineProxyScenarios('connect gRPC-web client -> Cairn (GrpcWebToGrpc) -> grpc-js server', () =>
  bridged(
    startGrpcJsServer,
    (o) => new WebGateway(o.url),
    false,
    (c) => connectGrpcWebClient(c.url),
  ),
);

defineProxyScenarios('connect gRPC-web client -> Cairn (GrpcWebToGrpc) -> connect gRPC server', () =>
  bridged(
    startConnectGrpcServer,
    (o) => new WebGateway(o.url),
    false,
    (c) => connectGrpcWebClient(c.url),
  ),
);

// ---- gRPC clients -> gRPC-web origins --------------------------------------------------------

defineProxyScenarios('grpc-js client -> Cairn (h2c, GrpcToGrpcWeb) -> connect gRPC-web server', () =>
  bridged(
    startConnectGrpcWebServer,
    (o) => new GrpcGateway(o.url),
    true,
    (c) => grpcJsClient(c.address),
  ),
);

defineProxyScenarios('connect gRPC client -> Cairn (h2c, GrpcToGrpcWeb) -> connect gRPC-web server', () =>
  bridged(
    startConnectGrpcWebServer,
    (o) => new GrpcGateway(o.url),
    true,
    (c) => connectGrpcClient(c.url),
  ),
);

// ---- what the shared scenarios do not cover ----------------------------------------------------

test('gRPC-web text mode (base64 both ways) to a grpc-js server, unary and streaming', async (t) => {
  const origin = await startGrpcJsServer();
  t.after(() => origin.close());
  const cairn = await startGateway(new WebGateway(origin.url), false);
  t.after(() => cairn.close());
  const request = new EchoRequest({ message: 'in text', payload: Buffer.alloc(1000, 0xab) }).toBinary();
  const unary = await rawGrpcWebCall(cairn.url, ECHO_PATH, [request], { text: true });
  assert.equal(unary.httpStatus, 200);
  assert.equal(unary.headers['content-type'], 'application/grpc-web-text+proto');
  assert.equal(unary.trailers?.status, 0);
  assert.equal(unary.messages.length, 1);
  const reply = EchoResponse.fromBinary(unary.messages[0] as Buffer);
  assert.equal(reply.message, 'in text');
  assert.equal(reply.server, 'grpc-js');
  assert.deepEqual(Buffer.from(reply.payload), Buffer.alloc(1000, 0xab));

  const streamPath = ECHO_PATH.replace(/Echo$/, 'Stream');
  const streamed = await rawGrpcWebCall(
    cairn.url,
    streamPath,
    [new EchoRequest({ message: 's', count: 3, failCode: NOT_FOUND, failMessage: 'gone' }).toBinary()],
    { text: true },
  );
  assert.equal(streamed.messages.length, 3);
  assert.equal(streamed.trailers?.status, NOT_FOUND);
  assert.equal(streamed.trailers?.message, 'gone');
});

test('CORS: the preflight is answered by Cairn, and responses expose the gRPC headers', async (t) => {
  const origin = await startGrpcJsServer();
  t.after(() => origin.close());
  const cairn = await startGateway(
    new WebGateway(origin.url, {
      cors: { allowOrigins: ['https://app.example'], exposeHeaders: ['x-fixture-server'] },
    }),
    false,
  );
  t.after(() => cairn.close());
  const preflight = await httpRequest(`${cairn.url}${ECHO_PATH}`, {
    method: 'OPTIONS',
    headers: {
      origin: 'https://app.example',
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type,x-grpc-web,x-user-agent,grpc-timeout',
    },
  });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers['access-control-allow-origin'], 'https://app.example');
  assert.match(String(preflight.headers['access-control-allow-methods']), /POST/);
  assert.equal(
    preflight.headers['access-control-allow-headers'],
    'content-type,x-grpc-web,x-user-agent,grpc-timeout',
  );
  assert.equal(origin.calls.length, 0, 'the preflight never reached the gRPC origin');

  const stranger = await httpRequest(`${cairn.url}${ECHO_PATH}`, {
    method: 'OPTIONS',
    headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
  });
  assert.equal(stranger.status, 403);

  const call = await rawGrpcWebCall(cairn.url, ECHO_PATH, [new EchoRequest({ message: 'cors' }).toBinary()], {
    headers: { origin: 'https://app.example' },
  });
  assert.equal(call.trailers?.status, 0);
  assert.equal(call.headers['access-control-allow-origin'], 'https://app.example');
  assert.equal(
    call.headers['access-control-expose-headers'],
    'grpc-status, grpc-message, grpc-status-details-bin, x-fixture-server',
  );
});

test('gRPC -> gRPC-web: HTTP errors from the origin become the mapped gRPC status', async (t) => {
  let next = 503;
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(next, { 'content-type': 'text/html' });
    res.end('<h1>not a gRPC answer</h1>');
  });
  server.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const cairn = await startGateway(new GrpcGateway(url), true);
  t.after(() => cairn.close());
  const client = grpcJsClient(cairn.address);
  t.after(() => client.close());

  const unavailable = await client.echo({ message: 'x' });
  assert.equal(unavailable.status, UNAVAILABLE);
  assert.equal(unavailable.message, 'the origin answered HTTP 503 (text/html)');

  next = 404;
  const unimplemented = await client.stream({ message: 'x', count: 2 });
  assert.equal(unimplemented.status, UNIMPLEMENTED);
  assert.equal(unimplemented.responses.length, 0);
});

test('origin down: both bridges answer with gRPC UNAVAILABLE, not an HTML 502', async (t) => {
  const gone = createServer();
  gone.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => gone.once('listening', resolve));
  const url = `http://127.0.0.1:${(gone.address() as AddressInfo).port}`;
  await new Promise<void>((resolve) => gone.close(() => resolve()));

  const toWeb = await startGateway(new GrpcGateway(url), true);
  t.after(() => toWeb.close());
  const grpcClient = grpcJsClient(toWeb.address);
  t.after(() => grpcClient.close());
  const a = await grpcClient.echo({ message: 'x' });
  assert.equal(a.status, UNAVAILABLE);
  assert.match(a.message, /cannot connect/);

  const fromWeb = await startGateway(new WebGateway(url), false);
  t.after(() => fromWeb.close());
  const webClient = connectGrpcWebClient(fromWeb.url);
  t.after(() => webClient.close());
  const b = await webClient.echo({ message: 'x' });
  assert.equal(b.status, UNAVAILABLE);
});

test('gRPC -> gRPC-web: grpc-message is re-encoded per spec, so reserved characters survive connect-es -> grpc-js', async (t) => {
  const origin = await startConnectGrpcWebServer();
  t.after(() => origin.close());
  const cairn = await startGateway(new GrpcGateway(origin.url), true);
  t.after(() => cairn.close());
  const client = grpcJsClient(cairn.address);
  t.after(() => client.close());
  const message = 'bad path: /a/b?c=d&e#f';
  const outcome = await client.echo({ failCode: NOT_FOUND, failMessage: message });
  assert.equal(outcome.status, NOT_FOUND);
  assert.equal(outcome.message, message);
});
