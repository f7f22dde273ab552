package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/sdk/engine"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/web"
)

// msgpackType is the registered media type of payloads (docs/payload.md).
const msgpackType = "application/vnd.msgpack"

// contentTypes fixes the types of the demo's files, so that they do not depend on the host's
// mime tables (a .wasm must be application/wasm for streaming compilation, a module script
// must be JavaScript).
var contentTypes = map[string]string{
	".html":    "text/html; charset=utf-8",
	".js":      "text/javascript; charset=utf-8",
	".mjs":     "text/javascript; charset=utf-8",
	".css":     "text/css; charset=utf-8",
	".json":    "application/json",
	".wasm":    "application/wasm",
	".png":     "image/png",
	".svg":     "image/svg+xml",
	".ico":     "image/x-icon",
	".msgpack": msgpackType,
	".map":     "application/json",
	".ts":      "text/plain; charset=utf-8",
}

// csp allows the page's own scripts, the module worker and wasm compilation, and nothing
// inline: no eval, no blob: workers (bindings/README.md).
const csp = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; " +
	"connect-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"

// modelFiles are the files of the -m model the page may download, by URL name.
var modelFiles = []string{"model.safetensors", "config.json", "vae/config.json"}

// serveConfig is what the server needs; newServer builds the handler from it.
type serveConfig struct {
	engine    engine.Executor   // go or ort; nil: no samples, no /model/, no /encode
	modelName string            // the name payloads carry (engine.Load's rule)
	files     map[string]string // URL name → path on disk, of the files that exist
	samples   []sample
	maxUpload int64
	static    fs.FS
	missing   []string // required static files that are not embedded
	log       *slog.Logger
}

type sample struct {
	Name      string `json:"name"`
	URL       string `json:"url"`   // the payload
	Image     string `json:"image"` // the image it was encoded from, as the file holds it
	Bytes     int    `json:"bytes"`
	Count     int    `json:"count"`
	payload   []byte
	image     []byte
	imageType string
}

// demoInfo is GET /demo.json: what the page needs to start.
type demoInfo struct {
	Model   *demoModel `json:"model"`   // null: open the module's default model
	Samples string     `json:"samples"` // URL of the sample list
	Encode  bool       `json:"encode"`  // POST /encode is available
	Assets  bool       `json:"assets"`  // the wasm module and its scripts are embedded
	Missing []string   `json:"missing,omitempty"`
}

type demoModel struct {
	Name      string `json:"name"`
	Weights   string `json:"weights"`
	Config    string `json:"config,omitempty"`
	VAEConfig string `json:"vae_config,omitempty"`
	Height    int    `json:"height"`
	Width     int    `json:"width"`
	MaxTokens int    `json:"max_tokens"`
}

