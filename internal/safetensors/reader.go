package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
	"strconv"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header accepted, as in the reference
// implementation (100 MB).
const MaxHeaderSize = 100_000_000

// MetadataKey is the reserved header key holding string metadata.
const MetadataKey = "__metadata__"

// Sentinel errors. Every error returned by this package wraps one of them.
var (
	ErrTruncated      = errors.New("flextok/safetensors: truncated file")
	ErrHeaderTooLarge = errors.New("flextok/safetensors: header too large")
	ErrHeader         = errors.New("flextok/safetensors: invalid header")
	ErrDType          = errors.New("flextok/safetensors: invalid dtype")
	ErrShape          = errors.New("flextok/safetensors: invalid shape")
	ErrOffsets        = errors.New("flextok/safetensors: invalid data offsets")
	ErrDuplicate      = errors.New("flextok/safetensors: duplicate key")
	ErrNotFound       = errors.New("flextok/safetensors: tensor not found")
	ErrConvert        = errors.New("flextok/safetensors: unsupported conversion")
	ErrSize           = errors.New("flextok/safetensors: destination size mismatch")
)

// TensorInfo describes one tensor of the header.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
	// Begin and End are byte offsets relative to the start of the data
	// section (the first byte after the header).
	Begin, End int64
}

// NumElements returns the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// ByteSize returns End-Begin.
func (t TensorInfo) ByteSize() int64 { return t.End - t.Begin }

// MetaEntry is one "__metadata__" entry.
type MetaEntry struct{ Key, Value string }

// File is an open safetensors file. Only the header is held in memory.
// A File is safe for concurrent reads if its io.ReaderAt is.
type File struct {
	r          io.ReaderAt
	size       int64
	headerSize int64
	tensors    []TensorInfo // header key order
	index      map[string]int
	meta       []MetaEntry // header order
	metaIndex  map[string]int
	closer     io.Closer
}

// Open parses and validates the header of the safetensors file of the
// given size that r reads. Tensor data is read lazily.
func Open(r io.ReaderAt, size int64) (*File, error) {
	if size < 8 {
		return nil, fmt.Errorf("%w: %d bytes, need at least 8", ErrTruncated, size)
	}
	var lenBuf [8]byte
	if err := readFull(r, lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("%w: header length: %v", ErrTruncated, err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrHeaderTooLarge, n, MaxHeaderSize)
	}
	if int64(n) > size-8 {
		return nil, fmt.Errorf("%w: header of %d bytes runs past the end of the %d-byte file", ErrTruncated, n, size)
	}
	hdr := make([]byte, n)
	if err := readFull(r, hdr, 8); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrTruncated, err)
	}
	f := &File{r: r, size: size, headerSize: int64(n)}
	if err := f.parseHeader(hdr); err != nil {
		return nil, err
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return f, nil
}

// OpenBytes opens a safetensors file held in memory (an embedded model, a
// wasm module's data). The bytes must not be modified while the File is used.
func OpenBytes(b []byte) (*File, error) {
	return Open(bytes.NewReader(b), int64(len(b)))
}

// OpenFile opens the named file; Close releases it.
func OpenFile(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("flextok/safetensors: %w", err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("flextok/safetensors: %w", err)
	}
	f, err := Open(fh, st.Size())
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.closer = fh
	return f, nil
}

// Close closes the file opened by OpenFile; it is a no-op otherwise.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	return err
}

