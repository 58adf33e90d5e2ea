/**
 * The gRPC scenarios every proxied pairing must pass (native gRPC through Cairn, and both gRPC-web
 * bridges): unary and server-streaming calls, request and response metadata (ASCII and `-bin`),
 * error statuses with messages (before and after streamed messages), deadlines (the origin sees the
 * call cancelled), and a 4 MiB message. Real client and server stacks only — see fixtures/.
 *
 * `defineProxyScenarios(name, setup)` registers one `describe` block; `setup` starts the origin,
 * Cairn and a client pointed at Cairn, and returns them with a cleanup function.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ECHO_HEADER, SERVER_HEADER, TRAILER, TRAILER_BIN, TRAILER_BIN_VALUE } from './fixtures/index.ts';
import type { FixtureClient, FixtureServer } from './fixtures/index.ts';

const OK = 0;
const DEADLINE_EXCEEDED = 4;
const NOT_FOUND = 5;
const FAILED_PRECONDITION = 9;

export interface ProxiedPairing {
  readonly origin: FixtureServer;
  readonly client: FixtureClient;
  /** Stop Cairn and close the client and origin. */
  readonly close: () => Promise<void>;
}

/** A message without URI-reserved characters, so it survives connect-es -> grpc-js (see docs/grpc.md). */
const ERROR_MESSAGE = 'nope — 100% not here, é';

export function defineProxyScenarios(name: string, setup: () => Promise<ProxiedPairing>): void {
  describe(name, () => {
    let pairing: ProxiedPairing;
    before(async () => {
      pairing = await setup();
    });
    after(async () => {
      await pairing.close();
    });

    it('unary: message, payload, metadata both ways, trailers (ASCII and -bin)', async () => {
      const { client, origin } = pairing;
      const sent = Buffer.from('ping-bin-\x00\xff');
      const outcome = await client.echo(
        { message: 'hello', payload: Buffer.from([1, 2, 3]) },
        { metadata: { [ECHO_HEADER]: 'echo-me', 'x-request-tag': 'tag-1', 'x-request-bin': sent } },
      );
      assert.equal(outcome.status, OK, outcome.message);
      assert.equal(outcome.message, '');
      assert.equal(outcome.response?.message, 'hello');
      assert.deepEqual(Buffer.from(outcome.response?.payload ?? []), Buffer.from([1, 2, 3]));
      assert.equal(outcome.response?.server, origin.stack);
      assert.equal(outcome.response?.requestMetadata['x-request-tag'], 'tag-1');
      assert.equal(outcome.headers[SERVER_HEADER], origin.stack);
      assert.equal(outcome.headers[ECHO_HEADER], 'echo-me');
      assert.equal(outcome.trailers[TRAILER], 'ok');
      assert.deepEqual(outcome.trailers[TRAILER_BIN], TRAILER_BIN_VALUE);
    });

    it('server streaming: every message in order, then the status and trailers', async () => {
      const outcome = await pairing.client.stream({ message: 'tick', count: 7 });
      assert.equal(outcome.status, OK, outcome.message);
      assert.deepEqual(
        outcome.responses.map((r) => `${r.message}#${r.index}`),
        Array.from({ length: 7 }, (_, i) => `tick#${i}`),
      );
      assert.equal(outcome.trailers[TRAILER], 'ok');
    });

    it('error statuses keep their code, message and trailers (unary, and after streamed messages)', async () => {
      const unary = await pairing.client.echo({ failCode: NOT_FOUND, failMessage: ERROR_MESSAGE });
      assert.equal(unary.status, NOT_FOUND);
      assert.equal(unary.message, ERROR_MESSAGE);
      assert.equal(unary.trailers[TRAILER], 'failed');

      const stream = await pairing.client.stream({
        message: 'm',
        count: 2,
        failCode: FAILED_PRECONDITION,
        failMessage: 'stop here',
      });
      assert.equal(stream.responses.length, 2);
      assert.equal(stream.status, FAILED_PRECONDITION);
      assert.equal(stream.message, 'stop here');
      assert.equal(stream.trailers[TRAILER], 'failed');
    });

    it('deadlines: the client gets DEADLINE_EXCEEDED and the origin sees the call cancelled', async () => {
      const { client, origin } = pairing;
      const cancelled = once(origin.events, 'cancelled');
      const outcome = await client.echo({ message: 'slow', sleepMs: 20_000 }, { timeoutMs: 300 });
      assert.equal(outcome.status, DEADLINE_EXCEEDED);
      const [call] = (await cancelled) as [{ request: { message: string } }];
      assert.equal(call.request.message, 'slow');
    });

    it('a 4 MiB message each way', async () => {
      const payload = randomBytes(4 * 1024 * 1024);
      const outcome = await pairing.client.echo({ message: 'big', payload });
      assert.equal(outcome.status, OK, outcome.message);
      assert.equal(outcome.response?.payload.length, payload.length);
      assert.ok(Buffer.from(outcome.response?.payload ?? []).equals(payload));
    });
  });
}
