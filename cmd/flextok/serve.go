package main

import (
	"bytes"
	"context"
	"crypto/sha256"
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
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/native"
	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/engine"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/nn"
	ftserver "github.com/flextok-sdk/flextok/server"
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
	webPkg    string // the web package manifest's URL; "": none
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
	// AR is the default AR model the page's Generate mode opens beside the module's embedded
	// default tokenizer: its files are served under /dist/ar/ (where @flextok/sdk's openAR()
	// looks by default), from the copy embedded in this binary.
	AR *demoAR `json:"ar"`
	// WebPackage is the URL of the served model's browser model package manifest
	// (docs/web-package.md), for pages that decode with onnxruntime-web; absent: none.
	WebPackage string `json:"web_package,omitempty"`
}

type demoAR struct {
	Name      string   `json:"name"`
	Weights   string   `json:"weights"` // URLs carry ?v=<sha256 prefix>: the page's Cache API key
	Config    string   `json:"config"`
	Classes   []string `json:"classes"`
	MaxTokens int      `json:"max_tokens"`
	CFG       bool     `json:"cfg"`
	Hints     any      `json:"sampling_hints,omitempty"`
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

// serveFlags are serve's service flags (limits, queue, timeouts, cross-origin headers, logs).
type serveFlags struct {
	maxConcurrent, maxQueue     int
	maxPixels                   int64
	maxK, maxSteps, maxSize     int
	requestTimeout, readTimeout time.Duration
	writeTimeout, idleTimeout   time.Duration
	shutdownTimeout, drainDelay time.Duration
	corsOrigins                 []string
	coop, coep, logFormat       string
	arBatching                  string
	maxN, maxGenTokens          int
	ar                          modelList // --ar [NAME=]DIR: AR models paired with served models
}

func (f *serveFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	d := ftserver.DefaultLimits
	fl.IntVar(&f.maxConcurrent, "max-concurrent", 0, "requests that run a model at once (0: half the CPUs, at least 1)")
	fl.IntVar(&f.maxQueue, "max-queue", 0, "admitted requests that wait for a work slot; beyond them 429 with Retry-After (0: 4 × --max-concurrent; -1: none)")
	fl.Int64Var(&f.maxPixels, "max-pixels", d.MaxPixels, "largest width×height an image's header may declare (refused before its pixels are decoded)")
	fl.IntVar(&f.maxK, "max-k", d.MaxK, "largest k (tokens kept or decoded) a request may ask for")
	fl.IntVar(&f.maxSteps, "max-steps", d.MaxSteps, "largest number of decode steps, asked for or hinted by a payload")
	fl.IntVar(&f.maxSize, "max-size", d.MaxSize, "largest image side (size) a request may ask for")
	fl.DurationVar(&f.requestTimeout, "request-timeout", d.Timeout, "time limit of one API request (408 after)")
	fl.DurationVar(&f.readTimeout, "read-timeout", 30*time.Second, "time to read a request, headers and body (slow clients are cut off)")
	fl.DurationVar(&f.writeTimeout, "write-timeout", 0, "time to write a response, from the end of the headers (0: --request-timeout + 30s)")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 2*time.Minute, "how long an idle keep-alive connection stays open")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long requests in flight may take to finish")
	fl.DurationVar(&f.drainDelay, "drain-delay", 0, "on SIGTERM, how long /readyz fails before the listener closes (for load balancers to notice)")
	fl.StringArrayVar(&f.corsOrigins, "cors-origin", nil, "an origin whose pages may call the API (repeatable; * for any)")
	fl.StringVar(&f.coop, "coop", "", "Cross-Origin-Opener-Policy header of every response (e.g. same-origin)")
	fl.StringVar(&f.coep, "coep", "", "Cross-Origin-Embedder-Policy header of every response (e.g. require-corp)")
	fl.StringVar(&f.logFormat, "log-format", "json", "request log format on stderr: json or text")
	fl.StringVar(&f.arBatching, "ar-batching", "", "generate: on runs each AR model's concurrent requests as one continuous batch (one model step for all), off one request per work slot "+
		"(default: on with the Go executor, off with --backend ort, which cannot batch)")
	fl.IntVar(&f.maxN, "max-n", d.MaxN, "largest number of samples (n) a generate request may ask for")
	fl.IntVar(&f.maxGenTokens, "max-gen-tokens", d.MaxGenTokens, "largest number of tokens (n × k) a generate request may ask for")
	fl.Var(&f.ar, "ar", "[NAME=]AR checkpoint directory: pairs the AR model with the served model NAME (default: the first), "+
		"which then serves POST /v1/generate; refused at start when it was not made for that model's tokenizer; repeatable. "+
		"Without -m and --ar the embedded default model serves generation with the embedded default AR model; --ar none: no generation")
}

