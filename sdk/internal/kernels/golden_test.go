package kernels

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"testing"
)

// goldenSHA256 is the hash of goldenRun's output. It was computed natively on linux/amd64 and
// the same test passes under GOOS=js GOARCH=wasm (Node) and with -tags purego: the portable
// kernels give the same bits everywhere. A change here means the portable arithmetic changed;
// that must be deliberate (and then every golden downstream changes too).
const goldenSHA256 = "0ac40901eb17852eb0930ad375450c204445e3d952cf0f4d3d8892b3d48cd951"

// goldenRun runs every portable kernel once on fixed inputs, in the order a transformer block
// and a VAE block use them, and hashes all outputs.
func goldenRun(threads int) string {
	o := Opts{Threads: threads}
	r := newRand(42)
	h := sha256.New()
	put := func(s []float32) {
		b := make([]byte, 4*len(s))
		for i, v := range s {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		h.Write(b)
	}
	const tokens, w, heads, hd, hid = 40, 128, 2, 64, 96
	x := randSlice(r, tokens*w, 2)
	shift, scale, gate := randSlice(r, w, 1), randSlice(r, w, 1), randSlice(r, w, 1)
	wqkv, wo := randSlice(r, 3*w*w, 0.1), randSlice(r, w*w, 0.1)
	w1, w3, w2 := randSlice(r, hid*w, 0.1), randSlice(r, hid*w, 0.1), randSlice(r, w*hid, 0.1)
	bias := randSlice(r, 3*w, 0.5)

	n := make([]float32, tokens*w)
	LayerNorm(o, n, x, tokens, w, 1e-5)
	Modulate(o, n, n, shift, scale, tokens, w)
	qkv := make([]float32, tokens*3*w)
	Linear(o, qkv, n, wqkv, bias, tokens, w, 3*w)
	LayerNormHeads(o, qkv, tokens, 3*w, heads, hd, 1e-5)
	LayerNormHeads(o, qkv[w:], tokens, 3*w, heads, hd, 1e-5)
	att := make([]float32, tokens*w)
	Attention(o, att, qkv, qkv[w:], qkv[2*w:], AttnDims{Batch: 2, Heads: heads, SeqQ: tokens / 2, SeqK: tokens / 2, HeadDim: hd, LdQ: 3 * w, LdK: 3 * w, LdV: 3 * w}, 0.125, Mask{Kind: MaskPrefixCausal, Prefix: 8})
	put(att)
	proj := make([]float32, tokens*w)
	MatMul(o, proj, att, wo, tokens, w, w)
	GatedResidual(o, x, proj, gate, tokens, w)
	a, b := make([]float32, tokens*hid), make([]float32, tokens*hid)
	MatMul(o, a, x, w1, tokens, w, hid)
	MatMul(o, b, x, w3, tokens, w, hid)
	SwiGLU(o, a, a, b)
	MatMul(o, proj, a, w2, tokens, hid, w)
	Add(o, x, x, proj)
	put(x)

	// VAE-style block on a [8, 10, 10] image.
	img := randSlice(r, 8*10*10, 2)
	gamma, beta := randSlice(r, 8, 1), randSlice(r, 8, 1)
	g := make([]float32, len(img))
	GroupNorm(o, g, img, 8, 100, 4, 1e-6, gamma, beta)
	SiLU(o, g, g)
	cw, cb := randSlice(r, 8*8*9, 0.2), randSlice(r, 8, 0.1)
	c1 := make([]float32, len(img))
	Conv2d(o, c1, g, cw, cb, ConvDims{InC: 8, InH: 10, InW: 10, OutC: 8, KH: 3, KW: 3, PadT: 1, PadB: 1, PadL: 1, PadR: 1})
	d := make([]float32, 8*5*5)
	Conv2d(o, d, c1, cw, cb, ConvDims{InC: 8, InH: 10, InW: 10, OutC: 8, KH: 3, KW: 3, Stride: 2, PadB: 1, PadR: 1})
	up := make([]float32, 8*10*10)
	Upsample2x(o, up, d, 8, 5, 5)
	put(up)
	return hex.EncodeToString(h.Sum(nil))
}

func TestGolden(t *testing.T) {
	for _, th := range []int{1, 2} {
		if got := goldenRun(th); got != goldenSHA256 {
			t.Errorf("threads=%d: portable kernels hash %s, want %s", th, got, goldenSHA256)
		}
	}
}
