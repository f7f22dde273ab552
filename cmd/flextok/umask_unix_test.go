//go:build unix

package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestOutputModesFollowUmask: outputs get 0666 and directories 0777 less the umask, as
// os.WriteFile and os.MkdirAll give, so other users of a shared volume can read a sharded job's
// tokens.
func TestOutputModesFollowUmask(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	for _, c := range []struct {
		umask      int
		file, tree os.FileMode
	}{{0o022, 0o644, 0o755}, {0o077, 0o600, 0o700}, {0o002, 0o664, 0o775}} {
		syscall.Umask(c.umask)
		p := filepath.Join(dir, "w", "a.msgpack")
		_ = os.MkdirAll(filepath.Dir(p), 0o777)
		if err := writeNew(p, []byte("x"), true); err != nil {
			t.Fatal(err)
		}
		if st, _ := os.Stat(p); st.Mode().Perm() != c.file {
			t.Errorf("umask %03o: writeNew made %v, want %v", c.umask, st.Mode().Perm(), c.file)
		}
		out := filepath.Join(dir, "enc", "sub")
		_ = os.RemoveAll(filepath.Join(dir, "enc"))
		if _, _, err := runErr("encode", "../../testdata/heldout/000_cross.png", "../../testdata/heldout/001_cross.png", "-o", out, "-k", "1"); err != nil {
			t.Fatal(err)
		}
		for _, q := range []struct {
			path string
			want os.FileMode
		}{{filepath.Join(out, "000_cross.msgpack"), c.file}, {out, c.tree}, {filepath.Dir(out), c.tree}} {
			st, err := os.Stat(q.path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != q.want {
				t.Errorf("umask %03o: encode made %s %v, want %v", c.umask, q.path, st.Mode().Perm(), q.want)
			}
		}
	}
}
