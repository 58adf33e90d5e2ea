/**
 * `ReverseProxy`: the plain ready-made proxy — origins in named upstream groups, each behind a
 * load-balancing algorithm (round robin by default, ketama by URI, least-connections, …), with
 * active health checks, passive ejection and a circuit breaker per backend, runtime membership
 * changes through the admin API or `applyUpstreams` (the CLI's config-file watch), and per-backend
 * metrics. Built only from Cairn's public API, exactly as a user could write it.
 *
 * How it drives an `Upstream` from the phases:
 * - `upstreamPeer` picks a backend (`ctx.tried` excludes the ones a retry already used), counts it
 *   in flight (`begin`) and returns that backend's pooled `HttpPeer`; with none usable it throws
 *   `CAIRN_ERR_UPSTREAM_UNAVAILABLE` (503, or stale content where the cache allows).
 * - `failToConnect` ends the attempt as a failure and retries on the next backend not yet tried.
 * - `errorWhileProxy` ends the attempt (a keep-alive race on a re-used connection is not the
 *   backend's fault: `cancelled`).
 * - `connectedToUpstream` notes when the response head arrived (the latency the breaker sees).
 * - `logging` ends the attempt: `success`, `failure` (an upstream error, or a status in
 *   `failureStatus`), or `cancelled` (the client went away, a hook failed).
 */
import { performance } from 'node:perf_hooks';
import {
  CairnError,
  HealthChecker,
  HostnameWatcher,
  HttpPeer,
  ProxyHttp,
  Upstream,
  createBackend,
} from '../src/index.ts';
import type {
  AdminServer,
  Algorithm,
  Backend,
  BackendConfig,
  CairnService,
  CircuitBreakerOptions,
  HealthCheckOptions,
  HttpPeerOptions,
  Outcome,
  PassiveHealthOptions,
  ProxyHttpOptions,
  ServiceRuntime,
  Session,
  UpstreamSnapshot,
} from '../src/index.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { readJsonBody, sendJson } from './admin-json.ts';

/**
 * What a group hashes for `ketama` (and ignores for the others): `uri` (path and query, nginx
 * `$request_uri`), `path` (without the query), `host` (lower-cased), `client-ip`, `header:NAME`,
 * `query:NAME` (the raw argument, nginx `$arg_NAME`), `cookie:NAME` (nginx `$cookie_NAME`), or a
 * function of the session.
 */
export type HashKey =
  | 'uri'
  | 'path'
  | 'host'
  | 'client-ip'
  | `header:${string}`
  | `query:${string}`
  | `cookie:${string}`
  | ((session: Session) => string | undefined);

/** Active health checks of a group (see `HealthChecker`): the check and its timing in one object. */
export interface GroupHealthOptions extends Omit<HealthCheckOptions, 'check'> {
  /** `http` (default) or `tcp`. */
  readonly type?: 'http' | 'tcp';
  readonly method?: string;
  readonly path?: string;
  readonly host?: string;
  readonly expectStatus?: readonly [number, number];
  readonly rejectUnauthorized?: boolean;
}

/** A hostname whose addresses become backends, re-resolved on an interval (see `HostnameWatcher`). */
export interface GroupResolveOptions {
  readonly hostname: string;
  readonly port: number;
  readonly weight?: number;
  readonly protocol?: 'http:' | 'https:';
  readonly intervalMs?: number;
  readonly family?: 0 | 4 | 6;
}

/** One upstream group. Everything is optional; a group with no backends answers 503 until one is added. */
export interface UpstreamGroupOptions {
  /** Default `'round-robin'`. */
  readonly algorithm?: Algorithm;
  /** Default `'uri'` (used by `ketama` only). */
  readonly hashKey?: HashKey;
  /** `'host:port'`, an `http(s)://` URL, or `{ address, weight, id }`. */
  readonly backends?: readonly (string | BackendConfig)[];
  /** Hostnames resolved into backends, re-resolved on an interval. */
  readonly resolve?: readonly GroupResolveOptions[];
  /** Active checks; default none. */
  readonly health?: GroupHealthOptions | false;
  /** Passive ejection (`maxFails` consecutive failures eject for `ejectMs`); default on, `false` off. */
  readonly passive?: Partial<PassiveHealthOptions> | false;
  /** Circuit breaker per backend; default on, `false` off. */
  readonly breaker?: Partial<CircuitBreakerOptions> | false;
  /** Origin statuses that count as a backend failure for passive health and the breaker. Default 502, 503, 504. */
  readonly failureStatus?: readonly number[];
  /** Which requests go to this group (first match in order; a group without `match` takes the rest). */
  readonly match?: { readonly hosts?: readonly string[]; readonly pathPrefix?: string };
}

