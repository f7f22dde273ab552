package pyliteral

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("flextok/pyliteral: not a Python literal")

// MaxDepth is the deepest nesting accepted (Python's parser allows 200
// nested brackets).
const MaxDepth = 200

// maxIntDigits is Python's limit on decimal int literals (sys.int_info).
const maxIntDigits = 4300

// Options adjust Parse.
type Options struct {
	// AllowNonFinite accepts the names inf and nan (with an optional sign)
	// as floats, as repr writes them. ast.literal_eval rejects them.
	AllowNonFinite bool
}

// Parse parses s as ast.literal_eval would.
func Parse(s string) (Value, error) { return ParseWith(s, Options{}) }

// ParseOrString returns the parsed literal, or s itself as a Str value when
// s is not a literal: the rule of the official checkpoint loader.
func ParseOrString(s string) Value {
	v, err := Parse(s)
	if err != nil {
		return StrValue(s)
	}
	return v
}

// ParseWith parses s with options.
func ParseWith(s string, opt Options) (Value, error) {
	p := &parser{src: s, opt: opt}
	// ast.literal_eval strips leading spaces and tabs.
	// ast.literal_eval strips leading spaces and tabs; the tokenizer then
	// skips blank lines.
	p.pos = len(s) - len(strings.TrimLeft(s, " \t\n\r\f"))
	if !utf8.ValidString(s) {
		return Value{}, fmt.Errorf("%w: invalid UTF-8", ErrSyntax)
	}
	v, err := p.top()
	if err != nil {
		return Value{}, err
	}
	return v, nil
}

type parser struct {
	src   string
	pos   int
	depth int // bracket nesting
	opt   Options
}

func (p *parser) errorf(format string, a ...any) error {
	return fmt.Errorf("%w: at offset %d: %s", ErrSyntax, p.pos, fmt.Sprintf(format, a...))
}

// skip skips whitespace and comments. Newlines are only insignificant
// inside brackets, or escaped with a backslash.
func (p *parser) skip() {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\f':
			p.pos++
		case (c == '\n' || c == '\r') && p.depth > 0:
			p.pos++
		case c == '\\' && p.pos+1 < len(p.src) && (p.src[p.pos+1] == '\n' || p.src[p.pos+1] == '\r'):
			p.pos += 2
		case c == '#':
			for p.pos < len(p.src) && p.src[p.pos] != '\n' && p.src[p.pos] != '\r' {
				p.pos++
			}
		default:
			return
		}
	}
}

