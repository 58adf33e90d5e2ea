/**
 * Content types of the three wire formats and the mapping between them.
 *
 * - `application/grpc[+proto|+json|+custom]` — gRPC over HTTP/2 (PROTOCOL-HTTP2.md "Content-Type").
 * - `application/grpc-web[+…]` — gRPC-web, binary frames (PROTOCOL-WEB.md "Content-Type").
 * - `application/grpc-web-text[+…]` — the same frames, base64 text (PROTOCOL-WEB.md).
 *
 * The `+suffix` names the message codec and is carried across unchanged, so a translating proxy
 * maps `application/grpc-web+json` to `application/grpc+json`.
 */

/** Which of the three gRPC wire formats a content type names. */
export type GrpcProtocol = 'grpc' | 'grpc-web' | 'grpc-web-text';

/** A parsed gRPC content type. */
export interface GrpcContentType {
  /** The wire format. */
  readonly protocol: GrpcProtocol;
  /** The `+suffix` as sent, lower-cased, without `+`; `''` when there was none. */
  readonly suffix: string;
  /** The message codec: the suffix, or `'proto'` when none was given (the default codec). */
  readonly codec: string;
}

const PREFIX = 'application/grpc';

/**
 * Parse a `content-type` value. Media types are case-insensitive and parameters (`; charset=…`) are
 * ignored (RFC 9110 §8.3.1). Returns `undefined` for anything that is not one of the three formats
 * (`application/grpcx`, `application/grpc-webby`, …).
 *
 * @example
 * parseGrpcContentType('application/grpc-web-text+proto');
 * // { protocol: 'grpc-web-text', suffix: 'proto', codec: 'proto' }
 */
export function parseGrpcContentType(value: string | undefined): GrpcContentType | undefined {
  if (value === undefined) return undefined;
  const semi = value.indexOf(';');
  const media = (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase();
  if (!media.startsWith(PREFIX)) return undefined;
  const plus = media.indexOf('+', PREFIX.length);
  const base = plus === -1 ? media : media.slice(0, plus);
  const suffix = plus === -1 ? '' : media.slice(plus + 1);
  if (plus !== -1 && suffix === '') return undefined;
  let protocol: GrpcProtocol;
  switch (base) {
    case 'application/grpc':
      protocol = 'grpc';
      break;
    case 'application/grpc-web':
      protocol = 'grpc-web';
      break;
    case 'application/grpc-web-text':
      protocol = 'grpc-web-text';
      break;
    default:
      return undefined;
  }
  return { protocol, suffix, codec: suffix === '' ? 'proto' : suffix };
}

/**
 * Format a content type for a protocol, keeping a codec suffix.
 *
 * @example
 * formatGrpcContentType('grpc-web', 'json'); // 'application/grpc-web+json'
 */
export function formatGrpcContentType(protocol: GrpcProtocol, suffix = ''): string {
  const base = protocol === 'grpc' ? PREFIX : `${PREFIX}${protocol.slice('grpc'.length)}`;
  return suffix === '' ? base : `${base}+${suffix}`;
}

/**
 * True for native gRPC (`application/grpc[+…]`), false for gRPC-web and everything else.
 *
 * @example
 * isGrpcContentType('application/grpc+proto'); // true
 */
export function isGrpcContentType(value: string | undefined): boolean {
  return parseGrpcContentType(value)?.protocol === 'grpc';
}

/**
 * True for gRPC-web in either encoding (`application/grpc-web[+…]`, `application/grpc-web-text[+…]`).
 *
 * @example
 * isGrpcWebContentType('application/grpc-web-text'); // true
 */
export function isGrpcWebContentType(value: string | undefined): boolean {
  const protocol = parseGrpcContentType(value)?.protocol;
  return protocol === 'grpc-web' || protocol === 'grpc-web-text';
}

/**
 * True for base64 gRPC-web (`application/grpc-web-text[+…]`).
 *
 * @example
 * isGrpcWebTextContentType('application/grpc-web-text+proto'); // true
 */
export function isGrpcWebTextContentType(value: string | undefined): boolean {
  return parseGrpcContentType(value)?.protocol === 'grpc-web-text';
}

/**
 * Map a gRPC-web content type (binary or text) to the native gRPC one with the same codec suffix;
 * `undefined` if the value is not gRPC-web.
 *
 * @example
 * grpcWebToGrpcContentType('application/grpc-web-text+proto'); // 'application/grpc+proto'
 */
export function grpcWebToGrpcContentType(value: string | undefined): string | undefined {
  const parsed = parseGrpcContentType(value);
  if (parsed === undefined || parsed.protocol === 'grpc') return undefined;
  return formatGrpcContentType('grpc', parsed.suffix);
}

/**
 * Map a native gRPC content type to gRPC-web (binary, or text when `text` is true) with the same
 * codec suffix; `undefined` if the value is not native gRPC.
 *
 * @example
 * grpcToGrpcWebContentType('application/grpc+proto', true); // 'application/grpc-web-text+proto'
 */
export function grpcToGrpcWebContentType(value: string | undefined, text = false): string | undefined {
  const parsed = parseGrpcContentType(value);
  if (parsed === undefined || parsed.protocol !== 'grpc') return undefined;
  return formatGrpcContentType(text ? 'grpc-web-text' : 'grpc-web', parsed.suffix);
}
