/**
 * The gRPC / gRPC-web codec: pure functions and small incremental state machines over Buffers, no
 * I/O. The gRPC-web bridge hook wires these into the proxy phases; this module knows nothing of
 * sessions, sockets or streams (STYLE.md: "Codecs apart from wiring").
 *
 * Specs: grpc/grpc doc/PROTOCOL-HTTP2.md (framing, status, metadata, timeouts),
 * doc/PROTOCOL-WEB.md (trailer frame, text encoding, content types),
 * doc/http-grpc-status-mapping.md (HTTP status to gRPC status).
 *
 * @example
 * import { GrpcFrameParser, decodeTrailerBlock, trailersFromWire } from './codec.ts';
 * const parser = new GrpcFrameParser();
 * for (const frame of parser.push(chunk)) {
 *   if (frame.trailer) status = trailersFromWire(decodeTrailerBlock(frame.data)).status;
 * }
 */

export { GrpcCodecError } from './codec-errors.ts';
export type { GrpcCodecErrorCode } from './codec-errors.ts';
export {
  DEFAULT_MAX_MESSAGE_BYTES,
  FLAG_COMPRESSED,
  FLAG_DATA,
  FLAG_TRAILER,
  FRAME_HEADER_BYTES,
  MAX_FRAME_LENGTH,
  GrpcFrameParser,
  encodeFrame,
  encodeFrameHeader,
} from './codec-frame.ts';
export type { GrpcFrame, GrpcFrameParserOptions } from './codec-frame.ts';
export {
  decodeBinaryMetadataValue,
  decodeTrailerBlock,
  encodeBinaryMetadataValue,
  encodeTrailerBlock,
  encodeTrailerFrame,
  percentDecodeGrpcMessage,
  percentEncodeGrpcMessage,
  trailersFromWire,
  trailersToWire,
} from './codec-trailers.ts';
export type { GrpcHeaderBlock, GrpcMetadataValue, GrpcTrailers, GrpcWireHeaders } from './codec-trailers.ts';
export { GrpcWebTextDecoder, GrpcWebTextEncoder } from './codec-text.ts';
export {
  formatGrpcContentType,
  grpcToGrpcWebContentType,
  grpcWebToGrpcContentType,
  isGrpcContentType,
  isGrpcWebContentType,
  isGrpcWebTextContentType,
  parseGrpcContentType,
} from './codec-content-type.ts';
export type { GrpcContentType, GrpcProtocol } from './codec-content-type.ts';
export {
  GrpcStatus,
  formatGrpcTimeout,
  grpcStatusFromHttpStatus,
  grpcStatusName,
  parseGrpcTimeout,
} from './codec-status.ts';
export type { GrpcStatusCode } from './codec-status.ts';
