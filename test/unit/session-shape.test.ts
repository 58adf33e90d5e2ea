/**
 * Stable shapes (STYLE.md): every `Session` has the same own keys, in the same order, from its
 * first hook to `logging`, whatever path the request took — nothing is added or deleted later, so
 * every session shares one hidden class (fastify guards this with `test/same-shape.test.js`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { HttpPeer, ProxyHttp } from '../../src/index.ts';
import type { CairnError, Session } from '../../src/index.ts';
import { RawClient, httpRequest, startCairn, startOrigin } from '../helpers/servers.ts';

interface Ctx {
  early: (string | symbol)[];
}

test(
  'every Session has the same own keys in the same order, first hook to logging, on every path',
  { timeout: 20_000 },
  async (t) => {
    const origin = await startOrigin(t, (req, res) => {
      if (req.url === '/partial') {
        res.writeHead(200);
        res.write('partial');
        return;
      }
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    const deadServer = createServer();
    await new Promise<void>((resolve) => deadServer.listen(0, '127.0.0.1', resolve));
    const deadPort = (deadServer.address() as AddressInfo).port;
    await new Promise<void>((resolve) => deadServer.close(() => resolve()));
    const dead = new HttpPeer(`http://127.0.0.1:${deadPort}`);

    const shapes = new Map<string, { early: (string | symbol)[]; last: (string | symbol)[] }>();
    let onLogged: () => void = () => {};
    class Shapes extends ProxyHttp<Ctx> {
      override newCtx(): Ctx {
        return { early: [] };
      }
      override earlyRequestFilter(session: Session, ctx: Ctx): void {
        ctx.early = Reflect.ownKeys(session);
      }
      override requestFilter(session: Session): boolean {
        if (session.path === '/answered') {
          session.respond(204);
          return true;
        }
        if (session.path === '/throws') throw new Error('boom');
        return false;
      }
      override upstreamPeer(session: Session): HttpPeer {
        return session.path === '/dead' ? dead : origin.peer();
      }
      override logging(session: Session, _error: CairnError | undefined, ctx: Ctx): void {
        shapes.set(session.path, { early: ctx.early, last: Reflect.ownKeys(session) });
        onLogged();
      }
    }
    const cairn = await startCairn(t, new Shapes());
    const allLogged = (count: number): Promise<void> =>
      new Promise((resolve) => {
        onLogged = () => {
          if (shapes.size >= count) resolve();
        };
        onLogged();
      });

    await httpRequest(`${cairn.url}/ok`);
    await httpRequest(`${cairn.url}/upload`, { method: 'POST', body: 'body bytes' });
    await httpRequest(`${cairn.url}/answered`);
    await httpRequest(`${cairn.url}/dead`);
    await httpRequest(`${cairn.url}/throws`);
    const client = await RawClient.connect(cairn.port);
    client.write('GET /partial HTTP/1.1\r\nHost: a\r\n\r\n');
    await client.waitFor('partial');
    client.destroy();
    await allLogged(6);

    // The reference: the fields the constructor assigns, in order.
    const reference = [...shapes.values()][0]!.early;
    assert.ok(reference.includes('error') && reference.includes('aborted') && reference.includes('peer'));
    for (const [path, { early, last }] of shapes) {
      assert.deepEqual(early, reference, `${path}: keys at the first hook`);
      assert.deepEqual(last, reference, `${path}: keys at logging`);
    }
  },
);
