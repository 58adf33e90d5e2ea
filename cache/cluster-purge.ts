/**
 * Purges across `serve({ workers })` processes. The workers share the LMDB tier but each has its
 * own memory tier, so a purge applied by one process only would leave copies in the others'
 * memory, served as hits until they expire. Every purge an `HttpCache` makes in one of Cairn's
 * cluster processes is therefore relayed over the cluster's IPC channel: a worker sends it to the
 * primary, the primary hands it to every other worker, each applies it to its own cache and
 * answers with what it removed, and only then does the first purge resolve. A purge made in the
 * primary (the admin API runs there) goes to every worker the same way.
 *
 * Caches are matched across processes by the order they were created in: every process runs the
 * same script, so the n-th `HttpCache` of one worker is the n-th of every other.
 */
import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';

/** What a purge names: a cache key (every variant), a Surrogate-Key tag, or a key prefix. */
export type PurgeKind = 'key' | 'tag' | 'prefix';

/** Applies a purge to this process's own copy of one cache; resolves to the objects removed. */
export type LocalPurge = (kind: PurgeKind, value: string) => Promise<number>;

/** How long a purge waits for the other processes before it resolves with the answers it has. */
export const RELAY_TIMEOUT_MS = 5_000;

/** Set by `serve()` in the workers it forks, so a plain `node:cluster` worker relays nothing. */
export const CLUSTER_WORKER_ENV = 'CAIRN_WORKER';

/** 'purge': a worker asks the primary to relay; 'purge-apply': the primary asks a worker to apply. */
interface PurgeOrder {
  readonly cairn: 'purge' | 'purge-apply';
  readonly id: number;
  readonly cache: number;
  readonly kind: PurgeKind;
  readonly value: string;
}
interface PurgeApplied {
  readonly cairn: 'purge-applied';
  readonly id: number;
  readonly purged: number;
}
interface PurgeResult {
  readonly cairn: 'purge-result';
  readonly id: number;
  readonly purged: readonly number[];
}
type RelayMessage = PurgeOrder | PurgeApplied | PurgeResult;

const KINDS: ReadonlySet<unknown> = new Set<PurgeKind>(['key', 'tag', 'prefix']);

function isRelayMessage(message: unknown): message is RelayMessage {
  if (typeof message !== 'object' || message === null) return false;
  const m = message as Partial<Record<string, unknown>>;
  if (typeof m.id !== 'number') return false;
  switch (m.cairn) {
    case 'purge':
    case 'purge-apply':
      return typeof m.cache === 'number' && KINDS.has(m.kind) && typeof m.value === 'string';
    case 'purge-applied':
      return typeof m.purged === 'number';
    case 'purge-result':
      return Array.isArray(m.purged);
    default:
      return false;
  }
}

/** This worker's caches, by creation order (filled only in a worker `serve()` forked). */
const caches = new Map<number, LocalPurge>();
let created = 0;
let nextId = 0;
/** Purges this process sent and still waits for: id -> settle with the other processes' counts. */
const waiting = new Map<number, (purged: readonly number[]) => void>();
let workerListening = false;
let primaryRelaying = false;

function isRelayingWorker(): boolean {
  return cluster.isWorker && process.env[CLUSTER_WORKER_ENV] === '1';
}

/**
 * Number a new cache and, in a cluster process, let relayed purges reach it. Returns its number,
 * which is the same in every process that creates its caches in the same order.
 */
export function registerCache(purgeLocally: LocalPurge): number {
  const id = created++;
  if (isRelayingWorker()) {
    caches.set(id, purgeLocally);
    listenAsWorker();
  }
  return id;
}

/**
 * Apply a purge, made here, in every other process of the cluster; resolves to what each removed
 * (empty outside a cluster, and in a primary with no workers yet).
 */
export function purgeElsewhere(
  cache: number,
  kind: PurgeKind,
  value: string,
): Promise<readonly number[]> | undefined {
  if (isRelayingWorker()) {
    if (process.send === undefined) return undefined;
    const id = nextId++;
    const message: PurgeOrder = { cairn: 'purge', id, cache, kind, value };
    return awaitReply(id, () => process.send?.(message), RELAY_TIMEOUT_MS + 1_000);
  }
  if (primaryRelaying) return fanOut(undefined, cache, kind, value);
  return undefined;
}

/** The primary's half: relay each worker's purges to the other workers. Called by `serve()`. */
export function relayPurgesAsPrimary(): void {
  if (primaryRelaying) return;
  primaryRelaying = true;
  cluster.on('message', (worker: Worker, message: unknown) => {
    if (!isRelayMessage(message)) return;
    if (message.cairn === 'purge-applied') return settle(message.id, [message.purged]);
    if (message.cairn !== 'purge') return;
    void fanOut(worker, message.cache, message.kind, message.value).then((purged) => {
      const reply: PurgeResult = { cairn: 'purge-result', id: message.id, purged };
      if (worker.isConnected()) worker.send(reply);
    });
  });
}

/** Send a purge to every connected worker but `except`; resolves to the counts that came back in time. */
async function fanOut(
  except: Worker | undefined,
  cache: number,
  kind: PurgeKind,
  value: string,
): Promise<readonly number[]> {
  // Not the primary's own copy: it serves no requests, so its memory tier holds nothing, and the
  // shared LMDB tier was purged by the process the purge came from.
  const counts: number[] = [];
  const targets = Object.values(cluster.workers ?? {}).filter(
    (w): w is Worker => w !== undefined && w !== except && w.isConnected(),
  );
  const answers = await Promise.all(
    targets.map((worker) => {
      const id = nextId++;
      const message: PurgeOrder = { cairn: 'purge-apply', id, cache, kind, value };
      return awaitReply(id, () => worker.send(message), RELAY_TIMEOUT_MS, worker);
    }),
  );
  for (const a of answers) counts.push(...a);
  return counts;
}

/**
 * Wait for the reply numbered `id` after `send`ing; resolves to no counts when it does not come
 * within `timeout` ms or `worker` goes away first, so a stuck or dying process never holds up a purge.
 */
function awaitReply(
  id: number,
  send: () => void,
  timeout: number,
  worker?: Worker,
): Promise<readonly number[]> {
  return new Promise((resolve) => {
    const done = (purged: readonly number[]): void => {
      clearTimeout(timer);
      worker?.off('exit', gone);
      waiting.delete(id);
      resolve(purged);
    };
    const gone = (): void => done([]);
    const timer = setTimeout(gone, timeout);
    timer.unref();
    worker?.once('exit', gone);
    waiting.set(id, done);
    try {
      send();
    } catch {
      gone();
    }
  });
}

function settle(id: number, purged: readonly number[]): void {
  waiting.get(id)?.(purged);
}

/** The worker's half: apply purges the primary relays, and take the answers to its own. */
function listenAsWorker(): void {
  if (workerListening) return;
  workerListening = true;
  const onMessage = (message: unknown): void => {
    if (!isRelayMessage(message)) return;
    if (message.cairn === 'purge-result') return settle(message.id, message.purged);
    if (message.cairn !== 'purge-apply') return;
    const apply = caches.get(message.cache);
    const applied = apply === undefined ? Promise.resolve(0) : apply(message.kind, message.value);
    void applied
      .catch(() => 0)
      .then((purged) => {
        const reply: PurgeApplied = { cairn: 'purge-applied', id: message.id, purged };
        process.send?.(reply);
      });
  };
  process.on('message', onMessage);
}
