// Command loadtest measures `flextok serve` on loopback: it starts the binary (or uses a
// server already listening on 127.0.0.1), runs N concurrent clients for a fixed time over a
// mix of POST /v1/encode, /v1/decode and (with -generate and a server given --ar) /v1/generate,
// and reports latency percentiles, throughput, errors
// and the server's peak RSS; then it goes beyond capacity (many more clients than the
// server admits) and sends parallel decompression bombs, and checks that the server answers
// 429/413, stays up and keeps its memory bounded. Every loop is bounded in time and count;
// traffic goes to loopback only. `make loadtest` runs it fully, `make loadtest-smoke` for a
// few seconds (part of `make test`). docs/server.md has the figures.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flextok-sdk/flextok/web"
)

type config struct {
	bin, url         string
	serverArgs       string
	clients, over    int
	duration, overD  time.Duration
	encodeShare      float64
	genShare         float64
	genBody          string
	steps            int
	maxRequests      int64
	maxRSSMB         int64
	jsonOut          string
	bombs, bombRound int
}

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "bin/flextok", "flextok binary to start (ignored with -url)")
	flag.StringVar(&c.url, "url", "", "a server already listening on loopback (default: start -bin)")
	flag.StringVar(&c.serverArgs, "server-args", "--max-concurrent 1 --max-queue 4", "extra arguments of `flextok serve`")
	flag.IntVar(&c.clients, "c", 4, "concurrent clients of the measured phase (at most the server's work + queue slots: 0 errors expected)")
	flag.DurationVar(&c.duration, "d", 10*time.Second, "duration of the measured phase")
	flag.IntVar(&c.over, "over", 32, "concurrent clients of the beyond-capacity phase (0: skip it)")
	flag.DurationVar(&c.overD, "over-d", 0, "duration of the beyond-capacity phase (0: half of -d)")
	flag.Float64Var(&c.encodeShare, "encode", 0.5, "share of encode requests (the rest decode, or generate)")
	flag.Float64Var(&c.genShare, "generate", 0, "share of generate requests (the server needs --ar in -server-args)")
	flag.StringVar(&c.genBody, "gen-body", `{"class": 0, "k": 32, "cfg": 2, "seed": 1}`, "JSON body of the generate requests")
	flag.IntVar(&c.steps, "steps", 0, "decode steps (0: the payload's hint)")
	flag.Int64Var(&c.maxRequests, "max-requests", 1_000_000, "stop a phase after this many requests")
	flag.Int64Var(&c.maxRSSMB, "max-rss-mb", 1024, "fail if the server's peak RSS exceeds this (MB; 0: no check)")
	flag.IntVar(&c.bombs, "bombs", 8, "parallel uploads of a small PNG declaring 8000×6000 per round (0: skip)")
	flag.IntVar(&c.bombRound, "bomb-rounds", 5, "rounds of bombs")
	flag.StringVar(&c.jsonOut, "json", "", "also write the report as JSON to this file")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// phase is one phase's results.
type phase struct {
	Name        string         `json:"name"`
	Clients     int            `json:"clients"`
	Seconds     float64        `json:"seconds"`
	Requests    int64          `json:"requests"`
	OK          int64          `json:"ok"`
	Throughput  float64        `json:"ok_per_second"`
	P50, P95    float64        `json:"-"`
	P99         float64        `json:"-"`
	Latency     map[string]any `json:"latency_ms"`
	Statuses    map[string]int `json:"statuses"`
	Transport   int64          `json:"transport_errors"`
	PeakRSSMB   float64        `json:"server_peak_rss_mb"`
	EncodeCount int64          `json:"encodes"`
	DecodeCount int64          `json:"decodes"`
	GenCount    int64          `json:"generates"`
}

type report struct {
	Server      string   `json:"server_args"`
	IdleRSSMB   float64  `json:"server_idle_rss_mb"`
	Phases      []*phase `json:"phases"`
	HighWaterMB float64  `json:"server_vm_hwm_mb"`
	Alive       bool     `json:"alive_after"`
}

