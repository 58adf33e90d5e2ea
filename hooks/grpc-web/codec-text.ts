/**
 * `application/grpc-web-text`: the gRPC-web byte stream, base64-encoded.
 *
 * grpc/grpc doc/PROTOCOL-WEB.md, "Text-encoded (response) streams": the default text encoding is
 * base64, and "due to in-stream base64 padding when delimiting messages, the entire response body is
 * not necessarily a valid base64-encoded entity" — a sender may flush a padded base64 chunk "whenever
 * the runtime needs to flush a byte buffer", and a receiver must not assume the padding falls on a
 * frame boundary. So the decoder accepts any concatenation of padded base64 segments, split at any
 * byte, and the encoder emits whole 4-character quanta, padding only on `flush()` / `end()`.
 */

import { GrpcCodecError } from './codec-errors.ts';

const EQUALS = 0x3d; // '='
const EMPTY = Buffer.alloc(0);

/**
 * Incremental base64 encoder for `application/grpc-web-text` bodies.
 *
 * `push` returns base64 (ASCII bytes) for every complete 3-byte group seen so far and keeps at most
 * 2 bytes back; `flush` pads and emits the remainder (a valid point to flush is the end of a gRPC
 * message, as gRPC-web servers do); `end` is a final `flush`.
 *
 * @example
 * const encoder = new GrpcWebTextEncoder();
 * res.write(encoder.push(frameBytes));
 * res.end(encoder.end());
 */
export class GrpcWebTextEncoder {
  readonly #carry: Buffer = Buffer.allocUnsafe(3);
  #carryLength = 0;
  #ended = false;

