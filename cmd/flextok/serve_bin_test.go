//go:build unix

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flextok-sdk/flextok/sdk/webpkg"
)

// TestServeFromEmptyDir builds flextok and runs `flextok serve` as a user would, from an empty
// directory: it starts (no repo-relative default), serves the embedded samples and their
// images on 127.0.0.1, writes nothing there, and on SIGTERM drains (/readyz fails for
// --drain-delay) and exits 0. Bounded to 2 minutes.
func TestServeFromEmptyDir(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "flextok")
	if out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	empty := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, "serve", "--addr", "127.0.0.1:0", "--drain-delay", "1s")
	cmd.Dir = empty
	cache := t.TempDir() // where --web-package auto builds the browser package
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+cache)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "serving http://127.0.0.1:") {
		_ = cmd.Wait()
		t.Fatalf("first line %q (%v); stderr:\n%s", line, err, stderr.String())
	}
	base := strings.TrimSuffix(strings.TrimPrefix(line, "serving "), "\n")
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(base + "samples/")
	if err != nil {
		t.Fatal(err)
	}
	var list []sample
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil || len(list) != 8 || list[0].Name != "000_cross" {
		t.Fatalf("samples: %v %+v", err, list)
	}
	for _, u := range []string{list[0].URL, list[0].Image} {
		resp, err := client.Get(strings.TrimSuffix(base, "/") + u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", u, resp.StatusCode)
		}
	}
	// The token service answers beside the demo: ready, one model (the embedded one).
	for _, u := range []string{"readyz", "v1/models", "healthz"} {
		resp, err := client.Get(base + u)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("GET /%s: %d %v %v", u, resp.StatusCode, err, v)
		}
		if u == "v1/models" {
			if ms, _ := v["models"].([]any); len(ms) != 1 {
				t.Errorf("/v1/models: %v", v)
			}
		}
	}
	// The browser model package of the embedded model, built at start into the user cache.
	resp, err = client.Get(base + "v1/web-package/manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	man, err := webpkg.Parse(raw)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/web-package/manifest.json: %d %v", resp.StatusCode, err)
	}
	if ents, _ := filepath.Glob(filepath.Join(cache, "flextok", "web", "*", "manifest.json")); len(ents) != 1 {
		t.Errorf("the package is not in the user cache: %v", ents)
	}
	var demo struct {
		WebPackage string `json:"web_package"`
	}
	if resp, err := client.Get(base + "demo.json"); err != nil {
		t.Fatal(err)
	} else {
		err = json.NewDecoder(resp.Body).Decode(&demo)
		resp.Body.Close()
		if err != nil || demo.WebPackage != "/v1/web-package/manifest.json" {
			t.Errorf("demo.json: web_package %q (%v)", demo.WebPackage, err)
		}
	}
	c := man.Files[man.Graphs[webpkg.RoleDecoder].Data].Chunks[0]
	resp, err = client.Get(base + "v1/web-package/" + c.Name + "?sha256=" + c.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || n != c.Size || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("GET chunk %s: %d, %d bytes, %v", c.Name, resp.StatusCode, n, resp.Header)
	}
	// Without -m and --ar the embedded default AR model is paired with it: POST /v1/generate
	// streams.
	resp, err = client.Post(base+"v1/generate", "application/json", strings.NewReader(`{"class": "star", "k": 4, "seed": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	gen, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/vnd.flextok.stream+msgpack" || len(gen) < 4*6 {
		t.Errorf("POST /v1/generate: %d %q %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(gen))
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Draining: for --drain-delay, /readyz fails and new API work is refused, /healthz holds.
	drained := false
	for deadline := time.Now().Add(900 * time.Millisecond); time.Now().Before(deadline) && !drained; {
		resp, err := client.Get(base + "readyz")
		if err != nil {
			break
		}
		resp.Body.Close()
		drained = resp.StatusCode == http.StatusServiceUnavailable
	}
	if !drained {
		t.Error("/readyz did not fail after SIGTERM")
	} else if resp, err := client.Get(base + "healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/healthz while draining: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v; stderr:\n%s", err, stderr.String())
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("serve wrote into its working directory: %v", ents)
	}
}
