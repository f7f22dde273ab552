package tempfile

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

// The mode is 0666 less the umask, as os.WriteFile gives, not os.CreateTemp's 0600.
func TestCreateHonoursUmask(t *testing.T) {
	for _, mask := range []int{0o022, 0o077, 0o002} {
		old := syscall.Umask(mask)
		dir := t.TempDir()
		f, err := Create(dir, ".x-")
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		st, err := f.Stat()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := st.Mode().Perm(), os.FileMode(0o666&^mask); got != want {
			t.Errorf("umask %03o: mode %03o, want %03o", mask, got, want)
		}
		if !strings.HasPrefix(st.Name(), ".x-") {
			t.Errorf("name %q lacks the prefix", st.Name())
		}
	}
}
