package main

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/sdk/engine"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// fileJob is one input file (an image, a payload) and the output file it makes.
type fileJob struct{ in, out string }

// encodeSettings are encode's flags after validation.
type encodeSettings struct {
	opts   engine.EncodeOptions
	read   ftimage.DecodeOptions // how image files are read (limits, EXIF orientation)
	batch  int
	shard  shard
	force  bool
	single bool // one file argument whose output is OUT itself: an existing OUT is an error, not a skip
}

// encodeStats count what a run did with its shard's inputs.
type encodeStats struct {
	encoded, skipped, failed int
	firstFail                string // "path: reason" of the first failure
}

func newEncode() *cobra.Command {
	var (
		ef       = engineFlags{parts: engine.EncodeOnly} // encoding never needs the decoder
		out      string
		k        int
		filter   string
		force    bool
		batch    int
		shardArg string
		bf       backendFlags
		rf       readFlags
	)
	cmd := &cobra.Command{
		Use:   "encode IMAGE|DIR... -o OUT [--shard i/N] [--batch N]",
		Short: "Encode images into token payloads (.msgpack)",
		Long: "Encode each image (png, jpeg, gif, webp, bmp, tiff; directories are walked recursively\n" +
			"for image files) into a FlexTok token payload. With one file argument, OUT is the\n" +
			"payload file (or, ending in / or an existing directory, the directory it goes into);\n" +
			"otherwise (a directory argument, or several) OUT is a directory that mirrors the\n" +
			"inputs: DIR/a/b.png becomes OUT/a/b.msgpack, a file argument x.png becomes\n" +
			"OUT/x.msgpack; an OUT ending in .msgpack is then refused. Images are turned upright by\n" +
			"their EXIF orientation first, as browsers show them (the official demo does not:\n" +
			"--exif-orientation=false). Files get mode 0666 less the umask, as with os.WriteFile.\n\n" +
			"Made for big datasets: --batch images go through the model per forward pass;\n" +
			"--shard i/N takes every N-th input of the sorted list (from the i-th, 0-based), so N\n" +
			"workers split a job without overlap (auto/N reads i from JOB_COMPLETION_INDEX, a\n" +
			"Kubernetes Indexed Job, or SLURM_ARRAY_TASK_ID); outputs that exist are skipped, so a\n" +
			"rerun finishes what a killed worker left; files are written whole or not at all. An\n" +
			"image that fails is reported and the others go on; the exit status is 1 if any failed.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("encode needs at least one image")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRunFlags(out, batch, k, ef.size); err != nil {
				return err
			}
			if err := checkBackendFlags(cmd, bf.backend, bf.provider); err != nil {
				return err
			}
			sh, err := parseShard(shardArg, os.Getenv)
			if err != nil {
				return err
			}
			jobs, single, err := planEncode(args, out)
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			read, err := rf.options()
			if err != nil {
				return err
			}
			s := encodeSettings{opts: engine.EncodeOptions{K: k, Filter: filter, Size: ef.size}, read: read, batch: batch, shard: sh, force: force, single: single}
			load := func() (engine.Executor, error) { return openBackend(&bf, &ef, cmd.ErrOrStderr()) }
			_, err = runEncode(ctx, cmd.ErrOrStderr(), load, jobs, s)
			return err
		},
	}
	ef.register(cmd)
	cmd.Flags().StringVarP(&out, "out", "o", "", "output payload file, or directory (ending in /, existing, or for a directory or several arguments) (required)")
	cmd.Flags().IntVarP(&k, "tokens", "k", 0, "keep the first K tokens (0: all)")
	cmd.Flags().StringVar(&filter, "filter", ftimage.FilterBilinear, "resize filter: bilinear (as the official demo) or catmull-rom")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "replace existing output files (default: skip them)")
	cmd.Flags().IntVar(&batch, "batch", 8, "images per forward pass")
	cmd.Flags().StringVar(&shardArg, "shard", "", "take shard i of N (0-based) of the sorted inputs: i/N, or auto/N for i from $JOB_COMPLETION_INDEX or $SLURM_ARRAY_TASK_ID")
	bf.register(cmd)
	rf.register(cmd)
	return cmd
}