func (p *parser) peek() byte {
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

func (p *parser) top() (Value, error) {
	p.skip()
	v, err := p.expr()
	if err != nil {
		return Value{}, err
	}
	p.skip()
	if p.peek() == ',' { // bare tuple "1, 2"
		items := []Value{v}
		for p.peek() == ',' {
			p.pos++
			p.skip()
			if p.atEnd() {
				break
			}
			it, err := p.expr()
			if err != nil {
				return Value{}, err
			}
			items = append(items, it)
			p.skip()
		}
		v = Value{Kind: Tuple, Items: items}
	}
	if !p.atEnd() {
		return Value{}, p.errorf("unexpected %q", p.src[p.pos:min(len(p.src), p.pos+10)])
	}
	return v, nil
}

// atEnd reports whether only newlines and whitespace remain.
func (p *parser) atEnd() bool {
	for i := p.pos; i < len(p.src); i++ {
		switch p.src[i] {
		case ' ', '\t', '\n', '\r', '\f':
		default:
			return false
		}
	}
	return true
}

// expr parses one literal, with an optional sign and complex sum.
func (p *parser) expr() (Value, error) {
	p.skip()
	c := p.peek()
	if c != '+' && c != '-' {
		v, err := p.atom()
		if err != nil {
			return Value{}, err
		}
		return p.complexTail(v)
	}
	p.pos++
	p.skip()
	v, err := p.atom()
	if err != nil {
		return Value{}, err
	}
	if !v.IsNumeric() || v.Kind == Bool || v.op != opPlain {
		return Value{}, p.errorf("sign before %s", v.Kind)
	}
	if c == '-' {
		v = negate(v)
	}
	v.op = opSigned
	return p.complexTail(v)
}

// IsNumeric reports whether v is a number of any kind, complex included.
func (v Value) IsNumeric() bool { return v.IsNumber() || v.Kind == Complex }

// complexTail accepts "real ± imag j", the only binary operation
// ast.literal_eval allows.
func (p *parser) complexTail(left Value) (Value, error) {
	save := p.pos
	p.skip()
	c := p.peek()
	if (c != '+' && c != '-') || !left.IsNumeric() || left.Kind == Bool || left.op == opBinary {
		p.pos = save
		return left, nil
	}
	p.pos++
	p.skip()
	right, err := p.atom()
	if err != nil {
		return Value{}, err
	}
	if right.Kind != Complex || right.op != opPlain {
		return Value{}, p.errorf("only complex numbers may be added")
	}
	re, im := toComplex(left)
	if c == '+' {
		re, im = re+right.Float, im+right.Imag
	} else {
		re, im = re-right.Float, im-right.Imag
	}
	return Value{Kind: Complex, Float: re, Imag: im, op: opBinary}, nil
}

func toComplex(v Value) (float64, float64) {
	switch v.Kind {
	case Complex:
		return v.Float, v.Imag
	case Float:
		return v.Float, 0
	case Int:
		if v.Big != nil {
			f, _ := new(big.Float).SetInt(v.Big).Float64()
			return f, 0
		}
		return float64(v.Int), 0
	}
	return 0, 0
}

func negate(v Value) Value {
	switch v.Kind {
	case Int:
		if v.Big != nil {
			n := new(big.Int).Neg(v.Big)
			return intValue(n)
		}
		if v.Int == math.MinInt64 {
			return intValue(new(big.Int).Neg(big.NewInt(v.Int)))
		}
		v.Int = -v.Int
	case Float:
		v.Float = -v.Float
	case Complex:
		v.Float, v.Imag = -v.Float, -v.Imag
	}
	return v
}

func intValue(n *big.Int) Value {
	if n.IsInt64() {
		return Value{Kind: Int, Int: n.Int64()}
	}
	return Value{Kind: Int, Big: n}
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func (p *parser) atom() (Value, error) {
	c := p.peek()
	switch {
	case c == 0:
		return Value{}, p.errorf("unexpected end")
	case c == '(' || c == '[' || c == '{':
		return p.container(c)
	case c >= '0' && c <= '9' || c == '.' && p.pos+1 < len(p.src) && p.src[p.pos+1] >= '0' && p.src[p.pos+1] <= '9':
		return p.number()
	case c == '\'' || c == '"':
		return p.strings()
	case isIdentStart(c):
		start := p.pos
		for p.pos < len(p.src) && isIdentChar(p.src[p.pos]) {
			p.pos++
		}
		name := p.src[start:p.pos]
		if p.peek() == '\'' || p.peek() == '"' {
			switch strings.ToLower(name) {
			case "r", "u", "b", "br", "rb":
				p.pos = start
				return p.strings()
			}
		}
		switch name {
		case "None":
			return Value{Kind: None}, nil
		case "True":
			return Value{Kind: Bool, Bool: true}, nil
		case "False":
			return Value{Kind: Bool}, nil
		case "set":
			save := p.pos
			p.skip()
			if p.peek() == '(' {
				p.pos++
				p.depth++
				p.skip()
				if p.peek() == ')' {
					p.pos++
					p.depth--
					return Value{Kind: Set, Items: []Value{}}, nil
				}
			}
			p.pos = save
		case "inf", "nan":
			if p.opt.AllowNonFinite {
				if name == "inf" {
					return Value{Kind: Float, Float: math.Inf(1)}, nil
				}
				return Value{Kind: Float, Float: math.NaN()}, nil
			}
		case "infj", "nanj": // repr of a complex with a non-finite imaginary part, e.g. 1e999j
			if p.opt.AllowNonFinite {
				if name == "infj" {
					return Value{Kind: Complex, Imag: math.Inf(1)}, nil
				}
				return Value{Kind: Complex, Imag: math.NaN()}, nil
			}
		}
		p.pos = start
		return Value{}, p.errorf("name %q is not a literal", name)
	}
	return Value{}, p.errorf("unexpected %q", c)
}

func (p *parser) container(open byte) (Value, error) {
	if p.depth >= MaxDepth {
		return Value{}, p.errorf("nested more than %d levels", MaxDepth)
	}
	p.pos++
	p.depth++
	defer func() { p.depth-- }()
	closeCh := map[byte]byte{'(': ')', '[': ']', '{': '}'}[open]
	var items []Value
	var entries []Entry
	isDict, isSet := false, false
	trailingComma := false
	for {
		p.skip()
		if p.peek() == closeCh {
			p.pos++
			break
		}
		if len(items)+len(entries) > 0 && !trailingComma {
			return Value{}, p.errorf("expected ',' or %q", closeCh)
		}
		v, err := p.expr()
		if err != nil {
			return Value{}, err
		}
		p.skip()
		if open == '{' {
			if len(items)+len(entries) == 0 {
				isDict = p.peek() == ':'
				isSet = !isDict
			}
			if isDict {
				if p.peek() != ':' {
					return Value{}, p.errorf("expected ':'")
				}
				p.pos++
				val, err := p.expr()
				if err != nil {
					return Value{}, err
				}
				entries = append(entries, Entry{v, val})
				p.skip()
			} else {
				items = append(items, v)
			}
		} else {
			items = append(items, v)
		}
		trailingComma = false
		if p.peek() == ',' {
			p.pos++
			trailingComma = true
		}
	}
	switch open {
	case '(':
		if len(items) == 1 && !trailingComma {
			return items[0], nil // parenthesised expression
		}
		if items == nil {
			items = []Value{}
		}
		return Value{Kind: Tuple, Items: items}, nil
	case '[':
		if items == nil {
			items = []Value{}
		}
		return Value{Kind: List, Items: items}, nil
	}
	if isSet {
		var uniq []Value
		for _, it := range items {
			if !hashable(it) {
				return Value{}, p.errorf("unhashable set element %s", it.Kind)
			}
			if indexOf(uniq, it) < 0 {
				uniq = append(uniq, it)
			}
		}
		return Value{Kind: Set, Items: uniq}, nil
	}
	out := []Entry{}
	for _, e := range entries {
		if !hashable(e.Key) {
			return Value{}, p.errorf("unhashable dict key %s", e.Key.Kind)
		}
		found := false
		for i := range out {
			if equalKey(out[i].Key, e.Key) {
				out[i].Value = e.Value
				found = true
				break
			}
		}
		if !found {
			out = append(out, e)
		}
	}
	return Value{Kind: Dict, Dict: out}, nil
}

func indexOf(vs []Value, v Value) int {
	for i := range vs {
		if equalKey(vs[i], v) {
			return i
		}
	}
	return -1
}

func hashable(v Value) bool {
	switch v.Kind {
	case List, Dict, Set:
		return false
	case Tuple:
		for _, it := range v.Items {
			if !hashable(it) {
				return false
			}
		}
	}
	return true
}

// equalKey is Python's == for hashable literals (1 == 1.0 == True).
func equalKey(a, b Value) bool {
	if a.IsNumeric() && b.IsNumeric() {
		ar, ai := toComplexExact(a)
		br, bi := toComplexExact(b)
		return ar.Cmp(br) == 0 && ai.Cmp(bi) == 0 && !isNaN(a) && !isNaN(b)
	}
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case None:
		return true
	case Str, Bytes:
		return a.Str == b.Str
	case Tuple:
		if len(a.Items) != len(b.Items) {
			return false
		}
		for i := range a.Items {
			if !equalKey(a.Items[i], b.Items[i]) {
				return false
			}
		}
		return true
	}
	return false
}

func isNaN(v Value) bool {
	return (v.Kind == Float || v.Kind == Complex) && (math.IsNaN(v.Float) || math.IsNaN(v.Imag))
}

// toComplexExact returns exact real and imaginary parts as big.Float.
func toComplexExact(v Value) (*big.Float, *big.Float) {
	re, im := new(big.Float).SetPrec(0), new(big.Float)
	switch v.Kind {
	case Bool:
		if v.Bool {
			re.SetInt64(1)
		}
	case Int:
		if v.Big != nil {
			re.SetInt(v.Big)
		} else {
			re.SetInt64(v.Int)
		}
	case Float, Complex:
		if !math.IsNaN(v.Float) {
			re.SetFloat64(v.Float)
		}
		if !math.IsNaN(v.Imag) {
			im.SetFloat64(v.Imag)
		}
	}
	return re, im
}

// number parses an int, float or imaginary literal.
func (p *parser) number() (Value, error) {
	start := p.pos
	s := p.src
	digitsRun := func(ok func(byte) bool) bool {
		// digits with single underscores between them
		n := 0
		for p.pos < len(s) {
			c := s[p.pos]
			if ok(c) {
				p.pos++
				n++
				continue
			}
			if c == '_' && n > 0 && p.pos+1 < len(s) && ok(s[p.pos+1]) {
				p.pos++
				continue
			}
			break
		}
		return n > 0
	}
	dec := func(c byte) bool { return c >= '0' && c <= '9' }
	if s[p.pos] == '0' && p.pos+1 < len(s) && strings.IndexByte("xXoObB", s[p.pos+1]) >= 0 {
		base := map[byte]int{'x': 16, 'o': 8, 'b': 2}[s[p.pos+1]|0x20]
		p.pos += 2
		if p.peek() == '_' {
			p.pos++
		}
		ok := func(c byte) bool {
			d := -1
			switch {
			case c >= '0' && c <= '9':
				d = int(c - '0')
			case c >= 'a' && c <= 'f':
				d = int(c-'a') + 10
			case c >= 'A' && c <= 'F':
				d = int(c-'A') + 10
			}
			return d >= 0 && d < base
		}
		if !digitsRun(ok) {
			return Value{}, p.errorf("invalid base-%d literal", base)
		}
		if p.pos < len(s) && isIdentChar(s[p.pos]) {
			return Value{}, p.errorf("invalid base-%d literal", base)
		}
		text := strings.ReplaceAll(s[start+2:p.pos], "_", "")
		n, ok2 := new(big.Int).SetString(strings.TrimLeft(text, "_"), base)
		if !ok2 {
			return Value{}, p.errorf("invalid base-%d literal", base)
		}
		return intValue(n), nil
	}
	isFloat := false
	if s[p.pos] != '.' {
		digitsRun(dec)
	}
	intEnd := p.pos
	if p.peek() == '.' {
		isFloat = true
		p.pos++
		if p.pos < len(s) && dec(s[p.pos]) {
			digitsRun(dec)
		}
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		save := p.pos
		p.pos++
		if c := p.peek(); c == '+' || c == '-' {
			p.pos++
		}
		if !digitsRun(dec) {
			p.pos = save
			return Value{}, p.errorf("invalid exponent")
		}
		isFloat = true
	}
	imag := false
	if c := p.peek(); c == 'j' || c == 'J' {
		p.pos++
		imag = true
	}
	if p.pos < len(s) && isIdentChar(s[p.pos]) {
		return Value{}, p.errorf("invalid number literal")
	}
	text := strings.ReplaceAll(s[start:p.pos], "_", "")
	if imag {
		f, err := parseFloat(strings.TrimRight(text, "jJ"))
		if err != nil {
			return Value{}, p.errorf("%v", err)
		}
		return Value{Kind: Complex, Imag: f}, nil
	}
	if isFloat {
		f, err := parseFloat(text)
		if err != nil {
			return Value{}, p.errorf("%v", err)
		}
		return Value{Kind: Float, Float: f}, nil
	}
	intText := strings.ReplaceAll(s[start:intEnd], "_", "")
	if len(intText) > 1 && intText[0] == '0' && strings.Trim(intText, "0") != "" {
		return Value{}, p.errorf("leading zeros in decimal integer literal")
	}
	if len(intText) > maxIntDigits {
		return Value{}, p.errorf("integer literal of more than %d digits", maxIntDigits)
	}
	if n, err := strconv.ParseInt(intText, 10, 64); err == nil {
		return Value{Kind: Int, Int: n}, nil
	}
	n, _ := new(big.Int).SetString(intText, 10)
	return intValue(n), nil
}

func parseFloat(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
			return f, nil // Python gives inf or 0 too
		}
		return 0, err
	}
	return f, nil
}

