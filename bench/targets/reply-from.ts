/**
 * The `@fastify/reply-from` peer: fastify with reply-from's undici client, using the settings its
 * README gives as the defaults for throughput (`connections: 128, pipelining: 1,
 * keepAliveTimeout: 60 s`), stated explicitly so a change of defaults does not move the numbers
 * silently. Logger off, like the other peers.
 *
 *   node --import tsx bench/targets/reply-from.ts --port 8083 --origin http://127.0.0.1:8081
 */
import { parseArgs } from 'node:util';
import replyFrom from '@fastify/reply-from';
import Fastify from 'fastify';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    origin: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port <= 0 || values.origin === undefined)
  throw new Error('reply-from target: --port N --origin URL are required');

const app = Fastify({ logger: false, keepAliveTimeout: 120_000 });
await app.register(replyFrom, {
  base: values.origin,
  undici: { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 },
});
app.all('/*', (req, reply) => reply.from(req.url));

await app.listen({ port, host: values.host });
console.log(`reply-from listening on http://${values.host}:${port} -> ${values.origin}`);

const stop = (): void => {
  void app.close();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
