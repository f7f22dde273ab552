package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// runErr is run that also returns what the command wrote on stderr.
func runErr(args ...string) (stdout, stderr string, err error) {
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errb.String(), err
}

// encodeTree makes a small dataset: heldout images (32x32, the default model's size) at three
// depths, plus a file that is not an image. It returns the directory.
func encodeTree(t *testing.T, n int) string {
	t.Helper()
	src := "../../testdata/heldout"
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	subs := []string{"", "cats", filepath.Join("cats", "small")}
	for i := 0; i < n; i++ {
		b, err := os.ReadFile(filepath.Join(src, ents[i].Name()))
		if err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(dir, subs[i%len(subs)])
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, ents[i].Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cats", "notes.txt"), []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// readTree returns the files under dir (relative path -> bytes); temporary files are an error.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasPrefix(d.Name(), ".flextok-") {
			t.Errorf("temporary file left: %s", p)
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, what string, got, want map[string][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d files, want %d (%v)", what, len(got), len(want), keys(got))
	}
	for k, w := range want {
		if !bytes.Equal(got[k], w) {
			t.Fatalf("%s: %s differs", what, k)
		}
	}
}

func keys(m map[string][]byte) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// TestEncodeTree: a directory is walked recursively and its structure mirrored under -o; the
// batch size does not change a byte.
func TestEncodeTree(t *testing.T) {
	data := encodeTree(t, 7)
	out1 := filepath.Join(t.TempDir(), "b1")
	_, stderr, err := runErr("encode", data, "-o", out1, "--batch", "1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stderr, "encoded 7, skipped 0, failed 0 in ") || !strings.HasSuffix(stderr, " images/s)\n") {
		t.Fatalf("summary %q", stderr)
	}
	one := readTree(t, out1)
	for _, want := range []string{"000_cross.msgpack", filepath.Join("cats", "001_cross.msgpack"), filepath.Join("cats", "small", "002_triangle.msgpack")} {
		if _, ok := one[want]; !ok {
			t.Fatalf("no %s among %v", want, keys(one))
		}
	}
	out5 := filepath.Join(t.TempDir(), "b5")
	if _, _, err := runErr("encode", data, "-o", out5, "--batch", "5"); err != nil {
		t.Fatal(err)
	}
	sameTree(t, "--batch 5 against --batch 1", readTree(t, out5), one)

	// One file argument: OUT is the payload file, unless it is (or ends like) a directory; an
	// existing OUT is an error there, not a skip.
	dir := t.TempDir()
	for _, o := range []string{filepath.Join(dir, "x.msgpack"), filepath.Join(dir, "sub") + "/", dir} {
		if _, _, err := runErr("encode", filepath.Join(data, "000_cross.png"), "-o", o); err != nil {
			t.Fatal(err)
		}
	}
	got := readTree(t, dir)
	for _, k := range []string{"x.msgpack", filepath.Join("sub", "000_cross.msgpack"), "000_cross.msgpack"} {
		if !bytes.Equal(got[k], one["000_cross.msgpack"]) {
			t.Fatalf("single-file outputs %v: %s differs", keys(got), k)
		}
	}
	if _, _, err := runErr("encode", filepath.Join(data, "000_cross.png"), "-o", filepath.Join(dir, "x.msgpack")); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("existing single output: %v", err)
	}
}

// TestEncodeShards: N workers with --shard i/N into one directory write every output exactly
// once, the same bytes as one unsharded run; the shard sizes differ by at most one.
func TestEncodeShards(t *testing.T) {
	data := encodeTree(t, 8)
	// Duplicate arguments (a file inside a directory also given) count once.
	dup := filepath.Join(data, "cats", "001_cross.png")
	whole := filepath.Join(t.TempDir(), "whole")
	if _, _, err := runErr("encode", data, dup, "-o", whole); err != nil {
		t.Fatal(err)
	}
	want := readTree(t, whole)
	if len(want) != 8 {
		t.Fatalf("unsharded run wrote %v", keys(want))
	}
	const N = 3
	out := filepath.Join(t.TempDir(), "sharded")
	total := 0
	for i := 0; i < N; i++ {
		// Arguments in another order: the sorted list, not the command line, defines the shards.
		_, stderr, err := runErr("encode", dup, data, "-o", out, "--shard", fmt.Sprintf("%d/%d", i, N), "--batch", "2")
		if err != nil {
			t.Fatal(err)
		}
		var enc, skip, failed int
		if _, err := fmt.Sscanf(stderr, "encoded %d, skipped %d, failed %d", &enc, &skip, &failed); err != nil {
			t.Fatalf("summary %q: %v", stderr, err)
		}
		if skip != 0 || failed != 0 || enc < 8/N || enc > 8/N+1 {
			t.Fatalf("shard %d/%d: %q", i, N, stderr)
		}
		total += enc
	}
	if total != 8 {
		t.Fatalf("shards encoded %d images, want 8", total)
	}
	sameTree(t, "sharded against whole", readTree(t, out), want)

	// auto/N reads the index from the environment.
	auto := filepath.Join(t.TempDir(), "auto")
	t.Setenv("SLURM_ARRAY_TASK_ID", "")
	t.Setenv("JOB_COMPLETION_INDEX", "1")
	if _, _, err := runErr("encode", data, "-o", auto, "--shard", "auto/3"); err != nil {
		t.Fatal(err)
	}
	got := readTree(t, auto)
	for k, v := range got {
		if !bytes.Equal(v, want[k]) {
			t.Fatalf("auto shard: %s differs", k)
		}
	}
	if len(got) != 3 {
		t.Fatalf("auto/3 with index 1 wrote %v, want 3 files", keys(got))
	}
}

