package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDecodeMirrorsEncode: `decode toks -o pngs` walks the tree `encode imgs -o toks` made and
// mirrors it; a rerun skips what exists; one payload in a directory still makes a directory.
func TestDecodeMirrorsEncode(t *testing.T) {
	data := encodeTree(t, 5)
	toks := filepath.Join(t.TempDir(), "toks")
	if _, _, err := runErr("encode", data, "-o", toks, "-k", "4"); err != nil {
		t.Fatal(err)
	}
	pngs := filepath.Join(t.TempDir(), "pngs")
	_, stderr, err := runErr("decode", toks, "-o", pngs, "--steps", "2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stderr, "decoded 5, skipped 0, failed 0 in ") {
		t.Fatalf("summary %q", stderr)
	}
	in, out := readTree(t, toks), readTree(t, pngs)
	if len(in) != 5 || len(out) != len(in) {
		t.Fatalf("payloads %v, PNGs %v", keys(in), keys(out))
	}
	for rel := range in {
		if _, ok := out[strings.TrimSuffix(rel, ".msgpack")+".png"]; !ok {
			t.Errorf("no PNG for %s among %v", rel, keys(out))
		}
	}
	// A rerun skips every existing PNG and loads no model.
	_, stderr, err = runErr("decode", toks, "-o", pngs, "--steps", "2", "-m", "/no/such/model")
	if err != nil || !strings.HasPrefix(stderr, "decoded 0, skipped 5, failed 0 in ") {
		t.Fatalf("rerun: %v, %q", err, stderr)
	}
	// A directory holding one payload is still mirrored into a directory.
	one := filepath.Join(t.TempDir(), "one")
	if err := os.MkdirAll(filepath.Join(one, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(one, "sub", "a.msgpack"), in["000_cross.msgpack"], 0o644); err != nil {
		t.Fatal(err)
	}
	x := filepath.Join(t.TempDir(), "x")
	if _, _, err := runErr("decode", one, "-o", x, "--steps", "1"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(x, "sub", "a.png")); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("one payload in a directory: %v", err)
	}
}

// TestDecodeGoesOnAfterBadPayloads: in a directory, an unreadable payload and one of another
// model are reported and the others decode; the exit status says how many failed.
func TestDecodeGoesOnAfterBadPayloads(t *testing.T) {
	data := encodeTree(t, 2)
	toks := filepath.Join(t.TempDir(), "toks")
	if _, _, err := runErr("encode", data, "-o", toks, "-k", "4"); err != nil {
		t.Fatal(err)
	}
	in := readTree(t, toks)
	other := filepath.Join(t.TempDir(), "other.msgpack")
	if _, _, err := runErr("encode", filepath.Join(data, "000_cross.png"), "-o", other, "-m", "../../conformance/testdata/official/c1_w32_zero_e2"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{"bad.msgpack": []byte("not a payload"), "zz_other.msgpack": b} {
		if err := os.WriteFile(filepath.Join(toks, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pngs := filepath.Join(t.TempDir(), "pngs")
	_, stderr, err := runErr("decode", toks, "-o", pngs, "--steps", "1")
	if err == nil || !strings.Contains(err.Error(), "2 of 4 payloads failed") {
		t.Fatalf("exit error %v", err)
	}
	if !strings.Contains(stderr, "bad.msgpack") || !strings.Contains(stderr, "zz_other.msgpack") || !strings.Contains(stderr, "decoded 2, skipped 0, failed 2 in ") {
		t.Fatalf("stderr %q", stderr)
	}
	if out := readTree(t, pngs); len(out) != len(in) {
		t.Fatalf("PNGs %v for payloads %v", keys(out), keys(in))
	}
}

// TestOutSemantics: what -o means follows the arguments, never the number of files found.
func TestOutSemantics(t *testing.T) {
	dir := t.TempDir()
	mk := func(p string) string {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := mk("in/a.msgpack"), mk("in/deep/b.msgpack")
	lone := filepath.Dir(mk("lone/c.msgpack"))
	existing := filepath.Join(dir, "existing")
	_ = os.Mkdir(existing, 0o755)
	file := mk("file.png")
	exts := map[string]bool{".msgpack": true}
	for _, c := range []struct {
		args   []string
		out    string
		single bool
		want   []string // outputs, relative to dir; nil: a usage error containing errWant
		errStr string
	}{
		{[]string{a}, "o.png", true, []string{"o.png"}, ""},
		{[]string{a}, "o", true, []string{"o"}, ""},
		{[]string{a}, "existing", false, []string{"existing/a.png"}, ""},
		{[]string{a}, "new/", false, []string{"new/a.png"}, ""},
		{[]string{lone}, "x", false, []string{"x/c.png"}, ""},
		{[]string{filepath.Join(dir, "in")}, "t", false, []string{"t/a.png", "t/deep/b.png"}, ""},
		{[]string{a, b}, "t", false, []string{"t/a.png", "t/b.png"}, ""},
		{[]string{a, b}, "result.png", false, nil, "names a .png file"},
		{[]string{filepath.Join(dir, "in")}, "result.PNG", false, nil, "names a .png file"},
		{[]string{filepath.Join(dir, "in")}, "file.png", false, nil, "is a file"},
		{[]string{a, b}, "result.png/", false, []string{"result.png/a.png", "result.png/b.png"}, ""},
		{[]string{filepath.Join(dir, "existing")}, "t", false, nil, "no input payloads"},
	} {
		out := filepath.Join(dir, c.out)
		if strings.HasSuffix(c.out, "/") {
			out += "/"
		}
		jobs, single, err := planTree(c.args, out, exts, ".png", "payloads")
		if c.want == nil {
			if _, ok := err.(usageError); !ok || !strings.Contains(err.Error(), c.errStr) {
				t.Errorf("%v -o %s: err %v, want a usage error with %q", c.args, c.out, err, c.errStr)
			}
			continue
		}
		if err != nil || single != c.single || len(jobs) != len(c.want) {
			t.Errorf("%v -o %s: %v single %v, %v", c.args, c.out, jobs, single, err)
			continue
		}
		for i, j := range jobs {
			if rel, _ := filepath.Rel(dir, j.out); rel != filepath.FromSlash(c.want[i]) {
				t.Errorf("%v -o %s: output %s, want %s", c.args, c.out, rel, c.want[i])
			}
		}
	}
	_ = file
}

// TestDecodeHelpDefaults: decode's help gives the real defaults (the payload's hints first), not
// numbers a payload with hints would contradict.
func TestDecodeHelpDefaults(t *testing.T) {
	for _, c := range []string{"decode", "eval"} {
		out, err := run(c, "--help")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			for _, flag := range []string{"--steps", "--guidance", "--apg"} {
				if strings.Contains(line, flag+" ") && strings.Contains(line, "(default ") && !strings.Contains(line, "(default: the payload's hint") {
					t.Errorf("%s --help: %s", c, line)
				}
			}
		}
		if !strings.Contains(out, "the payload's hint, else the model's, else 20") || !strings.Contains(out, "the payload's hint, else the model's, else 7.5") {
			t.Errorf("%s --help does not say where the defaults come from:\n%s", c, out)
		}
	}
}
