// Package safetensors reads and writes the safetensors checkpoint format.
//
// # Overview
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of
// JSON header, then the raw tensor bytes. The header maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
// first byte after the header) and may hold a "__metadata__" object of
// string to string. FlexTok checkpoints keep their configuration there, one
// entry per top-level config key, as Python literal reprs.
//
// [Open] reads only the header; tensors are read lazily, one at a time, from
// an [io.ReaderAt] (an *os.File, a memory map, or a byte slice through
// [OpenBytes]). [File.ReadFloat32Into] converts F32, F16 and BF16 to float32
// in small chunks, so loading a model needs the float32 weights plus a few
// tens of KiB, never a second copy of the file.
//
// Validation follows the reference implementation (huggingface/safetensors)
// and is strict: header length limit ([MaxHeaderSize]) and bounds, UTF-8,
// one JSON object with unique keys, known dtypes, shapes whose byte size does
// not overflow and equals end-begin, offsets that tile the data section
// contiguously from 0 to the end of the file with no gap or overlap. Every
// error wraps one of the sentinel errors below and names the tensor. No input
// makes the reader panic (see FuzzOpen).
//
// [Writer] produces files the official Python package accepts and writes
// byte for byte as it would: tensors sorted by dtype alignment (descending)
// then name, data contiguous, compact JSON header with "__metadata__" first,
// padded with spaces to a multiple of 8 bytes.
//
// # Determinism
//
// Conversions are exact (F16, BF16 to float32) or round half to even
// (float32 to F16, BF16), in pure Go, identical on every GOOS/GOARCH.
package safetensors
