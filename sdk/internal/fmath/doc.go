// Package fmath holds the elementary functions that must give the same bits on every platform.
//
// The standard library's math.Exp and math.Log are assembly on amd64 and pure Go on wasm, so
// their last bit may differ between a native build and a GOOS=js or GOOS=wasip1 build. The
// functions here are plain Go (the classic FreeBSD msun / Cephes algorithms) and every product
// is rounded explicitly with a float64 conversion, which the Go spec says prevents the compiler
// from fusing it into an FMA. They are therefore bit-identical on amd64, arm64 and wasm.
//
// Accuracy: within 1 ulp of the correctly rounded result over the finite range (tested against
// math.Exp, math.Log and math.Tanh, which are themselves within 1 ulp).
package fmath
