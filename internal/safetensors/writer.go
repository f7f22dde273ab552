package safetensors

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"
)

// Writer builds a safetensors file in memory. Add tensors and metadata in
// any order, then call WriteTo or Bytes. The zero value is ready to use.
type Writer struct {
	tensors []wtensor
	names   map[string]bool
	meta    []MetaEntry
}

type wtensor struct {
	name  string
	dtype DType
	shape []int
	data  []byte
}

// SetMetadata sets a "__metadata__" entry; entries are written in the order
// they were first set.
func (w *Writer) SetMetadata(key, value string) error {
	if !utf8.ValidString(key) || !utf8.ValidString(value) {
		return fmt.Errorf("%w: metadata %q is not valid UTF-8", ErrHeader, key)
	}
	for i := range w.meta {
		if w.meta[i].Key == key {
			w.meta[i].Value = value
			return nil
		}
	}
	w.meta = append(w.meta, MetaEntry{key, value})
	return nil
}

func checkShape(name string, dt DType, shape []int, n int) error {
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: tensor name %q is not valid UTF-8", ErrHeader, name)
	}
	if name == MetadataKey {
		return fmt.Errorf("%w: tensor name %q is reserved", ErrHeader, name)
	}
	if !dt.Valid() {
		return fmt.Errorf("%w: tensor %q: unknown dtype %q", ErrDType, name, dt)
	}
	elems := 1
	for _, d := range shape {
		if d < 0 || (d > 0 && elems > math.MaxInt/d) {
			return fmt.Errorf("%w: tensor %q: shape %v", ErrShape, name, shape)
		}
		elems *= d
	}
	if elems != n {
		return fmt.Errorf("%w: tensor %q: shape %v holds %d elements, data %d", ErrSize, name, shape, elems, n)
	}
	return nil
}

func (w *Writer) add(name string, dt DType, shape []int, data []byte) error {
	if w.names == nil {
		w.names = make(map[string]bool)
	}
	if w.names[name] {
		return fmt.Errorf("%w: tensor %q", ErrDuplicate, name)
	}
	w.names[name] = true
	w.tensors = append(w.tensors, wtensor{name, dt, append([]int{}, shape...), data})
	return nil
}

// AddFloat32 adds a tensor stored as dt (F32, F16 or BF16), converting data
// with round half to even.
func (w *Writer) AddFloat32(name string, dt DType, shape []int, data []float32) error {
	if !dt.IsFloat() {
		return fmt.Errorf("%w: tensor %q: float32 to %s", ErrConvert, name, dt)
	}
	if err := checkShape(name, dt, shape, len(data)); err != nil {
		return err
	}
	b := make([]byte, len(data)*dt.Size())
	for i, v := range data {
		switch dt {
		case F32:
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		case F16:
			binary.LittleEndian.PutUint16(b[2*i:], Float32ToF16(v))
		case BF16:
			binary.LittleEndian.PutUint16(b[2*i:], Float32ToBF16(v))
		}
	}
	return w.add(name, dt, shape, b)
}

// AddInt64 adds a tensor stored as dt (I64 or I32); values must fit dt.
func (w *Writer) AddInt64(name string, dt DType, shape []int, data []int64) error {
	if !dt.IsInt() {
		return fmt.Errorf("%w: tensor %q: int64 to %s", ErrConvert, name, dt)
	}
	if err := checkShape(name, dt, shape, len(data)); err != nil {
		return err
	}
	b := make([]byte, len(data)*dt.Size())
	for i, v := range data {
		if dt == I64 {
			binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
			continue
		}
		if v < math.MinInt32 || v > math.MaxInt32 {
			return fmt.Errorf("%w: tensor %q: value %d does not fit I32", ErrConvert, name, v)
		}
		binary.LittleEndian.PutUint32(b[4*i:], uint32(int32(v)))
	}
	return w.add(name, dt, shape, b)
}

// AddRaw adds a tensor from its little-endian bytes.
func (w *Writer) AddRaw(name string, dt DType, shape []int, raw []byte) error {
	if !dt.Valid() {
		return fmt.Errorf("%w: tensor %q: unknown dtype %q", ErrDType, name, dt)
	}
	if len(raw)%dt.Size() != 0 {
		return fmt.Errorf("%w: tensor %q: %d bytes of %s", ErrSize, name, len(raw), dt)
	}
	if err := checkShape(name, dt, shape, len(raw)/dt.Size()); err != nil {
		return err
	}
	return w.add(name, dt, shape, append([]byte{}, raw...))
}

// ordered returns the tensors in file order: dtype alignment descending,
// then name (byte order), as the reference implementation sorts them.
func (w *Writer) ordered() []wtensor {
	ts := append([]wtensor{}, w.tensors...)
	sort.SliceStable(ts, func(i, j int) bool {
		ri, rj := dtypeInfo[ts[i].dtype].rank, dtypeInfo[ts[j].dtype].rank
		if ri != rj {
			return ri > rj
		}
		return ts[i].name < ts[j].name
	})
	return ts
}

// Header returns the padded JSON header the file will carry.
func (w *Writer) Header() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	if len(w.meta) > 0 {
		writeJSONString(&b, MetadataKey)
		b.WriteString(":{")
		for i, m := range w.meta {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(&b, m.Key)
			b.WriteByte(':')
			writeJSONString(&b, m.Value)
		}
		b.WriteByte('}')
		first = false
	}
	var off int64
	for _, t := range w.ordered() {
		if !first {
			b.WriteByte(',')
		}
		first = false
		writeJSONString(&b, t.name)
		b.WriteString(`:{"dtype":`)
		writeJSONString(&b, string(t.dtype))
		b.WriteString(`,"shape":[`)
		for i, d := range t.shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		b.WriteString(`],"data_offsets":[`)
		b.WriteString(strconv.FormatInt(off, 10))
		off += int64(len(t.data))
		b.WriteByte(',')
		b.WriteString(strconv.FormatInt(off, 10))
		b.WriteString("]}")
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	return b.Bytes()
}

// writeJSONString escapes s as serde_json does: only '"', '\\' and control
// characters are escaped; other characters, including non-ASCII, are
// written as UTF-8.
func writeJSONString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}

// WriteTo writes the file to out.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	hdr := w.Header()
	var n int64
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hdr)))
	for _, chunk := range [][]byte{lenBuf[:], hdr} {
		k, err := out.Write(chunk)
		n += int64(k)
		if err != nil {
			return n, fmt.Errorf("flextok/safetensors: write: %w", err)
		}
	}
	for _, t := range w.ordered() {
		k, err := out.Write(t.data)
		n += int64(k)
		if err != nil {
			return n, fmt.Errorf("flextok/safetensors: write %q: %w", t.name, err)
		}
	}
	return n, nil
}

// Bytes returns the whole file.
func (w *Writer) Bytes() []byte {
	var b bytes.Buffer
	w.WriteTo(&b) // writes to a bytes.Buffer do not fail
	return b.Bytes()
}
