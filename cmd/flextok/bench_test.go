package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestBench: `flextok bench` measures both executors on the default model and reports
// positive figures (JSON), prints the side-by-side table, and rejects bad flags as usage.
func TestBench(t *testing.T) {
	needORT(t)
	out, err := run("bench", "--runs", "1", "--batch", "2", "--steps", "2", "--threads", "1", "--provider", "cpu", "--json")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Model != "flextok-sdk-shapes32" || rep.Steps != 2 || rep.Batch != 2 || len(rep.Results) != 3 {
		t.Fatalf("report %+v", rep)
	}
	for _, r := range rep.Results {
		// The step time is the difference of two timed decodes (clamped at 0): on a loaded
		// machine it can be 0, so only its sign is checked.
		if r.Error != "" || r.LoadSeconds <= 0 || r.EncodePerSec <= 0 || r.DecodePerSec <= 0 || r.StepMillis < 0 {
			t.Fatalf("%s: %+v", r.Backend, r)
		}
	}
	if _, err := os.Stat("/proc/self/clear_refs"); err == nil { // Linux: load memory is measured
		for _, r := range rep.Results {
			if r.LoadPeakRSS <= 0 || r.LoadRSS < 0 || (r.Backend != "ort") != (r.DecodeOnlyLoadSeconds > 0 && r.DecodeOnlyPeakRSS > 0) {
				t.Errorf("%s: load memory %+v", r.Backend, r)
			}
		}
	}
	if rep.WeightsMB < 8 || rep.WeightsMB > 9 { // the default model: 8.33 MB of f32 weights
		t.Errorf("f32 weights %v MB", rep.WeightsMB)
	}
	if rep.Results[1].Backend != "go-bf16" {
		t.Fatalf("second backend %q, want go-bf16", rep.Results[1].Backend)
	}
	out, err = run("bench", "--runs", "1", "--batch", "1", "--steps", "2", "--backends", "go")
	if err != nil || !strings.Contains(out, "decoder step") || !strings.Contains(out, "images/s") || strings.Contains(out, "go/ort") {
		t.Fatalf("%v: %s", err, out)
	}
	// go-bf16 with --exact cannot run (the reference is fp32): reported, go still runs.
	out, err = run("bench", "--runs", "1", "--batch", "1", "--steps", "1", "--backends", "go,go-bf16", "--exact")
	if err != nil || !strings.Contains(out, "go-bf16: not measured: --exact") {
		t.Fatalf("%v: %s", err, out)
	}
	for _, bad := range [][]string{{"--backends", "tpu"}, {"--batch", "0"}, {"--provider", "rocm"}, {"extra"}} {
		_, err := run(append([]string{"bench"}, bad...)...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("bench %v: %v, want a usage error", bad, err)
		}
	}
}

// TestBenchFailingBackend: a backend that cannot start (here ONNX Runtime asked for CUDA on a
// CPU-only build) is reported and the others still run; with no backend able to run, bench
// fails.
func TestBenchFailingBackend(t *testing.T) {
	needORT(t)
	out, err := run("bench", "--runs", "1", "--batch", "1", "--steps", "1", "--provider", "cuda", "--json")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Results) != 3 {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Results[2].Error == "" {
		t.Skip("CUDA is available here")
	}
	if rep.Results[0].Error != "" || rep.Results[0].EncodePerSec <= 0 || rep.Results[1].Error != "" || !strings.Contains(rep.Results[2].Error, "CUDA") {
		t.Fatalf("%+v", rep.Results)
	}
	out, err = run("bench", "--runs", "1", "--batch", "1", "--steps", "1", "--provider", "cuda")
	if err != nil || !strings.Contains(out, "ort: not measured") {
		t.Fatalf("%v: %s", err, out)
	}
	if _, err := run("bench", "--runs", "1", "--backends", "ort", "--provider", "cuda"); err == nil {
		t.Fatal("bench with no backend able to run succeeded")
	}
}

func TestSig3(t *testing.T) {
	for v, want := range map[float64]string{1063.7: "1064", 45.83: "45.8", 0.14712: "0.147", 5.55: "5.55", 0: "0"} {
		if got := sig3(v); got != want {
			t.Errorf("sig3(%v) = %s, want %s", v, got, want)
		}
	}
}

// TestBenchDriven: `flextok bench --driven` loads the backends, says so, then runs each op
// that stdin names once and prints its time; bad lines get an error line and the run goes on.
func TestBenchDriven(t *testing.T) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetIn(strings.NewReader("go tokenize\ngo-bf16 decode\n\ngo decode\nort decode\ngo dance\nnonsense\n"))
	root.SetArgs([]string{"bench", "--driven", "--backends", "go,go-bf16", "--steps", "2", "--threads", "1"})
	if err := root.Execute(); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	var lines []drivenLine
	dec := json.NewDecoder(&out)
	for dec.More() {
		var l drivenLine
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 7 || !lines[0].Ready || lines[0].Steps != 2 || lines[0].LoadS["go"] <= 0 || lines[0].LoadS["go-bf16"] <= 0 {
		t.Fatalf("lines %+v", lines)
	}
	for i, want := range []struct{ backend, op, err string }{
		{"go", "tokenize", ""}, {"go-bf16", "decode", ""}, {"go", "decode", ""},
		{"", "", "not loaded"}, {"go", "dance", "want one of tokenize, decode"}, {"", "", "want \"<backend> <op>\""},
	} {
		l := lines[i+1]
		if l.Backend != want.backend || l.Op != want.op || (want.err == "") != (l.Seconds > 0) || !strings.Contains(l.Error, want.err) {
			t.Errorf("line %d: %+v, want %+v", i+1, l, want)
		}
	}
}
