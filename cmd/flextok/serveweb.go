package main

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/native/onnx"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/webpkg"
	ftserver "github.com/flextok-sdk/flextok/server"
)

// webFlags are serve's browser model package flags (docs/server.md, "Browser model package").
type webFlags struct {
	pkg, cache string
	fp16       bool
}

func (f *webFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.pkg, "web-package", "auto", "the browser model package served under /v1/web-package/: auto builds the first model's once into --web-cache "+
		"(reused while the model and the exporter are the same), none serves none, or a directory written by flextok export-web from the first model")
	fl.StringVar(&f.cache, "web-cache", "", "directory of the packages --web-package auto builds (default: the user cache directory's flextok/web)")
	fl.BoolVar(&f.fp16, "web-fp16", true, "--web-package auto: include decoder_fp16, the decoder with float16 Linear layers (for WebGPU)")
}

// openWebPackage prepares the package of the model at modelPath ("" : the embedded default),
// whose identity is id, as f says; nil when f.pkg is none.
func openWebPackage(f *webFlags, modelPath string, id payload.Model, log *slog.Logger) (*ftserver.WebPackage, error) {
	digest := hex.EncodeToString(id.Digest[:])
	check := func(p *ftserver.WebPackage) error {
		if got := p.Manifest.Model.Digest; got != digest {
			return fmt.Errorf("--web-package %s: exported from model %q (digest %.12s…), but the first served model is %q (digest %.12s…): export it from that model",
				p.Dir(), p.Manifest.Model.Name, got, id.Name, digest)
		}
		return nil
	}
	switch f.pkg {
	case "none":
		return nil, nil
	case "auto", "":
	default:
		p, err := ftserver.OpenWebPackage(f.pkg, true)
		if err != nil {
			return nil, usageError{fmt.Errorf("--web-package: %w", err)}
		}
		if err := check(p); err != nil {
			return nil, usageError{err}
		}
		log.Info("web package", "dir", p.Dir(), "bytes", p.Manifest.TotalSize(), "files", len(p.Manifest.Files))
		return p, nil
	}
	root := f.cache
	if root == "" {
		// A container user often has no home: then the system's temporary directory.
		if c, err := os.UserCacheDir(); err == nil {
			root = filepath.Join(c, "flextok", "web")
		} else {
			root = filepath.Join(os.TempDir(), fmt.Sprintf("flextok-web-%d", os.Getuid()))
			log.Info("web package: no user cache directory, using the temporary directory", "reason", err.Error(), "dir", root)
		}
	}
	prec := "fp32"
	if f.fp16 {
		prec = "fp16"
	}
	// One directory per model digest, exporter version and option set: a package never
	// outlives the model or the exporter it was made from.
	dir := filepath.Join(root, fmt.Sprintf("%.32s-e%s-%s-c%d", digest, onnx.ExporterVersion, prec, webpkg.DefaultChunkSize))
	if p, err := ftserver.OpenWebPackage(dir, true); err == nil && check(p) == nil {
		log.Info("web package", "dir", dir, "bytes", p.Manifest.TotalSize(), "files", len(p.Manifest.Files), "built", false)
		return p, nil
	}
	removeStaleStaging(dir, log)
	start := time.Now()
	m, release, err := loadModel(modelPath)
	if err != nil {
		return nil, err
	}
	defer release()
	// The directory is the cache's own: a partial or stale package there is replaced.
	if _, err := onnx.ExportWeb(m, dir, onnx.WebOptions{FP16: f.fp16, Overwrite: true}); err != nil {
		return nil, fmt.Errorf("--web-package auto: building the web package in %s: %w (give --web-cache DIR or --web-package none)", dir, err)
	}
	p, err := ftserver.OpenWebPackage(dir, false)
	if err != nil {
		return nil, err
	}
	if err := check(p); err != nil {
		return nil, err
	}
	log.Info("web package", "dir", dir, "bytes", p.Manifest.TotalSize(), "files", len(p.Manifest.Files), "built", true, "seconds", time.Since(start).Seconds())
	return p, nil
}

// staleStaging is how long a staging directory of an export (".flextok-web-*", which the
// export renames its files out of and removes) may go unmodified before it counts as left by a
// killed process: an export in progress writes into it every few seconds.
const staleStaging = 10 * time.Minute

// removeStaleStaging removes the staging directories that killed exports left in dir (a
// directory of the web cache, which is this program's own): each may hold a whole package.
func removeStaleStaging(dir string, log *slog.Logger) {
	ents, _ := filepath.Glob(filepath.Join(dir, ".flextok-web-*"))
	for _, e := range ents {
		if st, err := os.Stat(e); err == nil && st.IsDir() && time.Since(st.ModTime()) > staleStaging {
			if err := os.RemoveAll(e); err == nil {
				log.Info("web package: removed the staging directory of an interrupted export", "dir", e)
			}
		}
	}
}