func run(c config) error {
	base := c.url
	var proc *os.Process
	if base == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		args := append([]string{"serve", "--addr", "127.0.0.1:0", "--samples", "none", "--log-format", "json"}, strings.Fields(c.serverArgs)...)
		cmd := exec.CommandContext(ctx, c.bin, args...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			return err
		}
		proc = cmd.Process
		defer func() {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
			}
		}()
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "serving ") {
			return fmt.Errorf("server did not start: %q %v", line, err)
		}
		base = strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(line, "serving ")), "/")
	}
	u, err := url.Parse(base)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s is not a loopback address: this tool sends traffic to loopback only", base)
	}
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0}}
	if err := waitReady(client, base); err != nil {
		return err
	}
	images, err := sampleImages()
	if err != nil {
		return err
	}
	var payloads [][]byte
	for _, im := range images {
		b, st, err := post(client, base+"/v1/encode", "image/png", im)
		if err != nil || st != 200 {
			return fmt.Errorf("encoding a sample: %d %v %s", st, err, b)
		}
		payloads = append(payloads, b)
	}
	rss := &rssWatch{pid: pid(proc)}
	rep := report{Server: c.serverArgs, IdleRSSMB: rss.now()}
	stop := rss.start()
	defer stop()
	decodeURL := base + "/v1/decode"
	if c.steps > 0 {
		decodeURL += "?steps=" + strconv.Itoa(c.steps)
	}
	mixed := func(i int64) (string, string, []byte, string) {
		// A fixed interleaving by share: request i encodes when its share's counter steps.
		switch r := float64(i % 100); {
		case r < c.encodeShare*100:
			return base + "/v1/encode", "image/png", images[i%int64(len(images))], "encode"
		case r < (c.encodeShare+c.genShare)*100:
			return base + "/v1/generate", "application/json", []byte(c.genBody), "generate"
		}
		return decodeURL, "application/vnd.msgpack", payloads[i%int64(len(payloads))], "decode"
	}
	p := load(client, "measured", c.clients, c.duration, c.maxRequests, mixed, rss)
	rep.Phases = append(rep.Phases, p)
	if c.over > 0 {
		d := c.overD
		if d == 0 {
			d = c.duration / 2
		}
		rep.Phases = append(rep.Phases, load(client, "beyond capacity", c.over, d, c.maxRequests, mixed, rss))
	}
	if c.bombs > 0 {
		bomb := bombPNG(8000, 6000)
		rounds := int64(c.bombRound)
		rep.Phases = append(rep.Phases, load(client, "pixel bombs", c.bombs, time.Minute, rounds*int64(c.bombs), func(int64) (string, string, []byte, string) {
			return base + "/v1/encode", "image/png", bomb, "encode"
		}, rss))
	}
	rep.Alive = waitReady(client, base) == nil
	rep.HighWaterMB = rss.hwm()
	printReport(&rep)
	if c.jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(c.jsonOut, append(b, '\n'), 0o666); err != nil {
			return err
		}
	}
	var fails []string
	if !rep.Alive {
		fails = append(fails, "the server is down after the test")
	}
	m := rep.Phases[0]
	if m.OK != m.Requests || m.Transport > 0 {
		fails = append(fails, fmt.Sprintf("%d of %d requests failed at the measured concurrency %d", m.Requests-m.OK, m.Requests, c.clients))
	}
	if m.OK == 0 {
		fails = append(fails, "no request succeeded")
	}
	for _, ph := range rep.Phases[1:] {
		for st := range ph.Statuses {
			if st != "200" && st != "429" && st != "413" {
				fails = append(fails, fmt.Sprintf("%s: status %s (want 200, 429 or 413)", ph.Name, st))
			}
		}
	}
	if peak := max(rep.HighWaterMB, rss.peak()); c.maxRSSMB > 0 && peak > float64(c.maxRSSMB) && rss.pid > 0 {
		fails = append(fails, fmt.Sprintf("peak RSS %.0f MB over %d MB", peak, c.maxRSSMB))
	}
	if len(fails) > 0 {
		return errors.New(strings.Join(fails, "; "))
	}
	return nil
}

func pid(p *os.Process) int {
	if p == nil {
		return 0
	}
	return p.Pid
}

func waitReady(client *http.Client, base string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := client.Get(base + "/readyz"); err == nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
			if r.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("the server is not ready")
}

