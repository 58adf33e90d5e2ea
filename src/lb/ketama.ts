/**
 * Ketama consistent hashing, bit-exact with nginx's `hash $key consistent`
 * (`src/http/modules/ngx_http_upstream_hash_module.c`, `ngx_http_upstream_init_chash` and
 * `ngx_http_upstream_get_chash_peer`).
 *
 * Why our own: moving traffic from nginx to Cairn must not send URLs to different cache servers
 * (a mass cache miss), so the ring must be nginx's ring. The `ketama` npm package (and libketama)
 * hash differently — MD5 of "server-N" with four points per digest — so their rings do not match
 * nginx's; hence this module.
 *
 * nginx's ring, step by step:
 * - For each server, its identity is the `server` argument exactly as written (`host:port`,
 *   `host`, `unix:/path`). It is split into host and port at the last `:` when everything after it
 *   is digits (otherwise there is no port); `unix:` is stripped and has no port.
 * - `base = crc32_update(init, host ++ "\0" ++ port)`; then `weight * 160` points, each
 *   `point = crc32_final(crc32_update(base, prev_hash as 4 little-endian bytes))`, `prev_hash`
 *   starting at 0 and becoming the previous point. (nginx uses the host's byte order only on
 *   little-endian machines and writes little-endian bytes explicitly elsewhere: always LE.)
 * - All points sorted by hash (ascending); of equal hashes only the first is kept. We sort stably
 *   in server order, as glibc's merge-sort `qsort` does, so the surviving duplicate is nginx's.
 * - A key maps to `crc32(key bytes)`; the first point whose hash is >= it (binary search), wrapping
 *   to point 0 past the end.
 */

import { CairnError } from '../errors.ts';
import { CRC32_INIT, crc32Byte, crc32Bytes, crc32Final, crc32String } from './crc32.ts';

/** nginx's constant: points per unit of weight. */
const POINTS_PER_WEIGHT = 160;

/** One server of a ring: its identity string (as written in nginx's `server` directive) and weight. */
export interface KetamaServer {
  /** Identity hashed onto the ring, e.g. `'127.0.0.1:9001'`; also what `select` returns. */
  readonly server: string;
  /** Positive integer; the server gets `weight * 160` points. Default 1. */
  readonly weight?: number;
}

/** A point of the ring, as `Ketama.points()` lists it. */
export interface KetamaPoint {
  readonly hash: number;
  readonly server: string;
}

/**
 * An immutable ketama ring that maps keys to servers exactly as nginx `hash $key consistent` does.
 *
 * @example
 * ```ts
 * const ring = new Ketama([{ server: '10.0.0.1:80', weight: 2 }, { server: '10.0.0.2:80' }]);
 * ring.select('/images/cat.png');                   // '10.0.0.1:80' or '10.0.0.2:80', same as nginx
 * ring.selectWith('/images/cat.png', (s) => s !== '10.0.0.1:80'); // walks on past a down server
 * ```
 */
export class Ketama {
  /** Server identities, in the order given; point owners index into it. */
  readonly servers: readonly string[];
  #hashes: Uint32Array;
  #owners: Int32Array;
  /** Per-server "already asked" stamps for `selectWith`: no allocation, no clearing per call. */
  #seen: Uint32Array;
  #stamp = 0;
  #walking = false;
  #byName: ByName;

