package main

import (
	"fmt"
	"strconv"
	"strings"
)

// shard is one worker's part of a job split N ways: it takes the inputs whose position in
// the sorted input list is Index modulo Count. The zero value is not valid; use allShards
// for "no sharding".
type shard struct{ Index, Count int }

var allShards = shard{0, 1}

// shardEnv are the variables --shard auto/N reads the index from, in order: a Kubernetes
// Indexed Job's completion index, then a Slurm job array's task id.
var shardEnv = []string{"JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"}

// parseShard reads --shard: "i/N" (0 <= i < N), or "auto/N" with i from the first of
// shardEnv that getenv reports set. The empty string is allShards. Errors are usage errors
// that say what was wrong and what is wanted.
func parseShard(spec string, getenv func(string) string) (shard, error) {
	if spec == "" {
		return allShards, nil
	}
	bad := func(format string, a ...any) (shard, error) {
		return shard{}, usageError{fmt.Errorf("--shard %q: "+format, append([]any{spec}, a...)...)}
	}
	is, ns, ok := strings.Cut(spec, "/")
	if !ok {
		return bad("want i/N (0 <= i < N, e.g. 0/4) or auto/N")
	}
	n, err := strconv.Atoi(strings.TrimSpace(ns))
	if err != nil {
		return bad("the shard count %q is not an integer; want i/N, e.g. 0/4", ns)
	}
	if n < 1 {
		return bad("the shard count must be at least 1, got %d", n)
	}
	from := ""
	if strings.TrimSpace(is) == "auto" {
		for _, v := range shardEnv {
			if s := getenv(v); s != "" {
				is, from = s, v
				break
			}
		}
		if from == "" {
			return bad("auto needs %s (Kubernetes Indexed Job) or %s (Slurm job array) set", shardEnv[0], shardEnv[1])
		}
	}
	i, err := strconv.Atoi(strings.TrimSpace(is))
	switch {
	case err != nil && from != "":
		return bad("%s=%q is not an integer", from, is)
	case err != nil:
		return bad("the shard index %q is not an integer; want i/N, e.g. 0/4, or auto/N", is)
	case (i < 0 || i >= n) && from == "SLURM_ARRAY_TASK_ID":
		return bad("%s=%d is outside 0..%d (run the array as --array=0-%d)", from, i, n-1, n-1)
	case (i < 0 || i >= n) && from != "":
		return bad("%s=%d is outside 0..%d", from, i, n-1)
	case i < 0 || i >= n:
		return bad("the shard index %d is outside 0..%d (indices are 0-based)", i, n-1)
	}
	return shard{i, n}, nil
}

// take reports whether the input at position pos of the sorted list belongs to s.
func (s shard) take(pos int) bool { return pos%s.Count == s.Index }

// String is the i/N form.
func (s shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }
