/** Ready-made proxies (`cairn/proxies`), each built only from the public API. */
export { ReverseProxy } from './reverse-proxy.ts';
export { ReverseProxy as LoadBalancerProxy, UpstreamGroup } from './reverse-proxy.ts';
export type {
  GroupHealthOptions,
  GroupResolveOptions,
  HashKey,
  ReverseProxyCtx,
  ReverseProxyOptions,
  UpstreamChanges,
  UpstreamGroupOptions,
} from './reverse-proxy.ts';
export { CdnProxy } from './cdn-proxy.ts';
export type { CdnProxyOptions } from './cdn-proxy.ts';
export { GatewayProxy } from './gateway-proxy.ts';
export type { GatewayCtx, GatewayProxyOptions } from './gateway-proxy.ts';
export { Route, RouteResolver } from './route-resolver.ts';
export type { RouteAnswer, RouteLookup, RouteResolverOptions } from './route-resolver.ts';
export { CLUSTER_HOP_HEADER, CLUSTER_PURGE_HEADER, ClusterCdnProxy } from './cluster-proxy.ts';
export type {
  ClusterCdnProxyOptions,
  ClusterCtx,
  ClusterOptions,
  ClusterPurgeResult,
  PurgeTarget,
} from './cluster-proxy.ts';
// gRPC <-> gRPC-web bridges (hook modules a proxy delegates its phases to; see docs/grpc.md).
export { GrpcWebToGrpc } from './grpc-web/grpc-web-to-grpc.ts';
export type { GrpcWebCorsOptions, GrpcWebToGrpcOptions } from './grpc-web/grpc-web-to-grpc.ts';
export { GrpcToGrpcWeb } from './grpc-web/grpc-to-grpc-web.ts';
export type { GrpcToGrpcWebOptions } from './grpc-web/grpc-to-grpc-web.ts';
