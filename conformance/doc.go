// Package conformance holds the cross-executor test suites and their golden data. Only tests
// import it.
//
// # Overview
//
// testdata/payload holds the token-payload test vectors: msgpack bytes with the expected JSON
// view, or the expected error (code and field). The Go tests here and the TypeScript package
// both check every case. Regenerate with
//
//	go test ./conformance -run TestPayloadVectors -update
//
// and review the diff: the bytes of valid cases must never change within a major version.
package conformance
