/**
 * The gRPC load generator: `--concurrency` unary `Echo` calls kept in flight for `--warmup` then
 * `--duration` seconds with one client (grpc-js over h2c, or connect-es gRPC-web over HTTP/1.1),
 * counting only the measured window. Prints one line `RESULT {json}` and exits.
 *
 *   node --import tsx bench/targets/grpc-load.ts --client grpc-js --target 127.0.0.1:PORT --duration 3
 */
import { parseArgs } from 'node:util';
import { connectGrpcWebClient, grpcJsClient } from '../../test/interop/fixtures/index.ts';

const { values } = parseArgs({
  options: {
    client: { type: 'string', default: 'grpc-js' },
    target: { type: 'string' },
    duration: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '32' },
    bytes: { type: 'string', default: '100' },
  },
});
if (values.target === undefined) throw new Error('--target is required');
const client =
  values.client === 'connect-grpc-web'
    ? connectGrpcWebClient(`http://${values.target}`)
    : grpcJsClient(values.target);
const payload = Buffer.alloc(Number(values.bytes), 'x');
const warmupEnd = performance.now() + Number(values.warmup) * 1000;
const end = warmupEnd + Number(values.duration) * 1000;
let calls = 0;
let errors = 0;
const latencies: number[] = [];

async function worker(): Promise<void> {
  for (;;) {
    const started = performance.now();
    if (started >= end) return;
    const outcome = await client.echo({ message: 'bench', payload });
    const done = performance.now();
    if (started < warmupEnd) continue;
    if (outcome.status === 0 && outcome.response?.payload.length === payload.length) {
      calls++;
      latencies.push(done - started);
    } else errors++;
  }
}

await Promise.all(Array.from({ length: Number(values.concurrency) }, () => worker()));
client.close();
latencies.sort((a, b) => a - b);
const at = (q: number): number =>
  latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
const seconds = Number(values.duration);
process.stdout.write(
  `RESULT ${JSON.stringify({ calls, errors, seconds, callsPerSec: calls / seconds, p50Ms: at(0.5), p99Ms: at(0.99) })}\n`,
);
process.exit(0);
