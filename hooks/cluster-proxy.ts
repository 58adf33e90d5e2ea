/**
 * `ClusterCdnProxy`: a caching proxy (what `CdnProxy` is) that is one node of a cluster of Cairn
 * nodes. Built only from Cairn's public API.
 *
 * - Every node knows every node (`cluster.peers`, `host:port` as written, like nginx `server`
 *   lines) and builds the same ketama ring over them, so all nodes agree on the **owner** of each
 *   cache key (`Ketama` is bit-exact with nginx `hash $key consistent`).
 * - Only the owner caches a key. A node that does not own a request's key does not look in its own
 *   cache: it forwards the request to the owner (the request carries `Cairn-Cluster-Hop: <self>`),
 *   and the owner serves it from its cache or fetches it from the origin once, collapsing
 *   concurrent misses with its cache lock. So an object is fetched from the origin once per
 *   cluster, and the cluster's capacity is the sum of its nodes' caches, not one node's.
 * - One hop at most: a request that carries the hop header (naming a ring member) is always served
 *   by the node it reached, whatever that node's ring says — even two nodes that disagree about an
 *   owner cannot bounce a request between them.
 * - A node that refuses connections (or does not accept in `connectTimeout`) is marked down for
 *   `downMs`; its keys then go where nginx would send them — the next live node on the ring (this
 *   node, which then fetches from the origin itself, or another peer). Requests in the meantime pay
 *   no failed connect.
 * - Purges fan out: a `PURGE` from a client, and the admin `POST /purge`, are repeated to every
 *   other node (with the hop header, so they go no further) and the answer says what each node did.
 */
import { request as httpRequest } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { acceptEncodingNormaliser, HttpPeer, Ketama, parseAddress, stripHopByHop } from '../src/index.ts';
import type {
  AdminServer,
  CairnError,
  HeaderMap,
  HttpCache,
  ListenAddress,
  MaybePromise,
  ResponseHead,
  Session,
  UpstreamRequest,
} from '../src/index.ts';
import { purgeLocally, readPurgeTarget, sendJson } from './admin-json.ts';
import type { PurgeTarget } from './admin-json.ts';
import { ReverseProxy } from './reverse-proxy.ts';
import type { ReverseProxyCtx, ReverseProxyOptions } from './reverse-proxy.ts';

/**
 * The loop guard: set on every request one node sends another (forwarded misses, purge fan-out),
 * naming the sender. A node never forwards a request that carries it.
 */
export const CLUSTER_HOP_HEADER = 'cairn-cluster-hop';

/** The response header listing what each other node did with a fanned-out `PURGE`. */
export const CLUSTER_PURGE_HEADER = 'cairn-cluster-purge';

export interface ClusterOptions {
  /** This node's identity: where its peers reach it (`host:port`), exactly as they list it. */
  readonly self: string;
  /**
   * Every node of the cluster as `host:port` (listing `self` too is fine). The ring hashes these
   * strings as written, so every node must spell each node the same way. Order does not matter.
   */
  readonly peers: readonly string[];
  /** ms a node that failed to accept a connection is skipped (default 5000). */
  readonly downMs?: number;
  /** ms to connect to another node before treating it as down (default 1000). */
  readonly connectTimeout?: number;
  /** ms to wait for each node's answer to a fanned-out purge (default 5000). */
  readonly purgeTimeout?: number;
}

export interface ClusterCdnProxyOptions extends ReverseProxyOptions {
  readonly cache: HttpCache;
  readonly cluster: ClusterOptions;
}

export type { PurgeTarget } from './admin-json.ts';

/** What a cluster purge did: the total, and per node the objects removed or `'failed'`. */
export interface ClusterPurgeResult {
  readonly purged: number;
  readonly nodes: Readonly<Record<string, number | 'failed'>>;
}

/** Per-request state: the load-balancing state of `ReverseProxy` (for origin fetches) plus the route. */
export interface ClusterCtx extends ReverseProxyCtx {
  /** The cache key a forwarded request was routed by. */
  key: string | undefined;
  /** The node this request is forwarded to; `undefined` when this node serves it. */
  owner: string | undefined;
  /** What the other nodes did with a fanned-out `PURGE`. */
  purge: Record<string, number | 'failed'> | undefined;
}

/** Which ring members are down, read by the ring walk without a closure per call. */
interface Health {
  /** Per ring index: time (ms) until which the node is skipped; 0 when it is up. */
  readonly until: Float64Array;
  readonly self: number;
  down: number;
  now: number;
}

function isUsable(index: number, health: Health): boolean {
  if (index === health.self) return true;
  const until = health.until[index]!;
  if (until === 0) return true;
  if (until > health.now) return false;
  // The cool-down is over: try it again (nginx `fail_timeout` with `max_fails=1`).
  health.until[index] = 0;
  health.down--;
  return true;
}

