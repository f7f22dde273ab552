package main

import (
	"strings"
	"testing"
)

func TestParseShard(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	for _, c := range []struct {
		spec string
		env  map[string]string
		want shard
	}{
		{"", nil, allShards},
		{"0/1", nil, shard{0, 1}},
		{"2/3", nil, shard{2, 3}},
		{" 1 / 4 ", nil, shard{1, 4}},
		{"auto/4", map[string]string{"JOB_COMPLETION_INDEX": "3"}, shard{3, 4}},
		{"auto/4", map[string]string{"SLURM_ARRAY_TASK_ID": "0"}, shard{0, 4}},
		{"auto/4", map[string]string{"JOB_COMPLETION_INDEX": "1", "SLURM_ARRAY_TASK_ID": "2"}, shard{1, 4}},
	} {
		got, err := parseShard(c.spec, env(c.env))
		if err != nil || got != c.want {
			t.Errorf("%q %v: %v, %v; want %v", c.spec, c.env, got, err, c.want)
		}
	}
	for _, c := range []struct {
		spec string
		env  map[string]string
		want string
	}{
		{"3/2", nil, "outside 0..1"},
		{"2/2", nil, "outside 0..1"},
		{"-1/2", nil, "outside 0..1"},
		{"a/b", nil, `shard count "b" is not an integer`},
		{"a/2", nil, `shard index "a" is not an integer`},
		{"1/0", nil, "at least 1, got 0"},
		{"1/-3", nil, "at least 1, got -3"},
		{"1", nil, "want i/N"},
		{"auto/4", nil, "JOB_COMPLETION_INDEX"},
		{"auto/4", map[string]string{"JOB_COMPLETION_INDEX": "x"}, `JOB_COMPLETION_INDEX="x" is not an integer`},
		{"auto/4", map[string]string{"SLURM_ARRAY_TASK_ID": "4"}, "SLURM_ARRAY_TASK_ID=4 is outside 0..3 (run the array as --array=0-3)"},
	} {
		_, err := parseShard(c.spec, env(c.env))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "--shard") {
			t.Errorf("%q %v: err = %v, want it to say %q", c.spec, c.env, err, c.want)
		}
		if _, ok := err.(usageError); !ok {
			t.Errorf("%q: %T is not a usage error", c.spec, err)
		}
	}
}

// TestShardTake: across N shards every position is taken exactly once.
func TestShardTake(t *testing.T) {
	for n := 1; n <= 7; n++ {
		for pos := 0; pos < 50; pos++ {
			takers := 0
			for i := 0; i < n; i++ {
				if (shard{i, n}).take(pos) {
					takers++
				}
			}
			if takers != 1 {
				t.Fatalf("N=%d position %d taken by %d shards", n, pos, takers)
			}
		}
	}
}
