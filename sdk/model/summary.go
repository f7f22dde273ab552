package model

import (
	"fmt"
	"sort"
	"strings"
)

// LicenceNotice is shown with every summary: the checkpoint format does not say whose weights a
// file holds, so the notice says what applies if they are the official ones.
const LicenceNotice = "Licence: if these are the official FlexTok weights (Apple and EPFL), they are released " +
	"under the Apple ML Research Model licence: research use only, no commercial use; read LICENSE_WEIGHTS " +
	"of github.com/apple/ml-flextok before use. This SDK never bundles or downloads them. Weights trained " +
	"by the project's own recipe (train/, models/) carry the licence given in their model card."

// Summary describes a loaded model for `flextok inspect-model`.
type Summary struct {
	Architecture string           // one line, e.g. "FlexTok enc d12 W768 / dec d12 W768 E2 / FSQ [8 8 8 5 5 5]"
	Params       map[string]int64 // per part: vae, encoder, decoder
	TotalParams  int64
	DTypes       map[string]int // tensors per dtype
	Unexpected   []string
	ConfigSource string
	Sizes        string // the image size the model runs at by default, and the sizes it supports
	// Encode and Decode are "" when the executors can encode (decode) with the model, else why
	// not (CanEncode, CanDecode).
	Encode, Decode string
	Licence        string
}

// Summarize describes m.
func Summarize(m *Model) Summary {
	c := m.Config
	e, d := c.Encoder.Trunk, c.Decoder.Trunk
	s := Summary{
		Architecture: fmt.Sprintf("FlexTok: VAE C%d f%d %v | encoder depth %d width %d heads %d, %d registers, mask %s | FSQ %v (%d codes) | decoder depth %d width %d heads %d, adaLN x%d, null-cond %s, head adaLN %v, max_timestep %g",
			c.VAE.LatentChannels, c.VAE.DownsampleFactor(), c.VAE.BlockOutChannels,
			e.Depth, e.Width, e.Heads, c.Encoder.RegistersNMax, c.Encoder.MaskMode,
			c.FSQ.Levels, c.CodebookSize(),
			d.Depth, d.Width, d.Heads, d.AdaLNExpansion, nullCond(c.Decoder), c.Decoder.HeadAdaLN, c.Decoder.MaxTimestep),
		Params:       m.Report.Params,
		DTypes:       map[string]int{},
		Unexpected:   m.Report.Unexpected,
		ConfigSource: m.ConfigSource,
		Licence:      LicenceNotice,
	}
	g := c.Geometry()
	from := "its tables' size"
	if c.ImageSize != [2]int{} {
		from = "its config's image_size"
	}
	st, mx := g.step(), g.Max()
	s.Sizes = fmt.Sprintf("%dx%d (%s); any multiple of %dx%d up to %dx%d", g.Default[0], g.Default[1], from, st[0], st[1], mx[0], mx[1])
	if err := c.CanEncode(); err != nil {
		s.Encode = err.Error()
	}
	if err := c.CanDecode(); err != nil {
		s.Decode = err.Error()
	}
	for _, p := range m.Report.Params {
		s.TotalParams += p
	}
	for dt, n := range m.Report.DTypes {
		s.DTypes[string(dt)] = n
	}
	return s
}

// String formats the summary as a few lines of text.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nconfig from %s\nimage size %s\n", s.Architecture, s.ConfigSource, s.Sizes)
	for _, p := range []struct{ what, why string }{{"encode", s.Encode}, {"decode", s.Decode}} {
		if p.why == "" {
			fmt.Fprintf(&b, "%s: supported\n", p.what)
		} else {
			fmt.Fprintf(&b, "%s: NOT supported: %s\n", p.what, p.why)
		}
	}
	for _, part := range []string{"vae", "encoder", "decoder"} {
		fmt.Fprintf(&b, "params %-8s %d\n", part, s.Params[part])
	}
	fmt.Fprintf(&b, "params total    %d\n", s.TotalParams)
	var dts []string
	for dt, n := range s.DTypes {
		dts = append(dts, fmt.Sprintf("%s:%d", dt, n))
	}
	sort.Strings(dts)
	fmt.Fprintf(&b, "dtypes %s\n", strings.Join(dts, " "))
	if len(s.Unexpected) > 0 {
		fmt.Fprintf(&b, "unused tensors %d (first: %s)\n", len(s.Unexpected), s.Unexpected[0])
	}
	b.WriteString(s.Licence)
	return b.String()
}

// nullCond names the decoder's null condition.
func nullCond(d DecoderConfig) string {
	if d.NullCondSingle {
		return d.NullCond.String() + " (single token)"
	}
	return d.NullCond.String()
}
