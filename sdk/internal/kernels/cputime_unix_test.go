//go:build unix

package kernels

import (
	"syscall"
	"time"
)

// processCPU is the user and system CPU time this process has used so far, for benchmarks
// that report work per CPU-second (on a shared machine a benchmark may wait for a core; its
// CPU time does not count the wait). ok is false where it is unknown.
func processCPU() (d time.Duration, ok bool) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
