/**
 * Cairn in front of a gRPC benchmark origin, in one of three modes, on 127.0.0.1 port 0 with h2c:
 * - `native`: gRPC in, gRPC (HTTP/2, `http2: true` peer) out;
 * - `web-to-grpc`: gRPC-web in (HTTP/1.1), gRPC out, through `GrpcWebToGrpc`;
 * - `grpc-to-web`: gRPC in (h2c), gRPC-web (HTTP/1.1) out, through `GrpcToGrpcWeb`.
 * Access logs off, as for every other Cairn bench target. Prints `READY <port>`.
 *
 *   node --import tsx bench/targets/cairn-grpc.ts --mode native --origin http://127.0.0.1:PORT
 */
import { parseArgs } from 'node:util';
import { HttpPeer, ProxyHttp, serve } from '../../src/index.ts';
import type {
  BodyFilterResult,
  CairnError,
  HeaderMap,
  MaybePromise,
  ResponseHead,
  Session,
  UpstreamRequest,
} from '../../src/index.ts';
import { GrpcToGrpcWeb, GrpcWebToGrpc } from '../../hooks/index.ts';

const { values } = parseArgs({
  options: { mode: { type: 'string', default: 'native' }, origin: { type: 'string' } },
});
if (values.origin === undefined) throw new Error('--origin is required');
const mode = values.mode;

class Native extends ProxyHttp {
  readonly peer = new HttpPeer(values.origin as string, { http2: true });
  override upstreamPeer(): HttpPeer {
    return this.peer;
  }
}

class WebToGrpc extends Native {
  readonly bridge = new GrpcWebToGrpc();
  override upstreamRequestFilter(s: Session, r: UpstreamRequest): void {
    this.bridge.upstreamRequestFilter(s, r);
  }
  override requestBodyFilter(s: Session, c: Buffer | null, end: boolean): BodyFilterResult {
    return this.bridge.requestBodyFilter(s, c, end);
  }
  override upstreamResponseFilter(s: Session, r: ResponseHead): void {
    this.bridge.upstreamResponseFilter(s, r);
  }
  override responseBodyFilter(s: Session, c: Buffer | null, end: boolean): BodyFilterResult {
    return this.bridge.responseBodyFilter(s, c, end);
  }
  override responseTrailerFilter(s: Session, t: HeaderMap): Buffer | void {
    return this.bridge.responseTrailerFilter(s, t);
  }
  override failToProxy(s: Session, e: CairnError, ctx: Record<string, never>): MaybePromise<number> {
    return this.bridge.failToProxy(s, e) ?? super.failToProxy(s, e, ctx);
  }
}

class GrpcToWeb extends ProxyHttp {
  readonly peer = new HttpPeer(values.origin as string);
  readonly bridge = new GrpcToGrpcWeb();
  override upstreamPeer(): HttpPeer {
    return this.peer;
  }
  override upstreamRequestFilter(s: Session, r: UpstreamRequest): void {
    this.bridge.upstreamRequestFilter(s, r);
  }
  override upstreamResponseFilter(s: Session, r: ResponseHead): void {
    this.bridge.upstreamResponseFilter(s, r);
  }
  override responseBodyFilter(s: Session, c: Buffer | null, end: boolean): BodyFilterResult {
    return this.bridge.responseBodyFilter(s, c, end);
  }
  override responseTrailerFilter(s: Session, t: HeaderMap): Buffer | void {
    return this.bridge.responseTrailerFilter(s, t);
  }
  override failToProxy(s: Session, e: CairnError, ctx: Record<string, never>): MaybePromise<number> {
    return this.bridge.failToProxy(s, e) ?? super.failToProxy(s, e, ctx);
  }
}

const proxy =
  mode === 'web-to-grpc' ? new WebToGrpc() : mode === 'grpc-to-web' ? new GrpcToWeb() : new Native();
const server = await serve(proxy, { listen: '127.0.0.1:0', h2c: true, logLevel: 'silent', signals: true });
process.stdout.write(`READY ${server.address.port}\n`);
