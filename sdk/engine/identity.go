package engine

import (
	"fmt"
	"unicode/utf8"

	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// Identity is the model identity an executor writes into the payloads it makes and checks the
// payloads it decodes against (docs/payload.md, "Model identity").
type Identity struct {
	// Model is what payloads carry: the model's name (descriptive), its content digest
	// (model.Identity), FSQ levels and maximum tokens.
	payload.Model
	// Legacy is the SHA-256 of the checkpoint's safetensors file, the digest that payloads of
	// SDK versions before the content digest carry; zero when unknown.
	Legacy [payload.DigestSize]byte
}

// NewIdentity is the identity of a loaded model (it reads every weight once, see
// model.Model.Identity). name, if not empty, replaces the model's own name in payloads; it
// does not take part in equality.
func NewIdentity(m *model.Model, name string) (Identity, error) {
	mid, err := m.Identity()
	if err != nil {
		return Identity{}, err
	}
	if name == "" {
		name = mid.Name
	} else if len(name) > payload.DefaultLimits.MaxString || !utf8.ValidString(name) {
		return Identity{}, fmt.Errorf("%w: name of %d bytes: want at most %d bytes of UTF-8", ErrArgument, len(name), payload.DefaultLimits.MaxString)
	}
	return Identity{
		Model:  payload.Model{Name: name, Digest: mid.Digest, Levels: append([]int(nil), m.Config.FSQ.Levels...), MaxTokens: m.Config.Encoder.RegistersNMax},
		Legacy: mid.FileDigest,
	}, nil
}

// Accepts reports whether a payload made by model p decodes with this identity: same FSQ
// levels and maximum tokens, and the same content digest, or the legacy file digest that
// earlier SDK versions wrote. Names are not compared: they are descriptive, and old payloads
// carry a directory name.
func (id *Identity) Accepts(p *payload.Model) bool {
	same := p.Digest == id.Digest || (id.Legacy != [payload.DigestSize]byte{} && p.Digest == id.Legacy)
	q := *p
	q.Digest = id.Digest
	return same && q.Equal(&id.Model)
}

// check is Accepts as an error wrapping ErrModelMismatch.
func (id *Identity) check(p *payload.Model) error {
	if id.Accepts(p) {
		return nil
	}
	return fmt.Errorf("flextok/engine: payload of model %q (digest %x…, fsq %v, %d tokens), this engine is %q (digest %x…, fsq %v, %d tokens): %w",
		p.Name, p.Digest[:4], p.Levels, p.MaxTokens, id.Name, id.Digest[:4], id.Levels, id.MaxTokens, ErrModelMismatch)
}

// Accepts reports whether the engine decodes payloads made by model p (Identity.Accepts).
func (e *Engine) Accepts(p *payload.Model) bool { return e.id.Accepts(p) }
