package pyliteral

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// Equal reports whether two trees are the same, kinds included, with NaN
// equal to NaN.
func equal(a, b Value) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case Bool:
		return a.Bool == b.Bool
	case Int:
		if (a.Big == nil) != (b.Big == nil) {
			return false
		}
		if a.Big != nil {
			return a.Big.Cmp(b.Big) == 0
		}
		return a.Int == b.Int
	case Float, Complex:
		eq := func(x, y float64) bool {
			return x == y && math.Signbit(x) == math.Signbit(y) || math.IsNaN(x) && math.IsNaN(y)
		}
		return eq(a.Float, b.Float) && eq(a.Imag, b.Imag)
	case Str, Bytes:
		return a.Str == b.Str
	case List, Tuple, Set:
		if len(a.Items) != len(b.Items) {
			return false
		}
		for i := range a.Items {
			if !equal(a.Items[i], b.Items[i]) {
				return false
			}
		}
	case Dict:
		if len(a.Dict) != len(b.Dict) {
			return false
		}
		for i := range a.Dict {
			if !equal(a.Dict[i].Key, b.Dict[i].Key) || !equal(a.Dict[i].Value, b.Dict[i].Value) {
				return false
			}
		}
	}
	return true
}

// Each case: input and the repr Python prints for ast.literal_eval(input)
// (checked against CPython 3.11), or "" when literal_eval raises.
var cases = []struct{ in, repr string }{
	{"None", "None"},
	{"True", "True"},
	{"  False", "False"},
	{"1", "1"},
	{"-1", "-1"},
	{"+1", "1"},
	{"- 3", "-3"},
	{"--1", ""},
	{"-True", ""},
	{"1_000", "1000"},
	{"1__0", ""},
	{"1_", ""},
	{"0x_fF", "255"},
	{"0o17", "15"},
	{"0b101", "5"},
	{"007", ""},
	{"000", "0"},
	{"12345678901234567890123", "12345678901234567890123"},
	{"-9223372036854775808", "-9223372036854775808"},
	{"1e-05", "1e-05"},
	{"1E5", "100000.0"},
	{"1.", "1.0"},
	{".5", "0.5"},
	{"1e400", "inf"},
	{"-1e400", "-inf"},
	{"1e-400", "0.0"},
	{"0.0001", "0.0001"},
	{"1e16", "1e+16"},
	{"123456789012345.6", "123456789012345.6"},
	{"2.5e-3", "0.0025"},
	{"1.5e300", "1.5e+300"},
	{"inf", ""},
	{"nan", ""},
	{"-inf", ""},
	{"1j", "1j"},
	{"1+2j", "(1+2j)"},
	{"-1-2j", "(-1-2j)"},
	{"1+2", ""},
	{"1+2j+3j", ""},
	{"(1+2j)", "(1+2j)"},
	{"'a'", "'a'"},
	{`"it's"`, `"it's"`},
	{`'both \' and "'`, `'both \' and "'`},
	{`'a' "b"`, "'ab'"},
	{`'a' b'b'`, ""},
	{`b'x\x00\xff'`, `b'x\x00\xff'`},
	{`b'é'`, ""},
	{`r'a\nb'`, `'a\\nb'`},
	{`'a\nb\tc\\'`, `'a\nb\tc\\'`},
	{`'\x41\u00e9\U0001F600\101\0'`, `'Aé😀A\x00'`},
	{`'\d'`, `'\\d'`},
	{`'\u12'`, ""},
	{`'é'`, "'é'"},
	{`f'x'`, ""},
	{`'''tri'ple'''`, `"tri'ple"`},
	{`'unterminated`, ""},
	{"'a\nb'", ""},
	{"()", "()"},
	{"(1)", "1"},
	{"(1,)", "(1,)"},
	{"1, 2", "(1, 2)"},
	{"1,", "(1,)"},
	{"[]", "[]"},
	{"[1, [2, (3,)], ]", "[1, [2, (3,)]]"},
	{"[1 2]", ""},
	{"[1,,2]", ""},
	{"{}", "{}"},
	{"set()", "set()"},
	{"set([1])", ""},
	{"{1, 2, 1}", "{1, 2}"},
	{"{'b': 1, 'a': 2}", "{'b': 1, 'a': 2}"},
	{"{'a': 1, 'b': 2, 'a': 3}", "{'a': 3, 'b': 2}"},
	{"{1: 'x', True: 'y', 1.0: 'z'}", "{1: 'z'}"},
	{"{(1, 2): 3}", "{(1, 2): 3}"},
	{"{[1]: 2}", ""},
	{"{(1, [2]): 3}", ""},
	{"{'a': 1, 2}", ""},
	{"{\n 'a': 1,  # comment\n 'b': [\n 2]\n}", "{'a': 1, 'b': [2]}"},
	{"flextok.flextok_wrapper.FlexTok", ""},
	{"x", ""},
	{"[1] [0]", ""},
	{"1 if 1 else 2", ""},
	{"", ""},
	{"1\n", "1"},
	{"1\n2", ""},
	{strings.Repeat("[", 201) + strings.Repeat("]", 201), ""},
	{strings.Repeat("(", 201) + strings.Repeat(")", 201), ""},
	{strings.Repeat("[", 200) + strings.Repeat("]", 200), strings.Repeat("[", 200) + strings.Repeat("]", 200)},
	{"{{}}", ""},
	{"\n1", "1"},
	{"1 \\\n + 2j", "(1+2j)"},
	{"-(1+2j)", ""},
	{"-(1)", "-1"},
	{"(-1)+2j", "(-1+2j)"},
	{"0_7", ""},
	{"0_0", "0"},
	{"1_000.5_5", "1000.55"},
	{"07.5", "7.5"},
	{"07j", "7j"},
	{"0x", ""},
	{"set ()", "set()"},
	{"b'a' B'c'", "b'ac'"},
	{`b'\u1234'`, `b'\\u1234'`},
	{`r'\''`, `"\\'"`},
	{strings.Repeat("9", 4300), strings.Repeat("9", 4300)},
	{strings.Repeat("9", 4301), ""},
	{"{'_target_': 'flextok.model.trunks.transformers.FlexTransformer', 'dim': 768, 'norm_layer': {'_target_': 'x', '_partial_': True, 'eps': 1e-06}, 'max_sizes': [16, 16], 'x': None}",
		"{'_target_': 'flextok.model.trunks.transformers.FlexTransformer', 'dim': 768, 'norm_layer': {'_target_': 'x', '_partial_': True, 'eps': 1e-06}, 'max_sizes': [16, 16], 'x': None}"},
}

