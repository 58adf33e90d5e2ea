/** Small helpers shared by the cache tiers. */
import { CairnError } from '../src/errors.ts';
import type { CachedObject } from './store.ts';

/** Check a positive integer option, naming the key in the error (the config error contract). */
export function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  const result = value ?? fallback;
  if (!Number.isSafeInteger(result) || result <= 0) {
    throw new CairnError(
      'CAIRN_ERR_CONFIG_INVALID',
      `${name} must be a positive integer, got ${String(value)}`,
    );
  }
  return result;
}

/** True when `value` is a thenable (the `MaybePromise` test callers are asked to do). */
export function isThenable<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/**
 * Rough in-memory/on-disk size of an object's meta, so byte limits account for many small objects
 * too. Counts characters (not exact bytes): the limits are budgets, not allocator measurements.
 */
export function metaSize(meta: {
  readonly key: string;
  readonly variant: string;
  readonly url: string;
  readonly tags: readonly string[];
  readonly headers: Record<string, string | string[]>;
  readonly policy: unknown;
}): number {
  let size = 128 + meta.key.length + meta.variant.length + meta.url.length;
  for (const tag of meta.tags) size += tag.length + 8;
  for (const name in meta.headers) {
    const value = meta.headers[name];
    size += name.length + 8;
    if (typeof value === 'string') size += value.length;
    else if (value !== undefined) for (const v of value) size += v.length + 8;
  }
  if (meta.policy !== undefined && meta.policy !== null) size += JSON.stringify(meta.policy)?.length ?? 0;
  return size;
}

/**
 * A `CachedObject` whose chunks are read synchronously: what every Cairn tier returns from
 * `open()`, so code holding a concrete tier needs no thenable check per chunk.
 */
export interface SyncCachedObject extends CachedObject {
  chunk(index: number): Buffer | undefined;
}

/** Options of one write that only tiers (not engine callers) use. */
export interface WriterOptions {
  /** Use this body id instead of a fresh one (the tiered store gives both copies one id). */
  readonly id?: string;
}