// TestEncodeRerun: a rerun skips what exists and finishes the rest with the same bytes;
// --force rewrites everything.
func TestEncodeRerun(t *testing.T) {
	data := encodeTree(t, 6)
	out := filepath.Join(t.TempDir(), "out")
	if _, _, err := runErr("encode", data, "-o", out, "--batch", "4"); err != nil {
		t.Fatal(err)
	}
	want := readTree(t, out)
	// A worker killed mid-run: two outputs missing, a temporary file of an unfinished write.
	_ = os.Remove(filepath.Join(out, "000_cross.msgpack"))
	_ = os.Remove(filepath.Join(out, "cats", "small", "005_hexagon.msgpack"))
	stale := filepath.Join(out, "cats", "whatever.msgpack")
	if err := os.WriteFile(stale, []byte("not mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runErr("encode", data, "-o", out)
	if err != nil || !strings.HasPrefix(stderr, "encoded 2, skipped 4, failed 0 in ") {
		t.Fatalf("rerun: %v %q", err, stderr)
	}
	_ = os.Remove(stale)
	sameTree(t, "rerun", readTree(t, out), want)
	// Nothing left: the model is not even loaded.
	if _, stderr, err := runErr("encode", data, "-o", out, "-m", "/nonexistent"); err != nil || !strings.HasPrefix(stderr, "encoded 0, skipped 6, failed 0 in ") {
		t.Fatalf("complete rerun: %v %q", err, stderr)
	}
	// --force: every output rewritten, the same bytes.
	garbage := filepath.Join(out, "cats", "001_cross.msgpack")
	_ = os.WriteFile(garbage, []byte("old"), 0o644)
	if _, stderr, err := runErr("encode", data, "-o", out, "--force"); err != nil || !strings.HasPrefix(stderr, "encoded 6, skipped 0, failed 0 in ") {
		t.Fatalf("--force: %v %q", err, stderr)
	}
	sameTree(t, "--force", readTree(t, out), want)
}

// TestEncodeCorrupt: an undecodable image among good ones is reported with its path, the
// others are encoded, and the run fails; a file argument is taken whatever its extension.
func TestEncodeCorrupt(t *testing.T) {
	data := encodeTree(t, 5)
	bad := filepath.Join(data, "cats", "broken.png")
	good, _ := os.ReadFile(filepath.Join(data, "cats", "001_cross.png"))
	if err := os.WriteFile(bad, good[:len(good)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	_, stderr, err := runErr("encode", data, "-o", out, "--batch", "3")
	if err == nil || !strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(stderr, "flextok: encode "+bad+": ") || !strings.Contains(stderr, "encoded 5, skipped 0, failed 1 in ") {
		t.Fatalf("stderr %q", stderr)
	}
	if got := readTree(t, out); len(got) != 5 {
		t.Fatalf("wrote %v", keys(got))
	}
	// Rerun: the good ones are skipped, the bad one fails again.
	_, stderr, err = runErr("encode", data, "-o", out)
	if err == nil || !strings.Contains(stderr, "encoded 0, skipped 5, failed 1 in ") {
		t.Fatalf("rerun: %v %q", err, stderr)
	}
}

func TestEncodeUsageErrors(t *testing.T) {
	data := encodeTree(t, 2)
	out := filepath.Join(t.TempDir(), "out")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--shard", "3/2"}, "outside 0..1"},
		{[]string{"--shard", "a/b"}, "not an integer"},
		{[]string{"--shard", "1/0"}, "at least 1"},
		{[]string{"--batch", "0"}, "--batch must be at least 1"},
		{[]string{"--backend", "tf"}, "want go or ort"},
		{[]string{"--provider", "tpu", "--backend", "ort"}, "want auto, cuda or cpu"},
		{[]string{"--provider", "cuda"}, "--backend ort only"},
		{[]string{"-k", "-1"}, "--tokens"},
	} {
		args := append([]string{"encode", data, "-o", out}, c.args...)
		_, _, err := runErr(args...)
		if _, ok := err.(usageError); !ok || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want a usage error saying %q", c.args, err, c.want)
		}
	}
	t.Setenv("JOB_COMPLETION_INDEX", "")
	t.Setenv("SLURM_ARRAY_TASK_ID", "")
	if _, _, err := runErr("encode", data, "-o", out, "--shard", "auto/2"); err == nil || !strings.Contains(err.Error(), "JOB_COMPLETION_INDEX") {
		t.Errorf("auto without the environment: %v", err)
	}
	// Two inputs with one output name: refused before any work.
	_ = os.WriteFile(filepath.Join(data, "000_cross.jpg"), []byte("x"), 0o644)
	if _, _, err := runErr("encode", data, "-o", out); err == nil || !strings.Contains(err.Error(), "both be written to") {
		t.Errorf("colliding outputs: %v", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("an output directory was made by a refused run")
	}
}

// TestWriteNew: a new file appears whole; an existing one is kept (fs.ErrExist) unless
// force; errors name the file the user asked for, never the temporary one.
func TestWriteNew(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.msgpack")
	if err := writeNew(p, []byte("one"), false); err != nil {
		t.Fatal(err)
	}
	if err := writeNew(p, []byte("two"), false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("replaced without force: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Fatalf("the existing file holds %q", b)
	}
	if err := writeNew(p, []byte("three"), true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "three" {
		t.Fatalf("force did not replace: %q", b)
	}
	missing := filepath.Join(dir, "no", "such", "x.png")
	err := writeNew(missing, []byte("x"), false)
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), ".flextok-") {
		t.Fatalf("error %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}
