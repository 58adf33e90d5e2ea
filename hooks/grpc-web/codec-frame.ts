/**
 * gRPC length-prefixed message framing, shared by `application/grpc` and `application/grpc-web`.
 *
 * gRPC over HTTP/2 ("Length-Prefixed-Message"): `Compressed-Flag` (1 byte) `Message-Length`
 * (4 bytes, big-endian unsigned) `Message`. gRPC-web keeps this framing and uses the most
 * significant bit of the flags byte to mark the trailer frame that carries the status in the body
 * (grpc/grpc doc/PROTOCOL-WEB.md, "Message framing").
 */

import { GrpcCodecError } from './codec-errors.ts';

/** Bytes in a frame header: one flags byte and a 4-byte big-endian length (PROTOCOL-HTTP2.md). */
export const FRAME_HEADER_BYTES = 5;

/** Flags byte of an uncompressed data frame. */
export const FLAG_DATA = 0x00;

/** Flags bit: the payload is compressed with the call's `grpc-encoding` (PROTOCOL-HTTP2.md "Compressed-Flag"). */
export const FLAG_COMPRESSED = 0x01;

/** Flags bit: a gRPC-web trailer frame, "8th (MSB) bit of the 1st gRPC frame byte" (PROTOCOL-WEB.md). */
export const FLAG_TRAILER = 0x80;

/** Largest length a 4-byte unsigned prefix can express. */
export const MAX_FRAME_LENGTH = 0xffff_ffff;

/**
 * Default cap on one frame's payload for {@link GrpcFrameParser}. gRPC runtimes default to 4 MiB
 * per received message; a proxy should not be the tighter limit, but it must not let one length
 * prefix make it buffer gigabytes either.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/**
 * One parsed frame. `data` is the payload without the 5-byte header; when the whole frame arrived
 * in one chunk it is a view into that chunk (no copy).
 */
export interface GrpcFrame {
  /** The raw flags byte. Bits other than 0x01 and 0x80 are passed through untouched. */
  readonly flags: number;
  /** `flags & FLAG_COMPRESSED`: the payload is compressed (message-level compression). */
  readonly compressed: boolean;
  /** `flags & FLAG_TRAILER`: a gRPC-web trailer frame (the payload is a header block). */
  readonly trailer: boolean;
  /** The payload. */
  readonly data: Buffer;
}

/** Options for {@link GrpcFrameParser}. */
export interface GrpcFrameParserOptions {
  /** Reject a frame whose length prefix exceeds this many bytes. Default {@link DEFAULT_MAX_MESSAGE_BYTES}. */
  readonly maxMessageBytes?: number;
}

/**
 * Encode a frame header: the flags byte and the big-endian payload length.
 *
 * Write the header and then the payload to avoid copying a large payload into a new buffer.
 *
 * @example
 * stream.write(encodeFrameHeader(FLAG_DATA, message.length));
 * stream.write(message);
 */
export function encodeFrameHeader(flags: number, length: number): Buffer {
  if (!Number.isInteger(length) || length < 0 || length > MAX_FRAME_LENGTH) {
    throw new RangeError(`gRPC frame length ${length} is not a 32-bit unsigned integer`);
  }
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header[0] = flags & 0xff;
  header.writeUInt32BE(length, 1);
  return header;
}

/**
 * Encode a whole frame (header + payload) into one new buffer.
 *
 * @example
 * const frame = encodeFrame(FLAG_DATA, Buffer.from([0x0a, 0x01, 0x41]));
 * // <00 00 00 00 03 0a 01 41>
 */
export function encodeFrame(flags: number, data: Uint8Array): Buffer {
  if (data.length > MAX_FRAME_LENGTH) {
    throw new RangeError(`gRPC frame length ${data.length} is not a 32-bit unsigned integer`);
  }
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + data.length);
  frame[0] = flags & 0xff;
  frame.writeUInt32BE(data.length, 1);
  frame.set(data, FRAME_HEADER_BYTES);
  return frame;
}

/**
 * Incremental parser for a stream of length-prefixed frames.
 *
 * Chunk boundaries are arbitrary: "DATA frame boundaries have no relation to
 * Length-Prefixed-Message boundaries and implementations should make no assumptions about their
 * alignment" (PROTOCOL-HTTP2.md, "Data Frames"). The parser therefore holds at most one partial
 * frame (its header bytes, then the slices of its payload) and never concatenates the whole body;
 * a payload is copied once, when it completes, only if it spanned several chunks.
 *
 * Per PROTOCOL-WEB.md, "Trailers must be the last message of the response": any byte after a
 * trailer frame is an error.
 *
 * @example
 * const parser = new GrpcFrameParser();
 * for await (const chunk of body) {
 *   for (const frame of parser.push(chunk)) {
 *     if (frame.trailer) handleTrailers(decodeTrailerBlock(frame.data));
 *     else handleMessage(frame.data);
 *   }
 * }
 * parser.end(); // throws GRPC_CODEC_TRUNCATED_FRAME if the body stopped mid-frame
 */
