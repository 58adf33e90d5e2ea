// Cairn's gRPC codec against real servers: what it frames, real stacks accept; what real stacks
// send (frames split wherever the socket splits them, trailer blocks, percent-encoding, -bin
// metadata), it decodes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import {
  ECHO_HEADER,
  ECHO_PATH,
  EchoRequest,
  EchoResponse,
  SERVER_HEADER,
  STREAM_PATH,
  TRAILER,
  TRAILER_BIN,
  TRAILER_BIN_VALUE,
  rawGrpcCall,
  rawGrpcWebCall,
  startConnectGrpcWebServer,
  startGrpcJsServer,
} from './fixtures/index.ts';
import type { FixtureServer, RawCallResult } from './fixtures/index.ts';
import { GrpcStatus } from '../../hooks/grpc-web/codec.ts';

const request = (init: Partial<EchoRequest>): Uint8Array => new EchoRequest(init).toBinary();

function assertOkEcho(result: RawCallResult, server: string, message: string): void {
  assert.equal(result.httpStatus, 200);
  assert.equal(result.trailers?.status, GrpcStatus.OK, result.trailers?.message);
  assert.equal(result.messages.length, 1);
  const response = EchoResponse.fromBinary(result.messages[0]!);
  assert.equal(response.message, message);
  assert.equal(response.server, server);
  assert.deepEqual(result.trailers.metadata.get(TRAILER), ['ok']);
  assert.deepEqual(result.trailers.metadata.get(TRAILER_BIN), [TRAILER_BIN_VALUE]);
}

void describe('codec -> connect-es gRPC-web server (HTTP/1.1)', () => {
  let server: FixtureServer;
  before(async () => {
    server = await startConnectGrpcWebServer();
  });
  after(async () => {
    await server.close();
  });

  void it('unary: the server accepts codec frames; the codec parses data and trailer frames', async () => {
    const result = await rawGrpcWebCall(server.url, ECHO_PATH, [request({ message: 'raw ü' })], {
      headers: { [ECHO_HEADER]: 'e1' },
    });
    assertOkEcho(result, 'connect-grpc-web', 'raw ü');
    assert.equal(result.headers['content-type'], 'application/grpc-web+proto');
    assert.equal(result.headers[SERVER_HEADER], 'connect-grpc-web');
    assert.equal(result.frames.at(-1)?.trailer, true);
  });

  void it('streaming: N data frames then the trailer frame', async () => {
    const result = await rawGrpcWebCall(server.url, STREAM_PATH, [request({ message: 's', count: 4 })]);
    assert.equal(result.trailers?.status, GrpcStatus.OK);
    assert.deepEqual(
      result.messages.map((m) => EchoResponse.fromBinary(m).index),
      [0, 1, 2, 3],
    );
  });

  void it('error: grpc-message percent-decoded per spec (connect-es encodes with encodeURIComponent)', async () => {
    const message = 'bad: a/b?c#d&e=f+g,h;i@j$k 100% ü 日本';
    const result = await rawGrpcWebCall(server.url, ECHO_PATH, [
      request({ failCode: GrpcStatus.NOT_FOUND, failMessage: message }),
    ]);
    assert.equal(result.trailers?.status, GrpcStatus.NOT_FOUND);
    assert.equal(result.trailers.message, message);
    assert.deepEqual(result.trailers.metadata.get(TRAILER), ['failed']);
  });

  void it('deadline: a codec-formatted grpc-timeout is honoured', async () => {
    const cancelled = once(server.events, 'cancelled');
    const result = await rawGrpcWebCall(server.url, ECHO_PATH, [request({ sleepMs: 600_000 })], {
      timeoutMs: 150,
    });
    assert.equal(result.trailers?.status, GrpcStatus.DEADLINE_EXCEEDED);
    await cancelled;
  });

  void it('a 4 MiB message, parsed from whatever chunks the socket delivers', async () => {
    const payload = randomBytes(4 * 1024 * 1024);
    const result = await rawGrpcWebCall(server.url, ECHO_PATH, [request({ message: 'big', payload })]);
    assert.equal(result.trailers?.status, GrpcStatus.OK);
    assert.ok(Buffer.from(EchoResponse.fromBinary(result.messages[0]!).payload).equals(payload));
  });

  void it('connect-es does not serve application/grpc-web-text (415): text interop needs a translating proxy', async () => {
    const result = await rawGrpcWebCall(server.url, ECHO_PATH, [request({ message: 't' })], { text: true });
    assert.equal(result.httpStatus, 415);
  });
});

void describe('codec -> grpc-js server (gRPC, HTTP/2)', () => {
  let server: FixtureServer;
  before(async () => {
    server = await startGrpcJsServer();
  });
  after(async () => {
    await server.close();
  });

  void it('unary: codec frames in, frames and HTTP/2 trailers out', async () => {
    const result = await rawGrpcCall(server.url, ECHO_PATH, [request({ message: 'raw h2' })]);
    assertOkEcho(result, 'grpc-js', 'raw h2');
    assert.equal(result.headers['content-type'], 'application/grpc+proto');
  });

  void it('error: status and message from HTTP/2 trailers', async () => {
    const message = 'bad: a/b 100% ü';
    const result = await rawGrpcCall(server.url, ECHO_PATH, [
      request({ failCode: GrpcStatus.PERMISSION_DENIED, failMessage: message }),
    ]);
    assert.equal(result.trailers?.status, GrpcStatus.PERMISSION_DENIED);
    assert.equal(result.trailers.message, message);
  });

  void it('deadline: a codec-formatted grpc-timeout is honoured', async () => {
    const cancelled = once(server.events, 'cancelled');
    const result = await rawGrpcCall(server.url, ECHO_PATH, [request({ sleepMs: 600_000 })], {
      timeoutMs: 150,
    });
    assert.equal(result.trailers?.status, GrpcStatus.DEADLINE_EXCEEDED);
    await cancelled;
  });

  void it('unknown method: UNIMPLEMENTED', async () => {
    const result = await rawGrpcCall(server.url, '/cairn.interop.v1.EchoService/Nope', [request({})]);
    assert.equal(result.trailers?.status, GrpcStatus.UNIMPLEMENTED);
    assert.deepEqual(result.messages, []);
  });
});
