import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import {
  ECHO_HEADER,
  SERVER_HEADER,
  TRAILER,
  TRAILER_BIN,
  TRAILER_BIN_VALUE,
  connectGrpcClient,
  connectGrpcWebClient,
  grpcJsClient,
  startConnectGrpcServer,
  startConnectGrpcWebServer,
  startGrpcJsServer,
} from './fixtures/index.ts';
import type { FixtureClient, FixtureServer, FixtureStack } from './fixtures/index.ts';

// gRPC status codes used below (grpc/grpc doc/statuscodes.md).
const OK = 0;
const NOT_FOUND = 5;
const FAILED_PRECONDITION = 9;
const DEADLINE_EXCEEDED = 4;

interface Pairing {
  readonly name: string;
  readonly server: FixtureStack;
  readonly start: () => Promise<FixtureServer>;
  readonly connect: (server: FixtureServer) => FixtureClient;
  /**
   * connect-es encodes grpc-message with encodeURIComponent and grpc-js decodes it with decodeURI,
   * so URI-reserved characters (`:` `/` `?` `#` `&` …) reach a grpc-js client still escaped
   * (`%3A`). Same-stack pairings round-trip them; the cross-stack grpc-js client does not.
   */
  readonly reservedCharsSurvive: boolean;
}

// Each client talks directly to a matching server: the baseline the proxy tests reuse through
// Cairn. The two cross-stack pairings prove both stacks put identical protobuf bytes on the wire.
const PAIRINGS: readonly Pairing[] = [
  {
    name: 'grpc-js client -> grpc-js server (gRPC, HTTP/2)',
    server: 'grpc-js',
    start: startGrpcJsServer,
    connect: (s) => grpcJsClient(s.address),
    reservedCharsSurvive: true,
  },
  {
    name: 'connect gRPC-web client -> connect gRPC-web server (HTTP/1.1)',
    server: 'connect-grpc-web',
    start: startConnectGrpcWebServer,
    connect: (s) => connectGrpcWebClient(s.url),
    reservedCharsSurvive: true,
  },
  {
    name: 'connect gRPC client -> connect gRPC server (HTTP/2)',
    server: 'connect-grpc',
    start: startConnectGrpcServer,
    connect: (s) => connectGrpcClient(s.url),
    reservedCharsSurvive: true,
  },
  {
    name: 'grpc-js client -> connect gRPC server (cross-stack)',
    server: 'connect-grpc',
    start: startConnectGrpcServer,
    connect: (s) => grpcJsClient(s.address),
    reservedCharsSurvive: false,
  },
  {
    name: 'connect gRPC client -> grpc-js server (cross-stack)',
    server: 'grpc-js',
    start: startGrpcJsServer,
    connect: (s) => connectGrpcClient(s.url),
    reservedCharsSurvive: true,
  },
];

