package main

import (
	"bufio"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/model"
)

// f32WeightBytes is the size of the checkpoint's weights in float32 (every tensor its config
// uses, encoder and decoder): what `flextok bench` divides load memory by. It reads the
// checkpoint's header only.
func f32WeightBytes(path string) (int64, error) {
	var (
		m   *model.Model
		err error
	)
	if path == "" {
		d := models.Default()
		m, err = model.LoadBytes(d.Weights, d.Config, d.VAEConfig)
	} else {
		m, err = model.LoadFile(path)
	}
	if err != nil {
		return 0, err
	}
	defer m.Close()
	var n int64
	for _, p := range m.Report.Params {
		n += 4 * p
	}
	return n, nil
}

// procMem reads this process's resident set (VmRSS) and its peak (VmHWM) in bytes from
// /proc/self/status; 0, 0 where there is none (not Linux).
func procMem() (rss, peak int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		for _, fl := range []struct {
			key string
			dst *int64
		}{{"VmRSS:", &rss}, {"VmHWM:", &peak}} {
			if v, ok := strings.CutPrefix(s.Text(), fl.key); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err == nil {
					*fl.dst = kb << 10
				}
			}
		}
	}
	return rss, peak
}

// resetPeakRSS makes VmHWM start again from the current RSS (Linux: "5" to
// /proc/self/clear_refs); false where that is not possible.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// loadMem is what one load took: seconds, and the growth of the resident set over the load,
// at its peak and after it (after a garbage collection), in bytes; peak and after are 0 where
// they cannot be measured.
type loadMem struct {
	seconds     float64
	peak, after int64
}

// measureLoad runs load and measures it (loadMem). The memory freed by earlier work is handed
// back to the OS first, so that the figures are the load's own.
func measureLoad(load func() (engine.Executor, error)) (engine.Executor, loadMem, error) {
	runtime.GC()
	debug.FreeOSMemory()
	base, _ := procMem()
	reset := resetPeakRSS()
	start := time.Now()
	ex, err := load()
	m := loadMem{seconds: time.Since(start).Seconds()}
	if err != nil {
		return nil, m, err
	}
	_, peak := procMem()
	runtime.GC()
	debug.FreeOSMemory()
	rss, _ := procMem()
	if reset && base > 0 && peak > 0 {
		m.peak, m.after = max(0, peak-base), max(0, rss-base)
	}
	return ex, m, nil
}
