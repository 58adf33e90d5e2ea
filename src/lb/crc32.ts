/**
 * CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) — the checksum nginx's `ngx_crc32_*` and
 * zlib compute. Kept as init/update/final steps, like nginx, because ketama ring construction
 * re-uses a partial CRC (`host \0 port`) for every point of a server.
 *
 * Strings are hashed as their UTF-8 bytes, encoded on the fly so hashing a key never allocates.
 */

const TABLE = buildTable();

function buildTable(): Int32Array {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
}

/**
 * The initial CRC state (nginx: `ngx_crc32_init`, 0xffffffff), written as the int32 -1 so the state
 * stays a small integer for V8 (a uint32 above 2^31 would be a heap number).
 */
export const CRC32_INIT = -1;

/**
 * Feed one byte into a CRC state.
 * @example
 * ```ts
 * crc32Final(crc32Byte(CRC32_INIT, 0x61)); // crc32("a") === 0xe8b7be43
 * ```
 */
export function crc32Byte(crc: number, byte: number): number {
  return TABLE[(crc ^ byte) & 0xff]! ^ ((crc >> 8) & 0xffffff);
}

/**
 * Feed `bytes[start, end)` into a CRC state.
 * @example
 * ```ts
 * crc32Final(crc32Bytes(CRC32_INIT, Buffer.from('abc'), 0, 3));
 * ```
 */
export function crc32Bytes(crc: number, bytes: Uint8Array, start: number, end: number): number {
  for (let i = start; i < end; i++) crc = TABLE[(crc ^ bytes[i]!) & 0xff]! ^ ((crc >> 8) & 0xffffff);
  return crc;
}

/**
 * Feed the UTF-8 encoding of `str[start, end)` into a CRC state, without allocating. Lone
 * surrogates are encoded as U+FFFD, exactly as `Buffer.from(str, 'utf8')` does, so a string key and
 * its Buffer hash the same.
 * @example
 * ```ts
 * crc32Final(crc32String(CRC32_INIT, 'héllo', 0, 5)) === crc32Final(crc32Bytes(CRC32_INIT, Buffer.from('héllo'), 0, 6));
 * ```
 */
export function crc32String(crc: number, str: string, start: number, end: number): number {
  for (let i = start; i < end; i++) {
    let c = str.charCodeAt(i);
    if (c < 0x80) {
      crc = TABLE[(crc ^ c) & 0xff]! ^ ((crc >> 8) & 0xffffff);
      continue;
    }
    if (c < 0x800) {
      crc = crc32Byte(crc, 0xc0 | (c >> 6));
      crc = crc32Byte(crc, 0x80 | (c & 0x3f));
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < end ? str.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        i++;
        crc = crc32Byte(crc, 0xf0 | (c >> 18));
        crc = crc32Byte(crc, 0x80 | ((c >> 12) & 0x3f));
        crc = crc32Byte(crc, 0x80 | ((c >> 6) & 0x3f));
        crc = crc32Byte(crc, 0x80 | (c & 0x3f));
        continue;
      }
      c = 0xfffd;
    }
    crc = crc32Byte(crc, 0xe0 | (c >> 12));
    crc = crc32Byte(crc, 0x80 | ((c >> 6) & 0x3f));
    crc = crc32Byte(crc, 0x80 | (c & 0x3f));
  }
  return crc;
}

/**
 * Finish a CRC state into the unsigned 32-bit checksum (nginx: `ngx_crc32_final`).
 * @example
 * ```ts
 * crc32Final(CRC32_INIT) === 0; // CRC-32 of no bytes
 * ```
 */
export function crc32Final(crc: number): number {
  return ~crc >>> 0;
}

/**
 * CRC-32 of a whole key: a string (as UTF-8) or bytes.
 * @example
 * ```ts
 * crc32('123456789') === 0xcbf43926;
 * ```
 */
export function crc32(key: string | Uint8Array): number {
  return crc32Final(
    typeof key === 'string'
      ? crc32String(CRC32_INIT, key, 0, key.length)
      : crc32Bytes(CRC32_INIT, key, 0, key.length),
  );
}