for (const pairing of PAIRINGS) {
  void describe(pairing.name, () => {
    let server: FixtureServer;
    let client: FixtureClient;

    before(async () => {
      server = await pairing.start();
      client = pairing.connect(server);
    });

    after(async () => {
      client.close();
      await server.close();
    });

    void it('unary: echoes message and bytes, sets response headers and trailers', async () => {
      const payload = Buffer.from([0, 1, 2, 0xff]);
      const outcome = await client.echo(
        { message: 'héllo', payload },
        { metadata: { [ECHO_HEADER]: 'ping-1', 'x-extra-bin': Buffer.from([9, 8]) } },
      );
      assert.equal(outcome.status, OK, outcome.message);
      assert.equal(outcome.message, '');
      assert.equal(outcome.response?.message, 'héllo');
      assert.deepEqual(Buffer.from(outcome.response.payload), payload);
      assert.equal(outcome.response.server, pairing.server);
      assert.equal(outcome.headers[SERVER_HEADER], pairing.server);
      assert.equal(outcome.headers[ECHO_HEADER], 'ping-1');
      assert.equal(outcome.trailers[TRAILER], 'ok');
      assert.deepEqual(outcome.trailers[TRAILER_BIN], TRAILER_BIN_VALUE);
      // The server saw the request metadata, and reports it in the response too.
      assert.equal(server.calls.at(-1)?.metadata[ECHO_HEADER], 'ping-1');
      assert.equal(outcome.response.requestMetadata[ECHO_HEADER], 'ping-1');
      assert.equal(server.calls.at(-1)?.method, 'Echo');
    });

    void it('server streaming: N messages in order, then trailers', async () => {
      const outcome = await client.stream({ message: 'tick', count: 5 });
      assert.equal(outcome.status, OK, outcome.message);
      assert.deepEqual(
        outcome.responses.map((r) => [r.index, r.message, r.server]),
        [0, 1, 2, 3, 4].map((i) => [i, 'tick', pairing.server]),
      );
      assert.equal(outcome.headers[SERVER_HEADER], pairing.server);
      assert.equal(outcome.trailers[TRAILER], 'ok');
      assert.deepEqual(outcome.trailers[TRAILER_BIN], TRAILER_BIN_VALUE);
    });

    void it('server streaming: zero messages is still a clean OK', async () => {
      const outcome = await client.stream({ message: 'none', count: 0 });
      assert.equal(outcome.status, OK, outcome.message);
      assert.deepEqual(outcome.responses, []);
    });

    void it('unary error: status, percent-encoded message and trailers reach the client', async () => {
      const message = 'no such thing ü 100% "quoted"\ttab 日本';
      const outcome = await client.echo({ failCode: NOT_FOUND, failMessage: message });
      assert.equal(outcome.status, NOT_FOUND);
      assert.equal(outcome.message, message);
      assert.equal(outcome.response, undefined);
      assert.equal(outcome.trailers[TRAILER], 'failed');
      assert.deepEqual(outcome.trailers[TRAILER_BIN], TRAILER_BIN_VALUE);
    });

    void it('unary error: a grpc-message with URI-reserved characters', async () => {
      const message = 'bad: a/b?c#d&e=f+g,h;i@j$k';
      const outcome = await client.echo({ failCode: NOT_FOUND, failMessage: message });
      assert.equal(outcome.status, NOT_FOUND);
      if (pairing.reservedCharsSurvive) assert.equal(outcome.message, message);
      else
        assert.notEqual(
          outcome.message,
          message,
          'grpc-js now decodes connect-es messages fully: set reservedCharsSurvive',
        );
    });

    void it('streaming error after some messages: messages, then the error status', async () => {
      const outcome = await client.stream({
        message: 'partial',
        count: 2,
        failCode: FAILED_PRECONDITION,
        failMessage: 'stopped',
      });
      assert.equal(outcome.status, FAILED_PRECONDITION);
      assert.equal(outcome.message, 'stopped');
      assert.deepEqual(
        outcome.responses.map((r) => r.index),
        [0, 1],
      );
      assert.equal(outcome.trailers[TRAILER], 'failed');
    });

    void it('deadline: the client gets DEADLINE_EXCEEDED and the server sees the call cut short', async () => {
      const cancelled = once(server.events, 'cancelled');
      // The server would answer after 10 minutes; only the deadline can end this call.
      const outcome = await client.echo({ message: 'slow', sleepMs: 600_000 }, { timeoutMs: 200 });
      assert.equal(outcome.status, DEADLINE_EXCEEDED, outcome.message);
      const [call] = await cancelled;
      assert.equal(call.request.message, 'slow');
    });

    void it('streaming deadline: DEADLINE_EXCEEDED', async () => {
      const cancelled = once(server.events, 'cancelled');
      const outcome = await client.stream(
        { message: 'slow', count: 3, sleepMs: 600_000 },
        { timeoutMs: 200 },
      );
      assert.equal(outcome.status, DEADLINE_EXCEEDED, outcome.message);
      assert.deepEqual(outcome.responses, []);
      await cancelled;
    });

    void it('a 4 MiB message each way', async () => {
      const payload = randomBytes(4 * 1024 * 1024);
      const outcome = await client.echo({ message: 'big', payload });
      assert.equal(outcome.status, OK, outcome.message);
      assert.ok(Buffer.from(outcome.response!.payload).equals(payload));
    });
  });
}
