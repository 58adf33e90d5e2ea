/**
 * Watch a config file and re-apply it without a restart. The directory is watched rather than the
 * file, so an editor's or a deploy tool's write-to-temp-then-rename is seen too; events are
 * debounced (one reload per burst of writes). A reload re-reads and re-validates the whole file;
 * an invalid file is rejected with a coded log line (`CAIRN_ERR_CONFIG_INVALID`) and the running
 * config stays. Reloads never overlap.
 */
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import { isCairnError } from './errors.ts';

export interface ConfigWatchOptions<C> {
  readonly path: string;
  /** Read and validate the file (throws a `CairnError` when it is invalid). */
  readonly load: () => Promise<C>;
  /** Apply a valid config; may throw (`CAIRN_ERR_CONFIG_INVALID`) to reject it. Returns what to log. */
  readonly apply: (config: C) => unknown;
  readonly logger: Logger;
  /** Quiet time after the last event before reloading, ms. Default 100. */
  readonly debounceMs?: number;
}

/** A running watch. */
export interface ConfigWatch {
  /** Reload now (as if the file changed); resolves when applied or rejected. */
  reload(): Promise<void>;
  close(): void;
}

/**
 * @example
 * ```ts
 * const w = watchConfigFile({ path: 'cairn.yaml', load: () => loadConfigFile('cairn.yaml'), apply, logger });
 * // later
 * w.close();
 * ```
 */
export function watchConfigFile<C>(options: ConfigWatchOptions<C>): ConfigWatch {
  const full = resolve(options.path);
  const name = basename(full);
  const debounceMs = options.debounceMs ?? 100;
  const { logger } = options;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  let closed = false;

  const once = async (): Promise<void> => {
    let config: C;
    try {
      config = await options.load();
    } catch (error) {
      reject(error);
      return;
    }
    try {
      const changes = options.apply(config);
      logger.info({ file: full, changes }, 'config reloaded');
    } catch (error) {
      reject(error);
    }
  };
  const reject = (error: unknown): void => {
    const code = isCairnError(error) ? error.code : 'CAIRN_ERR_CONFIG_INVALID';
    logger.error(
      { code, file: full, err: (error as Error).message },
      'config file rejected; the running config stays',
    );
  };
  const reload = (): Promise<void> => {
    running = running.then(once);
    return running;
  };
  const watcher: FSWatcher = watch(dirname(full), (_event, filename) => {
    if (closed || (filename !== null && filename !== name)) return;
    clearTimeout(timer);
    timer = setTimeout(() => void reload(), debounceMs);
  });
  watcher.on('error', (error) => logger.error({ file: full, err: error.message }, 'config watch failed'));
  watcher.unref();
  return {
    reload,
    close(): void {
      closed = true;
      clearTimeout(timer);
      watcher.close();
    },
  };
}