// readFlags say how image files are read: encode's and eval's --exif-orientation and
// --max-pixels.
type readFlags struct {
	orient    bool
	maxPixels int64
}

func (f *readFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.orient, "exif-orientation", true, "turn images upright by their EXIF orientation, as browsers show them; =false: pixels as stored, as the official demo reads them")
	cmd.Flags().Int64Var(&f.maxPixels, "max-pixels", ftimage.DefaultMaxPixels, "largest image (width×height) read; decoding takes up to 8 bytes a pixel")
}

func (f *readFlags) options() (ftimage.DecodeOptions, error) {
	if f.maxPixels < 1 {
		return ftimage.DecodeOptions{}, usageError{fmt.Errorf("--max-pixels must be at least 1, got %d", f.maxPixels)}
	}
	return ftimage.DecodeOptions{MaxPixels: f.maxPixels, IgnoreOrientation: !f.orient}, nil
}

// planEncode lists the images of args and their payload files (planTree).
func planEncode(args []string, out string) (jobs []fileJob, single bool, err error) {
	return planTree(args, out, imageExts, ".msgpack", "images")
}

// outNamesDir reports whether -o OUT names a directory by itself: it ends with a slash or is an
// existing directory.
func outNamesDir(out string) bool {
	if strings.HasSuffix(out, "/") || strings.HasSuffix(out, string(filepath.Separator)) {
		return true
	}
	st, err := os.Stat(out)
	return err == nil && st.IsDir()
}

// planTree lists the inputs of encode or decode and their outputs. A file argument is taken
// whatever its name; a directory contributes the files under it, at any depth, with one of
// exts. A file reached twice counts once. The list is sorted by input path, so every worker of
// a sharded job sees the same list; two inputs with the same output are an error before any
// work (so no two shards ever write one file).
//
// What OUT means depends on the arguments, never on how many files a directory holds: with one
// file argument, OUT is that input's output file (single), unless OUT ends with a slash or is an
// existing directory, which then receives it; otherwise (a directory argument, or several
// arguments) OUT is a directory that mirrors the inputs: DIR/a/b.x becomes OUT/a/b<outExt>, a
// file argument x.y becomes OUT/x<outExt>. OUT is then refused if it is an existing file, or if
// it does not exist and ends in outExt (`-o result.png` for 64 inputs is a mistake, not a
// directory to make).
func planTree(args []string, out string, exts map[string]bool, outExt, what string) (jobs []fileJob, single bool, err error) {
	// A file reached twice (a directory and a file in it, or nested directories) keeps the
	// mapping that mirrors the most structure, whatever the order of the arguments.
	seen := map[string]int{}
	add := func(in, rel string) error {
		abs, err := filepath.Abs(in)
		if err != nil {
			return err
		}
		if i, ok := seen[abs]; ok {
			if better(rel, jobs[i].out) {
				jobs[i] = fileJob{in: in, out: rel}
			}
			return nil
		}
		seen[abs] = len(jobs)
		jobs = append(jobs, fileJob{in: in, out: rel})
		return nil
	}
	dirArg := false
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, false, err
		}
		if !st.IsDir() {
			if err := add(filepath.Clean(a), ""); err != nil {
				return nil, false, err
			}
			continue
		}
		dirArg = true
		root := filepath.Clean(a)
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !exts[strings.ToLower(filepath.Ext(path))] {
				return nil
			}
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			return add(path, rel)
		})
		if err != nil {
			return nil, false, err
		}
	}
	if len(jobs) == 0 {
		return nil, false, usageError{fmt.Errorf("no input %s (a directory contributes its files ending in %s, at any depth)", what, extList(exts))}
	}
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].in < jobs[j].in })
	if len(args) == 1 && !dirArg && !outNamesDir(out) {
		jobs[0].out = out
		return jobs, true, nil
	}
	if st, err := os.Stat(out); err == nil && !st.IsDir() {
		return nil, false, usageError{fmt.Errorf("-o %s is a file, but these inputs need an output directory", out)}
	} else if err != nil && !outNamesDir(out) && strings.EqualFold(filepath.Ext(out), outExt) {
		return nil, false, usageError{fmt.Errorf("-o %s names a %s file, but these inputs need an output directory (a directory argument or several arguments mirror into one); name a directory, e.g. %s/", out, outExt, strings.TrimSuffix(out, filepath.Ext(out)))}
	}
	owner := make(map[string]string, len(jobs))
	for i := range jobs {
		rel := jobs[i].out
		if rel == "" {
			rel = filepath.Base(jobs[i].in)
		}
		jobs[i].out = filepath.Join(out, strings.TrimSuffix(rel, filepath.Ext(rel))+outExt)
		if prev, ok := owner[jobs[i].out]; ok {
			return nil, false, usageError{fmt.Errorf("%s and %s would both be written to %s; rename one or give them separate runs", prev, jobs[i].in, jobs[i].out)}
		}
		owner[jobs[i].out] = jobs[i].in
	}
	return jobs, false, nil
}