func TestParse(t *testing.T) {
	for _, c := range cases {
		v, err := Parse(c.in)
		if c.repr == "" {
			if err == nil {
				t.Errorf("Parse(%.40q) = %s, want error", c.in, v)
			} else if !errors.Is(err, ErrSyntax) {
				t.Errorf("Parse(%.40q): error %v does not wrap ErrSyntax", c.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%.40q): %v", c.in, err)
			continue
		}
		if got := v.String(); got != c.repr {
			t.Errorf("Parse(%.40q) = %.60s, want %.60s", c.in, got, c.repr)
		}
		back, err := ParseWith(v.String(), Options{AllowNonFinite: true})
		if err != nil || !equal(back, v) {
			t.Errorf("round trip of %.40q: %v %v", c.in, back, err)
		}
	}
}

func TestParseOrString(t *testing.T) {
	v := ParseOrString("flextok.flextok_wrapper.FlexTok")
	if v.Kind != Str || v.Str != "flextok.flextok_wrapper.FlexTok" {
		t.Fatal(v)
	}
	v = ParseOrString("{'levels': [8, 8, 8, 5, 5, 5], 'b': inf}")
	if v.Kind != Str {
		t.Fatal("inf must fail as in ast.literal_eval")
	}
	v, err := ParseWith("{'levels': [8, 8], 'b': -inf, 'c': nan}", Options{AllowNonFinite: true})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := v.Get("b")
	c, _ := v.Get("c")
	if !math.IsInf(b.Float, -1) || !math.IsNaN(c.Float) || strings.Join(v.Keys(), ",") != "levels,b,c" {
		t.Fatal(v)
	}
	if v.String() != "{'levels': [8, 8], 'b': -inf, 'c': nan}" {
		t.Fatal(v.String())
	}
}

func TestFormatFloat(t *testing.T) {
	for in, want := range map[float64]string{
		0: "0.0", 1: "1.0", 0.1: "0.1", 1e-5: "1e-05", 1e-4: "0.0001", 1e15: "1000000000000000.0",
		1e16: "1e+16", 1.5e-7: "1.5e-07", -2.5: "-2.5", 1e100: "1e+100", 123.456: "123.456",
		math.Copysign(0, -1): "-0.0", 0.18215: "0.18215",
	} {
		if got := FormatFloat(in); got != want {
			t.Errorf("FormatFloat(%v) = %s want %s", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range cases {
		if len(c.in) < 300 {
			f.Add(c.in)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseWith(s, Options{AllowNonFinite: true})
		if err != nil {
			return
		}
		r := v.String()
		back, err := ParseWith(r, Options{AllowNonFinite: true})
		if err != nil {
			t.Fatalf("repr %q of %q does not parse: %v", r, s, err)
		}
		// Complex signed zeros do not survive repr in Python either.
		if !hasComplex(v) && !equal(back, v) {
			t.Fatalf("repr %q of %q parses to %s", r, s, back)
		}
	})
}

func hasComplex(v Value) bool {
	if v.Kind == Complex {
		return true
	}
	for _, it := range v.Items {
		if hasComplex(it) {
			return true
		}
	}
	for _, e := range v.Dict {
		if hasComplex(e.Key) || hasComplex(e.Value) {
			return true
		}
	}
	return false
}

// TestNonFiniteComplex: repr writes a complex with a non-finite imaginary part as infj / nanj
// (1e999j → infj); AllowNonFinite reads those forms back, and without it they are refused.
func TestNonFiniteComplex(t *testing.T) {
	for in, want := range map[string]string{"infj": "infj", "(1+infj)": "(1+infj)", "-infj": "(-0-infj)", "1e999j": "infj"} {
		v, err := ParseWith(in, Options{AllowNonFinite: true})
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := v.String(); got != want {
			t.Errorf("%s: repr %s, want %s", in, got, want)
		}
	}
	if v, err := ParseWith("nanj", Options{AllowNonFinite: true}); err != nil || v.Kind != Complex || !math.IsNaN(v.Imag) {
		t.Errorf("nanj: %v %v", v, err)
	}
	if _, err := Parse("infj"); err == nil {
		t.Error("infj without AllowNonFinite: no error")
	}
}

// An int whose decimal form exceeds the digit limit (legal as a hex literal,
// as in Python) reprs in hexadecimal so that it still parses back.
func TestHugeIntRepr(t *testing.T) {
	for _, in := range []string{"0x" + strings.Repeat("f", 4000), "-0x" + strings.Repeat("a", 4000)} {
		v, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		r := v.String()
		if !strings.Contains(r[:3], "0x") {
			t.Fatalf("repr starts %q, want hexadecimal", r[:10])
		}
		back, err := Parse(r)
		if err != nil || !equal(back, v) {
			t.Fatalf("repr does not round-trip: %v", err)
		}
	}
	if v, _ := Parse(strings.Repeat("9", 4300)); strings.HasPrefix(v.String(), "0x") {
		t.Fatal("ints within the limit stay decimal")
	}
}