// readFull reads len(p) bytes at off; an io.EOF with a full read is success.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (f *File) parseHeader(hdr []byte) error {
	if !utf8.Valid(hdr) {
		return fmt.Errorf("%w: not valid UTF-8", ErrHeader)
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	if err := expectDelim(dec, '{'); err != nil {
		return fmt.Errorf("%w: %v", ErrHeader, err)
	}
	f.index = make(map[string]int)
	seenMeta := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrHeader, err)
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("%w: expected a key, got %v", ErrHeader, tok)
		}
		if key == MetadataKey {
			if seenMeta {
				return fmt.Errorf("%w: %q appears twice", ErrDuplicate, MetadataKey)
			}
			seenMeta = true
			if err := f.parseMetadata(dec); err != nil {
				return err
			}
			continue
		}
		if _, dup := f.index[key]; dup {
			return fmt.Errorf("%w: tensor %q appears twice", ErrDuplicate, key)
		}
		info, err := parseTensorInfo(dec, key)
		if err != nil {
			return err
		}
		f.index[key] = len(f.tensors)
		f.tensors = append(f.tensors, info)
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return fmt.Errorf("%w: %v", ErrHeader, err)
	}
	// Only padding (JSON whitespace) may follow the object.
	for _, c := range hdr[dec.InputOffset():] {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return fmt.Errorf("%w: trailing data after the JSON object", ErrHeader)
		}
	}
	return nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("expected %q, got %v", want, tok)
	}
	return nil
}

func (f *File) parseMetadata(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrHeader, MetadataKey, err)
	}
	if tok == nil { // null, as Option<HashMap> allows
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("%w: %s must be an object of strings", ErrHeader, MetadataKey)
	}
	f.metaIndex = make(map[string]int)
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrHeader, MetadataKey, err)
		}
		k, _ := kt.(string)
		vt, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %s[%q]: %v", ErrHeader, MetadataKey, k, err)
		}
		v, ok := vt.(string)
		if !ok {
			return fmt.Errorf("%w: %s[%q] is not a string", ErrHeader, MetadataKey, k)
		}
		if _, dup := f.metaIndex[k]; dup {
			return fmt.Errorf("%w: %s[%q] appears twice", ErrDuplicate, MetadataKey, k)
		}
		f.metaIndex[k] = len(f.meta)
		f.meta = append(f.meta, MetaEntry{k, v})
	}
	_, err = dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrHeader, MetadataKey, err)
	}
	return nil
}

// skipValue consumes one JSON value (iteratively, so depth is no concern).
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
		if depth == 0 {
			return nil
		}
	}
}

func parseUint(tok json.Token) (uint64, bool) {
	num, ok := tok.(json.Number)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(string(num), 10, 64)
	return v, err == nil
}

func parseTensorInfo(dec *json.Decoder, name string) (TensorInfo, error) {
	info := TensorInfo{Name: name}
	bad := func(format string, a ...any) (TensorInfo, error) {
		return TensorInfo{}, fmt.Errorf("%w: tensor %q: %s", ErrHeader, name, fmt.Sprintf(format, a...))
	}
	if err := expectDelim(dec, '{'); err != nil {
		return bad("%v", err)
	}
	var haveDType, haveShape, haveOffsets bool
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return bad("%v", err)
		}
		field, _ := kt.(string)
		switch field {
		case "dtype":
			if haveDType {
				return TensorInfo{}, fmt.Errorf("%w: tensor %q: field dtype appears twice", ErrDuplicate, name)
			}
			haveDType = true
			vt, err := dec.Token()
			if err != nil {
				return bad("%v", err)
			}
			s, ok := vt.(string)
			if !ok {
				return bad("dtype is not a string")
			}
			if !DType(s).Valid() {
				return TensorInfo{}, fmt.Errorf("%w: tensor %q: unknown dtype %q", ErrDType, name, s)
			}
			info.DType = DType(s)
		case "shape":
			if haveShape {
				return TensorInfo{}, fmt.Errorf("%w: tensor %q: field shape appears twice", ErrDuplicate, name)
			}
			haveShape = true
			if err := expectDelim(dec, '['); err != nil {
				return bad("shape: %v", err)
			}
			info.Shape = []int{}
			for dec.More() {
				vt, err := dec.Token()
				if err != nil {
					return bad("shape: %v", err)
				}
				v, ok := parseUint(vt)
				if !ok || v > math.MaxInt {
					return TensorInfo{}, fmt.Errorf("%w: tensor %q: dimension %v is not a non-negative integer", ErrShape, name, vt)
				}
				if len(info.Shape) >= 64 {
					return TensorInfo{}, fmt.Errorf("%w: tensor %q: more than 64 dimensions", ErrShape, name)
				}
				info.Shape = append(info.Shape, int(v))
			}
			if _, err := dec.Token(); err != nil {
				return bad("shape: %v", err)
			}
		case "data_offsets":
			if haveOffsets {
				return TensorInfo{}, fmt.Errorf("%w: tensor %q: field data_offsets appears twice", ErrDuplicate, name)
			}
			haveOffsets = true
			if err := expectDelim(dec, '['); err != nil {
				return bad("data_offsets: %v", err)
			}
			var offs []uint64
			for dec.More() {
				vt, err := dec.Token()
				if err != nil {
					return bad("data_offsets: %v", err)
				}
				v, ok := parseUint(vt)
				if !ok || v > math.MaxInt64 {
					return TensorInfo{}, fmt.Errorf("%w: tensor %q: offset %v is not a non-negative integer", ErrOffsets, name, vt)
				}
				offs = append(offs, v)
				if len(offs) > 2 {
					break
				}
			}
			if len(offs) != 2 {
				return TensorInfo{}, fmt.Errorf("%w: tensor %q: data_offsets must hold exactly 2 integers", ErrOffsets, name)
			}
			if _, err := dec.Token(); err != nil {
				return bad("data_offsets: %v", err)
			}
			info.Begin, info.End = int64(offs[0]), int64(offs[1])
		default:
			// Unknown fields are ignored, as the reference implementation does.
			if err := skipValue(dec); err != nil {
				return bad("%v", err)
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return bad("%v", err)
	}
	if !haveDType || !haveShape || !haveOffsets {
		return bad("needs dtype, shape and data_offsets")
	}
	return info, nil
}

