package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/payload"
)

// copyCheckpoint copies the official c1 checkpoint into a directory named name.
func copyCheckpoint(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join(officialRoot, "c1_w32_zero_e2")
	dst := filepath.Join(t.TempDir(), name)
	for _, f := range []string{"model.safetensors", "config.json", "vae/config.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Skip("no official testdata:", err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func testImage() image.Image {
	im := image.NewNRGBA(image.Rect(0, 0, 40, 32))
	for y := 0; y < 32; y++ {
		for x := 0; x < 40; x++ {
			im.Set(x, y, color.NRGBA{uint8(6 * x), uint8(7 * y), uint8(x * y), 255})
		}
	}
	return im
}

// A payload made from a checkpoint decodes with a copy of it in a directory of another name
// (a Hugging Face cache names folders by commit hash), and with the same bytes in memory.
func TestRenamedCheckpointDecodes(t *testing.T) {
	ctx := context.Background()
	a, err := Load(copyCheckpoint(t, "c1_w32_zero_e2"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(copyCheckpoint(t, "0a1b2c3d4e5f"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Encode(ctx, testImage(), EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ia, ib := a.Identity(), b.Identity(); !ia.Equal(&ib) || ia.Name != ib.Name {
		t.Fatalf("identities differ by directory: %+v, %+v", ia, ib)
	}
	wire, _ := p.MarshalBinary()
	var q payload.Payload
	if err := payload.Decode(wire, &q, payload.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Decode(ctx, &q, DecodeOptions{K: 4, Steps: 2}); err != nil {
		t.Fatalf("the renamed checkpoint refuses the payload: %v", err)
	}
	// A caller's name changes what payloads say, not what decodes.
	c, err := Load(copyCheckpoint(t, "c"), Options{Name: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	if id := c.Identity(); id.Name != "mine" || id.Digest != a.Identity().Digest {
		t.Errorf("Options.Name: identity %+v", id)
	}
	if _, err := c.Decode(ctx, &q, DecodeOptions{K: 4, Steps: 2}); err != nil {
		t.Errorf("a differently named engine refuses the payload: %v", err)
	}
	if _, err := Load(copyCheckpoint(t, "d"), Options{Name: string(make([]byte, 300))}); !errors.Is(err, ErrArgument) {
		t.Errorf("a 300-byte name: err = %v, want ErrArgument", err)
	}
}

// Payloads of earlier SDK versions carry the SHA-256 of the safetensors file and the directory
// name: they still decode. Another digest is still refused, whatever the name says.
func TestLegacyPayloadDecodes(t *testing.T) {
	ctx := context.Background()
	dir := copyCheckpoint(t, "some-folder")
	e, err := Load(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.Encode(ctx, testImage(), EncodeOptions{K: 4})
	if err != nil {
		t.Fatal(err)
	}
	legacy := *p
	legacy.Model.Name, legacy.Model.Digest = "c1_w32_zero_e2", sha256.Sum256(file)
	if legacy.Model.Digest == p.Model.Digest {
		t.Fatal("the content digest equals the file digest")
	}
	o := DecodeOptions{Steps: 2}
	want, err := e.Decode(ctx, p, o)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.Decode(ctx, &legacy, o)
	if err != nil {
		t.Fatalf("legacy payload refused: %v", err)
	}
	if !slices.Equal(got.Data, want.Data) {
		t.Error("the legacy payload decodes to another image")
	}
	other := legacy
	other.Model.Name = e.Identity().Name
	other.Model.Digest[0] ^= 1
	if _, err := e.Decode(ctx, &other, o); !errors.Is(err, ErrModelMismatch) {
		t.Errorf("another digest with this model's name: err = %v, want ErrModelMismatch", err)
	}
}

// Zero DecodeOptions Steps and Guidance take the hinted values: the payload's hints, else the
// model's, else the official 20 steps of APG 7.5. DecodeOptions{K: 8} decodes as
// DefaultDecodeOptions(p) with K 8 and seed 0 does.
func TestZeroDecodeOptionsAreHinted(t *testing.T) {
	ctx := context.Background()
	g := float32(1.5)
	e, err := Load(filepath.Join(officialRoot, "c1_w32_zero_e2"), Options{Hints: &payload.Hints{Steps: 3, Guidance: &g}})
	if err != nil {
		t.Skip("no official testdata:", err)
	}
	p, err := e.Encode(ctx, testImage(), EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Hints == nil || p.Hints.Steps != 3 {
		t.Fatalf("payload hints %+v, want the engine's", p.Hints)
	}
	bare := *p
	bare.Hints = nil
	seed := uint64(7)
	seeded := *p
	seeded.Hints = &payload.Hints{Steps: 2, Guidance: &g, APG: true, Seed: &seed}
	for _, c := range []struct {
		name string
		p    *payload.Payload
		want DecodeOptions
	}{
		{"payload hints", p, DecodeOptions{Steps: 3, Guidance: 1.5}},
		{"model hints", &bare, DecodeOptions{Steps: 3, Guidance: 1.5}},
		{"seeded payload", &seeded, DecodeOptions{Steps: 2, Guidance: 1.5, APG: true, Seed: 7}},
	} {
		if d := e.DefaultDecodeOptions(c.p); d.Steps != c.want.Steps || d.Guidance != c.want.Guidance || d.APG != c.want.APG || d.Seed != c.want.Seed {
			t.Errorf("%s: DefaultDecodeOptions %+v, want %+v", c.name, d, c.want)
		}
		want := c.want
		want.K, want.Seed = 8, 0 // a zero Seed is seed 0, whatever the payload hints
		a, err := e.Decode(ctx, c.p, DecodeOptions{K: 8})
		if err != nil {
			t.Fatalf("%s: DecodeOptions{K: 8}: %v", c.name, err)
		}
		b, err := e.Decode(ctx, c.p, want)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.Data, b.Data) {
			t.Errorf("%s: the zero options decode otherwise than %+v", c.name, want)
		}
	}
	// Without any hints: the official settings.
	if d := DefaultDecodeOptions(&bare); d.Steps != OfficialSteps || d.Guidance != OfficialGuidance || d.APG != OfficialAPG {
		t.Errorf("official defaults %+v", d)
	}
	// A batch must agree on what its zero fields take.
	if _, err := e.DecodeBatch(ctx, []*payload.Payload{p, &seeded}, DecodeOptions{}); !errors.Is(err, ErrArgument) {
		t.Errorf("payloads hinting different steps: err = %v, want ErrArgument", err)
	}
	if _, err := e.DecodeBatch(ctx, []*payload.Payload{p, &seeded}, DecodeOptions{Steps: 1, Guidance: 2}); err != nil {
		t.Errorf("explicit options: %v", err)
	}
	if _, err := e.DecodeBatch(ctx, []*payload.Payload{nil, p}, DecodeOptions{}); !errors.Is(err, ErrArgument) || !strings.Contains(err.Error(), "nil payload") {
		t.Errorf("a nil payload: err = %v", err)
	}
}

// The zero Options run on every CPU (the result does not depend on it); one thread is Threads 1.
func TestZeroOptionsUseEveryCPU(t *testing.T) {
	if got := (Options{}).kernels().Threads; got != runtime.GOMAXPROCS(0) {
		t.Errorf("Options{} runs %d threads, want GOMAXPROCS %d", got, runtime.GOMAXPROCS(0))
	}
	if got := (Options{Threads: 1}).kernels().Threads; got != 1 {
		t.Errorf("Threads 1 runs %d threads", got)
	}
}
