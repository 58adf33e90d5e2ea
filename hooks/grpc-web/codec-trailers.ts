/**
 * gRPC-web trailers: the header block inside the trailer frame, and the status/metadata record it
 * carries.
 *
 * grpc/grpc doc/PROTOCOL-WEB.md, "Message framing": the response status is "encoded as part of the
 * response body", as "key-value pairs encoded as a HTTP/1 headers block (without the terminating
 * newline)", i.e. `key1: foo\r\nkey2: bar\r\n`, with lower-case names ("HTTP wire protocols").
 * The record's fields follow doc/PROTOCOL-HTTP2.md "Responses": `grpc-status`, a percent-encoded
 * `grpc-message`, and custom metadata (`-bin` names carry base64 values).
 */

import { GrpcCodecError } from './codec-errors.ts';
import { FLAG_TRAILER, encodeFrame } from './codec-frame.ts';
import { GrpcStatus } from './codec-status.ts';

/**
 * Header fields as they appear on the wire: lower-case name to value(s), `-bin` values still
 * base64. Accepts what Node's `http`/`http2` and undici hand out (`undefined` entries are skipped).
 */
export type GrpcWireHeaders = Readonly<Record<string, string | readonly string[] | undefined>>;

/** Decoded header block: a null-prototype record of lower-case name to every value, in order. */
export type GrpcHeaderBlock = Record<string, string[]>;

/** A decoded metadata value: text for ASCII names, bytes for `-bin` names. */
export type GrpcMetadataValue = string | Buffer;

/**
 * The meaning of a trailer block.
 *
 * @example
 * const trailers: GrpcTrailers = {
 *   status: GrpcStatus.NOT_FOUND,
 *   message: 'no such user: 日本',
 *   metadata: new Map([['retry-after-ms', ['500']], ['trace-bin', [Buffer.from([1, 2])]]]),
 * };
 */
export interface GrpcTrailers {
  /** `grpc-status`: 0 (OK) to 16, or any other non-negative integer a peer sent. */
  readonly status: number;
  /** `grpc-message`, already percent-decoded (empty when absent). */
  readonly message: string;
  /** Every other field: name to values; `-bin` values decoded to bytes. */
  readonly metadata: ReadonlyMap<string, readonly GrpcMetadataValue[]>;
}

// RFC 9110 §5.6.2 token characters; names are lower-cased before the check.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
// RFC 9110 §5.5 field values: no CR, LF or NUL (these would let a value forge another trailer line).
const UNSAFE_VALUE = /[\r\n\0]/;
// PROTOCOL-HTTP2.md "Header-Name → 1*( %x30-39 / %x61-7A / "_" / "-" / ".")".
const GRPC_HEADER_NAME = /^[0-9a-z_.-]+$/;
// PROTOCOL-HTTP2.md "ASCII-Value → 1*( %x20-%x7E )".
const GRPC_ASCII_VALUE = /^[\x20-\x7e]*$/;

/**
 * Encode header fields as a gRPC-web trailer block: `name: value\r\n` per value, names lower-cased,
 * no terminating blank line (PROTOCOL-WEB.md). Throws `GRPC_CODEC_BAD_METADATA` for a name that is
 * not a token or a value containing CR, LF or NUL. Pseudo-headers (`:status`) are skipped.
 *
 * @example
 * encodeTrailerBlock({ 'grpc-status': '0', 'grpc-message': '' });
 * // 'grpc-status: 0\r\ngrpc-message: \r\n'
 */
export function encodeTrailerBlock(headers: GrpcWireHeaders): Buffer {
  let text = '';
  for (const rawName of Object.keys(headers)) {
    const value = headers[rawName];
    if (value === undefined || rawName.startsWith(':')) continue;
    const name = rawName.toLowerCase();
    if (!TOKEN.test(name)) {
      throw new GrpcCodecError(
        'GRPC_CODEC_BAD_METADATA',
        `trailer name ${JSON.stringify(rawName)} is not an HTTP token`,
      );
    }
    if (typeof value === 'string') text += line(name, value);
    else for (const v of value) text += line(name, v);
  }
  return Buffer.from(text, 'latin1');
}

function line(name: string, value: string): string {
  if (UNSAFE_VALUE.test(value)) {
    throw new GrpcCodecError(
      'GRPC_CODEC_BAD_METADATA',
      `trailer ${name} has a value containing CR, LF or NUL`,
    );
  }
  return `${name}: ${value}\r\n`;
}

