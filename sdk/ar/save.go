package ar

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/flextok-sdk/flextok/internal/safetensors"
)

// ConfigJSON renders c as the config.json of docs/ar-checkpoint.md (ParseConfig reads it back).
func (c *Config) ConfigJSON() ([]byte, error) {
	tok := map[string]any{"digest": "sha256:" + hex.EncodeToString(c.Tokenizer.Digest[:]), "fsq_levels": c.Tokenizer.Levels,
		"codebook_size": c.Tokenizer.CodebookSize, "n_registers": c.Tokenizer.Registers}
	if c.Tokenizer.Name != "" {
		tok["name"] = c.Tokenizer.Name
	}
	m := map[string]any{"format": "flextok-ar", "format_version": 1, "architecture": "llamagen-gpt-c2i", "positions": "rope1d",
		"dim": c.Dim, "n_layer": c.Layers, "n_head": c.Heads, "n_kv_head": c.KVHeads, "multiple_of": c.MultipleOf,
		"ffn_dim_multiplier": c.FFNDimMultiplier, "ffn_hidden": c.FFNHidden, "norm_eps": c.NormEps, "rope_base": c.RopeBase,
		"block_size": c.BlockSize, "cls_token_num": 1, "num_classes": c.NumClasses, "class_dropout": c.ClassDropout,
		"vocab_size": c.VocabSize, "tokenizer": tok}
	if c.Name != "" {
		m["name"] = c.Name
	}
	if c.Classes != nil {
		m["classes"] = c.Classes
	}
	if h := c.Hints; h != nil {
		hm := map[string]any{}
		for k, v := range map[string]any{"cfg_scale": h.CFGScale, "cfg_interval": h.CFGInterval, "temperature": h.Temperature, "top_k": h.TopK, "top_p": h.TopP} {
			switch p := v.(type) {
			case *float64:
				if p != nil {
					hm[k] = *p
				}
			case *int:
				if p != nil {
					hm[k] = *p
				}
			}
		}
		m["sampling_hints"] = hm
	}
	return json.MarshalIndent(m, "", "  ")
}

// Save writes m as an AR checkpoint directory (config.json, model.safetensors with F32 or BF16
// tensors), creating dir.
func (m *Model) Save(dir string, bf16 bool) error {
	cj, err := m.Cfg.ConfigJSON()
	if err != nil {
		return err
	}
	dt := safetensors.F32
	if bf16 {
		dt = safetensors.BF16
	}
	var w safetensors.Writer
	for _, t := range spec(m.Cfg, m.W) {
		if err := w.AddFloat32(t.name, dt, t.shape, *t.dst); err != nil {
			return fmt.Errorf("%w: %v", ErrWeights, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), append(cj, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "model.safetensors"), w.Bytes(), 0o644)
}
