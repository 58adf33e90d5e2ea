/**
 * gRPC status codes, the HTTP-to-gRPC status mapping, and the `grpc-timeout` header.
 */

import { GrpcCodecError } from './codec-errors.ts';

/**
 * gRPC status codes (grpc/grpc doc/statuscodes.md).
 *
 * @example
 * if (trailers.status === GrpcStatus.DEADLINE_EXCEEDED) retryElsewhere();
 */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** One of the codes in {@link GrpcStatus}. */
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

const STATUS_NAMES: readonly string[] = Object.keys(GrpcStatus);

/**
 * The canonical name of a status code (`'NOT_FOUND'` for 5), or `undefined` for a code outside 0–16.
 *
 * @example
 * grpcStatusName(14); // 'UNAVAILABLE'
 */
export function grpcStatusName(code: number): string | undefined {
  return Number.isInteger(code) ? STATUS_NAMES[code] : undefined;
}

/**
 * The gRPC status to report for an HTTP response that carried no `grpc-status`, per grpc/grpc
 * doc/http-grpc-status-mapping.md. That table is "to be used only for clients that received a
 * response that did not include grpc-status" — e.g. a proxy answering a gRPC-web client when the
 * origin (or an intermediary) replied with a plain HTTP error. 200 maps to UNKNOWN: a real OK
 * carries `grpc-status`. 431 is INTERNAL as the table says.
 *
 * @example
 * grpcStatusFromHttpStatus(503); // GrpcStatus.UNAVAILABLE
 */
export function grpcStatusFromHttpStatus(httpStatus: number): GrpcStatusCode {
  switch (httpStatus) {
    case 400:
    case 431:
      return GrpcStatus.INTERNAL;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus.UNAVAILABLE;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/** Milliseconds per `grpc-timeout` unit (PROTOCOL-HTTP2.md "TimeoutUnit"). */
const UNIT_MS: Readonly<Record<string, number>> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 1e-3,
  n: 1e-6,
};

// PROTOCOL-HTTP2.md: "TimeoutValue → {positive integer as ASCII string of at most 8 digits}".
const TIMEOUT = /^([0-9]{1,8})([HMSmun])$/;

/** Largest `TimeoutValue`: 8 digits. */
const MAX_TIMEOUT_VALUE = 99_999_999;

/** Units from finest to coarsest, in nanoseconds, for {@link formatGrpcTimeout}. */
const FORMAT_UNITS: readonly (readonly [number, string])[] = [
  [1, 'n'],
  [1e3, 'u'],
  [1e6, 'm'],
  [1e9, 'S'],
  [60e9, 'M'],
  [3600e9, 'H'],
];

/**
 * Parse a `grpc-timeout` value into milliseconds (fractional for `u` and `n`). Returns `undefined`
 * for anything that is not 1–8 digits and one unit letter; per the spec a server then treats the
 * call as having no timeout (or rejects it — the caller's choice).
 *
 * @example
 * parseGrpcTimeout('1S');   // 1000
 * parseGrpcTimeout('250u'); // 0.25
 * parseGrpcTimeout('123456789m'); // undefined (9 digits)
 */
export function parseGrpcTimeout(value: string): number | undefined {
  const match = TIMEOUT.exec(value.trim());
  if (match === null) return undefined;
  return Number(match[1]) * UNIT_MS[match[2]!]!;
}

/**
 * Format a timeout in milliseconds as a `grpc-timeout` value: the finest unit whose value fits in
 * 8 digits, rounded up so a deadline is never shortened on the way through a proxy (the choice
 * grpc-go's `encodeTimeout` makes). A timeout of 0 or less formats as `0n` (already expired).
 * Throws `GRPC_CODEC_BAD_TIMEOUT` for NaN or a timeout beyond 99999999 hours (send no header
 * for "no deadline").
 *
 * @example
 * formatGrpcTimeout(1000);  // '1000000u'
 * formatGrpcTimeout(0.25);  // '250000n'
 * formatGrpcTimeout(86_400_000); // '86400000m'
 */
export function formatGrpcTimeout(ms: number): string {
  if (Number.isNaN(ms)) throw new GrpcCodecError('GRPC_CODEC_BAD_TIMEOUT', 'grpc-timeout cannot be NaN');
  if (ms <= 0) return '0n';
  // Whole nanoseconds, at least 1: sub-nanosecond precision cannot be expressed. Snap to the
  // nearest integer first so binary floating point (1.1 ms = 1100000.0000000002 ns) does not round up.
  const scaled = ms * 1e6;
  const nearest = Math.round(scaled);
  const ns = Math.max(1, Math.abs(scaled - nearest) < 1e-3 ? nearest : Math.ceil(scaled));
  for (const [perUnit, unit] of FORMAT_UNITS) {
    const value = Math.ceil(ns / perUnit);
    if (value <= MAX_TIMEOUT_VALUE) return `${value}${unit}`;
  }
  throw new GrpcCodecError('GRPC_CODEC_BAD_TIMEOUT', `timeout of ${ms} ms does not fit in 8 digits of hours`);
}
