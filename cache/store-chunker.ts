/**
 * Cuts a stream of Buffers of any sizes into fixed-size body chunks.
 *
 * Every chunk it returns is a fresh copy: a tier must own its bytes (a caller may reuse its buffer,
 * and a small slice would otherwise keep a large pooled socket buffer alive).
 */
const NO_CHUNKS: readonly Buffer[] = [];

/** Default body chunk size of every tier: big enough to amortise per-chunk overhead, small enough for ranges. */
export const DEFAULT_CHUNK_SIZE = 64 * 1024;

/**
 * Fixed-size chunking for a tier's writer.
 *
 * @example
 * ```ts
 * const chunker = new StoreChunker(1024);
 * chunker.push(Buffer.alloc(1500)); // [one 1024-byte chunk]
 * chunker.push(Buffer.alloc(100)); // [] (576 bytes pending)
 * chunker.finish(); // the trailing 576-byte chunk
 * ```
 */
export class StoreChunker {
  readonly chunkSize: number;
  #parts: Buffer[] = [];
  #partBytes = 0;

  constructor(chunkSize: number) {
    this.chunkSize = chunkSize;
  }

  /** Take `data`; return the chunks it completed (often none). */
  push(data: Buffer): readonly Buffer[] {
    if (data.length === 0) return NO_CHUNKS;
    const size = this.chunkSize;
    if (this.#partBytes + data.length < size) {
      this.#parts.push(data);
      this.#partBytes += data.length;
      return NO_CHUNKS;
    }
    const out: Buffer[] = [];
    let offset = 0;
    if (this.#partBytes > 0) {
      // Complete the pending partial chunk first.
      offset = size - this.#partBytes;
      this.#parts.push(data.subarray(0, offset));
      out.push(Buffer.concat(this.#parts, size));
      this.#parts = [];
      this.#partBytes = 0;
    }
    while (data.length - offset >= size) {
      out.push(Buffer.from(data.subarray(offset, offset + size)));
      offset += size;
    }
    if (offset < data.length) {
      this.#parts.push(data.subarray(offset));
      this.#partBytes = data.length - offset;
    }
    return out;
  }

  /** The trailing partial chunk (copied), or `undefined` when the body ended on a chunk boundary. */
  finish(): Buffer | undefined {
    if (this.#partBytes === 0) return undefined;
    const last = Buffer.concat(this.#parts, this.#partBytes);
    this.reset();
    return last;
  }

  /** Forget anything pending (the writer was aborted or the object became too large). */
  reset(): void {
    this.#parts = [];
    this.#partBytes = 0;
  }
}