  /** Encode the next chunk; the output is always a multiple of 4 characters (possibly empty). */
  push(chunk: Uint8Array): Buffer {
    this.#checkUsable();
    const buf = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.#carryLength + buf.length < 3) {
      buf.copy(this.#carry, this.#carryLength);
      this.#carryLength += buf.length;
      return EMPTY;
    }
    let text = '';
    let start = 0;
    if (this.#carryLength > 0) {
      start = 3 - this.#carryLength;
      buf.copy(this.#carry, this.#carryLength, 0, start);
      text = this.#carry.toString('base64', 0, 3);
      this.#carryLength = 0;
    }
    const alignedEnd = start + Math.floor((buf.length - start) / 3) * 3;
    if (alignedEnd > start) text += buf.toString('base64', start, alignedEnd);
    // Copy the tail: the caller may reuse `chunk` after we return.
    buf.copy(this.#carry, 0, alignedEnd);
    this.#carryLength = buf.length - alignedEnd;
    return Buffer.from(text, 'latin1');
  }

  /** Emit the held 0–2 bytes as one padded quantum (empty if none are held). */
  flush(): Buffer {
    this.#checkUsable();
    if (this.#carryLength === 0) return EMPTY;
    const out = Buffer.from(this.#carry.toString('base64', 0, this.#carryLength), 'latin1');
    this.#carryLength = 0;
    return out;
  }

  /** Flush and finish; the encoder cannot be used afterwards. */
  end(): Buffer {
    const out = this.flush();
    this.#ended = true;
    return out;
  }

  #checkUsable(): void {
    if (this.#ended) throw new GrpcCodecError('GRPC_CODEC_FAILED', 'gRPC-web text encoder used after end()');
  }
}

/**
 * Incremental decoder for `application/grpc-web-text` bodies.
 *
 * Accepts concatenated padded base64 segments (`QQ==QkI=`) split at arbitrary bytes, holding at most
 * 3 characters between calls. Characters outside the base64 alphabet (including whitespace) and
 * misplaced `=` are rejected with `GRPC_CODEC_BAD_BASE64` rather than skipped, because skipping one
 * character would silently shift every following frame. At `end()`, a final unpadded quantum of 2
 * or 3 characters is accepted (RFC 4648 §3.2: padding may be omitted when the length is known —
 * here the end of the body marks it).
 *
 * @example
 * const decoder = new GrpcWebTextDecoder();
 * for await (const chunk of body) frames.push(...parser.push(decoder.push(chunk)));
 * parser.push(decoder.end());
 */
export class GrpcWebTextDecoder {
  readonly #carry: Buffer = Buffer.allocUnsafe(4);
  #carryLength = 0;
  #failed = false;
  #ended = false;

  /** Decode the next chunk of base64 text; returns the bytes of every complete quantum. */
  push(chunk: Uint8Array): Buffer {
    this.#checkUsable();
    const buf = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.#carryLength + buf.length < 4) {
      buf.copy(this.#carry, this.#carryLength);
      this.#carryLength += buf.length;
      return EMPTY;
    }
    const parts: Buffer[] = [];
    let start = 0;
    if (this.#carryLength > 0) {
      start = 4 - this.#carryLength;
      buf.copy(this.#carry, this.#carryLength, 0, start);
      this.#carryLength = 0;
      this.#decodeQuanta(this.#carry, 0, 4, parts);
    }
    const alignedEnd = start + Math.floor((buf.length - start) / 4) * 4;
    this.#decodeQuanta(buf, start, alignedEnd, parts);
    buf.copy(this.#carry, 0, alignedEnd);
    this.#carryLength = buf.length - alignedEnd;
    if (parts.length === 0) return EMPTY;
    if (parts.length === 1) return parts[0]!;
    return Buffer.concat(parts);
  }

  /**
   * Finish: returns the bytes of a final unpadded 2–3 character quantum, if one is held. Throws
   * `GRPC_CODEC_TRUNCATED_BASE64` if a single character or a partial padded quantum is left.
   */
  end(): Buffer {
    this.#checkUsable();
    this.#ended = true;
    const held = this.#carryLength;
    if (held === 0) return EMPTY;
    if (held === 1 || this.#carry.subarray(0, held).includes(EQUALS)) {
      this.#failed = true;
      throw new GrpcCodecError(
        'GRPC_CODEC_TRUNCATED_BASE64',
        `gRPC-web text body ended inside a base64 quantum (${held} characters held)`,
      );
    }
    const parts: Buffer[] = [];
    this.#decodeSegment(this.#carry, 0, held, held - 1, parts);
    this.#carryLength = 0;
    return parts[0] ?? EMPTY;
  }

  /**
   * Decode `text[from, to)`, a whole number of 4-character quanta. A quantum containing `=` ends a
   * padded segment; decode each segment on its own, since Node's decoder stops at the first `=`.
   */
  #decodeQuanta(text: Buffer, from: number, to: number, parts: Buffer[]): void {
    let segmentStart = from;
    let eq = text.indexOf(EQUALS, from);
    while (eq !== -1 && eq < to) {
      const quantumStart = eq - ((eq - from) % 4);
      const offset = eq - quantumStart;
      // Only "xx==" and "xxx=" are valid padded quanta (RFC 4648 §4).
      let padding: number;
      if (offset === 3) padding = 1;
      else if (offset === 2 && text[eq + 1] === EQUALS) padding = 2;
      else {
        this.#failed = true;
        throw new GrpcCodecError('GRPC_CODEC_BAD_BASE64', 'misplaced "=" in gRPC-web text body');
      }
      const segmentEnd = quantumStart + 4;
      this.#decodeSegment(
        text,
        segmentStart,
        segmentEnd,
        ((segmentEnd - segmentStart) / 4) * 3 - padding,
        parts,
      );
      segmentStart = segmentEnd;
      eq = segmentStart < to ? text.indexOf(EQUALS, segmentStart) : -1;
    }
    if (segmentStart < to) this.#decodeSegment(text, segmentStart, to, ((to - segmentStart) / 4) * 3, parts);
  }

  /**
   * Decode one segment with Node's native decoder. Node skips characters outside the alphabet;
   * each skipped character removes 6 bits and so at least one output byte, so comparing the output
   * length with the expected length detects them.
   */
  #decodeSegment(text: Buffer, from: number, to: number, expectedBytes: number, parts: Buffer[]): void {
    const out = Buffer.from(text.toString('latin1', from, to), 'base64');
    if (out.length !== expectedBytes) {
      this.#failed = true;
      throw new GrpcCodecError(
        'GRPC_CODEC_BAD_BASE64',
        'gRPC-web text body contains characters outside the base64 alphabet',
      );
    }
    parts.push(out);
  }

  #checkUsable(): void {
    if (this.#failed || this.#ended) {
      throw new GrpcCodecError('GRPC_CODEC_FAILED', 'gRPC-web text decoder used after it failed or ended');
    }
  }
}
