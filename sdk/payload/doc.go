// Package payload encodes and decodes FlexTok token payloads: the msgpack messages that carry
// token ids from a server to a browser, specified byte for byte in docs/payload.md.
//
// # Overview
//
// A Payload holds the ids of one image (or of several frames), the identity of the model that
// made them (a descriptive name, the content digest of its weights and config, FSQ levels,
// maximum length; equality ignores the name), the image size and the preprocessing applied, and optional conditioning and decode hints. Its stream form is a
// Header followed by Chunks of ids, so that a browser can decode after any chunk, coarse to
// fine; Split cuts a payload into a stream and Stream.Payload joins one.
//
// # Canonical bytes
//
// Encoding is canonical: one value always gives the same bytes, on every platform. Decoding is
// strict and never panics: every failure is an *Error that names the field and wraps a sentinel
// (ErrRange, ErrTruncated, ...) with a stable Code for errors sent as data.
//
// # Performance
//
// Decoding into a reused Payload reads the input in place and allocates nothing when the
// strings did not change; encoding appends to a caller's buffer.
package payload