  constructor(servers: readonly KetamaServer[]) {
    if (servers.length === 0) {
      throw new CairnError('CAIRN_ERR_CONFIG_INVALID', 'Ketama: at least one server is required');
    }
    const names: string[] = [];
    let total = 0;
    for (const s of servers) {
      const weight = s.weight ?? 1;
      if (!Number.isInteger(weight) || weight < 1) {
        throw new CairnError(
          'CAIRN_ERR_CONFIG_INVALID',
          `Ketama: weight of "${s.server}" must be a positive integer, got ${weight}`,
        );
      }
      names.push(s.server);
      total += weight;
    }
    this.servers = Object.freeze(names);

    const hashes = new Uint32Array(total * POINTS_PER_WEIGHT);
    const owners = new Int32Array(hashes.length);
    const prev = new Uint8Array(4);
    let n = 0;
    for (let idx = 0; idx < servers.length; idx++) {
      const name = names[idx]!;
      const [hostStart, hostEnd, portStart, portEnd] = splitServer(name);
      let base = crc32String(CRC32_INIT, name, hostStart, hostEnd);
      base = crc32Byte(base, 0);
      base = crc32String(base, name, portStart, portEnd);
      prev.fill(0);
      const points = (servers[idx]!.weight ?? 1) * POINTS_PER_WEIGHT;
      for (let j = 0; j < points; j++) {
        const hash = crc32Final(crc32Bytes(base, prev, 0, 4));
        hashes[n] = hash;
        owners[n] = idx;
        n++;
        prev[0] = hash & 0xff;
        prev[1] = (hash >>> 8) & 0xff;
        prev[2] = (hash >>> 16) & 0xff;
        prev[3] = (hash >>> 24) & 0xff;
      }
    }

    // Stable sort by hash (ties keep server order), then keep the first of equal hashes.
    const order = Array.from({ length: n }, (_, i) => i);
    order.sort((a, b) => hashes[a]! - hashes[b]! || a - b);
    const sortedHashes = new Uint32Array(n);
    const sortedOwners = new Int32Array(n);
    let m = 0;
    for (const i of order) {
      const h = hashes[i]!;
      if (m > 0 && sortedHashes[m - 1] === h) continue;
      sortedHashes[m] = h;
      sortedOwners[m] = owners[i]!;
      m++;
    }
    this.#hashes = sortedHashes.subarray(0, m);
    this.#owners = sortedOwners.subarray(0, m);
    this.#seen = new Uint32Array(names.length);
    this.#byName = { names: this.servers, fn: undefined };
  }

  /** Number of points on the ring, after de-duplication. */
  get size(): number {
    return this.#hashes.length;
  }