// validate checks sizes and that the tensors tile the data section.
func (f *File) validate() error {
	dataSize := f.size - 8 - f.headerSize
	for _, t := range f.tensors {
		n := uint64(1)
		for _, d := range t.Shape {
			hi, lo := bits.Mul64(n, uint64(d))
			if hi != 0 || lo > math.MaxInt64 {
				return fmt.Errorf("%w: tensor %q: shape %v overflows", ErrShape, t.Name, t.Shape)
			}
			n = lo
		}
		hi, nb := bits.Mul64(n, uint64(t.DType.Size()))
		if hi != 0 || nb > math.MaxInt64 {
			return fmt.Errorf("%w: tensor %q: shape %v of %s overflows", ErrShape, t.Name, t.Shape, t.DType)
		}
		if t.End < t.Begin {
			return fmt.Errorf("%w: tensor %q: end %d before begin %d", ErrOffsets, t.Name, t.End, t.Begin)
		}
		if t.End > dataSize {
			return fmt.Errorf("%w: tensor %q: [%d, %d] past the %d-byte data section", ErrOffsets, t.Name, t.Begin, t.End, dataSize)
		}
		if uint64(t.End-t.Begin) != nb {
			return fmt.Errorf("%w: tensor %q: %d bytes for %s %v, which needs %d", ErrOffsets, t.Name, t.End-t.Begin, t.DType, t.Shape, nb)
		}
	}
	order := make([]int, len(f.tensors))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		ta, tb := f.tensors[order[a]], f.tensors[order[b]]
		if ta.Begin != tb.Begin {
			return ta.Begin < tb.Begin
		}
		return ta.End < tb.End
	})
	var pos int64
	for _, i := range order {
		t := f.tensors[i]
		if t.Begin != pos {
			what := "overlaps the previous tensor"
			if t.Begin > pos {
				what = fmt.Sprintf("leaves a gap after byte %d", pos)
			}
			return fmt.Errorf("%w: tensor %q: [%d, %d] %s", ErrOffsets, t.Name, t.Begin, t.End, what)
		}
		pos = t.End
	}
	if pos != dataSize {
		return fmt.Errorf("%w: tensors cover %d bytes but the data section holds %d", ErrOffsets, pos, dataSize)
	}
	return nil
}

// HeaderSize is the length of the JSON header in bytes (without the 8-byte prefix).
func (f *File) HeaderSize() int64 { return f.headerSize }