// extList is exts sorted and joined for messages: ".jpeg, .jpg, .png".
func extList(exts map[string]bool) string {
	var l []string
	for e := range exts {
		l = append(l, e)
	}
	sort.Strings(l)
	return strings.Join(l, ", ")
}

// better reports whether the output path rel (relative to OUT, "" for a file argument) is
// preferred to old for an input reached both ways: a directory's over a file argument's, then
// the deeper, then the first in order.
func better(rel, old string) bool {
	switch {
	case (rel == "") != (old == ""):
		return old == ""
	case strings.Count(rel, string(filepath.Separator)) != strings.Count(old, string(filepath.Separator)):
		return strings.Count(rel, string(filepath.Separator)) > strings.Count(old, string(filepath.Separator))
	}
	return rel < old
}

// decodedBatch is a batch of jobs with their images read from disk; errs[i] is set where the
// file could not be read or decoded.
type decodedBatch struct {
	jobs []fileJob
	imgs []image.Image
	errs []error
}

// readBatches decodes the jobs batch by batch (the files of a batch concurrently) into the
// returned channel, one batch ahead of the consumer, until done or ctx ends.
func readBatches(ctx context.Context, jobs []fileJob, size int, read ftimage.DecodeOptions) <-chan decodedBatch {
	ch := make(chan decodedBatch, 1)
	go func() {
		defer close(ch)
		for start := 0; start < len(jobs); start += size {
			b := decodedBatch{jobs: jobs[start:min(start+size, len(jobs))]}
			b.imgs = make([]image.Image, len(b.jobs))
			b.errs = make([]error, len(b.jobs))
			var wg sync.WaitGroup
			sem := make(chan struct{}, runtime.GOMAXPROCS(0))
			for i, j := range b.jobs {
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					b.imgs[i], b.errs[i] = readImage(j.in, read)
				})
			}
			wg.Wait()
			select {
			case ch <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// readImage decodes the image file at path (format sniffed) as o says.
func readImage(path string, o ftimage.DecodeOptions) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, _, err := ftimage.Decode(f, o)
	if o.MaxPixels != 0 && errors.Is(err, ftimage.ErrTooLarge) && strings.HasSuffix(err.Error(), " pixels") {
		err = fmt.Errorf("%w (--max-pixels raises the limit)", err)
	}
	return img, err
}

// runEncode encodes this shard's part of jobs: outputs that exist are skipped (unless force),
// the rest go through the encoder s.batch at a time. Failures are reported on stderr, one line
// each, and the run goes on; the summary line ends it. load opens the encoder, only if there is
// something to encode; if it fails, that error is returned without a summary. The error is
// non-nil if any input failed or the run was interrupted.
func runEncode(ctx context.Context, stderr io.Writer, load func() (engine.Executor, error), jobs []fileJob, s encodeSettings) (encodeStats, error) {
	start := time.Now()
	var st encodeStats
	var mine []fileJob
	for pos, j := range jobs {
		if s.shard.take(pos) {
			mine = append(mine, j)
		}
	}
	bar := newBar(len(mine), "encode")
	fail := func(in string, err error) {
		if bar.pb != nil {
			_ = bar.pb.Clear()
		}
		line := in + ": " + err.Error()
		if mentions(err.Error(), in) { // said once is enough
			line = err.Error()
		}
		if len(mine) > 1 { // a single input's error is the run's error, said once below
			fmt.Fprintf(stderr, "flextok: encode %s\n", line)
		}
		if st.failed == 0 {
			st.firstFail = line
		}
		st.failed++
		bar.add(1)
	}
	var todo []fileJob
	for _, j := range mine {
		if !s.force {
			if _, err := os.Stat(j.out); err == nil {
				if s.single {
					return st, existsError(j.out)
				}
				st.skipped++
				bar.add(1)
				continue
			}
		}
		todo = append(todo, j)
	}
	var runErr error
	if len(todo) > 0 {
		enc, err := load()
		if err != nil {
			bar.finish()
			return st, err
		}
		runErr = fileJobs(ctx, enc, todo, s, &st, &bar, fail)
		if err := enc.Close(); err != nil && runErr == nil {
			runErr = err
		}
	}
	bar.finish()
	el := time.Since(start)
	fmt.Fprintf(stderr, "encoded %d, skipped %d, failed %d in %s (%.1f images/s)\n",
		st.encoded, st.skipped, st.failed, el.Round(time.Millisecond), float64(st.encoded)/max(el.Seconds(), 1e-9))
	if runErr != nil {
		return st, runErr
	}
	if st.failed > 0 {
		if st.failed == 1 {
			return st, fmt.Errorf("1 of %d images failed: %s", len(mine), st.firstFail)
		}
		return st, fmt.Errorf("%d of %d images failed (listed above); the first: %s", st.failed, len(mine), st.firstFail)
	}
	return st, nil
}

// fileJobs runs todo through enc; st and the bar record each image.
func fileJobs(ctx context.Context, enc engine.Executor, todo []fileJob, s encodeSettings,
	st *encodeStats, bar *bar, fail func(string, error)) error {
	if s.opts.K > enc.MaxTokens() {
		return usageError{fmt.Errorf("--tokens %d: the model has %d tokens", s.opts.K, enc.MaxTokens())}
	}
	made := map[string]bool{}
	write := func(j fileJob, p *payload.Payload) error {
		b, err := p.MarshalBinary()
		if err != nil {
			return err
		}
		if dir := filepath.Dir(j.out); !made[dir] {
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return err
			}
			made[dir] = true
		}
		return writeNew(j.out, b, s.force)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for b := range readBatches(ctx, todo, s.batch, s.read) {
		var jobs []fileJob
		var imgs []image.Image
		for i, j := range b.jobs {
			if b.errs[i] != nil {
				fail(j.in, b.errs[i])
				continue
			}
			jobs = append(jobs, j)
			imgs = append(imgs, b.imgs[i])
		}
		if len(imgs) == 0 {
			continue
		}
		ps, err := enc.EncodeBatch(ctx, imgs, s.opts)
		if err == nil && len(ps) != len(imgs) {
			err = fmt.Errorf("the encoder returned %d payloads for %d images", len(ps), len(imgs))
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// One bad image fails the whole batch: encode each alone to tell which.
			ps = make([]*payload.Payload, len(imgs))
			for i := range imgs {
				one, err := enc.EncodeBatch(ctx, imgs[i:i+1], s.opts)
				if err == nil && len(one) != 1 {
					err = fmt.Errorf("the encoder returned %d payloads for 1 image", len(one))
				}
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					fail(jobs[i].in, err)
					continue
				}
				ps[i] = one[0]
			}
		}
		for i, p := range ps {
			if p == nil {
				continue
			}
			if err := write(jobs[i], p); err != nil {
				if errors.Is(err, fs.ErrExist) && !s.single {
					// Another run of this shard wrote it meanwhile: the same payload.
					st.skipped++
					bar.add(1)
					continue
				}
				fail(jobs[i].in, err)
				continue
			}
			st.encoded++
			bar.add(1)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return ctx.Err()
}