func newServe() *cobra.Command {
	var (
		ef        engineFlags
		bf        backendFlags
		addr      string
		samples   string
		maxUpload int64
	)
	cmd := &cobra.Command{
		Use:   "serve [--addr HOST:PORT] [-m MODEL]",
		Short: "Serve the progressive-decoding demo page (and sample payloads)",
		Long: "Serve the demo page, the @flextok/sdk browser modules and flextok.wasm (embedded by\n" +
			"`make demo`), the -m model's files under /model/ for the page to load, sample images\n" +
			"encoded with the model at start-up under /samples/ (the page shows each beside its\n" +
			"reconstructions), POST /encode (an image body → payload) and /healthz. Without -m the\n" +
			"page opens the module's default model. The samples are eight held-out shapes embedded\n" +
			"in the binary, so serve runs from any directory; --samples DIR encodes DIR's images\n" +
			"instead, --samples none serves none. Stops gracefully on SIGINT or SIGTERM.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return usageError{errors.New("serve takes no arguments")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			// One signal context from the start: a SIGTERM while the samples are encoded must
			// stop the server as cleanly as one while it serves.
			ctx, stop := signalContext()
			defer stop()
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			cfg := serveConfig{maxUpload: maxUpload, static: web.Static(), missing: web.Missing(), log: log}
			if len(cfg.missing) > 0 {
				log.Warn("the demo's wasm assets are not embedded in this binary: build it with `make demo`", "missing", strings.Join(cfg.missing, ","))
			}
			// Without -m the engine is the embedded default model: it encodes the samples, and
			// the page opens the same model embedded in the wasm module (no /model/ files).
			// --backend ort encodes (samples, POST /encode) in ONNX Runtime; the page decodes
			// in the browser either way.
			if err := checkBackendFlags(cmd, bf.backend, bf.provider); err != nil {
				return err
			}
			e, err := openBackend(&bf, &ef, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer e.Close()
			cfg.engine = e
			cfg.modelName = e.Identity().Name
			if ef.model != "" {
				cfg.files = modelFilePaths(ef.model)
			}
			var sampleFS fs.FS
			switch samples {
			case "":
				sampleFS = web.Samples()
			case "none":
			default:
				if st, err := os.Stat(samples); err != nil {
					return usageError{fmt.Errorf("--samples: %w", err)}
				} else if !st.IsDir() {
					return usageError{fmt.Errorf("--samples %s is not a directory", samples)}
				}
				sampleFS = os.DirFS(samples)
			}
			if cfg.samples, err = encodeSamples(ctx, e, sampleFS); err != nil {
				return err
			}
			log.Info("model", "name", cfg.modelName, "samples", len(cfg.samples), "files", len(cfg.files))
			return runServer(ctx, addr, newServer(cfg), cmd.OutOrStdout(), log)
		},
	}
	ef.register(cmd)
	bf.register(cmd)
	cmd.Flags().Lookup("model").Usage = "model directory or model.safetensors (default: the module's embedded model, in the page)"
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "listen address (port 0: any free port; the URL is printed)")
	cmd.Flags().StringVar(&samples, "samples", "", "directory of images to encode as sample payloads (default: eight held-out shapes embedded in the binary; none: no samples)")
	cmd.Flags().Int64Var(&maxUpload, "max-upload", 8<<20, "largest POST /encode body in bytes")
	return cmd
}

// modelFilePaths maps the URL names of the model's files to the files that exist: -m is a
// directory (model.safetensors, config.json, vae/config.json inside) or a model.safetensors
// (its directory holds the configs).
func modelFilePaths(m string) map[string]string {
	dir, weights := m, filepath.Join(m, "model.safetensors")
	if st, err := os.Stat(m); err == nil && !st.IsDir() {
		dir, weights = filepath.Dir(m), m
	}
	out := map[string]string{}
	for _, name := range modelFiles {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if name == "model.safetensors" {
			p = weights
		}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			out[name] = p
		}
	}
	return out
}

