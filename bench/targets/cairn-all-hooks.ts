/**
 * `cairn-all-hooks`: Cairn with every phase hook overridden by trivial synchronous code, to
 * measure what the phase runner costs when a subclass uses all of it. Compared with `cairn-bare`
 * (only `upstreamPeer`): the target is that all hooks cost at most 10% of requests per second.
 * Each hook does a little real work (a counter, a header) so none can be optimised away.
 *
 *   node --import tsx bench/targets/cairn-all-hooks.ts --port 8085 --origin http://127.0.0.1:8081 [--admin 127.0.0.1:9090]
 */
import { parseArgs } from 'node:util';
import { HttpPeer, ProxyHttp, serve, type Session } from '../../src/index.ts';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    origin: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    admin: { type: 'string' },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port <= 0 || values.origin === undefined)
  throw new Error('cairn-all-hooks: --port N --origin URL are required');

interface Ctx {
  n: number;
}

/** Parameter `I` of hook `K`, so this file follows the engine's types instead of restating them. */
type Arg<K extends keyof ProxyHttp<Ctx>, I extends number> = ProxyHttp<Ctx>[K] extends (
  ...args: infer A
) => unknown
  ? A[I]
  : never;

const peer = new HttpPeer(values.origin);

class AllHooks extends ProxyHttp<Ctx> {
  override newCtx(): Ctx {
    return { n: 0 };
  }
  override earlyRequestFilter(_s: Session, ctx: Ctx): void {
    ctx.n++;
  }
  override requestFilter(_s: Session, ctx: Ctx): boolean {
    ctx.n++;
    return false;
  }
  override requestBodyFilter(
    _s: Session,
    chunk: Arg<'requestBodyFilter', 1>,
    _end: boolean,
    ctx: Ctx,
  ): Arg<'requestBodyFilter', 1> {
    ctx.n++;
    return chunk;
  }
  override proxyUpstreamFilter(_s: Session, ctx: Ctx): boolean {
    ctx.n++;
    return true; // true = go to the origin
  }
  override upstreamPeer(_s: Session, ctx: Ctx): HttpPeer {
    ctx.n++;
    return peer;
  }
  override connectedToUpstream(_s: Session, _reused: boolean, _peer: HttpPeer, ctx: Ctx): void {
    ctx.n++;
  }
  override upstreamRequestFilter(_s: Session, req: Arg<'upstreamRequestFilter', 1>, ctx: Ctx): void {
    ctx.n++;
    req.headers['x-bench'] = '1';
  }
  override upstreamResponseFilter(_s: Session, _res: Arg<'upstreamResponseFilter', 1>, ctx: Ctx): void {
    ctx.n++;
  }
  override upstreamResponseBodyFilter(
    _s: Session,
    chunk: Arg<'upstreamResponseBodyFilter', 1>,
    _end: boolean,
    ctx: Ctx,
  ): Arg<'upstreamResponseBodyFilter', 1> {
    ctx.n++;
    return chunk;
  }
  override responseFilter(_s: Session, res: Arg<'responseFilter', 1>, ctx: Ctx): void {
    ctx.n++;
    res.headers['x-bench'] = '1';
  }
  override responseBodyFilter(
    _s: Session,
    chunk: Arg<'responseBodyFilter', 1>,
    _end: boolean,
    ctx: Ctx,
  ): Arg<'responseBodyFilter', 1> {
    ctx.n++;
    return chunk;
  }
  override logging(_s: Session, _err: Arg<'logging', 1>, ctx: Ctx): void {
    ctx.n++;
  }
}

// The admin listener (optional) serves /metrics, from which the runner reads origin-connection reuse.
await serve(new AllHooks(), {
  listen: `${values.host}:${port}`,
  logLevel: 'silent',
  admin: values.admin ?? false,
});
console.log(`cairn-all-hooks listening on http://${values.host}:${port} -> ${values.origin}`);
