/**
 * The first two phases, the same for every kind of request (proxied, cached, upgraded):
 * `earlyRequestFilter`, then `requestFilter`. Synchronous unless a hook returns a promise.
 */
import { isThenable } from '../cache/store-util.ts';
import type { Engine } from './engine.ts';
import type { Session } from './session.ts';

export { isThenable };

/** Resolves true when `requestFilter` answered the request itself. */
export function runRequestFilters<Ctx>(
  engine: Engine<Ctx>,
  session: Session,
  ctx: Ctx,
): boolean | Promise<boolean> {
  if (engine.plan.earlyRequestFilter) {
    const r = engine.proxy.earlyRequestFilter(session, ctx);
    if (isThenable(r)) return r.then(() => requestFilter(engine, session, ctx));
  }
  return requestFilter(engine, session, ctx);
}

function requestFilter<Ctx>(engine: Engine<Ctx>, session: Session, ctx: Ctx): boolean | Promise<boolean> {
  return engine.plan.requestFilter ? engine.proxy.requestFilter(session, ctx) : false;
}