export interface ReverseProxyOptions extends ProxyHttpOptions {
  /** Origin URLs: shorthand for `upstream: { backends: origins }` (round robin). */
  readonly origins?: readonly string[];
  /** The group `default`. */
  readonly upstream?: UpstreamGroupOptions;
  /** Named groups; with `match` they split traffic by host and path prefix. */
  readonly upstreams?: Readonly<Record<string, UpstreamGroupOptions>>;
  /** Connection options applied to every backend. */
  readonly peer?: HttpPeerOptions;
}

/** Per-request state of a `ReverseProxy` (subclasses may extend it through `newCtx`). */
export interface ReverseProxyCtx {
  /** The group this request was routed to (set by the first `upstreamPeer`). */
  group: UpstreamGroup | null;
  /** The backend of the attempt in flight, until its outcome is reported. */
  backend: Backend | undefined;
  /** `performance.now()` when the attempt's backend was chosen. */
  started: number;
  /** `performance.now()` when the attempt's response head arrived (0 before). */
  headAt: number;
  /** Backends that failed this request (a retry goes elsewhere). */
  tried: Set<Backend> | null;
  /** The last attempt's error: what the client gets when no backend is left to try. */
  lastError: CairnError | undefined;
}

const DEFAULT_FAILURE_STATUS: readonly number[] = [502, 503, 504];

/**
 * One named group as a `ReverseProxy` runs it: the `Upstream`, its hash key, health checker and
 * hostname watchers. Reach it through `proxy.group(name)`; change membership through `upstream`.
 *
 * @example
 * ```ts
 * const api = proxy.group('api')!;
 * api.upstream.add({ address: '10.0.0.9:8080', weight: 2 });
 * await api.upstream.drain('10.0.0.1:8080');
 * ```
 */
export class UpstreamGroup {
  readonly name: string;
  readonly upstream: Upstream<Session>;
  /** The options the group was built from (the config-file watch diffs against them). */
  options: UpstreamGroupOptions;
  /** The hash key function, `undefined` when the algorithm does not hash. */
  key: ((session: Session) => string | undefined) | undefined;
  failureStatus: ReadonlySet<number>;
  checker: HealthChecker | undefined;
  watchers: HostnameWatcher[];
  #lastWarn: number;
  #suppressed: number;

  constructor(name: string, options: UpstreamGroupOptions) {
    this.name = name;
    this.options = options;
    this.upstream = new Upstream<Session>({
      name,
      algorithm: options.algorithm ?? 'round-robin',
      backends: (options.backends ?? []).map(backendConfig),
      ...(options.passive === undefined ? {} : { passive: options.passive }),
      ...(options.breaker === undefined ? {} : { breaker: options.breaker }),
    });
    this.key = undefined;
    this.failureStatus = new Set(DEFAULT_FAILURE_STATUS);
    this.checker = undefined;
    this.watchers = [];
    this.#lastWarn = -Infinity;
    this.#suppressed = 0;
    this.configure(options);
    this.checker = makeChecker(this.upstream, options.health);
    this.watchers = (options.resolve ?? []).map((r) => new HostnameWatcher(this.upstream, r));
  }

  /** Apply the options that change without rebuilding anything: hash key, failure statuses. */
  configure(options: UpstreamGroupOptions): void {
    this.options = options;
    this.key = hashKeyFunction(options.hashKey ?? 'uri');
    this.failureStatus = new Set(options.failureStatus ?? DEFAULT_FAILURE_STATUS);
  }

  /** Does this group take the request? */
  matches(session: Session): boolean {
    const match = this.options.match;
    if (match === undefined) return true;
    if (match.pathPrefix !== undefined && !session.path.startsWith(match.pathPrefix)) return false;
    if (match.hosts !== undefined) {
      const host = hostWithoutPort(session.host);
      if (!match.hosts.some((h) => h.toLowerCase() === host)) return false;
    }
    return true;
  }

  /** Log "no usable backend" at most once a second per group, with how many were not logged. */
  warnUnavailable(logger: Logger, error: CairnError, reqId: string): void {
    const now = performance.now();
    if (now - this.#lastWarn < 1000) {
      this.#suppressed++;
      return;
    }
    this.#lastWarn = now;
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    logger.warn({ code: error.code, upstream: this.name, reqId, suppressed }, error.message);
  }

