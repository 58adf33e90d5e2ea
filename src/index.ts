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
export type { CairnServer, ListenAddress, ServeOptions, ServerLimits } from './server.ts';
export { AdminServer } from './admin.ts';
export type { AdminHandler } from './admin.ts';
export { CairnMetrics } from './metrics.ts';
export { createLogger, LOG_LEVELS } from './logger.ts';
export type { LogLevel } from './logger.ts';
export { appendField, headerValue, isHopByHop, stripHopByHop } from './headers.ts';
export type { ForwardingOptions, HeaderMap } from './headers.ts';
