package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flextok-sdk/flextok/sdk/webpkg"
)

// WebPackagePrefix is the path under which the web package is served: manifest.json and every
// chunk by its name (docs/server.md, "Browser model package").
const WebPackagePrefix = "/v1/web-package/"

// MinChunkRate is the slowest transfer, in bytes per second, for which a chunk's response is
// given time (its write deadline: a minute plus its size at this rate, whatever the server's
// write timeout): 32 KiB/s, 17 minutes for a 32 MiB chunk.
const MinChunkRate = 32 << 10

// webPackageRoute is the route the API documents and the metrics label.
const webPackageRoute = WebPackagePrefix + "{file}"

// WebPackage is a browser model package on disk (docs/web-package.md), served read-only under
// WebPackagePrefix. Open it with OpenWebPackage.
type WebPackage struct {
	Manifest *webpkg.Manifest
	dir      string
	raw      []byte // manifest.json's bytes
	etag     string // of manifest.json
	chunks   map[string]webpkg.Chunk
	mod      time.Time
}

// OpenWebPackage opens the package in dir: it parses manifest.json and checks that every
// chunk is a regular file of the listed size; with verify it also checks every chunk's
// SHA-256 (reading the whole package once).
func OpenWebPackage(dir string, verify bool) (*WebPackage, error) {
	raw, err := os.ReadFile(filepath.Join(dir, webpkg.ManifestName))
	if err != nil {
		return nil, fmt.Errorf("flextok/server: web package: %w", err)
	}
	man, err := webpkg.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("flextok/server: web package %s: %w", dir, err)
	}
	sum := sha256.Sum256(raw)
	p := &WebPackage{Manifest: man, dir: dir, raw: raw, etag: `"` + hex.EncodeToString(sum[:]) + `"`, chunks: map[string]webpkg.Chunk{}}
	if st, err := os.Stat(filepath.Join(dir, webpkg.ManifestName)); err == nil {
		p.mod = st.ModTime()
	}
	for _, f := range man.Files {
		for _, c := range f.Chunks {
			path := filepath.Join(dir, c.Name)
			st, err := os.Stat(path)
			if err != nil {
				return nil, fmt.Errorf("flextok/server: web package %s: chunk %s: %w", dir, c.Name, err)
			}
			if !st.Mode().IsRegular() || st.Size() != c.Size {
				return nil, fmt.Errorf("flextok/server: web package %s: chunk %s: %d bytes, the manifest says %d", dir, c.Name, st.Size(), c.Size)
			}
			if verify {
				if err := checkChunk(path, c); err != nil {
					return nil, fmt.Errorf("flextok/server: web package %s: %w", dir, err)
				}
			}
			p.chunks[c.Name] = c
		}
	}
	return p, nil
}

func checkChunk(path string, c webpkg.Chunk) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("chunk %s: %w", c.Name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != c.SHA256 {
		return fmt.Errorf("chunk %s: sha256 %s, the manifest says %s", c.Name, got, c.SHA256)
	}
	return nil
}

// Dir is the package's directory.
func (p *WebPackage) Dir() string { return p.dir }

// webPackage serves GET and HEAD WebPackagePrefix+name: manifest.json (revalidated: no-cache
// with a strong ETag, the SHA-256 of its bytes) and the chunks (ETag: the chunk's SHA-256;
// immutable for a year when the URL's ?sha256= names that hash, which makes the URL content
// addressed; else no-cache). Ranges and conditional requests are http.ServeContent's.
func (s *Server) webPackage(w http.ResponseWriter, r *http.Request) *apiError {
	p := s.cfg.WebPackage
	name := strings.TrimPrefix(r.URL.Path, WebPackagePrefix)
	if p == nil {
		return errf(http.StatusNotFound, CodeNotFound, "no web package is served (flextok serve --web-package)")
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return errf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s %s: want GET or HEAD", r.Method, r.URL.Path)
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	if name == webpkg.ManifestName {
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", p.etag)
		http.ServeContent(w, r, name, p.mod, strings.NewReader(string(p.raw)))
		return nil
	}
	c, ok := p.chunks[name]
	if !ok {
		return errf(http.StatusNotFound, CodeNotFound, "the web package has no file %q (see %smanifest.json)", trunc(name), WebPackagePrefix)
	}
	if want := r.URL.Query().Get("sha256"); want != "" && want != c.SHA256 {
		return errf(http.StatusNotFound, CodeNotFound, "chunk %s has sha256 %s, not %s: the package changed, fetch the manifest again", c.Name, c.SHA256, trunc(want))
	} else if want != "" {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	// A chunk is up to tens of MB: the server's write timeout, sized for API responses, would
	// cut it off on a slow link. Its deadline allows MinChunkRate instead (and a minute).
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute + time.Duration(c.Size/MinChunkRate)*time.Second))
	f, err := os.Open(filepath.Join(p.dir, c.Name))
	if err != nil {
		return errf(http.StatusInternalServerError, CodeInternal, "chunk %s: %v", c.Name, errors.Unwrap(err))
	}
	defer f.Close()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+c.SHA256+`"`)
	http.ServeContent(w, r, "", time.Time{}, f)
	return nil
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
