/**
 * A cluster of Cairn nodes on loopback (`ClusterCdnProxy`): the ketama owner of each key is the only
 * node that fetches and stores it, other nodes forward to it in one hop, a dead owner's keys move
 * to the next live node on the ring, and purges reach every node.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpCache, Ketama, MemoryStore } from '../../src/index.ts';
import { CLUSTER_HOP_HEADER, CLUSTER_PURGE_HEADER, ClusterCdnProxy } from '../../hooks/index.ts';
import type { ClusterCdnProxyOptions } from '../../hooks/index.ts';
import { freePort } from '../helpers/nginx.ts';
import { httpRequest, startCairn, startOrigin } from '../helpers/servers.ts';
import type { Cairn, Cleanup, HttpResult, Origin } from '../helpers/servers.ts';

/** A hang is a failure, not a stuck run. */
const LIMIT = { timeout: 30_000 };

/** The Host every client uses: the key must not depend on which node a client reached. */
const HOST = 'cdn.test';

/** Long enough never to expire during a test: recovery is not what these tests time. */
const DOWN_MS = 600_000;

interface CountingOrigin {
  readonly origin: Origin;
  /** Requests seen per path. */
  readonly fetches: Map<string, number>;
  /** Requests that arrived carrying the cluster hop header (must stay 0). */
  readonly hopHeaders: number;
  /** `Via` of the last request per path. */
  readonly via: Map<string, string | undefined>;
  total(): number;
}

async function startCountingOrigin(t: Cleanup): Promise<CountingOrigin> {
  const fetches = new Map<string, number>();
  const via = new Map<string, string | undefined>();
  let hopHeaders = 0;
  const origin = await startOrigin(t, (req, res) => {
    const path = req.url ?? '/';
    fetches.set(path, (fetches.get(path) ?? 0) + 1);
    via.set(path, req.headers.via);
    if (req.headers[CLUSTER_HOP_HEADER] !== undefined) hopHeaders++;
    const body = `object ${path}`;
    res.writeHead(200, {
      'content-type': 'text/plain',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'max-age=600',
      ...(path.startsWith('/tagged/') ? { 'surrogate-key': 'tagged-group' } : {}),
    });
    res.end(body);
  });
  return {
    origin,
    fetches,
    via,
    get hopHeaders() {
      return hopHeaders;
    },
    total: () => [...fetches.values()].reduce((a, b) => a + b, 0),
  };
}

interface Node {
  readonly id: string;
  readonly proxy: ClusterCdnProxy;
  readonly cache: HttpCache;
  readonly cairn: Cairn;
}

type ProxyFactory = (options: ClusterCdnProxyOptions) => ClusterCdnProxy;

/**
 * Start `live` nodes of a cluster of `ids.length` (the others are named in the ring but never
 * started: their ports refuse connections). Ports are picked free and the nodes bound to them; a
 * port taken in between is retried with a fresh set.
 */
async function startCluster(
  t: Cleanup,
  origin: Origin,
  size: number,
  live: number,
  make: ProxyFactory = (o) => new ClusterCdnProxy(o),
): Promise<{ nodes: Node[]; ids: string[] }> {
  for (let attempt = 0; ; attempt++) {
    const ids: string[] = [];
    for (let i = 0; i < size; i++) ids.push(`127.0.0.1:${await freePort()}`);
    const nodes: Node[] = [];
    try {
      for (const id of ids.slice(0, live)) {
        const cache = new HttpCache({ store: new MemoryStore({ maxBytes: 16 * 1024 * 1024 }) });
        t.after(() => cache.close());
        const proxy = make({
          origins: [origin.url],
          cache,
          cluster: { self: id, peers: ids, downMs: DOWN_MS },
        });
        const cairn = await startCairn(t, proxy, { listen: id, adminRoutes: (a) => proxy.adminRoutes(a) });
        nodes.push({ id, proxy, cache, cairn });
      }
      return { nodes, ids };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 5) throw error;
    }
  }
}

function get(node: Node, path: string, headers: Record<string, string> = {}): Promise<HttpResult> {
  return httpRequest(`${node.cairn.url}${path}`, { headers: { host: HOST, ...headers } });
}

function keyOf(path: string): string {
  return `http://${HOST}${path}`;
}

async function holds(node: Node, path: string): Promise<boolean> {
  return (await node.cache.store.variants(keyOf(path))).length > 0;
}

/** Which nodes hold `path`, by id. */
async function holders(nodes: readonly Node[], path: string): Promise<string[]> {
  const out: string[] = [];
  for (const node of nodes) if (await holds(node, path)) out.push(node.id);
  return out;
}

function assertServed(res: HttpResult, path: string): void {
  assert.equal(res.status, 200, `${path}: status`);
  assert.equal(res.body.toString(), `object ${path}`, `${path}: body`);
}

