// Package tempfile creates the temporary files that outputs are written to before they are
// renamed into place, with the mode os.WriteFile would give: 0666 less the umask. os.CreateTemp
// makes 0600 files whatever the umask, so outputs renamed from them were unreadable to other
// users of a shared volume.
package tempfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// Create creates a new file named prefix followed by random hex digits in dir, open for
// reading and writing, with mode 0666 less the umask. The caller removes or renames it.
func Create(dir, prefix string) (*os.File, error) {
	for range 100 {
		name := filepath.Join(dir, fmt.Sprintf("%s%016x", prefix, rand.Uint64()))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("no unused temporary file name in %s", dir)
}