/**
 * Decode a trailer block (the payload of a trailer frame) into a null-prototype record.
 *
 * Lenient where HTTP/1 parsers are: names are lower-cased, optional whitespace around the value is
 * trimmed (RFC 9110 §5.5), lines may end in LF alone, an empty line is ignored, and a repeated name
 * keeps every value. A non-empty line without a colon or with an empty or non-token name throws
 * `GRPC_CODEC_BAD_TRAILER`.
 *
 * @example
 * decodeTrailerBlock(Buffer.from('grpc-status: 5\r\ngrpc-message: gone\r\n'));
 * // { 'grpc-status': ['5'], 'grpc-message': ['gone'] }
 */
export function decodeTrailerBlock(block: Uint8Array): GrpcHeaderBlock {
  const out: GrpcHeaderBlock = Object.create(null) as GrpcHeaderBlock;
  const text = Buffer.from(block.buffer, block.byteOffset, block.byteLength).toString('latin1');
  let pos = 0;
  while (pos < text.length) {
    let eol = text.indexOf('\n', pos);
    if (eol === -1) eol = text.length;
    const lineEnd = eol > pos && text.charCodeAt(eol - 1) === 0x0d ? eol - 1 : eol;
    const current = text.slice(pos, lineEnd);
    pos = eol + 1;
    if (current.length === 0) continue;
    const colon = current.indexOf(':');
    const name = colon === -1 ? '' : current.slice(0, colon).toLowerCase();
    if (!TOKEN.test(name)) {
      throw new GrpcCodecError(
        'GRPC_CODEC_BAD_TRAILER',
        `malformed gRPC-web trailer line ${JSON.stringify(current.slice(0, 64))}`,
      );
    }
    const value = current.slice(colon + 1).trim();
    const values = out[name];
    if (values === undefined) out[name] = [value];
    else values.push(value);
  }
  return out;
}

/**
 * Encode header fields as a complete gRPC-web trailer frame (flags 0x80, uncompressed).
 *
 * @example
 * res.end(encodeTrailerFrame({ 'grpc-status': '0' }));
 */
export function encodeTrailerFrame(headers: GrpcWireHeaders): Buffer {
  return encodeFrame(FLAG_TRAILER, encodeTrailerBlock(headers));
}

/**
 * Percent-encode a status message for `grpc-message`: UTF-8, then every byte outside
 * `%x20-24 / %x26-7E` becomes `%XX` with upper-case hex (PROTOCOL-HTTP2.md "Percent-Encoded").
 *
 * @example
 * percentEncodeGrpcMessage('50% off: ü'); // '50%25 off: %C3%BC'
 */
export function percentEncodeGrpcMessage(message: string): string {
  // Fast path: plain printable ASCII without '%' needs no encoding.
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message;
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    if (byte >= 0x20 && byte <= 0x7e && byte !== 0x25) out += String.fromCharCode(byte);
    else out += `%${byte < 0x10 ? '0' : ''}${byte.toString(16).toUpperCase()}`;
  }
  return out;
}

/**
 * Decode a `grpc-message` value. Never throws: the spec says decoders "MUST NOT error or throw away
 * the message"; a broken `%` escape is kept as-is and invalid UTF-8 becomes U+FFFD, both explicitly
 * allowed (PROTOCOL-HTTP2.md, "Status-Message"). Lower-case hex is accepted.
 *
 * @example
 * percentDecodeGrpcMessage('50%25 off: %C3%BC'); // '50% off: ü'
 */