test(
  'each key is fetched from the origin once per cluster, and only its ketama owner stores it',
  LIMIT,
  async (t) => {
    const counting = await startCountingOrigin(t);
    const { nodes, ids } = await startCluster(t, counting.origin, 3, 3);
    // An independent ring over the same identities: the nodes must agree with nginx's mapping.
    const ring = new Ketama([...ids].sort().map((server) => ({ server })));
    const paths = Array.from({ length: 60 }, (_, i) => `/k/${i}`);

    // Every key through every node at once (10 keys at a time): the owner's cache lock must collapse
    // the forwarded misses with its own.
    for (let i = 0; i < paths.length; i += 10) {
      const batch = paths.slice(i, i + 10);
      const results = await Promise.all(batch.flatMap((p) => nodes.map((n) => get(n, p))));
      results.forEach((res, j) => assertServed(res, batch[Math.floor(j / nodes.length)]!));
    }
    for (const p of paths) assert.equal(counting.fetches.get(p), 1, `${p} fetched from the origin once`);

    const owned = new Map<string, number>();
    for (const p of paths) {
      const owner = ring.select(keyOf(p));
      for (const node of nodes)
        assert.equal(node.proxy.ownerOf(keyOf(p)), owner, `${node.id} agrees on the owner of ${p}`);
      assert.deepEqual(await holders(nodes, p), [owner], `${p} is stored by its owner only`);
      owned.set(owner, (owned.get(owner) ?? 0) + 1);
    }
    assert.equal(owned.size, 3, 'the keys are spread over all three nodes');

    // Again, round robin: every answer is a hit at the owner, and the origin sees nothing more.
    for (const [i, p] of paths.entries()) {
      const res = await get(nodes[i % nodes.length]!, p);
      assertServed(res, p);
      assert.match(String(res.headers['cache-status']), /hit/, `${p}: served from the owner's cache`);
    }
    assert.equal(counting.total(), paths.length);
    assert.equal(counting.hopHeaders, 0, 'the hop header never reaches the origin');
  },
);

test(
  'one hop at most: a hop header is obeyed only from ring members, and two nodes that disagree do not loop',
  LIMIT,
  async (t) => {
    const counting = await startCountingOrigin(t);
    const { nodes } = await startCluster(t, counting.origin, 3, 3);
    const [a, b] = nodes as [Node, Node, Node];

    // A path B owns, requested from A with a hop header naming B: A serves it itself, no forward.
    let path = '';
    for (let i = 0; path === ''; i++) if (a.proxy.ownerOf(keyOf(`/hop/${i}`)) === b.id) path = `/hop/${i}`;
    assertServed(await get(a, path, { [CLUSTER_HOP_HEADER]: b.id }), path);
    assert.equal(counting.fetches.get(path), 1);
    assert.deepEqual(await holders(nodes, path), [a.id], 'served and stored by the node it reached');
    assert.equal(counting.via.get(path), '1.1 cairn', 'no second proxy on the way');

    // A hop header naming no member is a client's: ignored (routed to the owner), and not passed on.
    let other = '';
    for (let i = 0; other === ''; i++)
      if (a.proxy.ownerOf(keyOf(`/forged/${i}`)) === b.id) other = `/forged/${i}`;
    assertServed(await get(a, other, { [CLUSTER_HOP_HEADER]: 'evil.example:1' }), other);
    assert.deepEqual(await holders(nodes, other), [b.id]);
    assert.equal(counting.via.get(other), '1.1 cairn, 1.1 cairn', 'one hop: A, then B');
    assert.equal(counting.hopHeaders, 0);

    // Two nodes each convinced the other owns every key: the request still ends after one hop.
    class Contrary extends ClusterCdnProxy {
      other = '';
      override ownerOf(): string {
        return this.other;
      }
    }
    const confused = await startCluster(t, counting.origin, 2, 2, (o) => new Contrary(o));
    const [x, y] = confused.nodes as [Node, Node];
    (x.proxy as Contrary).other = y.id;
    (y.proxy as Contrary).other = x.id;
    assertServed(await get(x, '/confused'), '/confused');
    assert.equal(counting.fetches.get('/confused'), 1);
    assert.equal(counting.via.get('/confused'), '1.1 cairn, 1.1 cairn', 'exactly one hop');
    assert.deepEqual(await holders(confused.nodes, '/confused'), [y.id]);
    assertServed(await get(y, '/confused'), '/confused');
    assert.equal(counting.via.get('/confused'), '1.1 cairn, 1.1 cairn');
    assert.equal(counting.fetches.get('/confused'), 2, 'Y forwarded to X, which fetched it itself');
  },
);

