package safetensors

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"sync"
)

// Digests reads the whole file once, in order, and returns the SHA-256 of its bytes and of each
// tensor's data (indexed as Tensors()). Tensors are contiguous (Open checks it), so one
// sequential pass feeds both; the two hashes of each chunk run on two goroutines.
func (f *File) Digests() (file [32]byte, tensors [][32]byte, err error) {
	whole := sha256.New()
	head := make([]byte, 8+f.headerSize)
	if err := readFull(f.r, head, 0); err != nil {
		return file, nil, fmt.Errorf("%w: header: %v", ErrTruncated, err)
	}
	whole.Write(head)
	order := make([]int, len(f.tensors))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return f.tensors[order[a]].Begin < f.tensors[order[b]].Begin })
	tensors = make([][32]byte, len(f.tensors))
	buf := make([]byte, 1<<20)
	base := 8 + f.headerSize
	one := sha256.New()
	for _, i := range order {
		t := f.tensors[i]
		one.Reset()
		for from, to := base+t.Begin, base+t.End; from < to; {
			n := min(int64(len(buf)), to-from)
			if err := readFull(f.r, buf[:n], from); err != nil {
				return file, nil, fmt.Errorf("%w: tensor %q: %v", ErrTruncated, t.Name, err)
			}
			chunk := buf[:n]
			if n < 64<<10 {
				whole.Write(chunk)
			} else {
				var wg sync.WaitGroup
				wg.Add(1)
				go func() { whole.Write(chunk); wg.Done() }()
				one.Write(chunk)
				wg.Wait()
				from += n
				continue
			}
			one.Write(chunk)
			from += n
		}
		copy(tensors[i][:], one.Sum(nil))
	}
	copy(file[:], whole.Sum(nil))
	return file, tensors, nil
}
