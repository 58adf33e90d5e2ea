/** Body-size tokens used in URLs and options: `512`, `1k`, `64k`, `1m` (KiB/MiB, powers of two). */

/** The largest body the origin will make (16 MiB). */
export const MAX_BODY_BYTES = 16 * 2 ** 20;

/** Bytes for a size token, or null if it is not one (or is larger than `MAX_BODY_BYTES`). */
export function parseSize(token: string): number | null {
  const m = /^(\d+)([km]?)$/i.exec(token);
  if (m === null) return null;
  const unit = m[2]!.toLowerCase();
  const n = Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 2 ** 20 : 1);
  return n <= MAX_BODY_BYTES ? n : null;
}
