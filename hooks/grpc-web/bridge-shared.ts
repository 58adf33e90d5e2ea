/**
 * What both gRPC-web bridges share: the per-request state store (keyed by `Session`, so a bridge
 * needs nothing from the user's `Ctx`), trailers-only error answers, and wrapping codec errors as
 * coded `CairnError`s that name the side the bad bytes came from.
 */
import { CairnError } from '../../src/index.ts';
import type { HeaderMap, Session } from '../../src/index.ts';
import { GrpcCodecError, GrpcStatus, percentEncodeGrpcMessage } from './codec.ts';

/** Per-request state of a bridge, dropped with the session. */
export class BridgeStates<S> {
  readonly #states = new WeakMap<Session, S>();

  get(session: Session): S | undefined {
    return this.#states.get(session);
  }

  set(session: Session, state: S): S {
    this.#states.set(session, state);
    return state;
  }
}

/** A codec failure as a CairnError: bad bytes from the client, or from the origin. */
export function bridgeError(error: unknown, from: 'client' | 'origin'): CairnError {
  if (error instanceof CairnError) return error;
  const detail = error instanceof GrpcCodecError ? `${error.code}: ${error.message}` : String(error);
  return from === 'client'
    ? new CairnError('CAIRN_ERR_GRPC_BAD_REQUEST', `cannot translate the gRPC request body (${detail})`, {
        cause: error,
      })
    : new CairnError('CAIRN_ERR_GRPC_BAD_RESPONSE', `cannot translate the gRPC response body (${detail})`, {
        cause: error,
      });
}

/** The gRPC status for a Cairn error that kept the origin from answering. */
export function grpcStatusForError(error: CairnError): number {
  if (error.status === 504) return GrpcStatus.DEADLINE_EXCEEDED;
  if (error.code === 'CAIRN_ERR_GRPC_BAD_REQUEST') return GrpcStatus.INTERNAL;
  if (error.source === 'internal') return GrpcStatus.INTERNAL;
  return GrpcStatus.UNAVAILABLE;
}

/**
 * Answer with a trailers-only gRPC (or gRPC-web) response: HTTP 200, the status in the headers and
 * no body (PROTOCOL-HTTP2.md "Trailers-Only"; gRPC-web clients accept it too).
 */
export function respondTrailersOnly(
  session: Session,
  contentType: string,
  status: number,
  message: string,
  extra: HeaderMap = {},
): void {
  session.respond(200, {
    ...extra,
    'content-type': contentType,
    'grpc-status': String(status),
    'grpc-message': percentEncodeGrpcMessage(message),
  });
}

/** The first value of a header. */
export function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
