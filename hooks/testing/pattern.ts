/**
 * Request patterns of the test kit: `'/static/*'`, `'GET /api/*'`, `'/search?q=*'`. One syntax for
 * scripted routes, origin hit counts and `cairn check` files.
 */

/** A compiled request pattern. */
export interface RequestPattern {
  /** The pattern as written. */
  readonly source: string;
  /** Upper-case method, or `undefined` for any method. */
  readonly method: string | undefined;
  /** Test a request: `path` is the request target (path and query). */
  matches(method: string, path: string): boolean;
}

const METHOD = /^([A-Za-z]+)\s+(\S.*)$/;

/**
 * Compile a pattern: an optional method, then a path where `*` matches any run of characters
 * (slashes included). A pattern without `?` ignores the query string; one with `?` matches the
 * whole target.
 *
 * @example
 * ```ts
 * compilePattern('GET /static/*').matches('GET', '/static/app.js?v=2'); // true
 * compilePattern('/api/*').matches('POST', '/api/items');              // true
 * compilePattern('/search?q=*').matches('GET', '/search');             // false
 * ```
 */
export function compilePattern(source: string): RequestPattern {
  const trimmed = source.trim();
  const m = METHOD.exec(trimmed);
  const method = m === null ? undefined : m[1]!.toUpperCase();
  const glob = m === null ? trimmed : m[2]!.trim();
  const withQuery = glob.includes('?');
  const escaped = glob.replace(/[.+^${}()|[\]\\?]/g, '\\$&').replace(/\*/g, '.*');
  const re = new RegExp(`^${escaped}$`);
  return {
    source,
    method,
    matches(reqMethod: string, path: string): boolean {
      if (method !== undefined && method !== reqMethod.toUpperCase()) return false;
      if (withQuery) return re.test(path);
      const q = path.indexOf('?');
      return re.test(q === -1 ? path : path.slice(0, q));
    },
  };
}
