/**
 * `cairn-bare`: Cairn with only `upstreamPeer` overridden — the baseline that `cairn-all-hooks`
 * is compared with, so the difference is what overriding every other hook costs.
 *
 *   node --import tsx bench/targets/cairn-bare.ts --port 8086 --origin http://127.0.0.1:8081 [--admin 127.0.0.1:9090]
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
  throw new Error('cairn-bare: --port N --origin URL are required');

const peer = new HttpPeer(values.origin);

class Bare extends ProxyHttp<Record<string, never>> {
  override upstreamPeer(_s: Session): HttpPeer {
    return peer;
  }
}

// The admin listener (optional) serves /metrics, from which the runner reads origin-connection reuse.
await serve(new Bare(), {
  listen: `${values.host}:${port}`,
  logLevel: 'silent',
  admin: values.admin ?? false,
});
console.log(`cairn-bare listening on http://${values.host}:${port} -> ${values.origin}`);
