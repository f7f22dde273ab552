//go:build !unix

package kernels

import "time"

// processCPU reports that this platform's CPU time is unknown to the benchmarks.
func processCPU() (time.Duration, bool) { return 0, false }