// Size is the size of the whole file in bytes.
func (f *File) Size() int64 { return f.size }

// Len is the number of tensors.
func (f *File) Len() int { return len(f.tensors) }

// Tensors returns the tensors in header key order. The slice is shared; do
// not modify it.
func (f *File) Tensors() []TensorInfo { return f.tensors }

// Names returns the tensor names in header key order.
func (f *File) Names() []string {
	out := make([]string, len(f.tensors))
	for i, t := range f.tensors {
		out[i] = t.Name
	}
	return out
}

// Info returns the description of the named tensor.
func (f *File) Info(name string) (TensorInfo, bool) {
	i, ok := f.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.tensors[i], true
}

// Metadata returns the "__metadata__" entries in header order (nil if none).
func (f *File) Metadata() []MetaEntry { return f.meta }

// MetadataValue returns one "__metadata__" entry.
func (f *File) MetadataValue(key string) (string, bool) {
	i, ok := f.metaIndex[key]
	if !ok {
		return "", false
	}
	return f.meta[i].Value, true
}

func (f *File) lookup(name string) (TensorInfo, error) {
	t, ok := f.Info(name)
	if !ok {
		return TensorInfo{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return t, nil
}

// ReadRaw returns the raw little-endian bytes of the named tensor.
func (f *File) ReadRaw(name string) ([]byte, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, t.ByteSize())
	if err := readFull(f.r, buf, 8+f.headerSize+t.Begin); err != nil {
		return nil, fmt.Errorf("%w: tensor %q: %v", ErrTruncated, name, err)
	}
	return buf, nil
}

// chunkBytes bounds the scratch buffer of the converting readers.
const chunkBytes = 64 << 10

// ReadFloat32 reads the named F32, F16 or BF16 tensor as float32.
func (f *File) ReadFloat32(name string) ([]float32, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	if !t.DType.IsFloat() {
		return nil, fmt.Errorf("%w: tensor %q: %s to float32", ErrConvert, name, t.DType)
	}
	dst := make([]float32, t.NumElements())
	return dst, f.ReadFloat32Into(name, dst)
}

// ReadFloat32Into reads the named F32, F16 or BF16 tensor into dst, whose
// length must equal the number of elements. It converts in chunks of at
// most 64 KiB, so the only allocation is that scratch buffer.
func (f *File) ReadFloat32Into(name string, dst []float32) error {
	t, err := f.lookup(name)
	if err != nil {
		return err
	}
	if !t.DType.IsFloat() {
		return fmt.Errorf("%w: tensor %q: %s to float32", ErrConvert, name, t.DType)
	}
	if int64(len(dst)) != t.NumElements() {
		return fmt.Errorf("%w: tensor %q has %d elements, destination %d", ErrSize, name, t.NumElements(), len(dst))
	}
	es := int64(t.DType.Size())
	off := 8 + f.headerSize + t.Begin
	buf := make([]byte, min(int64(chunkBytes), t.ByteSize()))
	for done := 0; done < len(dst); {
		n := min(len(dst)-done, len(buf)/int(es))
		b := buf[:int64(n)*es]
		if err := readFull(f.r, b, off+int64(done)*es); err != nil {
			return fmt.Errorf("%w: tensor %q: %v", ErrTruncated, name, err)
		}
		out := dst[done : done+n]
		switch t.DType {
		case F32:
			for i := range out {
				out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			}
		case F16:
			for i := range out {
				out[i] = F16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
			}
		case BF16:
			for i := range out {
				out[i] = BF16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
			}
		}
		done += n
	}
	return nil
}

// ReadInt64 reads the named I64 or I32 tensor as int64.
func (f *File) ReadInt64(name string) ([]int64, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	if !t.DType.IsInt() {
		return nil, fmt.Errorf("%w: tensor %q: %s to int64", ErrConvert, name, t.DType)
	}
	raw, err := f.ReadRaw(name)
	if err != nil {
		return nil, err
	}
	out := make([]int64, t.NumElements())
	for i := range out {
		if t.DType == I64 {
			out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		} else {
			out[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
		}
	}
	return out, nil
}