// strings parses one or more adjacent string literals.
func (p *parser) strings() (Value, error) {
	var b strings.Builder
	kind := Kind(255)
	for {
		prefixStart := p.pos
		for p.pos < len(p.src) && isIdentChar(p.src[p.pos]) {
			p.pos++
		}
		prefix := strings.ToLower(p.src[prefixStart:p.pos])
		raw := strings.Contains(prefix, "r")
		isBytes := strings.Contains(prefix, "b")
		switch prefix {
		case "", "r", "u", "b", "br", "rb":
		default:
			return Value{}, p.errorf("string prefix %q", prefix)
		}
		k := Str
		if isBytes {
			k = Bytes
		}
		if kind != 255 && kind != k {
			return Value{}, p.errorf("cannot mix bytes and nonbytes literals")
		}
		kind = k
		if err := p.stringBody(&b, raw, isBytes); err != nil {
			return Value{}, err
		}
		save := p.pos
		p.skip()
		c := p.peek()
		if c == '\'' || c == '"' {
			continue
		}
		if isIdentStart(c) {
			end := p.pos
			for end < len(p.src) && isIdentChar(p.src[end]) {
				end++
			}
			if end < len(p.src) && (p.src[end] == '\'' || p.src[end] == '"') {
				continue
			}
		}
		p.pos = save
		break
	}
	return Value{Kind: kind, Str: b.String()}, nil
}