  async start(logger: Logger | undefined): Promise<void> {
    if (logger !== undefined) this.#logEvents(logger);
    this.checker?.start();
    await Promise.all(this.watchers.map((w) => w.start()));
  }

  async stop(): Promise<void> {
    for (const w of this.watchers) w.stop();
    await this.checker?.stop();
  }

  #logEvents(logger: Logger): void {
    const upstream = this.name;
    this.upstream.on('ejected', (b) =>
      logger.warn({ upstream, backend: b.id }, 'backend ejected after consecutive failures'),
    );
    this.upstream.on('breaker', (b, state) =>
      logger.warn({ upstream, backend: b.id, state }, 'backend circuit breaker changed'),
    );
    this.upstream.on('health', (b, healthy) =>
      logger.warn({ upstream, backend: b.id, healthy }, 'backend health changed'),
    );
    this.upstream.on('drained', (b) =>
      logger.info({ upstream, backend: b.id }, 'backend drained and removed'),
    );
    for (const w of this.watchers) {
      w.on('lookupFailed', (error) =>
        logger.warn({ upstream, code: error.code, err: error.message }, 'hostname lookup failed'),
      );
    }
  }
}

/**
 * @example
 * ```ts
 * import { serve } from 'cairn';
 * import { ReverseProxy } from 'cairn/proxies';
 * const proxy = new ReverseProxy({
 *   upstream: {
 *     algorithm: 'ketama',
 *     hashKey: 'uri',
 *     backends: [{ address: '10.0.0.1:8080', weight: 2 }, '10.0.0.2:8080'],
 *     health: { type: 'http', path: '/healthz', intervalMs: 2000 },
 *   },
 * });
 * await serve(proxy, {
 *   listen: '127.0.0.1:8080',
 *   admin: '127.0.0.1:9090',
 *   services: [proxy],                       // health checks, DNS watches, per-backend metrics
 *   adminRoutes: (a) => proxy.adminRoutes(a), // GET/PUT/PATCH/DELETE /upstreams/...
 * });
 * ```
 */