  /**
   * The server a key maps to (the key's bytes as given; a string as UTF-8). Allocation-free.
   * @example
   * ```ts
   * new Ketama([{ server: 'a:1' }, { server: 'b:1' }]).select(Buffer.from('k')); // 'a:1' or 'b:1'
   * ```
   */
  select(key: string | Uint8Array): string {
    return this.servers[this.#owners[this.pointOf(key) % this.#hashes.length]!]!;
  }

  /**
   * Index (into `servers`) of the server the key maps to.
   * @example
   * ```ts
   * ring.servers[ring.selectIndex('k')] === ring.select('k');
   * ```
   */
  selectIndex(key: string | Uint8Array): number {
    return this.#owners[this.pointOf(key) % this.#hashes.length]!;
  }

  /**
   * Failover: the first server at or after the key's point for which `isUsable` is true.
   *
   * Mirrors `ngx_http_upstream_get_chash_peer`: start at the key's point; if the point's server is
   * unusable (down, failed, already tried), move to the next point, wrapping around, until a usable
   * server is found or every point was visited (nginx then answers "no live upstreams"; we return
   * `undefined`). The order in which servers are offered is therefore nginx's. Two differences,
   * neither changing the result: each distinct server is asked at most once per call, and the walk
   * stops as soon as every server was asked. nginx additionally picks among several peers sharing
   * one `server` name (a hostname resolving to several addresses) by weighted round robin; here a
   * name is one server.
   *
   * @example
   * ```ts
   * const down = new Set(['10.0.0.1:80']);
   * ring.selectWith(key, (s) => !down.has(s)); // where nginx would send `key` with that peer down
   * ```
   */
  selectWith(key: string | Uint8Array, isUsable: (server: string) => boolean): string | undefined {
    // One holder per ring instead of a closure per call; saved and restored so that a predicate
    // which itself calls selectWith on this ring does not clobber the outer call.
    const holder = this.#byName;
    const saved = holder.fn;
    holder.fn = isUsable;
    try {
      const i = this.walk(this.pointOf(key), usableByName, holder);
      return i < 0 ? undefined : this.servers[i];
    } finally {
      holder.fn = saved;
    }
  }

  /**
   * `selectWith` by server index, for callers that keep per-server state in arrays. `arg` is passed
   * through to `isUsable` so a caller can use one long-lived function instead of a closure per call.
   * Returns -1 when no server is usable.
   * @example
   * ```ts
   * const up = [true, false, true];
   * ring.selectIndexWith(key, (i, flags) => flags[i] === true, up);
   * ```
   */
  selectIndexWith<A>(key: string | Uint8Array, isUsable: (index: number, arg: A) => boolean, arg: A): number {
    return this.walk(this.pointOf(key), isUsable, arg);
  }

  /**
   * Walk the ring from point `start` (as returned by `pointOf`) — see `selectWith`.
   * @example
   * ```ts
   * ring.walk(ring.pointOf('k'), (i) => i !== 0, undefined);
   * ```
   */
  walk<A>(start: number, isUsable: (index: number, arg: A) => boolean, arg: A): number {
    const hashes = this.#hashes;
    const owners = this.#owners;
    // A predicate that walks this same ring would clobber the shared stamps: a nested walk gets
    // its own (rare, so the allocation does not matter).
    const nested = this.#walking;
    const seen = nested ? new Uint32Array(this.#seen.length) : this.#seen;
    let stamp = 1;
    if (!nested) {
      stamp = ++this.#stamp;
      if (stamp === 0xffffffff) {
        seen.fill(0);
        stamp = this.#stamp = 1;
      }
    }
    const servers = seen.length;
    let asked = 0;
    const n = hashes.length;
    this.#walking = true;
    try {
      for (let t = 0, p = start % n; t < n; t++, p = p + 1 === n ? 0 : p + 1) {
        const owner = owners[p]!;
        if (seen[owner] === stamp) continue;
        seen[owner] = stamp;
        if (isUsable(owner, arg)) return owner;
        if (++asked === servers) break;
      }
      return -1;
    } finally {
      this.#walking = nested;
    }
  }

  /**
   * Position on the ring of the first point whose hash is >= crc32(key) (may equal `size`, meaning
   * "wrap to 0", as in nginx's `ngx_http_upstream_find_chash_point`).
   * @example
   * ```ts
   * ring.pointOf('k') <= ring.size;
   * ```
   */
  pointOf(key: string | Uint8Array): number {
    const hash =
      typeof key === 'string'
        ? crc32Final(crc32String(CRC32_INIT, key, 0, key.length))
        : crc32Final(crc32Bytes(CRC32_INIT, key, 0, key.length));
    const points = this.#hashes;
    let i = 0;
    let j = points.length;
    while (i < j) {
      const k = (i + j) >>> 1;
      const h = points[k]!;
      if (hash > h) i = k + 1;
      else if (hash < h) j = k;
      else return k;
    }
    return i;
  }

  /**
   * The ring, sorted (for tests and debugging; allocates).
   * @example
   * ```ts
   * new Ketama([{ server: 'a:1' }]).points().length; // 160 (fewer if two points collided)
   * ```
   */
  points(): KetamaPoint[] {
    const out: KetamaPoint[] = [];
    for (let i = 0; i < this.#hashes.length; i++) {
      out.push({ hash: this.#hashes[i]!, server: this.servers[this.#owners[i]!]! });
    }
    return out;
  }
}

/** `selectWith`'s adapter from indexes (what `walk` gives) to names (what the user's predicate takes). */
interface ByName {
  readonly names: readonly string[];
  fn: ((server: string) => boolean) | undefined;
}

function usableByName(index: number, holder: ByName): boolean {
  return holder.fn!(holder.names[index]!);
}

/**
 * Split a server identity the way nginx does: `[hostStart, hostEnd, portStart, portEnd]`.
 * `unix:` (any case) is stripped and has no port; otherwise the port is what follows the last `:`
 * when it is all digits (possibly empty, as nginx allows), else there is no port.
 */
function splitServer(s: string): [number, number, number, number] {
  if (s.length >= 5 && s.slice(0, 5).toLowerCase() === 'unix:') return [5, s.length, 0, 0];
  for (let j = 0; j < s.length; j++) {
    const at = s.length - j - 1;
    const c = s.charCodeAt(at);
    if (c === 0x3a /* : */) return [0, at, at + 1, s.length];
    if (c < 0x30 || c > 0x39) break;
  }
  return [0, s.length, 0, 0];
}
