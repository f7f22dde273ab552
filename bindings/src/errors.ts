import type { ErrorInfo, Op, ServiceErrorCode } from "./types.js";

/** Codes of errors made on the JS side, never by the wasm module. */
export type ClientErrorCode =
  /** The wasm module or wasm_exec.js could not be fetched, compiled or started. */
  | "load_failed"
  /** The worker failed (error, messageerror, or the Go program exited); pending calls fail. */
  | "worker_died"
  /** The FlexTok, model or stream was closed (or lost when its worker was restarted). */
  | "closed"
  /** The call's AbortSignal fired. */
  | "aborted"
  /** A download (loadModel) failed. */
  | "fetch_failed"
  /** A response the client cannot read: a bug or a version skew between JS and wasm. */
  | "bad_response";

/**
 * Codes of the token service's HTTP layer (`flextok serve`, docs/server.md), beside the
 * service codes it shares: readGenerateStream and fetchGenerateStream throw them as the server
 * sent them.
 */
export type HTTPErrorCode =
  /** An option over a configured limit (FlexTokError.limit names it: max_k, max_n, ...). */
  | "limit"
  | "not_found"
  | "unknown_model"
  | "method_not_allowed"
  | "unsupported_media_type"
  /** The admission queue is full (429; retry after Retry-After). */
  | "overloaded"
  /** The server is draining for shutdown. */
  | "unavailable";

/**
 * Codes of the browser model package download (fetchModelPackage, docs/web-package.md), beside
 * "truncated" (a chunk shorter than its manifest entry, or its body cut off), "aborted" and
 * "fetch_failed" (the network failed before a response).
 */
export type PackageErrorCode =
  /** A chunk's or a reassembled file's SHA-256 is not the manifest's. */
  | "hash_mismatch"
  /** manifest.json is not a valid flextok-web manifest (FlexTokError.field names the field). */
  | "manifest_invalid"
  /** manifest.json is of a version this package does not read. */
  | "unsupported_version"
  /** The server answered a request with an HTTP error status (the message gives it). */
  | "http_error"
  /** A file's buffer could not be allocated: the model is too large for this tab or process. */
  | "out_of_memory";

export type ErrorCode = ServiceErrorCode | ClientErrorCode | HTTPErrorCode | PackageErrorCode;

const CLIENT_CODES: ReadonlySet<string> = new Set<ClientErrorCode | PackageErrorCode>([
  "load_failed",
  "worker_died",
  "closed",
  "aborted",
  "fetch_failed",
  "bad_response",
  "hash_mismatch",
  "manifest_invalid",
  "unsupported_version",
  "http_error",
  "out_of_memory",
]);

/** Reports whether code is made by the JS side (not the wasm module). */
export function isClientCode(code: string): code is ClientErrorCode | PackageErrorCode {
  return CLIENT_CODES.has(code);
}

/**
 * The error every call of this package throws (or rejects with). `code` is stable: the
 * service's codes (sdk/service) and the payload codes (docs/payload.md) as the wasm module
 * sent them, plus the client codes above.
 */
export class FlexTokError extends Error {
  /** Stable code. */
  readonly code: ErrorCode;
  /** Payload errors: the dotted path of the payload field at fault ("" for the whole input). */
  readonly field: string | undefined;
  /** The specifics, from the service (or the cause's message). */
  readonly detail: string;
  /** The op of the failed request, when there was one. */
  readonly op: Op | undefined;
  /** HTTP errors of the token service: the configured limit at fault (max_k, request_timeout, ...). */
  readonly limit: string | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { field?: string; detail?: string; op?: Op; limit?: string; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "FlexTokError";
    this.code = code;
    this.field = opts.field;
    this.detail = opts.detail ?? "";
    this.op = opts.op;
    this.limit = opts.limit;
  }

  /** The error of a failed service response. The service's message already carries the
   * detail; the detail is added only to a message that lacks it. */
  static fromResponse(e: ErrorInfo, op?: Op): FlexTokError {
    const msg = !e.detail || e.message.includes(e.detail) ? e.message || e.detail : `${e.message}: ${e.detail}`;
    return new FlexTokError(e.code, msg, { field: e.field, detail: e.detail, op });
  }

  /** Plain data for postMessage or logs. */
  toJSON(): { name: string; code: ErrorCode; message: string; field?: string; detail: string; op?: Op; limit?: string } {
    const o: { name: string; code: ErrorCode; message: string; field?: string; detail: string; op?: Op; limit?: string } = {
      name: this.name,
      code: this.code,
      message: this.message,
      detail: this.detail,
    };
    if (this.field !== undefined) o.field = this.field;
    if (this.op !== undefined) o.op = this.op;
    if (this.limit !== undefined) o.limit = this.limit;
    return o;
  }
}

/** Wraps anything thrown into a FlexTokError of code (unless it already is one). */
export function asFlexTokError(e: unknown, code: ErrorCode, prefix: string): FlexTokError {
  if (e instanceof FlexTokError) return e;
  const m = e instanceof Error ? e.message : String(e);
  return new FlexTokError(code, `${prefix}: ${m}`, { detail: m, cause: e });
}
