package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// liveServer serves s on 127.0.0.1 with the read timeout given, like `flextok serve`.
func liveServer(t *testing.T, s *Server, read time.Duration) *httptest.Server {
	return liveServerWrite(t, s, read, 30*time.Second)
}

// liveServerWrite is liveServer with another write timeout (a test whose queued streams may
// take minutes under -race on a loaded machine).
func liveServerWrite(t *testing.T, s *Server, read, write time.Duration) *httptest.Server {
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Config.ReadHeaderTimeout = read
	ts.Config.ReadTimeout = read
	ts.Config.WriteTimeout = write
	ts.Start()
	return ts
}

// settle waits (bounded) for the goroutine count to come back to at most base+slack.
func settle(t *testing.T, base, slack int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	n := runtime.NumGoroutine()
	for n > base+slack && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	if n > base+slack {
		buf := make([]byte, 1<<16)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("goroutines: %d before, %d after\n%s", base, n, buf)
	}
}

// TestHostileClients: slow bodies, abandoned requests, lies in Content-Length and parallel
// decompression bombs get a 4xx or a closed connection, leak no goroutine and keep memory
// bounded.
func TestHostileClients(t *testing.T) {
	s := newTest(t, Config{MaxConcurrent: 1, MaxQueue: 2})
	ts := liveServer(t, s, 300*time.Millisecond)
	defer ts.Close()
	addr := strings.TrimPrefix(ts.URL, "http://")
	// Warm up (the engine's pools, the client's transport) before counting goroutines.
	client := &http.Client{Timeout: 10 * time.Second}
	if r, err := client.Post(ts.URL+"/v1/encode", "image/png", bytes.NewReader(samplePNG(t))); err != nil || r.StatusCode != 200 {
		t.Fatalf("warm-up: %v %v", r, err)
	} else {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	client.CloseIdleConnections()
	base := runtime.NumGoroutine()

	t.Run("slow body", func(t *testing.T) {
		// Headers, then a body that never comes: the read timeout ends it.
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /v1/encode HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
		c.Write(samplePNG(t)[:100])
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			defer resp.Body.Close()
			if resp.StatusCode != 408 && resp.StatusCode != 400 {
				t.Fatalf("slow body: %d", resp.StatusCode)
			}
		} // else the connection was closed: also fine
	})
	t.Run("slow headers", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /v1/encode HTTP/1.1\r\nHost: x\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err != nil && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("slow headers: the server did not close the connection: %v", err)
		}
	})
	t.Run("short body", func(t *testing.T) {
		// Content-Length says more than is sent, then the client half-closes.
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /v1/decode HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.msgpack\r\nContent-Length: 5000\r\n\r\n\x82\xa6format")
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Fatalf("short body: %d", resp.StatusCode)
			}
		}
	})
	t.Run("abandoned", func(t *testing.T) {
		// Clients that cancel while their requests wait or run.
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+i)*time.Millisecond)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/decode?steps=50", bytes.NewReader(samplePayload(t)))
				req.Header.Set("Content-Type", MsgpackType)
				if r, err := http.DefaultClient.Do(req); err == nil {
					io.Copy(io.Discard, r.Body)
					r.Body.Close()
				}
			}()
		}
		wg.Wait()
	})
	t.Run("bombs in parallel", func(t *testing.T) {
		// The case: eight parallel uploads of a small PNG declaring 8000×6000.
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		bomb := bombPNG(8000, 6000)
		var wg sync.WaitGroup
		codes := make([]int, 8)
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := client.Post(ts.URL+"/v1/encode", "image/png", bytes.NewReader(bomb))
				if err != nil {
					return
				}
				var eb apiErrorBody
				json.NewDecoder(r.Body).Decode(&eb)
				r.Body.Close()
				codes[i] = r.StatusCode
			}()
		}
		wg.Wait()
		runtime.ReadMemStats(&after)
		for _, c := range codes {
			if c != 413 && c != 429 {
				t.Fatalf("bomb: status %d, want 413 (max_pixels) or 429", c)
			}
		}
		// 8000×6000 RGBA would be 192 MB each; the header check refuses them first.
		if grown := int64(after.TotalAlloc - before.TotalAlloc); grown > 64<<20 {
			t.Fatalf("eight bombs allocated %d MB", grown>>20)
		}
	})
	client.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	settle(t, base, 2)
	// The server still works.
	r, err := client.Post(ts.URL+"/v1/encode", "image/png", bytes.NewReader(samplePNG(t)))
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("after the hostile clients: %v %v", r, err)
	}
	r.Body.Close()
}

// FuzzRequest fuzzes the request parsing of both POST routes: any content type, query and
// body gets a response with a status below 500 (or 200) and, for an error, a JSON body with a
// code; never a panic.
func FuzzRequest(f *testing.F) {
	png := samplePNG(f)
	pl := samplePayload(f)
	_, mp := multipartBodyBoundary(map[string]string{"k": "3"}, png)
	seeds := []struct {
		path, ct, query string
		body            []byte
	}{
		{"/v1/encode", "image/png", "k=4", png},
		{"/v1/encode", "multipart/form-data; boundary=" + testBoundary, "", mp},
		{"/v1/encode", "image/png", "", bombPNG(8000, 6000)},
		{"/v1/encode", "text/plain", "size=32", []byte("x")},
		{"/v1/decode", MsgpackType, "steps=1&k=4", pl},
		{"/v1/decode", MsgpackType, "steps=1", pl[:len(pl)-3]},
		{"/v1/decode", "application/x-msgpack", "guidance=1e309", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
	}
	for _, s := range seeds {
		f.Add(s.path == "/v1/decode", s.ct, s.query, s.body)
	}
	s := newTest(f, Config{Limits: Limits{MaxBodyBytes: 1 << 20, MaxPixels: 1 << 16, MaxSteps: 2, MaxSize: 64}})
	f.Fuzz(func(t *testing.T, decode bool, ct, query string, body []byte) {
		path := "/v1/encode"
		if decode {
			path = "/v1/decode"
		}
		req := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		req.URL.Path = path
		req.URL.RawQuery = query
		req.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q %q: %d %s", path, ct, query, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var eb apiErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error.Code == "" {
				t.Fatalf("error body %q (%v)", rec.Body, err)
			}
		}
	})
}