/**
 * @example
 * ```ts
 * import { HttpCache, serve } from 'cairn';
 * import { ClusterCdnProxy } from 'cairn/proxies';
 * const cache = await HttpCache.open({ memory: { maxBytes: 256 << 20 } });
 * const proxy = new ClusterCdnProxy({
 *   origins: ['http://origin.internal:8080'],
 *   cache,
 *   cluster: { self: '10.0.0.1:8080', peers: ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080'] },
 * });
 * await serve(proxy, { listen: '10.0.0.1:8080', admin: '127.0.0.1:9090', adminRoutes: (a) => proxy.adminRoutes(a) });
 * ```
 */
export class ClusterCdnProxy extends ReverseProxy<ClusterCtx> {
  readonly cache: HttpCache;
  /** This node's identity on the ring. */
  readonly self: string;
  /** The ring over every node (sorted identities, so every node builds the same one). */
  readonly ring: Ketama;
  readonly #nodes: ReadonlyMap<string, HttpPeer>;
  readonly #addresses: ReadonlyMap<string, ListenAddress>;
  readonly #index: ReadonlyMap<string, number>;
  readonly #health: Health;
  readonly #downMs: number;
  readonly #purgeTimeout: number;

  constructor(options: ClusterCdnProxyOptions) {
    const { cluster } = options;
    const members = [...new Set([...cluster.peers, cluster.self])].sort();
    // One attempt per origin as in ReverseProxy, plus one per other node a forward may try first.
    super({
      ...options,
      maxRetries: options.maxRetries ?? Math.max(2, backendCount(options) - 1) + members.length - 1,
    });
    this.cache = options.cache;
    this.self = cluster.self;
    this.ring = new Ketama(members.map((server) => ({ server })));
    this.#downMs = nonNegative(cluster.downMs, 5000, 'downMs');
    this.#purgeTimeout = nonNegative(cluster.purgeTimeout, 5000, 'purgeTimeout');
    const peerOptions = options.peer ?? {};
    const nodes = new Map<string, HttpPeer>();
    const addresses = new Map<string, ListenAddress>();
    const index = new Map<string, number>();
    for (const id of members) {
      const address = parseAddress(id, 'cluster.peers');
      index.set(id, index.size);
      addresses.set(id, address);
      if (id === cluster.self) continue;
      const host = address.host.includes(':') ? `[${address.host}]` : address.host;
      nodes.set(
        id,
        new HttpPeer(`http://${host}:${address.port}`, {
          headersTimeout: peerOptions.headersTimeout,
          idleTimeout: peerOptions.idleTimeout,
          keepAliveTimeout: peerOptions.keepAliveTimeout,
          maxConnections: peerOptions.maxConnections,
          connectTimeout: cluster.connectTimeout ?? 1000,
          // The owner must see the client's Host: it is part of the cache key.
          hostHeader: 'keep',
        }),
      );
    }
    this.#nodes = nodes;
    this.#addresses = addresses;
    this.#index = index;
    this.#health = {
      until: new Float64Array(members.length),
      self: index.get(cluster.self)!,
      down: 0,
      now: 0,
    };
  }

  override newCtx(): ClusterCtx {
    return { ...super.newCtx(), key: undefined, owner: undefined, purge: undefined };
  }

  /**
   * The node that owns `key`: its ketama owner, or — while that node is down — the next live node
   * on the ring. Override to pin keys elsewhere; a name that is not a ring member means this node.
   * Must be synchronous.
   * @example
   * ```ts
   * proxy.ownerOf('http://example.com/a.png'); // '10.0.0.2:8080'
   * ```
   */
  ownerOf(key: string): string {
    const ring = this.ring;
    const health = this.#health;
    if (health.down === 0) return ring.select(key);
    health.now = Date.now();
    const i = ring.selectIndexWith(key, isUsable, health);
    return i < 0 ? this.self : ring.servers[i]!;
  }

  /** Stop sending requests to `node` for the cool-down (`downMs`). */
  markDown(node: string): void {
    const i = this.#index.get(node);
    const health = this.#health;
    if (i === undefined || i === health.self || this.#downMs === 0) return;
    if (health.until[i] === 0) health.down++;
    health.until[i] = Date.now() + this.#downMs;
  }

  /** Is `node` in its cool-down now? */
  isDown(node: string): boolean {
    const i = this.#index.get(node);
    if (i === undefined) return false;
    const until = this.#health.until[i]!;
    return until !== 0 && until > Date.now();
  }

  /** A client's `PURGE`: repeat it to every other node first (a node's own fan-out stops there). */
  override requestFilter(session: Session, ctx: ClusterCtx): MaybePromise<boolean> {
    if (!this.isPurge(session, ctx) || this.#fromPeer(session) || !this.cache.mayPurge(session.clientAddress))
      return false;
    return this.#purgePeers(session, ctx);
  }

  async #purgePeers(session: Session, ctx: ClusterCtx): Promise<boolean> {
    const headers: HeaderMap = { ...session.headers };
    stripHopByHop(headers);
    delete headers['content-length'];
    ctx.purge = await this.#fanOut(session.method, session.path, headers, session);
    return false;
  }

  /**
   * Route by owner: this node's cache when it owns the key (or the request came from another
   * node), none when the request goes to the owner — only the owner stores a key.
   */
  override requestCacheFilter(session: Session, ctx: ClusterCtx): HttpCache | undefined {
    if (this.#fromPeer(session) || this.isPurge(session, ctx)) return this.cache;
    const key = this.cacheKey(session, ctx);
    if (key === undefined) return this.cache;
    const owner = this.ownerOf(key);
    if (!this.#nodes.has(owner)) return this.cache;
    ctx.key = key;
    ctx.owner = owner;
    return undefined;
  }

  /** One variant per coding actually served (br, gzip, identity), as `CdnProxy` does. */
  override cacheVaryFilter(
    _session: Session,
    name: string,
    value: string | undefined,
    _ctx: ClusterCtx,
  ): string | undefined {
    return acceptEncodingNormaliser(name, value);
  }

  /** The owner node for a forwarded request; else an origin, load balanced by `ReverseProxy`. */
  override upstreamPeer(session: Session, ctx: ClusterCtx): HttpPeer {
    const owner = ctx.owner;
    if (owner !== undefined) return this.#nodes.get(owner)!;
    return super.upstreamPeer(session, ctx);
  }

  /**
   * The owner did not accept the connection: mark it down and retry where the ring now points
   * (the next live node, or the origin when that is this node). Nothing was sent, so this is safe
   * for every method. An origin that fails to connect is `ReverseProxy`'s to handle.
   */
  override failToConnect(session: Session, peer: HttpPeer, ctx: ClusterCtx, error: CairnError): CairnError {
    const owner = ctx.owner;
    if (owner !== undefined && ctx.key !== undefined) {
      this.markDown(owner);
      const log = session.log;
      if (log.isLevelEnabled('warn'))
        log.warn({ node: owner, err: error.code, downMs: this.#downMs }, 'cluster node down');
      const next = this.ownerOf(ctx.key);
      ctx.owner = this.#nodes.has(next) ? next : undefined;
      error.retry = true;
      return error;
    }
    return super.failToConnect(session, peer, ctx, error);
  }

  /** Mark a forwarded request as one hop; never let a client's hop header reach the origin. */
  override upstreamRequestFilter(_session: Session, request: UpstreamRequest, ctx: ClusterCtx): void {
    const headers = request.headers;
    if (ctx.owner !== undefined) headers[CLUSTER_HOP_HEADER] = this.self;
    else if (headers[CLUSTER_HOP_HEADER] !== undefined) delete headers[CLUSTER_HOP_HEADER];
  }

  /**
   * The purge answer: the body is this node's count; `Cairn-Cluster-Purge` lists the others'
   * (`node=N` or `node=failed`). 200 when anything was purged anywhere, 502 when a node could not
   * be purged (the purge is idempotent: send it again).
   */
  override purgeResponseFilter(_session: Session, response: ResponseHead, ctx: ClusterCtx): void {
    const nodes = ctx.purge;
    if (nodes === undefined) return;
    let failed = false;
    let purged = false;
    const parts: string[] = [];
    for (const [node, result] of Object.entries(nodes)) {
      parts.push(`${node}=${result}`);
      if (result === 'failed') failed = true;
      else if (result > 0) purged = true;
    }
    response.headers[CLUSTER_PURGE_HEADER] = parts.join(', ');
    if (failed) response.status = 502;
    else if (purged) response.status = 200;
  }

  /**
   * The upstream API (`ReverseProxy`) and `POST /purge` on the admin listener, as `CdnProxy` has it —
   * `{"url": "http://host/path"}`, `{"tag": "product-42"}` or `{"prefix": "http://host/static/"}` —
   * but cluster-wide: answers `{"purged": total, "nodes": {"<node>": N | "failed", …}}`, 200, or 502
   * when a node could not be purged.
   */
  override adminRoutes(admin: AdminServer): void {
    super.adminRoutes(admin);
    admin.route('POST', '/purge', (req, res) => this.#adminPurge(req, res));
  }

  async #adminPurge(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = await readPurgeTarget(req, res, this.cache);
    if (target === undefined) return;
    const result = await this.purge(target);
    sendJson(res, Object.values(result.nodes).includes('failed') ? 502 : 200, result);
  }

  /**
   * Drop what `target` names from every node's cache: this one's directly, the others' with a
   * `PURGE` each (sent at once, carrying the hop header).
   * @example
   * ```ts
   * await proxy.purge({ kind: 'tag', tag: 'product-42' }); // { purged: 3, nodes: { '10.0.0.1:8080': 1, … } }
   * ```
   */
  async purge(target: PurgeTarget): Promise<ClusterPurgeResult> {
    const request = this.#purgeRequest(target);
    const [local, others] = await Promise.all([
      purgeLocally(this.cache, target),
      request === undefined
        ? this.#allFailed()
        : this.#fanOut('PURGE', request.path, request.headers, undefined),
    ]);
    let purged = local;
    for (const result of Object.values(others)) if (result !== 'failed') purged += result;
    return { purged, nodes: { [this.self]: local, ...others } };
  }

  /** The `PURGE` request that makes another node drop what `target` names. */
  #purgeRequest(target: PurgeTarget): { path: string; headers: HeaderMap } | undefined {
    switch (target.kind) {
      case 'url':
        return { path: target.url.pathname + target.url.search, headers: { host: target.url.host } };
      case 'tag':
        return { path: '/', headers: { host: this.self, 'surrogate-key': target.tag } };
      case 'prefix': {
        let url: URL;
        try {
          url = new URL(target.prefix);
        } catch {
          return undefined;
        }
        return { path: url.pathname + url.search, headers: { host: url.host, 'x-purge-prefix': '1' } };
      }
    }
  }

  #allFailed(): Promise<Record<string, 'failed'>> {
    const out: Record<string, 'failed'> = {};
    for (const node of this.#nodes.keys()) out[node] = 'failed';
    return Promise.resolve(out);
  }

  /** Send one purge to every other node at once; each answers with what it removed. */
  async #fanOut(
    method: string,
    path: string,
    headers: HeaderMap,
    session: Session | undefined,
  ): Promise<Record<string, number | 'failed'>> {
    const sent: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(headers)) if (value !== undefined) sent[name] = value;
    sent[CLUSTER_HOP_HEADER] = this.self;
    const nodes = [...this.#nodes.keys()];
    const results = await Promise.all(nodes.map((node) => this.#purgeNode(node, method, path, sent)));
    const out: Record<string, number | 'failed'> = {};
    for (let i = 0; i < nodes.length; i++) {
      const node = nodes[i]!;
      const result = results[i]!;
      if (typeof result === 'number') {
        out[node] = result;
        continue;
      }
      out[node] = 'failed';
      const log = session?.log;
      if (log !== undefined && log.isLevelEnabled('warn'))
        log.warn({ node, reason: result.reason }, 'cluster purge failed');
    }
    return out;
  }

  #purgeNode(
    node: string,
    method: string,
    path: string,
    headers: Record<string, string | string[]>,
  ): Promise<number | { reason: string }> {
    const address = this.#addresses.get(node)!;
    return new Promise((resolve) => {
      const req = httpRequest(
        {
          host: address.host,
          port: address.port,
          method,
          path,
          headers,
          agent: false,
          timeout: this.#purgeTimeout,
        },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', () => resolve({ reason: 'response cut off' }));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            // The engine's purge answers 200 (something purged) or 404 (nothing was stored).
            if (status !== 200 && status !== 404) {
              resolve({ reason: `status ${status}` });
              return;
            }
            resolve(purgedCount(Buffer.concat(chunks).toString('utf8')) ?? { reason: 'unreadable answer' });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('purge timed out')));
      req.on('error', (error: NodeJS.ErrnoException) => resolve({ reason: error.code ?? error.message }));
      req.end();
    });
  }

  /** Did this request come from another node of the cluster? */
  #fromPeer(session: Session): boolean {
    const hop = session.headers[CLUSTER_HOP_HEADER];
    return typeof hop === 'string' && this.#index.has(hop);
  }
}

/** Backends `ReverseProxy` will know at start (it allows one attempt per backend). */
function backendCount(options: ReverseProxyOptions): number {
  let count = options.origins?.length ?? 0;
  for (const group of [options.upstream, ...Object.values(options.upstreams ?? {})]) {
    count += (group?.backends?.length ?? 0) + (group?.resolve?.length ?? 0);
  }
  return count;
}

function purgedCount(body: string): number | undefined {
  try {
    const parsed = JSON.parse(body) as { purged?: unknown };
    return typeof parsed.purged === 'number' ? parsed.purged : undefined;
  } catch {
    return undefined;
  }
}

function nonNegative(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0)
    throw new TypeError(`ClusterCdnProxy: cluster.${name} must be a number >= 0 (got ${String(value)})`);
  return value;
}
