package models_test

import (
	"context"
	"image"
	"testing"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/engine"
)

// The default model in one call: its payloads carry its name and decode hints from
// default/config.json, and the zero DecodeOptions decode with them.
func TestLoadDefaultHints(t *testing.T) {
	e, err := models.LoadDefault(engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.Encode(context.Background(), image.NewGray(image.Rect(0, 0, 40, 32)), engine.EncodeOptions{K: 4})
	if err != nil {
		t.Fatal(err)
	}
	if p.Model.Name != "flextok-sdk-shapes32" {
		t.Errorf("name %q", p.Model.Name)
	}
	h := p.Hints
	if h == nil || h.Steps != 10 || h.Guidance == nil || *h.Guidance != 1.5 || h.APG || h.Seed != nil {
		t.Fatalf("payload hints %+v, want 10 steps of CFG 1.5", h)
	}
	p.Hints = nil // a payload without hints still gets the model's
	if o := e.DefaultDecodeOptions(p); o.Steps != 10 || o.Guidance != 1.5 || o.APG {
		t.Errorf("decode defaults %+v", o)
	}
	m, err := models.Default().Model()
	if err != nil {
		t.Fatal(err)
	}
	id, err := m.Identity()
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Identity(); got.Digest != id.Digest || got.Name != id.Name {
		t.Errorf("engine identity %+v, model %+v", got, id)
	}
}