func post(client *http.Client, u, ct string, body []byte) ([]byte, int, error) {
	r, err := client.Post(u, ct, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	return b, r.StatusCode, err
}

// load runs clients goroutines for d (and at most maxReq requests in all).
func load(client *http.Client, name string, clients int, d time.Duration, maxReq int64, next func(int64) (string, string, []byte, string), rss *rssWatch) *phase {
	p := &phase{Name: name, Clients: clients, Statuses: map[string]int{}}
	rss.resetPeak()
	var (
		mu   sync.Mutex
		lats []float64
		n    atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				i := n.Add(1)
				if i > maxReq {
					return
				}
				u, ct, body, kind := next(i)
				t0 := time.Now()
				b, st, err := post(client, u, ct, body)
				if err == nil && st == 200 && kind == "generate" && !streamOK(b) {
					st = 0 // a 200 whose stream ends in an error frame
				}
				lat := time.Since(t0).Seconds() * 1000
				mu.Lock()
				if err != nil {
					p.Transport++
				} else {
					p.Statuses[strconv.Itoa(st)]++
					if st == 200 {
						p.OK++
						lats = append(lats, lat)
					}
				}
				switch kind {
				case "encode":
					p.EncodeCount++
				case "generate":
					p.GenCount++
				default:
					p.DecodeCount++
				}
				mu.Unlock()
				if st == 429 {
					time.Sleep(5 * time.Millisecond) // a client that backs off a little
				}
			}
		}()
	}
	wg.Wait()
	p.Seconds = time.Since(start).Seconds()
	p.Requests = min(n.Load(), maxReq)
	if p.Requests > int64(p.Transport)+int64(sum(p.Statuses)) {
		p.Requests = int64(p.Transport) + int64(sum(p.Statuses))
	}
	p.Throughput = float64(p.OK) / p.Seconds
	slices.Sort(lats)
	p.P50, p.P95, p.P99 = pct(lats, 50), pct(lats, 95), pct(lats, 99)
	p.Latency = map[string]any{"p50": round(p.P50), "p95": round(p.P95), "p99": round(p.P99)}
	p.PeakRSSMB = rss.peak()
	return p
}

func sum(m map[string]int) int {
	s := 0
	for _, v := range m {
		s += v
	}
	return s
}

func round(x float64) float64 { return float64(int(x*10+0.5)) / 10 }

func pct(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * q / 100)
	return sorted[i]
}

func printReport(r *report) {
	fmt.Printf("server: flextok serve %s; idle RSS %.1f MB\n", r.Server, r.IdleRSSMB)
	fmt.Printf("%-16s %7s %6s %8s %8s %8s %8s %8s %8s  %s\n", "phase", "clients", "secs", "requests", "ok/s", "p50 ms", "p95 ms", "p99 ms", "peakRSS", "statuses")
	for _, p := range r.Phases {
		st := []string{}
		for k, v := range p.Statuses {
			st = append(st, fmt.Sprintf("%s:%d", k, v))
		}
		slices.Sort(st)
		if p.Transport > 0 {
			st = append(st, fmt.Sprintf("transport:%d", p.Transport))
		}
		fmt.Printf("%-16s %7d %6.1f %8d %8.1f %8.1f %8.1f %8.1f %6.1fMB  %s\n", p.Name, p.Clients, p.Seconds, p.Requests, p.Throughput, p.P50, p.P95, p.P99, p.PeakRSSMB, strings.Join(st, " "))
	}
	fmt.Printf("server VmHWM %.1f MB; alive after: %t\n", r.HighWaterMB, r.Alive)
}

// rssWatch samples the server's resident memory from /proc (Linux).
type rssWatch struct {
	pid int
	mu  sync.Mutex
	max float64
}

func (w *rssWatch) field(name string) float64 {
	if w.pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+":") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

func (w *rssWatch) now() float64 { return w.field("VmRSS") }
func (w *rssWatch) hwm() float64 { return w.field("VmHWM") }

func (w *rssWatch) start() func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				v := w.now()
				w.mu.Lock()
				w.max = max(w.max, v)
				w.mu.Unlock()
			}
		}
	}()
	return func() { close(done) }
}

func (w *rssWatch) resetPeak() { w.mu.Lock(); w.max = w.now(); w.mu.Unlock() }
func (w *rssWatch) peak() float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.max
}

// sampleImages are the embedded held-out shapes.
func sampleImages() ([][]byte, error) {
	fsys := web.Samples()
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, e := range ents {
		if path.Ext(e.Name()) == ".png" {
			b, err := fs.ReadFile(fsys, e.Name())
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no sample images")
	}
	return out, nil
}

// bombPNG is a small PNG whose header declares w×h pixels.
func bombPNG(w, h uint32) []byte {
	var buf bytes.Buffer
	png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1)))
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return append(b, make([]byte, 6000)...)
}

// streamOK reports whether a /v1/generate body is whole frames (4-byte big-endian length, then
// the message) whose last is not a JSON error frame (docs/server.md).
func streamOK(b []byte) bool {
	var last []byte
	for len(b) > 0 {
		if len(b) < 4 {
			return false
		}
		n := int(binary.BigEndian.Uint32(b))
		if len(b) < 4+n {
			return false
		}
		last, b = b[4:4+n], b[4+n:]
	}
	return len(last) > 0 && last[0] != '{'
}