// encodeSamples encodes the images at the top of fsys (in name order) into payloads, in
// memory; nil fsys: no samples.
func encodeSamples(ctx context.Context, e engine.Executor, fsys fs.FS) ([]sample, error) {
	if fsys == nil {
		return nil, nil
	}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("samples: %w", err)
	}
	var out []sample
	for _, ent := range entries {
		if ent.IsDir() || !imageExts[strings.ToLower(path.Ext(ent.Name()))] {
			continue
		}
		sm, err := encodeSample(ctx, e, fsys, ent.Name())
		if err != nil {
			return nil, about("sample", ent.Name(), err)
		}
		out = append(out, sm)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func encodeSample(ctx context.Context, e engine.Executor, fsys fs.FS, file string) (sample, error) {
	data, err := fs.ReadFile(fsys, file)
	if err != nil {
		return sample{}, err
	}
	img, info, err := ftimage.DecodeBytes(data, ftimage.DecodeOptions{})
	if err != nil {
		return sample{}, err
	}
	pl, err := e.Encode(ctx, img, engine.EncodeOptions{})
	if err != nil {
		return sample{}, err
	}
	b, err := pl.MarshalBinary()
	if err != nil {
		return sample{}, err
	}
	ext := strings.ToLower(path.Ext(file))
	name := strings.TrimSuffix(file, path.Ext(file))
	return sample{Name: name, URL: "/samples/" + name + ".msgpack", Image: "/samples/" + name + ext,
		Bytes: len(b), Count: e.MaxTokens(), payload: b, image: data, imageType: "image/" + info.Format}, nil
}

// runServer listens on addr, prints the URL, and serves h until SIGINT or SIGTERM, then
// shuts down gracefully (in-flight requests get 10 s).
func runServer(ctx context.Context, addr string, h http.Handler, out io.Writer, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(out, "serving http://%s/\n", ln.Addr())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// newServer returns the demo's handler.
func newServer(cfg serveConfig) http.Handler {
	if cfg.log == nil {
		cfg.log = slog.New(slog.DiscardHandler)
	}
	if cfg.maxUpload <= 0 {
		cfg.maxUpload = 8 << 20
	}
	s := &server{cfg: cfg, bySample: map[string]*sample{}}
	for i := range cfg.samples {
		s.bySample[cfg.samples[i].Name] = &cfg.samples[i]
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /demo.json", s.demo)
	mux.HandleFunc("GET /model/{file...}", s.model)
	mux.HandleFunc("GET /samples/{$}", s.sampleList)
	mux.HandleFunc("GET /samples/{name}", s.sample)
	mux.HandleFunc("POST /encode", s.encode)
	mux.HandleFunc("GET /", s.static)
	return securityHeaders(mux)
}

type server struct {
	cfg      serveConfig
	bySample map[string]*sample
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// httpError writes a one-line text error.
func httpError(w http.ResponseWriter, code int, format string, a ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintf(w, "flextok: "+format+"\n", a...)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(append(b, '\n'))
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{"status": "ok", "model": s.cfg.modelName, "samples": len(s.cfg.samples), "assets": len(s.cfg.missing) == 0})
}

func (s *server) demo(w http.ResponseWriter, r *http.Request) {
	d := demoInfo{Samples: "/samples/", Encode: s.cfg.engine != nil, Assets: len(s.cfg.missing) == 0, Missing: s.cfg.missing}
	// Model stays null without model files (no -m): the page then opens the default model
	// embedded in the wasm module, the same one the server's engine encoded the samples with.
	if e := s.cfg.engine; e != nil && len(s.cfg.files) > 0 {
		h, wd := e.ImageSize()
		// The weights' digest in the query keys the page's Cache API entries (loadModel caches
		// by URL): other weights behind the same path are downloaded again.
		id := e.Identity()
		v := "?v=" + hex.EncodeToString(id.Digest[:8])
		m := &demoModel{Name: s.cfg.modelName, Weights: "/model/model.safetensors" + v, Height: h, Width: wd, MaxTokens: e.MaxTokens()}
		if _, ok := s.cfg.files["config.json"]; ok {
			m.Config = "/model/config.json" + v
		}
		if _, ok := s.cfg.files["vae/config.json"]; ok {
			m.VAEConfig = "/model/vae/config.json" + v
		}
		d.Model = m
	}
	writeJSON(w, d)
}

func (s *server) model(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if s.cfg.engine == nil {
		httpError(w, http.StatusNotFound, "no model is served: start `flextok serve -m MODEL` (without it the page opens the wasm module's embedded default model)")
		return
	}
	p, ok := s.cfg.files[name]
	if !ok {
		httpError(w, http.StatusNotFound, "the model has no file %q (served: %s)", name, strings.Join(modelFiles, ", "))
		return
	}
	f, err := os.Open(p)
	if err != nil {
		httpError(w, http.StatusNotFound, "%s: %v", name, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "%s: %v", name, err)
		return
	}
	if strings.HasSuffix(name, ".json") {
		w.Header().Set("Content-Type", "application/json")
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, path.Base(name), st.ModTime(), f)
}

func (s *server) sampleList(w http.ResponseWriter, r *http.Request) {
	list := s.cfg.samples
	if list == nil {
		list = []sample{}
	}
	writeJSON(w, list)
}

func (s *server) sample(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ext := path.Ext(name)
	if ext != ".msgpack" && !imageExts[strings.ToLower(ext)] {
		ext = "" // a bare name is the payload
	}
	name = strings.TrimSuffix(name, ext)
	sm, ok := s.bySample[name]
	if ok && ext != "" && ext != ".msgpack" {
		if "/samples/"+name+strings.ToLower(ext) != sm.Image {
			httpError(w, http.StatusNotFound, "sample %q is %s", name, sm.Image)
			return
		}
		w.Header().Set("Content-Type", sm.imageType)
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(sm.image))
		return
	}
	if !ok {
		if s.cfg.engine == nil {
			httpError(w, http.StatusNotFound, "no samples: start `flextok serve -m MODEL` to encode them")
		} else {
			httpError(w, http.StatusNotFound, "no sample %q (see /samples/)", name)
		}
		return
	}
	w.Header().Set("Content-Type", msgpackType)
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(sm.payload))
}

// encode is POST /encode: the request body is one image file (PNG, JPEG, GIF, WebP, BMP,
// TIFF; at most --max-upload bytes); the response is its payload. ?k=N keeps N tokens.
func (s *server) encode(w http.ResponseWriter, r *http.Request) {
	if s.cfg.engine == nil {
		httpError(w, http.StatusServiceUnavailable, "no model to encode with: start `flextok serve -m MODEL`")
		return
	}
	var o engine.EncodeOptions
	if k := r.URL.Query().Get("k"); k != "" {
		if _, err := fmt.Sscan(k, &o.K); err != nil || o.K < 0 || o.K > s.cfg.engine.MaxTokens() {
			httpError(w, http.StatusBadRequest, "k must be 0..%d", s.cfg.engine.MaxTokens())
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.maxUpload))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httpError(w, http.StatusRequestEntityTooLarge, "the image is over %d bytes", mbe.Limit)
			return
		}
		httpError(w, http.StatusBadRequest, "reading the image: %v", err)
		return
	}
	img, _, err := ftimage.Decode(bytes.NewReader(body), ftimage.DecodeOptions{MaxBytes: s.cfg.maxUpload})
	if err != nil {
		httpError(w, http.StatusUnprocessableEntity, "%v", err)
		return
	}
	p, err := s.cfg.engine.Encode(r.Context(), img, o)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "encode: %v", err)
		return
	}
	b, err := p.MarshalBinary()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "encode: %v", err)
		return
	}
	w.Header().Set("Content-Type", msgpackType)
	w.Header().Set("Content-Disposition", `attachment; filename="upload.msgpack"`)
	w.Write(b)
}

// static serves the embedded page and modules with fixed content types.
func (s *server) static(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	if name == "" {
		name = "index.html"
	}
	f, err := s.cfg.static.Open(name)
	if err != nil {
		if strings.HasPrefix(name, "dist/") {
			httpError(w, http.StatusNotFound, "%s is not embedded in this binary: build it with `make demo` (it copies bindings/dist into web/static/dist)", name)
			return
		}
		httpError(w, http.StatusNotFound, "no such file: /%s", name)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		httpError(w, http.StatusNotFound, "no such file: /%s", name)
		return
	}
	ct, ok := contentTypes[path.Ext(name)]
	if !ok {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-cache")
	rs, ok := f.(io.ReadSeeker)
	if !ok {
		httpError(w, http.StatusInternalServerError, "%s: not seekable", name)
		return
	}
	http.ServeContent(w, r, name, st.ModTime(), rs)
}
