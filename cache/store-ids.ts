/**
 * Body ids shared by every tier.
 *
 * An id is 16 random bytes in base64url (22 characters). Random rather than a counter because the
 * LMDB tier is shared by several processes that must never hand out the same id, and because the
 * tiered store gives the memory and disk copies of one object the same id (so a meta read from either
 * tier opens the object in the other).
 */
import { randomBytes } from 'node:crypto';

const ID_BYTES = 16;
const ID_CHARS = 22;

/** A fresh body id. */
export function newObjectId(): string {
  return randomBytes(ID_BYTES).toString('base64url');
}

/** The 16 raw bytes of an id, or `undefined` when `id` is not one this module made. */
export function objectIdBytes(id: string): Buffer | undefined {
  if (id.length !== ID_CHARS) return undefined;
  const bytes = Buffer.from(id, 'base64url');
  return bytes.length === ID_BYTES ? bytes : undefined;
}
