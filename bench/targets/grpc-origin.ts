/**
 * A gRPC benchmark origin: the interop fixtures' EchoService on one stack, port 0 on 127.0.0.1.
 * Prints `READY <port>` once listening; runs until killed.
 *
 *   node --import tsx bench/targets/grpc-origin.ts --stack grpc-js|connect-grpc-web
 */
import { parseArgs } from 'node:util';
import { startConnectGrpcWebServer, startGrpcJsServer } from '../../test/interop/fixtures/index.ts';

const { values } = parseArgs({ options: { stack: { type: 'string', default: 'grpc-js' } } });
const server =
  values.stack === 'connect-grpc-web' ? await startConnectGrpcWebServer() : await startGrpcJsServer();
// The fixtures record every call for tests; a benchmark must not grow a list for minutes.
server.events.removeAllListeners();
const calls = server.calls as unknown[];
setInterval(() => {
  calls.length = 0;
}, 1000).unref();
process.stdout.write(`READY ${server.port}\n`);
