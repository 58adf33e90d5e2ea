/**
 * Cairn's public API. Everything a proxy author needs is exported here by name; nothing else in
 * `src/` is a supported import. Ready-made proxies live at `cairn/proxies` (built only from this).
 */
export { ProxyHttp, HOOK_NAMES, phasePlan } from './proxy-http.ts';
export type {
  BodyFilterResult,
  HookName,
  MaybePromise,
  PhasePlan,
  ProxyHttpOptions,
  ResponseHead,
  UpstreamRequest,
} from './proxy-http.ts';
export { Session } from './session.ts';
export { HttpPeer } from './peer.ts';
export type { HostHeaderMode, HttpPeerOptions, PeerTlsOptions } from './peer.ts';
export { CairnError, ERROR_CODES, isCairnError } from './errors.ts';
export type { CairnErrorOptions, ErrorCode, ErrorSource, Retryable } from './errors.ts';
export { serve, parseAddress, DEFAULT_LIMITS } from './server.ts';
export type {
  CairnServer,
  CairnService,
  ListenAddress,
  ServeOptions,
  ServerLimits,
  ServiceRuntime,
} from './server.ts';
export { AdminServer } from './admin.ts';
export type { AdminHandler, AdminRouteOptions } from './admin.ts';
export { CairnMetrics } from './metrics.ts';
export { createLogger, LOG_LEVELS } from './logger.ts';
export type { LogLevel } from './logger.ts';
export { appendField, headerValue, isHopByHop, stripHopByHop, withoutHopByHop } from './headers.ts';
export type { ForwardingOptions, HeaderMap } from './headers.ts';

// The cache: a store (memory, LMDB, tiered), the HttpCache a proxy returns from requestCacheFilter,
// and the pure RFC 9111 / 9211 helpers a hook may want.
export { HttpCache, LOOKUP_RESULTS } from '../cache/http-cache.ts';
export type { HttpCacheOptions, LookupResult, OpenHttpCacheOptions } from '../cache/http-cache.ts';
export { MemoryStore } from '../cache/memory-store.ts';
export type { MemoryStoreOptions } from '../cache/memory-store.ts';
export { LmdbStore } from '../cache/lmdb-store.ts';
export type { LmdbStoreOptions } from '../cache/lmdb-store.ts';
export { TieredStore } from '../cache/tiered-store.ts';
export type {
  CacheStore,
  CacheStoreStats,
  CacheWriter,
  CachedObject,
  NewObjectMeta,
  ObjectMeta,
  StoredHeaders,
} from '../cache/store.ts';
export { CACHE_STATUS, CacheStatusBuilder, parseCacheStatus } from '../cache/cache-status.ts';
export type { CacheStatusEntry } from '../cache/cache-status.ts';
export { acceptEncodingNormaliser, cacheKey } from '../cache/key.ts';
export type { PolicyOptions, ResponseVerdict, UncacheableReason } from '../cache/policy.ts';
/**
 * The pure storability decision the cache path makes for every response (RFC 9111 §3), for tools
 * that explain it (`cairn explain`, `cairn/testing`). Resolve options once with
 * `resolvePolicyOptions`; `effectiveCacheControl` tells which field (Cache-Control or an RFC 9213
 * targeted field such as CDN-Cache-Control) supplied the directives.
 *
 * @example
 * ```ts
 * const options = resolvePolicyOptions({ setCookie: 'strip' });
 * const now = Date.now();
 * const verdict = evaluateResponse(
 *   { method: 'GET', headers: {} },
 *   { status: 200, headers: { 'cache-control': 'max-age=60' } },
 *   { requestTime: now, responseTime: now },
 *   options,
 * );
 * verdict.storable ? verdict.policy.lifetime : verdict.reason; // 60
 * ```
 */
export { effectiveCacheControl, evaluateResponse, resolvePolicyOptions } from '../cache/policy.ts';
export type {
  CacheControl,
  EffectiveCacheControl,
  PolicyRequest,
  PolicyResponse,
  ResolvedPolicyOptions,
  ResponseTiming,
  SetCookieMode,
  StoredPolicy,
} from '../cache/policy.ts';
export type { CacheLockOptions } from '../cache/lock.ts';

// Load balancing: backends, the selectors and the nginx-exact ketama ring, an Upstream group with
// passive health and a circuit breaker, active health checks and hostname re-resolution. Each is
// documented (with an example) where it is defined, and in docs/load-balancing.md.
export { createBackend, withWeight } from './lb/backend.ts';
export type { Backend, BackendConfig } from './lb/backend.ts';
export {
  ALGORITHMS,
  ALL_USABLE,
  createSelector,
  KetamaSelector,
  LeastConnectionsSelector,
  PowerOfTwoSelector,
  RandomSelector,
  RoundRobinSelector,
  SmoothWeightedSelector,
} from './lb/selector.ts';
export type { Algorithm, BackendStatus, SelectContext, Selector, SelectorOptions } from './lb/selector.ts';
export { Ketama } from './lb/ketama.ts';
export type { KetamaPoint, KetamaServer } from './lb/ketama.ts';
export { Upstream } from './lb/upstream.ts';
export type {
  BackendSnapshot,
  BackendState,
  BreakerState,
  CircuitBreakerOptions,
  Outcome,
  PassiveHealthOptions,
  UpstreamEvents,
  UpstreamOptions,
  UpstreamSnapshot,
} from './lb/upstream.ts';
export { HealthChecker } from './lb/health.ts';
export type {
  CheckResult,
  HealthCheckEvents,
  HealthCheckOptions,
  HealthTarget,
  HealthTargetSource,
  HttpCheck,
  TcpCheck,
} from './lb/health.ts';
export { HostnameWatcher } from './lb/resolve.ts';
export type {
  HostnameWatchEvents,
  HostnameWatchOptions,
  LookupAll,
  ResolvedAddress,
  ResolvedBackendTarget,
} from './lb/resolve.ts';