// modelList is serve's -m/--model: repeatable, each [NAME=]PATH.
type modelList struct{ entries []modelEntry }

type modelEntry struct {
	name, path string
	embedded   bool // the embedded default AR model (serve without -m and --ar)
}

func (l *modelList) String() string {
	var parts []string
	for _, e := range l.entries {
		if e.name != "" {
			parts = append(parts, e.name+"="+e.path)
		} else {
			parts = append(parts, e.path)
		}
	}
	return strings.Join(parts, ",")
}

func (l *modelList) Set(v string) error {
	name, p, ok := strings.Cut(v, "=")
	if !ok || strings.ContainsAny(name, `/\`) {
		name, p = "", v // a path with '=' in it
	}
	if p == "" {
		return fmt.Errorf("empty model path in %q", v)
	}
	l.entries = append(l.entries, modelEntry{name: name, path: p})
	return nil
}

func (l *modelList) Type() string { return "[name=]path" }

func newServe() *cobra.Command {
	var (
		ef         engineFlags
		bf         backendFlags
		sf         serveFlags
		wf         webFlags
		modelFlags modelList
		addr       string
		samples    string
		maxUpload  int64
	)
	cmd := &cobra.Command{
		Use:   "serve [--addr HOST:PORT] [-m [NAME=]MODEL]... [--ar [NAME=]AR_DIR]...",
		Short: "Serve the token API (/v1/encode, /v1/decode, /v1/generate, /v1/models), metrics and the demo page",
		Long: "Serve FlexTok's HTTP token service (docs/server.md): POST /v1/encode (an image → a payload),\n" +
			"POST /v1/decode (a payload → PNG), GET /v1/models, GET /v1/openapi.json, /healthz, /readyz\n" +
			"and Prometheus /metrics, with a bounded admission queue (429 with Retry-After when full),\n" +
			"per-request limits and JSON request logs on stderr. -m [NAME=]MODEL is repeatable: each\n" +
			"model is served under its NAME (default: its own name), ?model=NAME selects one, the first\n" +
			"is the default; without -m the embedded default model is served. --ar [NAME=]DIR pairs an AR\n" +
			"checkpoint with the served model NAME (default: the first), which then serves POST\n" +
			"/v1/generate (a class → payloads streamed as the tokens are produced); an AR model made for\n" +
			"another tokenizer is refused at start. Without -m and --ar, the embedded default AR model\n" +
			"serves generation beside the embedded default model (--ar none: no /v1/generate).\n" +
			"--backend ort runs them all in ONNX Runtime.\n\n" +
			"Beside the API: the demo page, the @flextok/sdk browser modules and flextok.wasm (embedded\n" +
			"by `make demo`), the first model's files under /model/ for the page to load, sample images\n" +
			"encoded at start-up under /samples/ and the page's POST /encode (= /v1/encode), and the first\n" +
			"model's browser model package (onnxruntime-web graphs in chunks, docs/web-package.md) under\n" +
			"/v1/web-package/, built once into --web-cache (--web-package). The samples\n" +
			"are eight held-out shapes embedded in the binary; --samples DIR encodes DIR's images instead,\n" +
			"--samples none serves none. On SIGTERM or SIGINT: /readyz fails, new API requests get 503,\n" +
			"those in flight finish (--shutdown-timeout), then it exits.",
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
			var log *slog.Logger
			switch sf.arBatching {
			case "", "on", "off":
			default:
				return usageError{fmt.Errorf("--ar-batching %q: want on or off", sf.arBatching)}
			}
			switch sf.logFormat {
			case "json":
				log = slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			case "text":
				log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			default:
				return usageError{fmt.Errorf("--log-format %q: want json or text", sf.logFormat)}
			}
			cfg := serveConfig{maxUpload: maxUpload, static: web.Static(), missing: web.Missing(), log: log}
			if len(cfg.missing) > 0 {
				log.Warn("the demo's wasm assets are not embedded in this binary: build it with `make demo`", "missing", strings.Join(cfg.missing, ","))
			}
			if err := checkBackendFlags(cmd, bf.backend, bf.provider); err != nil {
				return err
			}
			entries := modelFlags.entries
			if len(entries) == 0 {
				entries = []modelEntry{{}} // the embedded default model
			}
			// Without -m the engine is the embedded default model: it encodes the samples, and
			// the page opens the same model embedded in the wasm module (no /model/ files).
			var served []ftserver.Model
			defer func() {
				for _, m := range served {
					m.Exec.Close()
				}
			}()
			for _, me := range entries {
				one := ef
				one.model = me.path
				e, err := openBackend(&bf, &one, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				name := me.name
				if name == "" {
					name = e.Identity().Name
				}
				served = append(served, ftserver.Model{Name: name, Exec: e})
				log.Info("model", "name", name, "model", e.Identity().Name, "path", me.path, "backend", bf.backend)
			}
			var arClose []func() error
			defer func() {
				for _, c := range arClose {
					c()
				}
			}()
			arEntries := sf.ar.entries
			if len(arEntries) == 0 && len(modelFlags.entries) == 0 {
				// The embedded default model gets the embedded default AR model (--ar none: no
				// generation).
				arEntries = []modelEntry{{path: "(embedded default AR model)", embedded: true}}
			}
			for _, a := range arEntries {
				if a.path == "none" {
					continue
				}
				i := 0
				if a.name != "" {
					i = slices.IndexFunc(served, func(m ftserver.Model) bool { return m.Name == a.name })
					if i < 0 {
						var names []string
						for _, m := range served {
							names = append(names, m.Name)
						}
						return usageError{fmt.Errorf("--ar %s=%s: no served model %q (served: %s)", a.name, a.path, a.name, strings.Join(names, ", "))}
					}
				}
				if served[i].AR != nil {
					return usageError{fmt.Errorf("--ar: two AR models for %q", served[i].Name)}
				}
				var m *ar.Model
				var err error
				if a.embedded {
					m, err = models.DefaultAR().Model()
				} else {
					m, err = ar.Load(a.path)
				}
				if err != nil {
					return fmt.Errorf("--ar %s: %w", a.path, err)
				}
				if err := m.CheckTokenizer(served[i].Exec.Identity()); err != nil {
					return fmt.Errorf("--ar %s: not for model %q: %w", a.path, served[i].Name, err)
				}
				threads := ef.threads
				if threads <= 0 {
					threads = runtime.GOMAXPROCS(0)
				}
				o := ar.Options{Exec: nn.Options{Fast: !ef.exact, Threads: threads}}
				if bf.backend == "ort" {
					b, err := native.NewAR(m, nativeOptions(&bf, &ef, cmd.ErrOrStderr()))
					if err != nil {
						return fmt.Errorf("--ar %s: --backend ort: %w", a.path, err)
					}
					arClose = append(arClose, b.Close)
					o = ar.Options{Executor: b}
				}
				served[i].AR, served[i].AROptions = m, o
				log.Info("ar model", "model", served[i].Name, "ar", m.Cfg.Name, "path", a.path, "classes", m.Cfg.NumClasses, "backend", bf.backend)
			}
			e := served[0].Exec
			cfg.engine = e
			cfg.modelName = e.Identity().Name
			if entries[0].path != "" {
				cfg.files = modelFilePaths(entries[0].path)
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
			var err error
			if cfg.samples, err = encodeSamples(ctx, e, sampleFS); err != nil {
				return err
			}
			log.Info("demo", "model", cfg.modelName, "samples", len(cfg.samples), "files", len(cfg.files))
			wp, err := openWebPackage(&wf, entries[0].path, e.Identity(), log)
			if err != nil {
				return err
			}
			if wp != nil {
				cfg.webPkg = ftserver.WebPackagePrefix + "manifest.json"
			}
			body := maxUpload
			if !cmd.Flags().Changed("max-upload") {
				body = ftserver.DefaultLimits.MaxBodyBytes
			}
			api, err := ftserver.New(ftserver.Config{
				Models: served,
				Limits: ftserver.Limits{MaxBodyBytes: body, MaxPixels: sf.maxPixels, MaxK: sf.maxK, MaxSteps: sf.maxSteps,
					MaxSize: sf.maxSize, Timeout: sf.requestTimeout, MaxN: sf.maxN, MaxGenTokens: sf.maxGenTokens},
				MaxConcurrent: sf.maxConcurrent, MaxQueue: sf.maxQueue, ARBatching: sf.arBatching,
				CORSOrigins: sf.corsOrigins, COOP: sf.coop, COEP: sf.coep,
				Log: log, Fallback: newServer(cfg), WebPackage: wp,
				// What the demo's own /healthz said (the browser test reads assets).
				Health: map[string]any{"model": cfg.modelName, "samples": len(cfg.samples), "assets": len(cfg.missing) == 0},
			})
			if err != nil {
				return usageError{err}
			}
			api.LegacyEncode("/encode")
			return runServer(ctx, addr, api, sf, cmd.OutOrStdout(), log)
		},
	}
	ef.register(cmd)
	bf.register(cmd)
	sf.register(cmd)
	wf.register(cmd)
	mf := cmd.Flags().Lookup("model")
	mf.Value, mf.DefValue = &modelFlags, ""
	mf.Usage = "[NAME=]model directory or model.safetensors; repeatable, the first is the default (default: the embedded default model)"
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "listen address (port 0: any free port; the URL is printed)")
	cmd.Flags().StringVar(&samples, "samples", "", "directory of images to encode as sample payloads (default: eight held-out shapes embedded in the binary; none: no samples)")
	cmd.Flags().Int64Var(&maxUpload, "max-upload", ftserver.DefaultLimits.MaxBodyBytes, "largest request body in bytes (an image, a payload, a form)")
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

// runServer listens on addr, prints the URL, and serves api until SIGINT or SIGTERM; then it
// drains: /readyz fails and new API work gets 503 (for --drain-delay), the listener closes and
// requests in flight get --shutdown-timeout to finish.
func runServer(ctx context.Context, addr string, api *ftserver.Server, sf serveFlags, out io.Writer, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	wt := sf.writeTimeout
	if wt <= 0 {
		wt = sf.requestTimeout + 30*time.Second
	}
	srv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: min(10*time.Second, sf.readTimeout),
		ReadTimeout:       sf.readTimeout,
		WriteTimeout:      wt,
		IdleTimeout:       sf.idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(out, "serving http://%s/\n", ln.Addr())
	log.Info("serving", "addr", ln.Addr().String(), "models", strings.Join(api.Models(), ","))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("draining", "drain_delay", sf.drainDelay.String(), "shutdown_timeout", sf.shutdownTimeout.String())
	api.Drain()
	if sf.drainDelay > 0 {
		time.Sleep(sf.drainDelay)
	}
	sctx, cancel := context.WithTimeout(context.Background(), sf.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
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
	mux.HandleFunc("GET /dist/ar/{file}", s.arFile)
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
	d.AR = defaultARInfo()
	d.WebPackage = s.cfg.webPkg
	writeJSON(w, d)
}

// defaultAR is the embedded default AR model's files by URL name under /dist/ar/, their ETags,
// and its demo.json entry (nil if its config does not parse, which a test of package models
// rules out); computed once (the weights' digest).
var defaultAR = sync.OnceValues(func() (map[string][]byte, map[string]string) {
	a := models.DefaultAR()
	files := map[string][]byte{"config.json": a.Config, "model.safetensors": a.Weights}
	tags := map[string]string{}
	for n, b := range files {
		sum := sha256.Sum256(b)
		tags[n] = hex.EncodeToString(sum[:16])
	}
	return files, tags
})

func defaultARInfo() *demoAR {
	files, tags := defaultAR()
	c, err := ar.ParseConfig(files["config.json"])
	if err != nil {
		return nil
	}
	d := &demoAR{Name: c.Name, Weights: "/dist/ar/model.safetensors?v=" + tags["model.safetensors"][:16],
		Config: "/dist/ar/config.json?v=" + tags["config.json"][:16], Classes: c.Classes, MaxTokens: c.BlockSize, CFG: c.HasNull()}
	var raw struct {
		Hints map[string]any `json:"sampling_hints"`
	}
	if json.Unmarshal(files["config.json"], &raw) == nil && raw.Hints != nil {
		d.Hints = raw.Hints
	}
	return d
}

// arFile serves the embedded default AR model's files under /dist/ar/, where the browser
// build of @flextok/sdk looks for them (they are not in flextok.wasm: RATIONALE).
func (s *server) arFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	files, tags := defaultAR()
	b, ok := files[name]
	if !ok {
		httpError(w, http.StatusNotFound, "the default AR model has no file %q (served: config.json, model.safetensors)", name)
		return
	}
	if strings.HasSuffix(name, ".json") {
		w.Header().Set("Content-Type", "application/json")
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.Header().Set("ETag", `"`+tags[name]+`"`)
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
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
// Under `flextok serve` the token service's alias of /v1/encode answers POST /encode first
// (with its admission queue and limits); this handler serves the demo handler used alone.
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
