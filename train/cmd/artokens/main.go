// Command artokens tokenizes images with the embedded default model's pure-Go engine, for the
// AR recipe (train/train_ar.py --stage data). It reads a NumPy .npy file of uint8 images
// [N, H, W, 3] (C order, H and W the model's input size, no resizing) and writes a .npy file of
// uint16 token ids [N, max_tokens] (all 32 tokens, coarse to fine: the official tokenize).
// -m DIR tokenizes with another model directory instead (an AR recipe for a new tokenizer).
// Options{} (the portable path) gives the ids that every platform reproduces; they equal the
// official PyTorch code's ids (conformance/testdata/official).
//
//	go run ./train/cmd/artokens -in images.npy -out ids.npy
//	go run ./train/cmd/artokens -identity   # prints the tokenizer facts an AR config names
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

func main() {
	in := flag.String("in", "", "input .npy, uint8 [N, H, W, 3]")
	out := flag.String("out", "", "output .npy, uint16 [N, max_tokens]")
	batch := flag.Int("batch", 64, "images per EncodeTensor call")
	threads := flag.Int("threads", 0, "goroutines (0: GOMAXPROCS); the ids do not depend on it")
	identity := flag.Bool("identity", false, "print the tokenizer's identity as JSON and exit")
	dir := flag.String("m", "", "model directory (default: the embedded default model)")
	flag.Parse()
	if err := run(*dir, *in, *out, *batch, *threads, *identity); err != nil {
		fmt.Fprintln(os.Stderr, "artokens:", err)
		os.Exit(1)
	}
}

func load(dir string, o engine.Options) (*engine.Engine, error) {
	if dir == "" {
		return models.LoadDefault(o)
	}
	return engine.Load(dir, o)
}

func run(dir, in, out string, batch, threads int, identity bool) error {
	if identity {
		e, err := load(dir, engine.Options{Threads: 1})
		if err != nil {
			return err
		}
		id := e.Identity()
		b, _ := json.MarshalIndent(map[string]any{
			"name":          id.Name,
			"digest":        "sha256:" + hex.EncodeToString(id.Digest[:]),
			"fsq_levels":    id.Levels,
			"n_registers":   id.MaxTokens,
			"digest_of":     "flextok-model-digest/1 (sdk/model Identity.Digest = payload model.digest)",
			"codebook_size": product(id.Levels),
		}, "", "  ")
		fmt.Println(string(b))
		return nil
	}
	if in == "" || out == "" || batch < 1 {
		return errors.New("need -in and -out (and -batch >= 1)")
	}
	shape, data, err := readNpyU8(in)
	if err != nil {
		return err
	}
	if len(shape) != 4 || shape[3] != 3 {
		return fmt.Errorf("%s: shape %v, want [N, H, W, 3]", in, shape)
	}
	e, err := load(dir, engine.Options{Threads: threads})
	if err != nil {
		return err
	}
	n, h, w := shape[0], shape[1], shape[2]
	T := e.MaxTokens()
	ids := make([]uint16, 0, n*T)
	start := time.Now()
	for i := 0; i < n; i += batch {
		b := min(batch, n-i)
		x := make([]float32, b*3*h*w)
		for j := 0; j < b; j++ {
			img := data[(i+j)*h*w*3 : (i+j+1)*h*w*3]
			for c := 0; c < 3; c++ {
				for p := 0; p < h*w; p++ {
					// the recipe's to_tensor: u8 / 127.5 - 1, channels first
					x[(j*3+c)*h*w+p] = float32(img[p*3+c])/127.5 - 1
				}
			}
		}
		t, err := tensor.FromData(x, b, 3, h, w)
		if err != nil {
			return err
		}
		toks, err := e.EncodeTensor(context.Background(), t)
		if err != nil {
			return fmt.Errorf("images %d..%d: %w", i, i+b, err)
		}
		for _, s := range toks {
			if len(s) != T {
				return fmt.Errorf("got %d tokens, want %d", len(s), T)
			}
			for _, v := range s {
				ids = append(ids, uint16(v))
			}
		}
		fmt.Fprintf(os.Stderr, "\rartokens: %d/%d images, %.1f s", i+b, n, time.Since(start).Seconds())
	}
	fmt.Fprintln(os.Stderr)
	return writeNpyU16(out, []int{n, T}, ids)
}

func product(l []int) int {
	p := 1
	for _, v := range l {
		p *= v
	}
	return p
}

var shapeRe = regexp.MustCompile(`'shape':\s*\(([^)]*)\)`)

// readNpyU8 reads a version 1/2 .npy file of dtype uint8 in C order.
func readNpyU8(path string) ([]int, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if len(b) < 10 || !bytes.Equal(b[:6], []byte("\x93NUMPY")) {
		return nil, nil, fmt.Errorf("%s: not a .npy file", path)
	}
	var hl, off int
	switch b[6] {
	case 1:
		hl, off = int(binary.LittleEndian.Uint16(b[8:10])), 10
	case 2, 3:
		if len(b) < 12 {
			return nil, nil, fmt.Errorf("%s: truncated", path)
		}
		hl, off = int(binary.LittleEndian.Uint32(b[8:12])), 12
	default:
		return nil, nil, fmt.Errorf("%s: .npy version %d", path, b[6])
	}
	if off+hl > len(b) {
		return nil, nil, fmt.Errorf("%s: truncated header", path)
	}
	hdr := string(b[off : off+hl])
	if !strings.Contains(hdr, "'descr': '|u1'") || !strings.Contains(hdr, "'fortran_order': False") {
		return nil, nil, fmt.Errorf("%s: header %q: want uint8 ('|u1') in C order", path, hdr)
	}
	m := shapeRe.FindStringSubmatch(hdr)
	if m == nil {
		return nil, nil, fmt.Errorf("%s: no shape in header", path)
	}
	var shape []int
	total := 1
	for _, f := range strings.Split(m[1], ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < 0 {
			return nil, nil, fmt.Errorf("%s: shape %q", path, m[1])
		}
		shape = append(shape, v)
		total *= v
	}
	data := b[off+hl:]
	if len(data) != total {
		return nil, nil, fmt.Errorf("%s: %d data bytes, shape %v wants %d", path, len(data), shape, total)
	}
	return shape, data, nil
}

// writeNpyU16 writes a version 1.0 .npy file, dtype '<u2', C order.
func writeNpyU16(path string, shape []int, v []uint16) error {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	s := strings.Join(dims, ", ")
	if len(shape) == 1 {
		s += ","
	}
	hdr := fmt.Sprintf("{'descr': '<u2', 'fortran_order': False, 'shape': (%s), }", s)
	pad := 64 - (10+len(hdr)+1)%64
	hdr += strings.Repeat(" ", pad%64) + "\n"
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	w.WriteString("\x93NUMPY\x01\x00")
	binary.Write(w, binary.LittleEndian, uint16(len(hdr)))
	w.WriteString(hdr)
	if err := binary.Write(w, binary.LittleEndian, v); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
