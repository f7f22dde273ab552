package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestErrorsNameFilesOnce: a CLI error names the file it is about once, whichever layer
// (the command, the loader) put the name in.
func TestErrorsNameFilesOnce(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.png")
	if err := os.WriteFile(junk, []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(dir, "model")
	_ = os.Mkdir(model, 0o755)
	for _, args := range [][]string{
		{"inspect-model", junk},
		{"inspect-model", model},
		{"encode", junk, "-m", junk, "-o", filepath.Join(dir, "a.msgpack")},
		{"encode", junk, "-o", filepath.Join(dir, "b.msgpack")},
		{"decode", junk, "-o", filepath.Join(dir, "c.png")},
		{"eval", "--images", filepath.Join(dir, "nosuch")},
	} {
		_, stderr, err := runErr(args...)
		if err == nil {
			t.Fatalf("%v succeeded", args)
		}
		all := stderr + err.Error()
		name := args[1]
		if args[0] == "eval" {
			name = args[2]
		}
		if args[0] == "encode" && args[2] == "-m" {
			name = junk
		}
		msg := err.Error()
		if strings.Count(msg, name) > 1 || strings.Count(all, "first bytes") > 1 {
			t.Errorf("%v: the name or the reason repeats:\n%s%s", args, stderr, msg)
		}
		if !strings.Contains(msg, filepath.Base(name)) {
			t.Errorf("%v: %q does not name %s", args, msg, name)
		}
	}
}

func TestMentions(t *testing.T) {
	for _, c := range []struct {
		msg, p string
		want   bool
	}{
		{"m: flextok/model: x", "m", true},
		{"flextok/model: x", "model", false},
		{"open m/model.safetensors: no such file", "m", true},
		{"a/junk.png: truncated", "a/junk.png", true},
		{"open a/junk.png2: x", "a/junk.png", false},
		{"stat nosuch", "nosuch", true},
		{"anything", "", false},
	} {
		if got := mentions(c.msg, c.p); got != c.want {
			t.Errorf("mentions(%q, %q) = %v", c.msg, c.p, got)
		}
	}
}