test(
  'an owner that is down: its keys move to the next live node on the ring, every request answered',
  LIMIT,
  async (t) => {
    const counting = await startCountingOrigin(t);
    const { nodes, ids } = await startCluster(t, counting.origin, 3, 2);
    const dead = ids[2]!;
    const ring = new Ketama([...ids].sort().map((server) => ({ server })));
    const paths: string[] = [];
    for (let i = 0; paths.length < 8; i++) if (ring.select(keyOf(`/d/${i}`)) === dead) paths.push(`/d/${i}`);

    // The first request on each node finds the owner down (one refused connect), and is answered.
    for (const p of paths) for (const node of nodes) assertServed(await get(node, p), p);
    for (const node of nodes) assert.ok(node.proxy.isDown(dead), `${node.id} marked ${dead} down`);
    // At most one extra origin fetch per node: the request that found the owner down had already
    // decided not to use the local cache.
    assert.ok(
      counting.total() >= paths.length && counting.total() <= paths.length + nodes.length,
      `fetches: ${counting.total()}`,
    );

    // From now on each key lives on one node: the next one on the ring past the dead owner.
    const before = counting.total();
    for (const p of paths) for (const node of nodes) assertServed(await get(node, p), p);
    assert.equal(counting.total(), before, 'no more origin fetches');
    for (const p of paths) {
      const failover = ring.selectWith(keyOf(p), (s) => s !== dead)!;
      assert.ok(
        await holds(
          nodes.find((n) => n.id === failover)!,
          p,
        ),
        `${p} stored by ${failover}`,
      );
    }

    // A purge cannot reach the dead node: the client is told so (and may send it again).
    const purge = await httpRequest(`${nodes[0]!.cairn.url}${paths[0]}`, {
      method: 'PURGE',
      headers: { host: HOST },
    });
    assert.equal(purge.status, 502);
    assert.match(String(purge.headers[CLUSTER_PURGE_HEADER]), new RegExp(`${dead}=failed`));
  },
);

test(
  'purges fan out: PURGE and the admin API through one node remove the object from every node',
  LIMIT,
  async (t) => {
    const counting = await startCountingOrigin(t);
    const { nodes } = await startCluster(t, counting.origin, 3, 3);
    const [a, b, c] = nodes as [Node, Node, Node];

    // Put a copy on every node (the owner's, and two served locally through a member's hop header).
    const path = '/purge-me';
    assertServed(await get(a, path), path);
    const owner = a.proxy.ownerOf(keyOf(path));
    for (const node of nodes)
      if (node.id !== owner) assertServed(await get(node, path, { [CLUSTER_HOP_HEADER]: owner }), path);
    assert.equal((await holders(nodes, path)).length, 3);

    // PURGE through a node that is not the owner: every copy goes, the answer lists the others.
    const from = nodes.find((n) => n.id !== owner)!;
    const purged = await httpRequest(`${from.cairn.url}${path}`, {
      method: 'PURGE',
      headers: { host: HOST },
    });
    assert.equal(purged.status, 200);
    assert.deepEqual(JSON.parse(purged.body.toString()), { purged: 1 }, 'this node');
    const others = nodes.filter((n) => n !== from).map((n) => `${n.id}=1`);
    assert.deepEqual(String(purged.headers[CLUSTER_PURGE_HEADER]).split(', ').sort(), others.sort());
    assert.deepEqual(await holders(nodes, path), []);

    // The next requests, through every node, fetch it once more.
    const fetched = counting.fetches.get(path)!;
    for (const node of nodes) assertServed(await get(node, path), path);
    assert.equal(counting.fetches.get(path), fetched + 1);
    assert.deepEqual(await holders(nodes, path), [owner]);

    // The admin API of any node purges cluster-wide too, with a count per node.
    const admin = await httpRequest(`${c.cairn.adminUrl}/purge`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: `http://${HOST}${path}` }),
    });
    assert.equal(admin.status, 200);
    const report = JSON.parse(admin.body.toString()) as { purged: number; nodes: Record<string, number> };
    assert.equal(report.purged, 1);
    assert.deepEqual(Object.keys(report.nodes).sort(), nodes.map((n) => n.id).sort());
    assert.equal(report.nodes[owner], 1);
    assert.deepEqual(await holders(nodes, path), []);
    assertServed(await get(b, path), path);
    assert.equal(counting.fetches.get(path), fetched + 2);

    // By tag: objects spread over the owners, one admin call on one node removes them all.
    const tagged = Array.from({ length: 12 }, (_, i) => `/tagged/${i}`);
    for (const [i, p] of tagged.entries()) assertServed(await get(nodes[i % 3]!, p), p);
    const owners = new Set(tagged.map((p) => a.proxy.ownerOf(keyOf(p))));
    assert.ok(owners.size > 1, 'the tagged objects live on several nodes');
    const byTag = await httpRequest(`${a.cairn.adminUrl}/purge`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ tag: 'tagged-group' }),
    });
    assert.equal(byTag.status, 200);
    assert.equal((JSON.parse(byTag.body.toString()) as { purged: number }).purged, tagged.length);
    for (const p of tagged) assert.deepEqual(await holders(nodes, p), [], `${p} purged`);
  },
);
