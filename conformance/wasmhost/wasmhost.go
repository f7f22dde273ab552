package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// ErrClosed is returned by an Instance that was closed or whose module exited or trapped.
var ErrClosed = errors.New("flextok/wasmhost: instance closed")

// Options configure a Host. The zero value is usable.
type Options struct {
	// CacheDir, if set, keeps the compiled code on disk so that later processes skip the
	// compilation; empty keeps it in memory for the Host's lifetime.
	CacheDir string
	// MemoryLimitMiB bounds the memory of each instance (default and maximum 4096, wasm32's
	// limit).
	MemoryLimitMiB int
	// Stderr receives what the module writes to stderr (the Go runtime's crash messages);
	// nil keeps only the last 4 KiB, which Handle's errors quote.
	Stderr io.Writer
}

// Host holds one compiled wasip1 module. It is safe for concurrent use.
type Host struct {
	o        Options
	rt       wazero.Runtime
	cache    wazero.CompilationCache
	compiled wazero.CompiledModule
}

// New compiles the module (the bytes of dist/flextok-wasip1.wasm) once.
func New(ctx context.Context, wasm []byte, o Options) (*Host, error) {
	var cache wazero.CompilationCache
	if o.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(o.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("flextok/wasmhost: compilation cache: %w", err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	pages := uint32(65536) // 4 GiB
	if o.MemoryLimitMiB > 0 && o.MemoryLimitMiB < 4096 {
		pages = uint32(o.MemoryLimitMiB) * 16 // 64 KiB pages
	}
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithMemoryLimitPages(pages).
		WithCloseOnContextDone(true)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	fail := func(err error) (*Host, error) {
		_ = rt.Close(ctx)
		_ = cache.Close(ctx)
		return nil, err
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return fail(fmt.Errorf("flextok/wasmhost: WASI: %w", err))
	}
	compiled, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return fail(fmt.Errorf("flextok/wasmhost: compile: %w", err))
	}
	exports := compiled.ExportedFunctions()
	for _, name := range []string{"_initialize", "alloc", "free", "handle"} {
		if _, ok := exports[name]; !ok {
			return fail(fmt.Errorf("flextok/wasmhost: the module exports no %q: not a -buildmode=c-shared build of wasm/wasip1", name))
		}
	}
	return &Host{o: o, rt: rt, cache: cache, compiled: compiled}, nil
}

// Close releases the runtime (and every instance still open) and the in-memory cache.
func (h *Host) Close(ctx context.Context) error {
	err := h.rt.Close(ctx)
	if cerr := h.cache.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// Instance is one instantiation of the module, with its own memory and service state. Its
// methods may be called from several goroutines; calls run one at a time.
type Instance struct {
	mu                  sync.Mutex
	mod                 api.Module
	alloc, free, handle api.Function
	stderr              *tail
	closed              error
}

// Instantiate starts a fresh instance (its "_initialize" runs the Go runtime's start-up).
func (h *Host) Instantiate(ctx context.Context) (*Instance, error) {
	st := &tail{}
	var stderr io.Writer = st
	if h.o.Stderr != nil {
		stderr = io.MultiWriter(st, h.o.Stderr)
	}
	cfg := wazero.NewModuleConfig().
		WithName(""). // anonymous, so one runtime holds many instances
		WithStartFunctions("_initialize").
		WithSysWalltime().
		WithSysNanotime().
		WithStderr(stderr)
	mod, err := h.rt.InstantiateModule(ctx, h.compiled, cfg)
	if err != nil {
		return nil, fmt.Errorf("flextok/wasmhost: instantiate: %w%s", err, st.quote())
	}
	return &Instance{mod: mod, alloc: mod.ExportedFunction("alloc"), free: mod.ExportedFunction("free"),
		handle: mod.ExportedFunction("handle"), stderr: st}, nil
}

// Handle sends one request to the instance's service and returns its response.
func (i *Instance) Handle(req []byte) ([]byte, error) {
	return i.HandleContext(context.Background(), req)
}

// HandleContext is Handle with a context; when it ends, the call stops and the instance is
// closed (wazero cannot resume a module interrupted mid-call).
func (i *Instance) HandleContext(ctx context.Context, req []byte) ([]byte, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed != nil {
		return nil, i.closed
	}
	resp, err := i.call(ctx, req)
	if err != nil {
		i.closed = fmt.Errorf("%w: %v", ErrClosed, err)
		_ = i.mod.Close(context.Background())
		return nil, fmt.Errorf("flextok/wasmhost: %w%s", err, i.stderr.quote())
	}
	return resp, nil
}

func (i *Instance) call(ctx context.Context, req []byte) ([]byte, error) {
	n := uint64(len(req))
	if n > 1<<32-1 {
		return nil, fmt.Errorf("request of %d bytes, over the wasm32 limit", n)
	}
	r, err := i.alloc.Call(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("alloc: %w", err)
	}
	ptr := r[0]
	if n > 0 && !i.mod.Memory().Write(uint32(ptr), req) {
		return nil, fmt.Errorf("alloc returned %#x, outside memory for %d bytes", ptr, n)
	}
	r, err = i.handle.Call(ctx, ptr, n)
	if err != nil {
		return nil, fmt.Errorf("handle: %w", err)
	}
	rp, rn := uint32(r[0]>>32), uint32(r[0])
	view, ok := i.mod.Memory().Read(rp, rn)
	if !ok {
		return nil, fmt.Errorf("handle returned %d bytes at %#x, outside memory", rn, rp)
	}
	resp := append([]byte(nil), view...)
	if _, err := i.free.Call(ctx, uint64(rp)); err != nil {
		return nil, fmt.Errorf("free: %w", err)
	}
	if _, err := i.free.Call(ctx, ptr); err != nil {
		return nil, fmt.Errorf("free: %w", err)
	}
	return resp, nil
}

// MemoryBytes is the instance's current linear memory size.
func (i *Instance) MemoryBytes() uint32 {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.mod.Memory().Size()
}

// Close ends the instance and frees its memory.
func (i *Instance) Close(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed != nil {
		return nil
	}
	i.closed = ErrClosed
	return i.mod.Close(ctx)
}

// tail keeps the last 4 KiB written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-4096:]...)
	}
	return len(p), nil
}

func (t *tail) quote() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.buf) == 0 {
		return ""
	}
	return "; module stderr: " + string(t.buf)
}

// ModulePackage is the import path of the wasip1 main that this package hosts.
const ModulePackage = "github.com/flextok-sdk/flextok/wasm/wasip1"

// Build compiles ModulePackage with the go command (from PATH) into dir and returns the
// module's path: what tests do when dist/flextok-wasip1.wasm is not built. It must run inside
// this Go module's tree; exec.ErrNotFound means there is no go command.
func Build(ctx context.Context, dir string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "flextok-wasip1.wasm")
	cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-buildmode=c-shared", "-o", out, ModulePackage)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("flextok/wasmhost: go build %s: %w\n%s", ModulePackage, err, msg)
	}
	return out, nil
}
