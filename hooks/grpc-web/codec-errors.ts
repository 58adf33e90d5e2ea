/**
 * The one error type the gRPC / gRPC-web codec throws.
 *
 * The codec is pure and direction-agnostic: it cannot tell whether malformed bytes came from the
 * client or from the origin, so it does not throw a `CairnError` (whose `source` must say who hung
 * up). The hook that wires the codec into the phases wraps a `GrpcCodecError` as the `cause` of a
 * `CairnError` whose code names the side (e.g. upstream protocol vs downstream bad request).
 */

/**
 * Stable codes for codec failures. Code must branch on these, never on the message.
 *
 * - `GRPC_CODEC_FRAME_TOO_LARGE`: a length prefix exceeds the parser's `maxMessageBytes`.
 * - `GRPC_CODEC_TRUNCATED_FRAME`: the body ended inside a frame header or payload.
 * - `GRPC_CODEC_DATA_AFTER_TRAILER`: bytes followed the gRPC-web trailer frame.
 * - `GRPC_CODEC_BAD_BASE64`: `application/grpc-web-text` body is not (segmented) base64.
 * - `GRPC_CODEC_TRUNCATED_BASE64`: the text body ended in the middle of a base64 quantum.
 * - `GRPC_CODEC_BAD_TRAILER`: a trailer block line is not `name: value`.
 * - `GRPC_CODEC_BAD_METADATA`: a metadata name or value cannot be put on the wire.
 * - `GRPC_CODEC_BAD_TIMEOUT`: a timeout cannot be formatted as `grpc-timeout`.
 * - `GRPC_CODEC_FAILED`: the parser/decoder was used after it had already failed or ended.
 */
export type GrpcCodecErrorCode =
  | 'GRPC_CODEC_FRAME_TOO_LARGE'
  | 'GRPC_CODEC_TRUNCATED_FRAME'
  | 'GRPC_CODEC_DATA_AFTER_TRAILER'
  | 'GRPC_CODEC_BAD_BASE64'
  | 'GRPC_CODEC_TRUNCATED_BASE64'
  | 'GRPC_CODEC_BAD_TRAILER'
  | 'GRPC_CODEC_BAD_METADATA'
  | 'GRPC_CODEC_BAD_TIMEOUT'
  | 'GRPC_CODEC_FAILED';

/**
 * A malformed gRPC / gRPC-web input or an unencodable value.
 *
 * @example
 * try {
 *   parser.push(chunk);
 * } catch (error) {
 *   if (error instanceof GrpcCodecError && error.code === 'GRPC_CODEC_FRAME_TOO_LARGE') {
 *     // answer RESOURCE_EXHAUSTED
 *   }
 * }
 */
export class GrpcCodecError extends Error {
  /** Stable code; see {@link GrpcCodecErrorCode}. */
  readonly code: GrpcCodecErrorCode;

  constructor(code: GrpcCodecErrorCode, message: string) {
    super(message);
    this.name = 'GrpcCodecError';
    this.code = code;
  }
}
