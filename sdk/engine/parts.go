package engine

import "sync"

// smallItem is the work (FLOPs for one image or item) under which images, not kernels, are
// shared between threads: a small model's kernel calls take microseconds, too short to split
// (see kernels.parallelWork), while each of its images takes milliseconds. Results are the
// same either way, bit for bit: no kernel mixes the rows or pixels of two images.
const smallItem = 2e9

// itemParts is the number of goroutines among which n items of flops each are shared: 1 (the
// kernels share the work instead) unless there are threads and items to spare and the items
// are small.
func itemParts(threads, n int, flops float64) int {
	if threads < 2 || n < 2 || flops >= smallItem {
		return 1
	}
	return min(threads, n)
}

// inParts runs fn on parts contiguous ranges of [0, n), each on its own goroutine, and returns
// the error of the first range that failed (as is, so that a caller can compare it with
// context.Canceled).
func inParts(n, parts int, fn func(lo, hi int) error) error {
	errs := make([]error, parts)
	panics := make([]any, parts)
	var wg sync.WaitGroup
	for p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Carried back to the caller, whose recover (sdk/service's) cannot reach a
			// goroutine of its own.
			defer func() { panics[p] = recover() }()
			errs[p] = fn(n*p/parts, n*(p+1)/parts)
		}()
	}
	wg.Wait()
	for _, r := range panics {
		if r != nil {
			panic(r)
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// forEach calls fn(i) for every i in [0, n), on up to workers goroutines that each take the
// next index (for work of uneven size). A panic in fn reaches the caller, as in inParts.
func forEach(workers, n int, fn func(i int)) {
	workers = min(workers, n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var (
		mu     sync.Mutex
		next   int
		wg     sync.WaitGroup
		panics = make([]any, workers)
	)
	for w := range workers {
		wg.Go(func() {
			defer func() { panics[w] = recover() }()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
	for _, r := range panics {
		if r != nil {
			panic(r)
		}
	}
}
