package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/nn"
)

// batchBodies are concurrent generate requests of different n, k and sampling options.
var batchBodies = []string{
	`{"class": "star", "n": 3, "k": 32, "cfg": 2, "top_k": 50, "seed": 7}`,
	`{"class": 2, "k": 5, "greedy": true, "temperature": 0.5, "top_p": 0.8}`,
	`{"class": 0, "n": 2, "k": 17, "cfg": 3, "top_p": 0.9, "seed": 11}`,
	`{"class": "cross", "n": 4, "k": 32, "seed": 3}`,
	`{"class": 1, "k": 1, "cfg": 1.5, "seed": 9}`,
	`{"class": 1, "n": 2, "k": 24, "cfg": 4, "temperature": 1.3, "top_k": 5, "seed": 12}`,
}

// TestGenerateBatched: concurrent requests served by the continuous batch (one of them
// abandoned by its client mid-way) get byte-identical streams to the one-at-a-time server's and
// to sdk/ar's Generate alone, with the same seed; the batch really ran several requests at
// once; afterwards no goroutine is left, nothing is admitted and the batch gauge is 0.
func TestGenerateBatched(t *testing.T) {
	e := testEngine(t)
	m := testARWidth(t, 64)
	o := ar.Options{Exec: nn.Options{Fast: true, Threads: 2}}
	g, err := ar.NewGenerator(m, ar.Options{Exec: o.Exec, Tokenizer: e})
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string][][]byte{}
	for _, mode := range []string{"off", "on"} {
		s := newTest(t, Config{Models: []Model{{Name: "m", Exec: e, AR: m, AROptions: o}}, ARBatching: mode, MaxConcurrent: 1, MaxQueue: 16})
		if (s.batchers["m"] != nil) != (mode == "on") {
			t.Fatalf("ARBatching %s: batcher %v", mode, s.batchers["m"])
		}
		ts := liveServerWrite(t, s, 5*time.Second, 10*time.Minute)
		client := &http.Client{}
		base := runtime.NumGoroutine()
		out := make([][]byte, len(batchBodies))
		var wg sync.WaitGroup
		for i, body := range append(batchBodies, "abandon") {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if body == "abandon" { // reads a few frames, then goes away
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/generate", strings.NewReader(`{"class": 0, "n": 8, "k": 32, "cfg": 2}`))
					resp, err := client.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					var b [64]byte
					io.ReadFull(resp.Body, b[:])
					cancel()
					resp.Body.Close()
					return
				}
				resp, err := client.Post(ts.URL+"/v1/generate", "application/json", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("%s: %d", body, resp.StatusCode)
				}
				out[i], _ = io.ReadAll(resp.Body)
			}()
		}
		wg.Wait()
		for deadline := time.Now().Add(10 * time.Second); s.adm.admitted.Load() > 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("a generation still admitted after 10 s")
			}
		}
		client.CloseIdleConnections()
		ts.Close()
		settle(t, base, 0)
		bodies[mode] = out
		if b := s.batchers["m"]; b != nil {
			if b.peak.Load() < 2 {
				t.Errorf("the batch never ran two requests together (peak %d)", b.peak.Load())
			}
			t.Logf("peak batch: %d requests", b.peak.Load())
			if mb := do(s, "GET", "/metrics", "", nil, nil).Body.String(); !strings.Contains(mb, `flextok_generate_batch_rows{model="m"} 0`) {
				t.Error("batch rows gauge not back to 0")
			}
		}
	}
	for i, body := range batchBodies {
		if !bytes.Equal(bodies["on"][i], bodies["off"][i]) {
			t.Errorf("%s: batched stream differs from one-at-a-time", body)
		}
		var req generateRequest
		json.Unmarshal([]byte(body), &req)
		frames := readFrames(t, bytes.NewReader(bodies["on"][i]))
		n := 1
		if req.N != nil {
			n = *req.N
		}
		s := newTest(t, Config{Models: []Model{{Name: "m", Exec: e, AR: m, AROptions: o}}})
		areq, ae := s.generateParams(&req, g)
		if ae != nil {
			t.Fatal(ae)
		}
		want, err := g.Generate(context.Background(), areq)
		if err != nil {
			t.Fatal(err)
		}
		for j, p := range want {
			wb, _ := p.MarshalBinary()
			if len(frames) < n || !bytes.Equal(frames[len(frames)-n+j], wb) {
				t.Errorf("%s: sample %d differs from sdk/ar's Generate alone", body, j)
			}
		}
	}
}

// TestGenerateBatchedTimeout: a batched request whose time limit passes mid-way ends its stream
// with the JSON error frame naming request_timeout, and leaves the batch.
func TestGenerateBatchedTimeout(t *testing.T) {
	s := newTest(t, Config{Models: []Model{{Name: "m", Exec: testEngine(t), AR: testARWidth(t, 256)}}, ARBatching: "on",
		Limits: Limits{Timeout: 300 * time.Millisecond}})
	rec := do(s, "POST", "/v1/generate", "application/json", []byte(`{"class": 0, "n": 16, "k": 32, "cfg": 2}`), nil)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	frames := readFrames(t, rec.Body)
	last := frames[len(frames)-1]
	var eb apiErrorBody
	if last[0] != '{' || json.Unmarshal(last, &eb) != nil || eb.Error.Code != CodeCanceled || eb.Error.Limit != "request_timeout" {
		t.Fatalf("%d frames, last %q", len(frames), last[:min(len(last), 80)])
	}
	if s.adm.admitted.Load() != 0 {
		t.Fatal("still admitted")
	}
}

// TestARBatchingConfig: "on" with an executor that cannot batch (ONNX Runtime's) is refused;
// the default leaves it one request at a time; an unknown value is refused.
func TestARBatchingConfig(t *testing.T) {
	e, m := testEngine(t), testAR(t)
	g, _ := ar.NewGenerator(m, ar.Options{})
	other := ar.Options{Executor: stallExec{g}}
	if _, err := New(Config{Models: []Model{{Name: "m", Exec: e, AR: m, AROptions: other}}, ARBatching: "on"}); err == nil || !strings.Contains(err.Error(), "Go executor") {
		t.Fatalf("on with another executor: %v", err)
	}
	s, err := New(Config{Models: []Model{{Name: "m", Exec: e, AR: m, AROptions: other}}})
	if err != nil || s.batchers["m"] != nil {
		t.Fatalf("default with another executor: %v %v", err, s.batchers)
	}
	if s, err := New(Config{Models: []Model{{Name: "m", Exec: e, AR: m}}}); err != nil || (s.batchers["m"] != nil) != DefaultARBatching {
		t.Fatalf("default: %v", err)
	}
	if _, err := New(Config{Models: []Model{{Name: "m", Exec: e, AR: m}}, ARBatching: "yes"}); err == nil {
		t.Fatal("yes accepted")
	}
}