export class ReverseProxy<Ctx extends object = ReverseProxyCtx>
  extends ProxyHttp<Ctx>
  implements CairnService
{
  readonly peerOptions: HttpPeerOptions | undefined;
  /** Groups in routing order. */
  #groups: UpstreamGroup[];
  /** One pooled peer per backend descriptor (a re-weighted backend is a new descriptor). */
  readonly #peers = new WeakMap<Backend, HttpPeer>();
  #runtime: ServiceRuntime | undefined;
  #started: boolean;
  #peerList: { selector: unknown; peers: readonly HttpPeer[] } | undefined;

  constructor(options: ReverseProxyOptions) {
    const groups = groupsFromOptions(options);
    let total = 0;
    for (const g of Object.values(groups)) total += (g.backends?.length ?? 0) + (g.resolve?.length ?? 0);
    // Allow one attempt per backend, so a connect failure can walk the whole group.
    super({ ...options, maxRetries: options.maxRetries ?? Math.max(2, total - 1) });
    this.peerOptions = options.peer;
    this.#groups = Object.entries(groups).map(([name, g]) => new UpstreamGroup(name, g));
    this.#runtime = undefined;
    this.#started = false;
    this.#peerList = undefined;
  }

  /**
   * The pooled peers of the first group's selectable members (not draining), in order: for
   * subclasses that route some requests themselves. Rebuilt only when membership changes.
   */
  get peers(): readonly HttpPeer[] {
    const upstream = this.#groups[0]!.upstream;
    const selector = upstream.selector;
    if (this.#peerList?.selector !== selector) {
      this.#peerList = { selector, peers: selector.backends.map((b) => this.peerFor(b)) };
    }
    return this.#peerList.peers;
  }

  /** The groups, in routing order. */
  get groups(): readonly UpstreamGroup[] {
    return this.#groups;
  }

  /**
   * A group by name.
   * @example
   * ```ts
   * proxy.group('default')?.upstream.setWeight('10.0.0.1:8080', 3);
   * ```
   */
  group(name: string): UpstreamGroup | undefined {
    return this.#groups.find((g) => g.name === name);
  }

  /** The pooled peer of a backend (made once per backend descriptor). */
  peerFor(backend: Backend): HttpPeer {
    let peer = this.#peers.get(backend);
    if (peer === undefined) {
      const host = backend.host.includes(':') ? `[${backend.host}]` : backend.host;
      peer = new HttpPeer(`${backend.protocol}//${host}:${backend.port}`, this.peerOptions);
      this.#peers.set(backend, peer);
    }
    return peer;
  }

  /**
   * Start health checks and hostname watches, and export per-backend metrics (a `CairnService`:
   * pass the proxy in `serve(proxy, { services: [proxy] })`).
   */
  async start(runtime?: ServiceRuntime): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.#runtime = runtime;
    runtime?.metrics.addUpstreams(() => this.#groups.map((g) => g.upstream.snapshot()));
    await Promise.all(this.#groups.map((g) => g.start(runtime?.logger)));
  }

  /** Stop health checks and hostname watches. */
  async stop(): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    await Promise.all(this.#groups.map((g) => g.stop()));
  }

  /**
   * The load-balancing state (`ReverseProxyCtx`). A subclass with its own ctx should spread
   * `super.newCtx()` into it; a ctx without these fields is simply not load balanced by the hooks
   * below (they check `ctx.group`), so a subclass that picks peers itself still works.
   */
  override newCtx(): Ctx {
    const ctx: ReverseProxyCtx = {
      group: null,
      backend: undefined,
      started: 0,
      headAt: 0,
      tried: null,
      lastError: undefined,
    };
    return ctx as unknown as Ctx;
  }

  /** The first group (in order) whose `match` takes the request. */
  route(session: Session): UpstreamGroup | undefined {
    const groups = this.#groups;
    if (groups.length === 1) return groups[0];
    for (const g of groups) if (g.matches(session)) return g;
    return undefined;
  }

  /** Pick a backend of the request's group; on a retry, one not tried yet. */
  override upstreamPeer(session: Session, context: Ctx): HttpPeer {
    const ctx = context as Partial<ReverseProxyCtx>;
    let group = ctx.group ?? null;
    if (group === null) {
      group = this.route(session) ?? null;
      if (group === null)
        throw new CairnError('CAIRN_ERR_UPSTREAM_UNAVAILABLE', 'no upstream group takes this request');
      ctx.group = group;
    }
    const previous = ctx.backend;
    if (previous !== undefined) {
      // An attempt whose outcome no hook reported (should not happen): do not leak its in-flight count.
      group.upstream.end(previous, 'cancelled');
      ctx.backend = undefined;
    }
    const key =
      group.upstream.algorithm === 'ketama' && group.key !== undefined ? group.key(session) : undefined;
    const tried = ctx.tried;
    const backend = group.upstream.select(key, tried === null ? undefined : { tried });
    if (backend === undefined) {
      throw (
        ctx.lastError ??
        new CairnError('CAIRN_ERR_UPSTREAM_UNAVAILABLE', `no usable backend in upstream "${group.name}"`)
      );
    }
    // A background revalidation runs after the client was answered, with no logging phase to end
    // it: it is not counted in flight.
    if (!session.response.headersSent) {
      group.upstream.begin(backend);
      ctx.backend = backend;
      ctx.started = performance.now();
      ctx.headAt = 0;
    }
    return this.peerFor(backend);
  }

  override connectedToUpstream(_session: Session, _reused: boolean, _peer: HttpPeer, context: Ctx): void {
    const ctx = context as Partial<ReverseProxyCtx>;
    if (ctx.backend !== undefined && ctx.headAt === 0) ctx.headAt = performance.now();
  }

  /** Nothing was sent on a failed connect: the next backend not yet tried is always safe. */
  override failToConnect(_session: Session, _peer: HttpPeer, context: Ctx, error: CairnError): CairnError {
    const ctx = context as Partial<ReverseProxyCtx>;
    const group = ctx.group ?? null;
    const backend = ctx.backend;
    if (group !== null && backend !== undefined) {
      group.upstream.end(backend, 'failure', performance.now() - ctx.started!);
      ctx.backend = undefined;
      (ctx.tried ??= new Set()).add(backend);
    }
    if (group === null) return error;
    ctx.lastError = error;
    if (group !== null && (ctx.tried?.size ?? 0) < group.upstream.selector.backends.length)
      error.retry = true;
    return error;
  }

  override errorWhileProxy(
    peer: HttpPeer,
    session: Session,
    error: CairnError,
    context: Ctx,
    reused: boolean,
  ): CairnError {
    const decided = super.errorWhileProxy(peer, session, error, context, reused);
    const ctx = context as Partial<ReverseProxyCtx>;
    const group = ctx.group ?? null;
    if (group === null) return decided;
    const backend = ctx.backend;
    if (group !== null && backend !== undefined) {
      // The origin closed an idle keep-alive connection as we wrote to it: not a sign of ill health.
      const race = reused && error.retryable === 'if-reused';
      group.upstream.end(backend, race ? 'cancelled' : 'failure', performance.now() - ctx.started!);
      ctx.backend = undefined;
      if (!race) (ctx.tried ??= new Set()).add(backend);
    }
    ctx.lastError = decided;
    return decided;
  }

  /** A clear 503 (and one coded warning a second) when no backend is usable. */
  override failToProxy(session: Session, error: CairnError, ctx: Ctx): number | Promise<number> {
    if (error.code !== 'CAIRN_ERR_UPSTREAM_UNAVAILABLE') return super.failToProxy(session, error, ctx);
    const group = (ctx as Partial<ReverseProxyCtx>).group;
    if (group != null) group.warnUnavailable(session.log, error, session.id);
    else session.log.warn({ code: error.code, reqId: session.id }, error.message);
    if (session.aborted || session.response.headersSent) return super.failToProxy(session, error, ctx);
    session.respond(
      503,
      { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'retry-after': '1' },
      '503 Service Unavailable: no healthy origin server is available for this request (CAIRN_ERR_UPSTREAM_UNAVAILABLE)\n',
    );
    return 503;
  }

  /** Report the attempt's outcome to the group, then write the access line. */
  override logging(session: Session, error: CairnError | undefined, context: Ctx): void | Promise<void> {
    const ctx = context as Partial<ReverseProxyCtx>;
    const backend = ctx.backend;
    const group = ctx.group;
    if (backend !== undefined && group != null) {
      ctx.backend = undefined;
      let outcome: Outcome;
      if (error === undefined) outcome = group.failureStatus.has(session.status) ? 'failure' : 'success';
      else outcome = error.source === 'upstream' ? 'failure' : 'cancelled';
      const end = ctx.headAt === 0 || ctx.headAt === undefined ? performance.now() : ctx.headAt;
      group.upstream.end(backend, outcome, end - ctx.started!);
    }
    return super.logging(session, error, context);
  }

  // ---- runtime membership ----------------------------------------------------------------------

  /**
   * Make the groups equal to `groups` without dropping a request: new backends are added, missing
   * ones drained (their in-flight requests finish), weights and algorithms changed in place, new
   * groups created and vanished groups drained and dropped. Backends added by hostname watches are
   * left to them. Everything is validated before anything changes: a bad config throws
   * `CAIRN_ERR_CONFIG_INVALID` and the running groups stay as they were. Passive-health and breaker
   * settings of an existing group need a restart; they are listed in `restartNeeded`.
   *
   * @example
   * ```ts
   * proxy.applyUpstreams({ default: { backends: ['10.0.0.1:8080', { address: '10.0.0.2:8080', weight: 3 }] } });
   * ```
   */
  applyUpstreams(groups: Readonly<Record<string, UpstreamGroupOptions>>): UpstreamChanges {
    // Validate: build every new group's pieces without starting them.
    for (const [name, options] of Object.entries(groups)) {
      const probe = new UpstreamGroup(name, options);
      void probe;
    }
    const changes: UpstreamChanges = {
      added: [],
      removed: [],
      updated: [],
      groupsAdded: [],
      groupsRemoved: [],
      restartNeeded: [],
    };
    const next: UpstreamGroup[] = [];
    for (const [name, options] of Object.entries(groups)) {
      const existing = this.group(name);
      if (existing === undefined) {
        const group = new UpstreamGroup(name, options);
        next.push(group);
        changes.groupsAdded.push(name);
        if (this.#started) void group.start(this.#runtime?.logger);
        continue;
      }
      next.push(existing);
      this.#updateGroup(existing, options, changes);
    }
    for (const old of this.#groups) {
      if (next.includes(old)) continue;
      changes.groupsRemoved.push(old.name);
      void old.stop();
      for (const b of old.upstream.snapshot().backends) void old.upstream.drain(b.id);
    }
    this.#groups = next;
    return changes;
  }

  #updateGroup(group: UpstreamGroup, options: UpstreamGroupOptions, changes: UpstreamChanges): void {
    const before = group.options;
    const upstream = group.upstream;
    if ((options.algorithm ?? 'round-robin') !== upstream.algorithm) {
      upstream.setAlgorithm(options.algorithm ?? 'round-robin');
      changes.updated.push(`${group.name}: algorithm ${upstream.algorithm}`);
    }
    for (const key of ['passive', 'breaker'] as const) {
      if (JSON.stringify(before[key]) !== JSON.stringify(options[key]))
        changes.restartNeeded.push(`${group.name}.${key}`);
    }
    group.configure(options);
    // Resolved backends belong to their watchers; a changed resolve list replaces the watchers.
    if (JSON.stringify(before.resolve ?? []) !== JSON.stringify(options.resolve ?? [])) {
      for (const w of group.watchers) {
        w.stop();
        for (const id of w.ids) void upstream.drain(id);
      }
      group.watchers = (options.resolve ?? []).map((r) => new HostnameWatcher(upstream, r));
      if (this.#started) for (const w of group.watchers) void w.start();
      changes.updated.push(`${group.name}: resolve`);
    }
    const watched = new Set<string>();
    for (const w of group.watchers) for (const id of w.ids) watched.add(id);
    const wanted = new Map<string, Backend>();
    for (const entry of options.backends ?? []) {
      const b = createBackend(backendConfig(entry));
      wanted.set(b.id, b);
    }
    const current = new Map<string, UpstreamSnapshot['backends'][number]>();
    for (const b of upstream.snapshot().backends) current.set(b.id, b);
    for (const [id, b] of wanted) {
      const now = current.get(id);
      if (now === undefined) {
        upstream.add({ address: b.address, weight: b.weight, id });
        changes.added.push(`${group.name}/${id}`);
      } else if (now.state === 'draining' || now.address !== b.address) {
        // Same id, new address (or coming back while draining): its in-flight requests finish on
        // the old descriptor; new ones go to the new one.
        upstream.remove(id);
        upstream.add({ address: b.address, weight: b.weight, id });
        changes.updated.push(`${group.name}/${id}`);
      } else if (now.weight !== b.weight) {
        upstream.setWeight(id, b.weight);
        changes.updated.push(`${group.name}/${id}: weight ${b.weight}`);
      }
    }
    for (const [id, b] of current) {
      if (wanted.has(id) || watched.has(id) || b.state === 'draining') continue;
      void upstream.drain(id);
      changes.removed.push(`${group.name}/${id}`);
    }
    if (JSON.stringify(before.health) !== JSON.stringify(options.health)) {
      void group.checker?.stop();
      group.checker = makeChecker(upstream, options.health);
      if (this.#started) group.checker?.start();
      changes.updated.push(`${group.name}: health`);
    }
  }

  // ---- admin API -------------------------------------------------------------------------------

  /**
   * The upstream API on the admin listener (JSON in, JSON out):
   * - `GET /upstreams` — every group's snapshot; `GET /upstreams/<group>` — one group.
   * - `PUT /upstreams/<group>/backends/<id>` `{"address": "10.0.0.3:8080", "weight": 2}` — add a
   *   backend (201), or change an existing one's weight (200).
   * - `PATCH /upstreams/<group>/backends/<id>` `{"weight": 5}` — re-weight.
   * - `DELETE /upstreams/<group>/backends/<id>` — drain, then remove (202; with `?wait=1`, 200 once
   *   gone; with `?now=1`, remove at once, in-flight requests still finish).
   * - `PATCH /upstreams/<group>` `{"algorithm": "least-connections"}`.
   */
  adminRoutes(admin: AdminServer): void {
    // Each serving process holds its own upstream groups: under workers, every worker runs these.
    const everyWorker = { everyWorker: true };
    admin.route('GET', '/upstreams', (req, res, url) => this.#adminGet(req, res, url), everyWorker);
    admin.route('PUT', '/upstreams/', (req, res, url) => this.#adminPut(req, res, url), everyWorker);
    admin.route('PATCH', '/upstreams/', (req, res, url) => this.#adminPatch(req, res, url), everyWorker);
    admin.route('DELETE', '/upstreams/', (req, res, url) => this.#adminDelete(req, res, url), everyWorker);
  }

  #adminGet(_req: IncomingMessage, res: ServerResponse, url: URL): void {
    const parts = adminPath(url);
    if (parts === undefined) return sendJson(res, 404, { error: 'not found' });
    if (parts.group === undefined) {
      return sendJson(res, 200, { upstreams: this.#groups.map((g) => groupView(g)) });
    }
    const group = this.group(parts.group);
    if (group === undefined) return sendJson(res, 404, { error: `no upstream "${parts.group}"` });
    if (parts.backend === undefined) return sendJson(res, 200, groupView(group));
    const b = group.upstream.snapshot().backends.find((x) => x.id === parts.backend);
    return b === undefined
      ? sendJson(res, 404, { error: `no backend "${parts.backend}"` })
      : sendJson(res, 200, b);
  }

  async #adminPut(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const parts = adminPath(url);
    if (parts?.group === undefined || parts.backend === undefined)
      return sendJson(res, 404, { error: 'PUT /upstreams/<group>/backends/<id>' });
    const group = this.group(parts.group);
    if (group === undefined) return sendJson(res, 404, { error: `no upstream "${parts.group}"` });
    const body = await readJsonBody(req, res);
    if (body === undefined) return;
    const id = parts.backend;
    const weight = body.weight;
    if (weight !== undefined && typeof weight !== 'number')
      return sendJson(res, 400, { error: 'weight must be a number' });
    const existing = group.upstream.snapshot().backends.find((b) => b.id === id);
    if (existing !== undefined) {
      if (existing.state === 'draining')
        return sendJson(res, 409, { error: `backend "${id}" is draining; add it again once it is gone` });
      if (body.address !== undefined && body.address !== existing.address) {
        return sendJson(res, 409, {
          error: `backend "${id}" has address ${existing.address}; DELETE it first`,
        });
      }
      return this.#reweight(res, group, id, weight);
    }
    if (typeof body.address !== 'string')
      return sendJson(res, 400, { error: 'address (host:port or URL) is required' });
    try {
      group.upstream.add({ address: body.address, id, ...(weight === undefined ? {} : { weight }) });
    } catch (error) {
      return sendError(res, error);
    }
    return sendJson(
      res,
      201,
      group.upstream.snapshot().backends.find((b) => b.id === id),
    );
  }

  async #adminPatch(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const parts = adminPath(url);
    if (parts?.group === undefined)
      return sendJson(res, 404, { error: 'PATCH /upstreams/<group>[/backends/<id>]' });
    const group = this.group(parts.group);
    if (group === undefined) return sendJson(res, 404, { error: `no upstream "${parts.group}"` });
    const body = await readJsonBody(req, res);
    if (body === undefined) return;
    if (parts.backend !== undefined) {
      if (typeof body.weight !== 'number') return sendJson(res, 400, { error: 'weight must be a number' });
      return this.#reweight(res, group, parts.backend, body.weight);
    }
    if (typeof body.algorithm !== 'string') return sendJson(res, 400, { error: 'algorithm is required' });
    try {
      group.upstream.setAlgorithm(body.algorithm as Algorithm);
    } catch (error) {
      return sendError(res, error);
    }
    return sendJson(res, 200, groupView(group));
  }

  async #adminDelete(_req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const parts = adminPath(url);
    if (parts?.group === undefined || parts.backend === undefined)
      return sendJson(res, 404, { error: 'DELETE /upstreams/<group>/backends/<id>' });
    const group = this.group(parts.group);
    if (group === undefined) return sendJson(res, 404, { error: `no upstream "${parts.group}"` });
    const id = parts.backend;
    if (!group.upstream.snapshot().backends.some((b) => b.id === id))
      return sendJson(res, 404, { error: `no backend "${id}"` });
    if (url.searchParams.get('now') === '1') {
      group.upstream.remove(id);
      return sendJson(res, 200, { removed: id });
    }
    const drained = group.upstream.drain(id);
    if (url.searchParams.get('wait') === '1') {
      await drained;
      return sendJson(res, 200, { removed: id });
    }
    return sendJson(res, 202, { draining: id });
  }

  #reweight(res: ServerResponse, group: UpstreamGroup, id: string, weight: unknown): void {
    if (weight !== undefined) {
      try {
        if (!group.upstream.setWeight(id, weight as number))
          return sendJson(res, 404, { error: `no backend "${id}"` });
      } catch (error) {
        return sendError(res, error);
      }
    }
    return sendJson(
      res,
      200,
      group.upstream.snapshot().backends.find((b) => b.id === id),
    );
  }
}

/** What `applyUpstreams` changed (`group/id` strings). */
export interface UpstreamChanges {
  readonly added: string[];
  readonly removed: string[];
  readonly updated: string[];
  readonly groupsAdded: string[];
  readonly groupsRemoved: string[];
  /** Settings that changed in the file but apply only on restart. */
  readonly restartNeeded: string[];
}

function groupsFromOptions(options: ReverseProxyOptions): Record<string, UpstreamGroupOptions> {
  const groups: Record<string, UpstreamGroupOptions> = {};
  if (options.origins !== undefined && options.origins.length > 0) {
    groups.default = { ...options.upstream, backends: options.origins };
  } else if (options.upstream !== undefined) groups.default = options.upstream;
  for (const [name, g] of Object.entries(options.upstreams ?? {})) groups[name] ??= g;
  if (Object.keys(groups).length === 0) {
    throw new CairnError('CAIRN_ERR_CONFIG_INVALID', 'ReverseProxy: give origins, upstream or upstreams');
  }
  return groups;
}

function backendConfig(entry: string | BackendConfig): BackendConfig {
  return typeof entry === 'string' ? { address: entry } : entry;
}

function makeChecker(
  upstream: Upstream<Session>,
  health: GroupHealthOptions | false | undefined,
): HealthChecker | undefined {
  if (health === undefined || health === false) return undefined;
  const { type, method, path, host, expectStatus, rejectUnauthorized, ...timing } = health;
  const check: HealthCheckOptions['check'] =
    type === 'tcp'
      ? { type: 'tcp' }
      : {
          type: 'http',
          ...(method === undefined ? {} : { method }),
          ...(path === undefined ? {} : { path }),
          ...(host === undefined ? {} : { host }),
          ...(expectStatus === undefined ? {} : { expectStatus }),
          ...(rejectUnauthorized === undefined ? {} : { rejectUnauthorized }),
        };
  return new HealthChecker(upstream, { ...timing, check });
}

function hostWithoutPort(host: string): string {
  const h = host.toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.lastIndexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}

/** Build the hash-key function once per group (not per request). */
function hashKeyFunction(spec: HashKey): (session: Session) => string | undefined {
  if (typeof spec === 'function') return spec;
  switch (spec) {
    case 'uri':
      return (s) => s.path;
    case 'path':
      return (s) => {
        const q = s.path.indexOf('?');
        return q < 0 ? s.path : s.path.slice(0, q);
      };
    case 'host':
      return (s) => hostWithoutPort(s.host);
    case 'client-ip':
      return (s) => s.clientAddress;
    default:
      break;
  }
  const colon = spec.indexOf(':');
  const kind = spec.slice(0, colon);
  const name = spec.slice(colon + 1);
  if (kind === 'header') {
    const lower = name.toLowerCase();
    return (s) => {
      const v = s.headers[lower];
      return v === undefined ? undefined : Array.isArray(v) ? v.join(', ') : v;
    };
  }
  if (kind === 'query') return (s) => rawParameter(s.path, s.path.indexOf('?') + 1, name, '&');
  if (kind === 'cookie') {
    return (s) => {
      const cookie = s.headers.cookie;
      return cookie === undefined ? undefined : rawParameter(cookie.replaceAll('; ', ';'), 0, name, ';');
    };
  }
  throw new CairnError('CAIRN_ERR_CONFIG_INVALID', `hashKey: unknown "${String(spec)}"`);
}

/** `name=value` in `text` from `start`, split by `sep`, undecoded (as nginx's `$arg_`/`$cookie_`). */
function rawParameter(text: string, start: number, name: string, sep: string): string | undefined {
  if (start <= 0 && sep === '&') return undefined;
  let i = start;
  while (i <= text.length) {
    let end = text.indexOf(sep, i);
    if (end < 0) end = text.length;
    if (text.startsWith(name, i) && text.charCodeAt(i + name.length) === 0x3d /* = */)
      return text.slice(i + name.length + 1, end);
    i = end + 1;
  }
  return undefined;
}

interface AdminPath {
  readonly group: string | undefined;
  readonly backend: string | undefined;
}

/** `/upstreams[/<group>[/backends/<id>]]`, segments percent-decoded. */
function adminPath(url: URL): AdminPath | undefined {
  const segments = url.pathname.split('/').slice(1);
  if (segments[segments.length - 1] === '') segments.pop();
  if (segments[0] !== 'upstreams') return undefined;
  try {
    if (segments.length === 1) return { group: undefined, backend: undefined };
    if (segments.length === 2) return { group: decodeURIComponent(segments[1]!), backend: undefined };
    if (segments.length === 4 && segments[2] === 'backends') {
      return { group: decodeURIComponent(segments[1]!), backend: decodeURIComponent(segments[3]!) };
    }
  } catch {
    return undefined;
  }
  return undefined;
}

function groupView(group: UpstreamGroup): Record<string, unknown> {
  const snap = group.upstream.snapshot();
  const key = group.options.hashKey;
  return {
    name: snap.name,
    algorithm: snap.algorithm,
    hashKey: typeof key === 'function' ? 'function' : (key ?? 'uri'),
    match: group.options.match ?? null,
    health: group.checker === undefined ? false : { running: group.checker.running },
    backends: snap.backends,
  };
}

function sendError(res: ServerResponse, error: unknown): void {
  const e = error as { code?: unknown; message?: unknown };
  sendJson(res, 400, { error: String(e.message), code: typeof e.code === 'string' ? e.code : undefined });
}
