package pyliteral

import (
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Kind is the Python type of a Value.
type Kind uint8

// The kinds of Python literal.
const (
	None Kind = iota
	Bool
	Int // Int, or Big when it does not fit int64
	Float
	Complex // Float + Imag·j
	Str
	Bytes // Str holds the bytes
	List
	Tuple
	Set
	Dict
)

var kindNames = [...]string{"None", "bool", "int", "float", "complex", "str", "bytes", "list", "tuple", "set", "dict"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is one node of a parsed literal.
type Value struct {
	Kind  Kind
	Bool  bool
	Int   int64
	Big   *big.Int // set instead of Int when the int does not fit int64
	Float float64  // Float, and the real part of Complex
	Imag  float64  // imaginary part of Complex
	Str   string   // Str and Bytes
	Items []Value  // List, Tuple, Set, in source order
	Dict  []Entry  // Dict, in insertion order

	op uint8 // how a number was written, for literal_eval's operator rules
}

const (
	opPlain  = iota // a constant
	opSigned        // -constant
	opBinary        // real ± imag j
)

// Entry is one key-value pair of a Dict.
type Entry struct{ Key, Value Value }

// StrValue returns a Str value.
func StrValue(s string) Value { return Value{Kind: Str, Str: s} }

// Get returns the value of the string key k of a Dict.
func (v Value) Get(k string) (Value, bool) {
	if v.Kind != Dict {
		return Value{}, false
	}
	for _, e := range v.Dict {
		if e.Key.Kind == Str && e.Key.Str == k {
			return e.Value, true
		}
	}
	return Value{}, false
}

// Keys returns the string keys of a Dict in order (non-string keys are skipped).
func (v Value) Keys() []string {
	var out []string
	for _, e := range v.Dict {
		if e.Key.Kind == Str {
			out = append(out, e.Key.Str)
		}
	}
	return out
}

// IsNumber reports whether v is a bool, int or float (not complex).
func (v Value) IsNumber() bool { return v.Kind == Bool || v.Kind == Int || v.Kind == Float }

// String returns Python's repr of v.
func (v Value) String() string {
	var b strings.Builder
	v.repr(&b)
	return b.String()
}

func (v Value) repr(b *strings.Builder) {
	switch v.Kind {
	case None:
		b.WriteString("None")
	case Bool:
		if v.Bool {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case Int:
		if v.Big != nil {
			b.WriteString(bigRepr(v.Big))
		} else {
			b.WriteString(strconv.FormatInt(v.Int, 10))
		}
	case Float:
		b.WriteString(FormatFloat(v.Float))
	case Complex:
		if v.Float == 0 && !math.Signbit(v.Float) {
			b.WriteString(formatImag(v.Imag))
			b.WriteByte('j')
			return
		}
		b.WriteByte('(')
		b.WriteString(formatImag(v.Float))
		if !math.Signbit(v.Imag) || math.IsNaN(v.Imag) {
			b.WriteByte('+')
		}
		b.WriteString(formatImag(v.Imag))
		b.WriteString("j)")
	case Str:
		reprString(b, v.Str, false)
	case Bytes:
		b.WriteByte('b')
		reprString(b, v.Str, true)
	case List, Tuple, Set:
		open, close := "[", "]"
		switch v.Kind {
		case Tuple:
			open, close = "(", ")"
		case Set:
			if len(v.Items) == 0 {
				b.WriteString("set()")
				return
			}
			open, close = "{", "}"
		}
		b.WriteString(open)
		for i, it := range v.Items {
			if i > 0 {
				b.WriteString(", ")
			}
			it.repr(b)
		}
		if v.Kind == Tuple && len(v.Items) == 1 {
			b.WriteByte(',')
		}
		b.WriteString(close)
	case Dict:
		b.WriteByte('{')
		for i, e := range v.Dict {
			if i > 0 {
				b.WriteString(", ")
			}
			e.Key.repr(b)
			b.WriteString(": ")
			e.Value.repr(b)
		}
		b.WriteByte('}')
	}
}

// formatImag formats a complex component as Python does (no ".0").
func formatImag(f float64) string {
	s := FormatFloat(f)
	return strings.TrimSuffix(s, ".0")
}

// FormatFloat formats f as Python's repr(float): the shortest digits that
// round-trip, fixed notation for decimal exponents in [-4, 16), otherwise
// scientific with a signed exponent of at least two digits.
func FormatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // -d.ddde±XX
	mant, expPart, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expPart)
	neg := strings.HasPrefix(mant, "-")
	mant = strings.TrimPrefix(mant, "-")
	digits := strings.Replace(mant, ".", "", 1)
	sign := ""
	if neg {
		sign = "-"
	}
	if exp < -4 || exp >= 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		es := "+"
		if exp < 0 {
			es = "-"
			exp = -exp
		}
		x := strconv.Itoa(exp)
		if len(x) < 2 {
			x = "0" + x
		}
		return sign + m + "e" + es + x
	}
	var s string
	switch {
	case exp < 0:
		s = "0." + strings.Repeat("0", -exp-1) + digits
	case exp+1 >= len(digits):
		s = digits + strings.Repeat("0", exp+1-len(digits)) + ".0"
	default:
		s = digits[:exp+1] + "." + digits[exp+1:]
	}
	return sign + s
}

// reprString writes s quoted as Python's repr of a str (or bytes).
func reprString(b *strings.Builder, s string, isBytes bool) {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	b.WriteByte(q)
	const hex = "0123456789abcdef"
	if isBytes {
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case c == q || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c == '\t':
				b.WriteString(`\t`)
			case c == '\n':
				b.WriteString(`\n`)
			case c == '\r':
				b.WriteString(`\r`)
			case c < 0x20 || c >= 0x7f:
				b.WriteString(`\x`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte(q)
		return
	}
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\x`)
			b.WriteByte(hex[r>>4])
			b.WriteByte(hex[r&0xf])
		case r >= 0x80 && !isPrintable(r):
			switch {
			case r <= 0xff:
				b.WriteString(`\x`)
				b.WriteString(leftPad(strconv.FormatInt(int64(r), 16), 2))
			case r <= 0xffff:
				b.WriteString(`\u`)
				b.WriteString(leftPad(strconv.FormatInt(int64(r), 16), 4))
			default:
				b.WriteString(`\U`)
				b.WriteString(leftPad(strconv.FormatInt(int64(r), 16), 8))
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
}

// isPrintable approximates Python's str.isprintable with Go's unicode
// tables (they differ only for rare code points; the output still parses
// back to the same string).
func isPrintable(r rune) bool {
	return strconv.IsPrint(r) && r != 0xad
}

func leftPad(s string, n int) string {
	for len(s) < n {
		s = "0" + s
	}
	return s
}

// bigRepr writes n in decimal, or in hexadecimal when its decimal form
// would exceed the maxIntDigits that Parse (like CPython's int) accepts:
// Python's repr raises on such an int, a diagnostic string should not, and
// the hexadecimal form still parses back to n.
func bigRepr(n *big.Int) string {
	s := n.String()
	if len(strings.TrimPrefix(s, "-")) <= maxIntDigits {
		return s
	}
	if n.Sign() < 0 {
		return "-0x" + new(big.Int).Neg(n).Text(16)
	}
	return "0x" + n.Text(16)
}
