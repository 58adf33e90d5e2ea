/**
 * Native gRPC through Cairn: HTTP/2 both sides (h2c with prior knowledge from the client, Cairn's
 * HTTP/2 client to the origin), with real stacks — a grpc-js client to a grpc-js server, and a
 * connect-es gRPC client to a connect-es gRPC server. Trailers, grpc-status / grpc-message,
 * metadata, deadlines and a 4 MiB message all pass through (test/interop/proxy-scenarios.ts); and
 * concurrent calls share one origin connection.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { HttpPeer, ProxyHttp, serve } from '../../src/index.ts';
import { collectingLogger, scrapeMetrics } from '../helpers/servers.ts';
import {
  connectGrpcClient,
  grpcJsClient,
  startConnectGrpcServer,
  startGrpcJsServer,
} from './fixtures/index.ts';
import type { FixtureClient, FixtureServer } from './fixtures/index.ts';
import { defineProxyScenarios } from './proxy-scenarios.ts';
import type { ProxiedPairing } from './proxy-scenarios.ts';

/** The whole proxy: every call to one HTTP/2 origin. */
class GrpcProxy extends ProxyHttp {
  readonly peer: HttpPeer;
  constructor(origin: string) {
    super();
    this.peer = new HttpPeer(origin, { http2: true });
  }
  override upstreamPeer(): HttpPeer {
    return this.peer;
  }
}

async function proxied(
  start: () => Promise<FixtureServer>,
  connect: (cairnUrl: string, cairnAddress: string) => FixtureClient,
): Promise<ProxiedPairing & { adminUrl: string; cairnAddress: string }> {
  const origin = await start();
  const server = await serve(new GrpcProxy(origin.url), {
    listen: '127.0.0.1:0',
    admin: '127.0.0.1:0',
    h2c: true,
    logger: collectingLogger('warn').logger,
    shutdownTimeout: 1000,
  });
  const address = `${server.address.host}:${server.address.port}`;
  const client = connect(`http://${address}`, address);
  const admin = server.adminAddress;
  return {
    origin,
    client,
    cairnAddress: address,
    adminUrl: admin === undefined ? '' : `http://${admin.host}:${admin.port}`,
    close: async () => {
      client.close();
      await server.close();
      await origin.close();
    },
  };
}

defineProxyScenarios('grpc-js client -> Cairn (h2c) -> grpc-js server', () =>
  proxied(startGrpcJsServer, (_url, address) => grpcJsClient(address)),
);

defineProxyScenarios('connect gRPC client -> Cairn (h2c) -> connect gRPC server', () =>
  proxied(startConnectGrpcServer, (url) => connectGrpcClient(url)),
);

test('concurrent calls are multiplexed over one origin connection (created vs reused, per peer)', async (t) => {
  const pairing = await proxied(startGrpcJsServer, (_url, address) => grpcJsClient(address));
  t.after(() => pairing.close());
  const outcomes = await Promise.all(
    Array.from({ length: 20 }, (_, i) => pairing.client.echo({ message: `c${i}`, sleepMs: 50 })),
  );
  assert.deepEqual(
    outcomes.map((o) => o.response?.message),
    Array.from({ length: 20 }, (_, i) => `c${i}`),
  );
  const metrics = await scrapeMetrics(pairing.adminUrl);
  const peer = pairing.origin.address;
  assert.equal(metrics.value('cairn_upstream_peer_connections_created_total', { peer }), 1);
  assert.equal(metrics.value('cairn_upstream_peer_connections_reused_total', { peer }), 19);
  assert.equal(metrics.value('cairn_upstream_connections_created_total'), 1);
});

test('a trailers-only answer (an unknown method) reaches a grpc-js client with its status, not INTERNAL', async (t) => {
  const pairing = await proxied(startGrpcJsServer, (_url, address) => grpcJsClient(address));
  t.after(() => pairing.close());
  // grpc-js answers an unknown method with one HEADERS frame that ends the stream (Trailers-Only);
  // a client ignores grpc-status in headers that do not end the stream, so Cairn must keep it so.
  const client = new grpc.Client(pairing.cairnAddress, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const status = await new Promise<grpc.StatusObject>((resolve) => {
    const call = client.makeUnaryRequest(
      '/cairn.interop.v1.EchoService/Missing',
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.alloc(0),
      () => undefined,
    );
    call.on('status', resolve);
  });
  assert.equal(status.code, grpc.status.UNIMPLEMENTED);
  assert.match(status.details, /Missing/);
});
