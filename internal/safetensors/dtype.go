package safetensors

import "math"

// DType is a safetensors element type, spelled as in the header ("F32").
type DType string

// The element types of the safetensors format. Only F32, F16, BF16 (read as
// float32) and I64, I32 (read as int64) can be converted by this package; the
// others are recognised so that headers holding them still validate.
const (
	BOOL    DType = "BOOL"
	U8      DType = "U8"
	I8      DType = "I8"
	F8E5M2  DType = "F8_E5M2"
	F8E4M3  DType = "F8_E4M3"
	F8E8M0  DType = "F8_E8M0"
	I16     DType = "I16"
	U16     DType = "U16"
	F16     DType = "F16"
	BF16    DType = "BF16"
	I32     DType = "I32"
	U32     DType = "U32"
	F32     DType = "F32"
	C64     DType = "C64"
	F64     DType = "F64"
	I64     DType = "I64"
	U64     DType = "U64"
	invalid DType = ""
)

// dtypeInfo is the element size in bytes and the rank in the reference
// implementation's Dtype enum, which orders types by increasing alignment.
var dtypeInfo = map[DType]struct{ size, rank int }{
	BOOL:   {1, 0},
	U8:     {1, 4},
	I8:     {1, 5},
	F8E5M2: {1, 6},
	F8E4M3: {1, 7},
	F8E8M0: {1, 8},
	I16:    {2, 9},
	U16:    {2, 10},
	F16:    {2, 11},
	BF16:   {2, 12},
	I32:    {4, 13},
	U32:    {4, 14},
	F32:    {4, 15},
	C64:    {8, 16},
	F64:    {8, 17},
	I64:    {8, 18},
	U64:    {8, 19},
}

// Size returns the size of one element in bytes, or 0 for an unknown type.
func (d DType) Size() int { return dtypeInfo[d].size }

// Valid reports whether d is a dtype of the safetensors format.
func (d DType) Valid() bool { _, ok := dtypeInfo[d]; return ok }

// IsFloat reports whether d converts to float32 with [File.ReadFloat32Into].
func (d DType) IsFloat() bool { return d == F32 || d == F16 || d == BF16 }

// IsInt reports whether d converts to int64 with [File.ReadInt64].
func (d DType) IsInt() bool { return d == I64 || d == I32 }

// F16ToFloat32 converts IEEE 754 binary16 bits to float32 exactly.
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	default:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	}
}

// roundShift returns v >> s rounded to nearest, ties to even (s < 32).
func roundShift(v uint32, s uint32) uint32 {
	if s == 0 {
		return v
	}
	q := v >> s
	rem := v & (1<<s - 1)
	half := uint32(1) << (s - 1)
	if rem > half || (rem == half && q&1 == 1) {
		q++
	}
	return q
}

// Float32ToF16 converts f to binary16 bits, rounding to nearest even;
// overflow gives infinity and NaN gives a quiet NaN with f's sign.
func Float32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		m := mant | 0x800000
		return sign | uint16(roundShift(m, uint32(14-e)))
	}
	return sign | uint16(roundShift(uint32(e)<<23|mant, 13))
}

// BF16ToFloat32 converts bfloat16 bits to float32 exactly.
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float32ToBF16 converts f to bfloat16 bits, rounding to nearest even as
// PyTorch does; NaN gives a quiet NaN with f's sign.
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16)&0x8000 | 0x7fc0
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}
