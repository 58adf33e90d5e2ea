/**
 * The `@fastify/reply-from` peer: fastify with reply-from's undici client, using the settings its
 * README gives as the defaults for throughput (`connections: 128, pipelining: 1,
 * keepAliveTimeout: 60 s`), stated explicitly so a change of defaults does not move the numbers
 * silently. Logger off, like the other peers.
 *
 *   node --import tsx bench/targets/reply-from.ts --port 8083 --origin http://127.0.0.1:8081
 */
import replyFrom from '@fastify/reply-from';
import Fastify from 'fastify';
import { proxyTargetArgs } from '../lib/target-args.ts';

const { port, origin, host } = proxyTargetArgs('reply-from');

const app = Fastify({ logger: false, keepAliveTimeout: 120_000 });
await app.register(replyFrom, {
  base: origin,
  undici: { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 },
});
app.all('/*', (req, reply) => reply.from(req.url));

await app.listen({ port, host });
console.log(`reply-from listening on http://${host}:${port} -> ${origin}`);

const stop = (): void => {
  void app.close();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
