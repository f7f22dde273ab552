package webpkg

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// DefaultChunkSize is the chunk size of `flextok export-web` (32 MiB): small enough for HTTP
// caches and a resumable download, large enough that a d12 model is a few dozen requests.
const DefaultChunkSize = 32 << 20

// MinChunkSize is the smallest chunk size Split accepts.
const MinChunkSize = 1 << 10

// Split reads the size bytes of file name from r, cuts them into chunks of chunkSize bytes
// (the last shorter) and calls put with each chunk's name and bytes (put must not keep data:
// the buffer is reused). A file of at most chunkSize bytes is one chunk named name; a larger
// one gives ChunkName(name, 0), ChunkName(name, 1), .... It returns the file's description
// for Manifest.Files. r giving fewer or more than size bytes is an error.
func Split(name string, r io.Reader, size, chunkSize int64, put func(chunk string, data []byte) error) (File, error) {
	if err := checkName(name); err != nil {
		return File{}, fmt.Errorf("flextok/webpkg: file %q: %w", trunc(name), err)
	}
	if chunkSize < MinChunkSize {
		return File{}, fmt.Errorf("flextok/webpkg: chunk size %d: want at least %d bytes", chunkSize, MinChunkSize)
	}
	if size < 0 || size > MaxFileSize {
		return File{}, fmt.Errorf("flextok/webpkg: file %q: size %d out of range", name, size)
	}
	n := (size + chunkSize - 1) / chunkSize
	if n == 0 {
		n = 1
	}
	if n > MaxChunks {
		return File{}, fmt.Errorf("flextok/webpkg: file %q: %d bytes in chunks of %d is %d chunks (at most %d): use a larger chunk size", name, size, chunkSize, n, MaxChunks)
	}
	whole := sha256.New()
	buf := make([]byte, min(chunkSize, max(size, 1)))
	f := File{Size: size}
	for i := int64(0); i < n; i++ {
		c := Chunk{Name: name, Size: min(chunkSize, size-i*chunkSize)}
		if n > 1 {
			c.Name = ChunkName(name, int(i))
		}
		data := buf[:c.Size]
		if _, err := io.ReadFull(r, data); err != nil {
			return File{}, fmt.Errorf("flextok/webpkg: file %q: reading chunk %d: %w", name, i, err)
		}
		sum := sha256.Sum256(data)
		c.SHA256 = hex.EncodeToString(sum[:])
		whole.Write(data)
		if err := put(c.Name, data); err != nil {
			return File{}, err
		}
		f.Chunks = append(f.Chunks, c)
	}
	var one [1]byte
	if k, err := r.Read(one[:]); k > 0 || (err != nil && !errors.Is(err, io.EOF)) {
		if err == nil {
			err = fmt.Errorf("more than %d bytes", size)
		}
		return File{}, fmt.Errorf("flextok/webpkg: file %q: %w", name, err)
	}
	f.SHA256 = hex.EncodeToString(whole.Sum(nil))
	return f, nil
}
