package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"github.com/flextok-sdk/flextok/conformance/arfixture"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

var (
	arOnce sync.Map // width → *ar.Model
)

// testARWidth is a random-weight AR model made for the default tokenizer (vocabulary 64,000,
// its maximum token count), three named classes, of the given width.
func testARWidth(t testing.TB, dim int) *ar.Model {
	if m, ok := arOnce.Load(dim); ok {
		return m.(*ar.Model)
	}
	m, err := arfixture.RandomForDefault(arfixture.Shape{Dim: dim, Layers: 1, Heads: 2, KVHeads: 1, MultipleOf: 8},
		[]string{"cross", "star", "hexagon"}, 5)
	if err != nil {
		t.Fatal(err)
	}
	arOnce.Store(dim, m)
	return m
}

func testAR(t testing.TB) *ar.Model { return testARWidth(t, 8) }

// readFrames splits a generate response body into its frames.
func readFrames(t testing.TB, r io.Reader) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		var n [4]byte
		if _, err := io.ReadFull(r, n[:]); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("frame length: %v", err)
		}
		b := make([]byte, binary.BigEndian.Uint32(n[:]))
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatalf("frame: %v", err)
		}
		out = append(out, b)
	}
}

// TestGenerateStream: the frames of POST /v1/generate are, in order, n headers, n chunks per
// token (sample i's at i mod n), and n complete payloads; each sample's stream reassembles
// into the payload sdk/ar's Generate makes for the same request and seed, which is also the
// final frame.
func TestGenerateStream(t *testing.T) {
	s := newTest(t, Config{})
	ts := liveServer(t, s, 5*time.Second)
	defer ts.Close()
	g, err := ar.NewGenerator(testAR(t), ar.Options{Tokenizer: testEngine(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		body string
		req  ar.Request
	}{
		{`{"class": "star", "n": 3, "k": 32, "cfg": 2, "top_k": 50, "seed": 7}`, ar.Request{Classes: []int{1, 1, 1}, K: 32, Seed: 7, Sampling: ar.Sampling{CFG: 2, TopK: 50, Temperature: 1, TopP: 1}}},
		{`{"class": 2, "k": 5, "greedy": true, "temperature": 0.5, "top_p": 0.8, "model": "default"}`, ar.Request{Classes: []int{2}, K: 5, Sampling: ar.Sampling{CFG: 1, Temperature: 0.5, TopP: 0.8, Greedy: true}}},
	} {
		resp, err := http.Post(ts.URL+"/v1/generate", "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		frames := readFrames(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != StreamType {
			t.Fatalf("%s: %d %q", tc.body, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		n, k := len(tc.req.Classes), tc.req.K
		if got := resp.Header.Get("X-Flextok-Samples"); got != strconv.Itoa(n) {
			t.Fatalf("X-Flextok-Samples %q", got)
		}
		if !strings.Contains(tc.body, "seed") {
			seed, err := strconv.ParseUint(resp.Header.Get("X-Flextok-Seed"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			tc.req.Seed = seed
		}
		want, err := g.Generate(context.Background(), tc.req)
		if err != nil {
			t.Fatal(err)
		}
		if len(frames) != n+n*k+n {
			t.Fatalf("%d frames, want %d", len(frames), n+n*k+n)
		}
		for i := range n {
			var st payload.Stream
			if err := payload.DecodeHeader(frames[i], &st.Header, payload.Options{}); err != nil {
				t.Fatalf("header %d: %v", i, err)
			}
			for j := range k {
				var c payload.Chunk
				if err := payload.DecodeChunk(frames[n+j*n+i], &c, &st.Header, payload.Options{}); err != nil {
					t.Fatalf("sample %d chunk %d: %v", i, j, err)
				}
				if err := st.Add(c); err != nil {
					t.Fatal(err)
				}
			}
			if !st.Done() {
				t.Fatalf("sample %d: no end chunk", i)
			}
			p, err := st.Payload()
			if err != nil {
				t.Fatal(err)
			}
			got, _ := p.MarshalBinary()
			wb, _ := want[i].MarshalBinary()
			if !bytes.Equal(got, wb) {
				t.Fatalf("%s: sample %d reassembled differs from sdk/ar's payload\n got  %v\n want %v", tc.body, i, p.IDs, want[i].IDs)
			}
			if !bytes.Equal(frames[n+n*k+i], wb) {
				t.Fatalf("sample %d: final frame differs from sdk/ar's payload", i)
			}
		}
	}
	// /v1/models lists the AR model beside its tokenizer.
	rec := do(s, "GET", "/v1/models", "", nil, nil)
	var ms struct {
		Models []modelInfo `json:"models"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ms); err != nil {
		t.Fatal(err)
	}
	if m := ms.Models[0]; m.AR == nil || len(m.Classes) != 3 || m.Classes[1] != "star" || !strings.Contains(strings.Join(m.Operations, ","), "generate") {
		t.Fatalf("models[0]: %+v", m)
	}
	if m := ms.Models[1]; m.AR != nil || strings.Contains(strings.Join(m.Operations, ","), "generate") {
		t.Fatalf("models[1] generates: %+v", m)
	}
	// the tokens metric counts generate
	if !strings.Contains(do(s, "GET", "/metrics", "", nil, nil).Body.String(), `flextok_tokens_total{model="default",op="generate"} 101`) {
		t.Fatal("no generate tokens metric of 3 × 32 + 5")
	}
}

// TestGenerateTokenizerMismatch: New refuses an AR model made for another tokenizer.
func TestGenerateTokenizerMismatch(t *testing.T) {
	m := *testAR(t)
	c := *m.Cfg
	c.Tokenizer.Digest[0] ^= 1
	m.Cfg = &c
	_, err := New(Config{Models: []Model{{Name: "x", Exec: testEngine(t), AR: &m}}})
	if err == nil || !strings.Contains(err.Error(), "tokenizer") {
		t.Fatalf("mismatched AR model accepted: %v", err)
	}
}

// TestGenerateAbandoned: a client that drops the stream after the first frames ends the
// generation (at the next step) and leaks no goroutine; the work slot is free again.
func TestGenerateAbandoned(t *testing.T) {
	e := testEngine(t)
	s := newTest(t, Config{Models: []Model{{Name: "m", Exec: e, AR: testARWidth(t, 256)}}, MaxConcurrent: 1, MaxQueue: -1})
	ts := liveServer(t, s, 5*time.Second)
	defer ts.Close()
	client := &http.Client{}
	body := `{"class": 0, "n": 16, "k": 32, "cfg": 2, "seed": 1}`
	// warm-up
	resp, err := client.Post(ts.URL+"/v1/generate", "application/json", strings.NewReader(`{"class": 0, "k": 2}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	client.CloseIdleConnections()
	base := runtime.NumGoroutine()
	for range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/generate", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var hdr [4]byte
		if _, err := io.ReadFull(resp.Body, hdr[:]); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		cancel()
		resp.Body.Close()
		for deadline := time.Now().Add(10 * time.Second); s.adm.admitted.Load() > 0; {
			if time.Now().After(deadline) {
				t.Fatal("an abandoned generation still admitted after 10 s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	client.CloseIdleConnections()
	settle(t, base, 0)
	// the slot is free: a full request succeeds at once
	resp, err = http.Post(ts.URL+"/v1/generate", "application/json", strings.NewReader(`{"class": 1, "k": 3, "seed": 2}`))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("after abandoned streams: %d %s", resp.StatusCode, b)
	}
	frames := readFrames(t, resp.Body)
	resp.Body.Close()
	if len(frames) != 1+3+1 {
		t.Fatalf("after abandoned streams: %d, %d frames", resp.StatusCode, len(frames))
	}
	var tokens float64
	mb := do(s, "GET", "/metrics", "", nil, nil).Body.String()
	for _, line := range strings.Split(mb, "\n") {
		if strings.HasPrefix(line, `flextok_tokens_total{model="m",op="generate"}`) {
			f := strings.Fields(line)
			tokens, _ = strconv.ParseFloat(f[len(f)-1], 64)
		}
	}
	t.Logf("tokens generated in all: %v (2 + 3, and 3 abandoned streams of 16 × 32 = 512 each if they ran to the end)", tokens)
	if tokens < 5+3*16 || tokens >= 5+3*512 {
		t.Fatalf("%v tokens: the abandoned streams did not stop early", tokens)
	}
}

// stallExec runs the Go runner for the prefill and then blocks every step until its context
// ends: a generation that times out after its first token round.
type stallExec struct{ g *ar.Generator }

func (e stallExec) NewStepper(ctx context.Context, n int) (ar.Stepper, error) {
	return &stallStepper{ctx: ctx, r: e.g.NewRunner(ctx, n)}, nil
}

type stallStepper struct {
	ctx context.Context
	r   *ar.Runner
}

func (s *stallStepper) Prefill(classes []int) ([]float32, error) { return s.r.Prefill(classes) }
func (s *stallStepper) Step([]uint32) ([]float32, error) {
	<-s.ctx.Done()
	return nil, s.ctx.Err()
}

// TestGenerateErrorFrame: an error after the first byte (the request's time limit, here) ends
// the stream with a JSON error frame naming the limit, after the frames already sent.
func TestGenerateErrorFrame(t *testing.T) {
	m := testAR(t)
	g, err := ar.NewGenerator(m, ar.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := newTest(t, Config{Models: []Model{{Name: "m", Exec: testEngine(t), AR: m, AROptions: ar.Options{Executor: stallExec{g}}}},
		Limits: Limits{Timeout: 300 * time.Millisecond}})
	rec := do(s, "POST", "/v1/generate", "application/json", []byte(`{"class": 0, "n": 2, "k": 8}`), nil)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	frames := readFrames(t, rec.Body)
	if len(frames) != 2+2+1 { // 2 headers, token 0 of both samples, the error
		t.Fatalf("%d frames", len(frames))
	}
	last := frames[len(frames)-1]
	var eb apiErrorBody
	if last[0] != '{' || json.Unmarshal(last, &eb) != nil || eb.Error.Code != CodeCanceled || eb.Error.Limit != "request_timeout" {
		t.Fatalf("last frame %q", last)
	}
}

// FuzzGenerate fuzzes POST /v1/generate's query, content type and body: never a 5xx, every
// error before the first byte a JSON body with a code, every 200 whole frames (the last a
// payload or a JSON error frame).
func FuzzGenerate(f *testing.F) {
	for _, b := range []string{`{"class": "star", "n": 2, "k": 4, "cfg": 2, "top_k": 3, "top_p": 0.5, "seed": 1}`,
		`{"class": 1, "greedy": true, "k": 1}`, `{"class": -1}`, `{"class": 1e400}`, `{"class": "star", "n": 1e9}`,
		`{"class": 0, "temperature": "hot"}`, `[1, 2]`, `{"class": 0}{"class": 1}`, `{"class": 0, "k": 4, "top_p": 1e-300}`} {
		f.Add("application/json", "", []byte(b))
	}
	f.Add("text/plain", "model=second", []byte(`{"class": 0}`))
	s := newTest(f, Config{Limits: Limits{MaxN: 2, MaxGenTokens: 8, MaxBodyBytes: 1 << 16}})
	f.Fuzz(func(t *testing.T, ct, query string, body []byte) {
		req := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		req.URL.Path = "/v1/generate"
		req.URL.RawQuery = query
		req.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		switch {
		case rec.Code >= 500:
			t.Fatalf("%q %q %q: %d %s", ct, query, body, rec.Code, rec.Body)
		case rec.Code >= 400:
			var eb apiErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error.Code == "" {
				t.Fatalf("error body %q (%v)", rec.Body, err)
			}
		default:
			frames := readFrames(t, rec.Body)
			if len(frames) == 0 {
				t.Fatal("a 200 without frames")
			}
			if last := frames[len(frames)-1]; last[0] == '{' {
				t.Fatalf("error frame %s", last)
			}
		}
	})
}
