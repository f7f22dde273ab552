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
//
// # AR generation
//
// ar_generate_test.go runs a script of the service's AR ops (ar_open, generate_open,
// generate_next with max 1, generate_close, refusals) natively, as the GOOS=wasip1 module under
// wazero and as the GOOS=js module under Node, and requires byte-identical responses. The AR
// model is built by package arfixture (a random-weight model for the default tokenizer,
// deterministic, not committed); testdata/ar/generate_golden.json pins its sha256 and the
// generated ids and payloads (bindings/test/ar.test.ts checks the TypeScript package against
// it). After a deliberate change to sdk/ar's numerics:
//
//	go test ./conformance -run TestARGenerateExecutors -update
package conformance