export function percentDecodeGrpcMessage(value: string): string {
  if (!value.includes('%')) return value;
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (
      code === 0x25 &&
      i + 2 < value.length &&
      isHex(value.charCodeAt(i + 1)) &&
      isHex(value.charCodeAt(i + 2))
    ) {
      bytes.push(parseInt(value.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (code < 0x80) {
      bytes.push(code);
    } else {
      // Not ASCII (a broken peer): keep the character as its UTF-8 bytes.
      const cp = value.codePointAt(i)!;
      for (const b of Buffer.from(String.fromCodePoint(cp), 'utf8')) bytes.push(b);
      if (cp > 0xffff) i++;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

function isHex(code: number): boolean {
  return (code >= 0x30 && code <= 0x39) || (code >= 0x41 && code <= 0x46) || (code >= 0x61 && code <= 0x66);
}

/**
 * Decode a `-bin` metadata field value: split on `,` (duplicates may have been joined), then base64
 * with or without padding (PROTOCOL-HTTP2.md: "Implementations MUST accept padded and un-padded
 * values" and "must split Binary-Headers on ',' before decoding").
 *
 * @example
 * decodeBinaryMetadataValue('AQI,AwQ='); // [<01 02>, <03 04>]
 */
export function decodeBinaryMetadataValue(value: string): Buffer[] {
  const out: Buffer[] = [];
  for (const part of value.split(',')) {
    const trimmed = part.trim();
    out.push(Buffer.from(trimmed, 'base64'));
  }
  return out;
}

/**
 * Encode bytes for a `-bin` metadata field: base64 without padding, as the spec says
 * implementations "should emit un-padded values".
 *
 * @example
 * encodeBinaryMetadataValue(Buffer.from([1, 2])); // 'AQI'
 */
export function encodeBinaryMetadataValue(value: Uint8Array): string {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64').replace(/=+$/, '');
}

/**
 * Turn wire fields (a decoded trailer block, or HTTP/2 trailers) into a {@link GrpcTrailers} record.
 *
 * `grpc-status` must be a decimal without leading zeros (PROTOCOL-HTTP2.md "Status"). When it is
 * missing or malformed the status is synthesised as UNKNOWN with an explanatory message, as the spec
 * requires of implementations that receive a response without one. `grpc-message` is
 * percent-decoded. Every other field becomes metadata; `-bin` values are decoded to bytes.
 *
 * @example
 * trailersFromWire(decodeTrailerBlock(frame.data)).status; // 0
 */
export function trailersFromWire(headers: GrpcWireHeaders): GrpcTrailers {
  let status: number | undefined;
  let message = '';
  const metadata = new Map<string, GrpcMetadataValue[]>();
  for (const rawName of Object.keys(headers)) {
    const raw = headers[rawName];
    if (raw === undefined || rawName.startsWith(':')) continue;
    const name = rawName.toLowerCase();
    const values: readonly string[] = typeof raw === 'string' ? [raw] : raw;
    if (name === 'grpc-status') {
      const first = values[0]?.trim() ?? '';
      status = /^(0|[1-9][0-9]{0,9})$/.test(first) ? Number(first) : undefined;
      continue;
    }
    if (name === 'grpc-message') {
      message = percentDecodeGrpcMessage(values.join(','));
      continue;
    }
    const list = metadata.get(name) ?? [];
    if (name.endsWith('-bin')) for (const v of values) list.push(...decodeBinaryMetadataValue(v));
    else list.push(...values);
    metadata.set(name, list);
  }
  if (status === undefined) {
    const sent = headers['grpc-status'];
    return {
      status: GrpcStatus.UNKNOWN,
      message: sent === undefined ? 'missing grpc-status' : `malformed grpc-status ${JSON.stringify(sent)}`,
      metadata,
    };
  }
  return { status, message, metadata };
}

/**
 * Turn a {@link GrpcTrailers} record into wire fields: `grpc-status`, `grpc-message` (percent-encoded,
 * omitted when empty), then metadata (`-bin` values base64-encoded without padding).
 *
 * Metadata names must follow the gRPC `Header-Name` grammar (lower-case `0-9 a-z _ - .`); a `-bin`
 * name takes `Buffer` values and any other name printable-ASCII strings (PROTOCOL-HTTP2.md
 * "Custom-Metadata"). `grpc-status`/`grpc-message` in metadata are rejected: they come from the
 * record's own fields. Violations throw `GRPC_CODEC_BAD_METADATA`.
 *
 * @example
 * encodeTrailerFrame(trailersToWire({ status: 5, message: 'gone', metadata: new Map() }));
 */
export function trailersToWire(trailers: GrpcTrailers): GrpcHeaderBlock {
  if (!Number.isInteger(trailers.status) || trailers.status < 0) {
    throw new GrpcCodecError(
      'GRPC_CODEC_BAD_METADATA',
      `grpc-status ${trailers.status} is not a non-negative integer`,
    );
  }
  const out: GrpcHeaderBlock = Object.create(null) as GrpcHeaderBlock;
  out['grpc-status'] = [String(trailers.status)];
  if (trailers.message !== '') out['grpc-message'] = [percentEncodeGrpcMessage(trailers.message)];
  for (const [name, values] of trailers.metadata) {
    if (!GRPC_HEADER_NAME.test(name) || name === 'grpc-status' || name === 'grpc-message') {
      throw new GrpcCodecError(
        'GRPC_CODEC_BAD_METADATA',
        `metadata name ${JSON.stringify(name)} is not allowed`,
      );
    }
    const binary = name.endsWith('-bin');
    const encoded: string[] = [];
    for (const value of values) {
      if (binary) {
        if (typeof value === 'string') {
          throw new GrpcCodecError(
            'GRPC_CODEC_BAD_METADATA',
            `metadata ${name} is binary (-bin) and needs Buffer values`,
          );
        }
        encoded.push(encodeBinaryMetadataValue(value));
      } else {
        if (typeof value !== 'string' || !GRPC_ASCII_VALUE.test(value)) {
          throw new GrpcCodecError(
            'GRPC_CODEC_BAD_METADATA',
            `metadata ${name} needs printable-ASCII string values`,
          );
        }
        encoded.push(value);
      }
    }
    if (encoded.length > 0) out[name] = encoded;
  }
  return out;
}