func (p *parser) stringBody(b *strings.Builder, raw, isBytes bool) error {
	q := p.src[p.pos]
	triple := strings.HasPrefix(p.src[p.pos:], strings.Repeat(string(q), 3))
	if triple {
		p.pos += 3
	} else {
		p.pos++
	}
	for {
		if p.pos >= len(p.src) {
			return p.errorf("unterminated string")
		}
		c := p.src[p.pos]
		if c == q {
			if !triple {
				p.pos++
				return nil
			}
			if strings.HasPrefix(p.src[p.pos:], strings.Repeat(string(q), 3)) {
				p.pos += 3
				return nil
			}
		}
		if (c == '\n' || c == '\r') && !triple {
			return p.errorf("newline in string")
		}
		if isBytes && c >= 0x80 {
			return p.errorf("bytes can only contain ASCII literal characters")
		}
		if c != '\\' {
			if c == '\r' { // universal newlines
				p.pos++
				if p.peek() == '\n' {
					p.pos++
				}
				b.WriteByte('\n')
				continue
			}
			b.WriteByte(c)
			p.pos++
			continue
		}
		// backslash
		if p.pos+1 >= len(p.src) {
			return p.errorf("unterminated string")
		}
		e := p.src[p.pos+1]
		if raw {
			// In raw strings a backslash escapes the quote but stays.
			b.WriteByte('\\')
			b.WriteByte(e)
			p.pos += 2
			continue
		}
		p.pos += 2
		switch e {
		case '\n':
		case '\r':
			if p.peek() == '\n' {
				p.pos++
			}
		case '\\', '\'', '"':
			b.WriteByte(e)
		case 'a':
			b.WriteByte(7)
		case 'b':
			b.WriteByte(8)
		case 'f':
			b.WriteByte(12)
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte(11)
		case '0', '1', '2', '3', '4', '5', '6', '7':
			n := int(e - '0')
			for i := 0; i < 2 && p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '7'; i++ {
				n = n*8 + int(p.src[p.pos]-'0')
				p.pos++
			}
			if isBytes {
				b.WriteByte(byte(n)) // Python truncates values above 0o377
			} else {
				b.WriteRune(rune(n))
			}
		case 'x', 'u', 'U':
			width := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if isBytes && e != 'x' {
				b.WriteByte('\\')
				b.WriteByte(e)
				continue
			}
			if p.pos+width > len(p.src) {
				return p.errorf("truncated \\%c escape", e)
			}
			n, err := strconv.ParseUint(p.src[p.pos:p.pos+width], 16, 32)
			if err != nil || strings.ContainsAny(p.src[p.pos:p.pos+width], "+-_") {
				return p.errorf("truncated \\%c escape", e)
			}
			p.pos += width
			if isBytes {
				b.WriteByte(byte(n))
			} else {
				if n > 0x10ffff {
					return p.errorf("illegal Unicode character")
				}
				b.WriteRune(rune(n))
			}
		case 'N':
			if isBytes {
				b.WriteString(`\N`)
				continue
			}
			return p.errorf(`\N{...} escapes are not supported`)
		default:
			b.WriteByte('\\')
			p.pos-- // the escaped character is read again as itself
		}
	}
}
