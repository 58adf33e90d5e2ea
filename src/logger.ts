/**
 * pino loggers. One logger per process, one child per listener; the access line is written by the
 * default `logging` phase. Levels are checked before any payload is built.
 */
import { pino } from 'pino';
import type { DestinationStream, Logger } from 'pino';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * A JSON logger to stdout (or `destination`). Writes are buffered (`minLength`) and flushed on
 * shutdown: an access line per request must not cost a syscall per request.
 *
 * @example
 * ```ts
 * const logger = createLogger('info');
 * logger.info({ port: 8080 }, 'listening');
 * ```
 */
export function createLogger(level: LogLevel = 'info', destination?: DestinationStream): Logger {
  const dest = destination ?? pino.destination({ dest: 1, sync: false, minLength: 4096 });
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}

/** Flush a logger's buffered lines (best effort; never throws). */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    try {
      logger.flush(() => resolve());
    } catch {
      resolve();
    }
  });
}