export class GrpcFrameParser {
  readonly #maxMessageBytes: number;
  /** Header bytes of the frame in progress (only used when a header spans chunks). */
  readonly #header: Buffer = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  #headerFill = 0;
  /** Payload length of the frame in progress, or -1 while its header is incomplete. */
  #length = -1;
  #flags = 0;
  /** Payload slices of the frame in progress. */
  #parts: Buffer[] = [];
  #partsBytes = 0;
  #trailerSeen = false;
  #failed = false;
  #ended = false;

  constructor(options: GrpcFrameParserOptions = {}) {
    const max = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    if (!Number.isInteger(max) || max < 0 || max > MAX_FRAME_LENGTH) {
      throw new RangeError(`maxMessageBytes ${max} must be an integer in [0, ${MAX_FRAME_LENGTH}]`);
    }
    this.#maxMessageBytes = max;
  }

  /** True once a trailer frame (flags bit 0x80) has been emitted. */
  get trailerSeen(): boolean {
    return this.#trailerSeen;
  }

  /** Bytes of the partial frame currently held (header and payload). */
  get bufferedBytes(): number {
    return this.#headerFill + this.#partsBytes;
  }

  /**
   * Feed the next chunk; returns the frames it completed, in order (often none or one).
   *
   * Throws {@link GrpcCodecError} (`GRPC_CODEC_FRAME_TOO_LARGE`, `GRPC_CODEC_DATA_AFTER_TRAILER`,
   * `GRPC_CODEC_FAILED`); after a throw the parser stays failed.
   */
  push(chunk: Uint8Array): GrpcFrame[] {
    this.#checkUsable();
    const buf = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const frames: GrpcFrame[] = [];
    let pos = 0;
    const end = buf.length;
    while (pos < end) {
      if (this.#trailerSeen) {
        this.#fail();
        throw new GrpcCodecError(
          'GRPC_CODEC_DATA_AFTER_TRAILER',
          'gRPC-web body continues after the trailer frame',
        );
      }
      if (this.#length < 0) {
        // Fast path: a whole header in this chunk and nothing half-read.
        if (this.#headerFill === 0 && end - pos >= FRAME_HEADER_BYTES) {
          this.#startFrame(buf[pos]!, buf.readUInt32BE(pos + 1));
          pos += FRAME_HEADER_BYTES;
        } else {
          const take = Math.min(FRAME_HEADER_BYTES - this.#headerFill, end - pos);
          buf.copy(this.#header, this.#headerFill, pos, pos + take);
          this.#headerFill += take;
          pos += take;
          if (this.#headerFill < FRAME_HEADER_BYTES) break;
          this.#headerFill = 0;
          this.#startFrame(this.#header[0]!, this.#header.readUInt32BE(1));
        }
        if (this.#length === 0) {
          frames.push(this.#emit(Buffer.alloc(0)));
          continue;
        }
      }
      const need = this.#length - this.#partsBytes;
      const take = Math.min(need, end - pos);
      if (take === need && this.#partsBytes === 0) {
        // The whole payload is inside this chunk: hand out a view, no copy.
        frames.push(this.#emit(buf.subarray(pos, pos + take)));
      } else {
        this.#parts.push(buf.subarray(pos, pos + take));
        this.#partsBytes += take;
        if (this.#partsBytes === this.#length) {
          const data = Buffer.concat(this.#parts, this.#length);
          this.#parts = [];
          this.#partsBytes = 0;
          frames.push(this.#emit(data));
        }
      }
      pos += take;
    }
    return frames;
  }

  /**
   * Declare the end of the body. Throws `GRPC_CODEC_TRUNCATED_FRAME` if a frame is incomplete.
   * Whether a missing trailer frame is an error is the caller's decision (see {@link trailerSeen}):
   * a gRPC-web "Trailers-Only" response carries its status in the HTTP headers instead
   * (PROTOCOL-WEB.md, "Trailers-only responses").
   */
  end(): void {
    this.#checkUsable();
    this.#ended = true;
    if (this.#length >= 0 || this.#headerFill > 0) {
      const held = this.bufferedBytes;
      this.#fail();
      throw new GrpcCodecError(
        'GRPC_CODEC_TRUNCATED_FRAME',
        `body ended inside a gRPC frame (${held} bytes of a partial frame held)`,
      );
    }
  }

  #startFrame(flags: number, length: number): void {
    if (length > this.#maxMessageBytes) {
      this.#fail();
      throw new GrpcCodecError(
        'GRPC_CODEC_FRAME_TOO_LARGE',
        `gRPC frame of ${length} bytes exceeds the limit of ${this.#maxMessageBytes}`,
      );
    }
    this.#flags = flags;
    this.#length = length;
  }

  #emit(data: Buffer): GrpcFrame {
    const flags = this.#flags;
    const trailer = (flags & FLAG_TRAILER) !== 0;
    if (trailer) this.#trailerSeen = true;
    this.#length = -1;
    return { flags, compressed: (flags & FLAG_COMPRESSED) !== 0, trailer, data };
  }

  #checkUsable(): void {
    if (this.#failed || this.#ended) {
      throw new GrpcCodecError('GRPC_CODEC_FAILED', 'gRPC frame parser used after it failed or ended');
    }
  }

  #fail(): void {
    this.#failed = true;
    this.#parts = [];
    this.#partsBytes = 0;
  }
}
