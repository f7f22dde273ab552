package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/flextok-sdk/flextok/sdk/internal/pyliteral"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// Top-level config keys that the SDK reads and the official loaders ignore. They describe the
// model (its model card) rather than its architecture, so the content digest leaves them out:
// naming a checkpoint or changing its hints does not change its identity.
const (
	// NameKey holds the model's name, which payloads carry (a string, 1–256 bytes of UTF-8).
	NameKey = "name"
	// HintsKey holds the decode settings that suit the model, e.g.
	// {"steps": 10, "guidance": 1.5, "apg": false}: what payloads made with it suggest.
	HintsKey = "decode_hints"
)

// DigestVersion names the content-digest definition (docs/payload.md, "Model identity").
const DigestVersion = "flextok-model-digest/1"

// Identity is what defines a checkpoint, independent of where it is stored.
type Identity struct {
	// Name is the config's "name", or "flextok-" and the first 12 hex digits of Digest when it
	// has none. It is descriptive: payloads carry it, but equality is decided by Digest.
	Name string
	// Digest is the content digest (DigestVersion): SHA-256 over every tensor (by sorted name:
	// dtype, shape, SHA-256 of the data) and the config the model was read from, canonicalised
	// (top-level keys sorted, "name" and "decode_hints" left out) with the VAE's config.json
	// when one was used. Equal tensors and config give equal digests whatever the file's
	// metadata order, directory or file name.
	Digest [32]byte
	// FileDigest is the SHA-256 of the safetensors file's bytes: the digest that payloads of
	// SDK versions before the content digest carry (kept so that those still decode).
	FileDigest [32]byte
}

// Identity computes the checkpoint's identity; the first call reads every weight once (two
// SHA-256 streams, under a second per GB on two cores), later calls return the cached value.
func (m *Model) Identity() (Identity, error) {
	m.idMu.Lock()
	defer m.idMu.Unlock()
	if m.id != nil {
		return *m.id, nil
	}
	file, sums, err := m.Weights.Digests()
	if err != nil {
		return Identity{}, err
	}
	tensors := m.Weights.Tensors()
	order := make([]int, len(tensors))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return tensors[order[a]].Name < tensors[order[b]].Name })
	var w canonWriter
	w.str(DigestVersion)
	w.count('l', len(tensors))
	for _, i := range order {
		t := tensors[i]
		w.str(t.Name)
		w.str(string(t.DType))
		w.count('l', len(t.Shape))
		for _, d := range t.Shape {
			w.int(int64(d))
		}
		w.b.Write(sums[i][:])
	}
	w.value(withoutCardKeys(m.tree), true)
	if m.vaeTree != nil {
		w.value(*m.vaeTree, true)
	} else {
		w.value(pyliteral.Value{Kind: pyliteral.None}, false)
	}
	id := Identity{Name: m.Name, Digest: sha256.Sum256(w.b.Bytes()), FileDigest: file}
	if id.Name == "" {
		id.Name = "flextok-" + hex.EncodeToString(id.Digest[:6])
	}
	m.id = &id
	return id, nil
}

// withoutCardKeys returns the config tree without the top-level name and decode_hints.
func withoutCardKeys(tree pyliteral.Value) pyliteral.Value {
	if tree.Kind != pyliteral.Dict {
		return tree
	}
	out := tree
	out.Dict = nil
	for _, e := range tree.Dict {
		if e.Key.Kind == pyliteral.Str && (e.Key.Str == NameKey || e.Key.Str == HintsKey) {
			continue
		}
		out.Dict = append(out.Dict, e)
	}
	return out
}

// canonWriter writes the canonical form of config values: a tagged, length-prefixed text that
// is the same for a config read from safetensors metadata (Python literals) and from
// config.json, so a tuple is written as a list and a float by its IEEE-754 bits.
type canonWriter struct{ b bytes.Buffer }

func (w *canonWriter) count(tag byte, n int) {
	w.b.WriteByte(tag)
	w.b.WriteString(strconv.Itoa(n))
	w.b.WriteByte(':')
}

func (w *canonWriter) str(s string) {
	w.count('s', len(s))
	w.b.WriteString(s)
}

func (w *canonWriter) int(i int64) {
	w.b.WriteByte('i')
	w.b.WriteString(strconv.FormatInt(i, 10))
	w.b.WriteByte(';')
}

func (w *canonWriter) float(tag byte, f float64) {
	var x [8]byte
	binary.BigEndian.PutUint64(x[:], math.Float64bits(f))
	w.b.WriteByte(tag)
	w.b.WriteString(hex.EncodeToString(x[:]))
}

// value writes v; sortKeys sorts the keys of v itself (the top level, where order carries no
// meaning), never those of nested dicts (a module_dict's order is its execution order).
func (w *canonWriter) value(v pyliteral.Value, sortKeys bool) {
	switch v.Kind {
	case pyliteral.None:
		w.b.WriteByte('N')
	case pyliteral.Bool:
		if v.Bool {
			w.b.WriteByte('T')
		} else {
			w.b.WriteByte('F')
		}
	case pyliteral.Int:
		if v.Big != nil {
			w.b.WriteByte('i')
			w.b.WriteString(v.Big.String())
			w.b.WriteByte(';')
		} else {
			w.int(v.Int)
		}
	case pyliteral.Float:
		w.float('f', v.Float)
	case pyliteral.Complex:
		w.float('c', v.Float)
		w.float('j', v.Imag)
	case pyliteral.Str:
		w.str(v.Str)
	case pyliteral.Bytes:
		w.count('b', len(v.Str))
		w.b.WriteString(v.Str)
	case pyliteral.List, pyliteral.Tuple, pyliteral.Set:
		tag := byte('l')
		if v.Kind == pyliteral.Set {
			tag = 'S'
		}
		w.count(tag, len(v.Items))
		for _, it := range v.Items {
			w.value(it, false)
		}
	case pyliteral.Dict:
		entries := v.Dict
		if sortKeys {
			entries = append([]pyliteral.Entry(nil), entries...)
			sort.SliceStable(entries, func(a, b int) bool { return dictKey(entries[a]) < dictKey(entries[b]) })
		}
		w.count('d', len(entries))
		for _, e := range entries {
			w.value(e.Key, false)
			w.value(e.Value, false)
		}
	}
}

func dictKey(e pyliteral.Entry) string {
	if e.Key.Kind == pyliteral.Str {
		return e.Key.Str
	}
	return e.Key.String()
}

// readCard reads the model's name and decode hints from the top level of a config tree.
func readCard(tree pyliteral.Value) (string, *payload.Hints, error) {
	root := node{v: tree}
	var name string
	if root.has(NameKey) {
		var err error
		if name, err = root.str(NameKey); err != nil {
			return "", nil, err
		}
		if name == "" || len(name) > payload.DefaultLimits.MaxString || !utf8.ValidString(name) {
			return "", nil, fmt.Errorf("%w: %s: %q: want 1 to %d bytes of UTF-8", ErrConfig, NameKey, trunc(name), payload.DefaultLimits.MaxString)
		}
	}
	if !root.has(HintsKey) {
		return name, nil, nil
	}
	hn, _ := root.get(HintsKey)
	if hn.v.Kind != pyliteral.Dict {
		return "", nil, hn.typeErr("a dict")
	}
	h := &payload.Hints{}
	for _, e := range hn.v.Dict {
		switch k := dictKey(e); k {
		case "steps":
			s, err := hn.optIntIn("steps", 0, 1, 100000)
			if err != nil {
				return "", nil, err
			}
			h.Steps = s
		case "guidance":
			g, err := hn.optFloatIn("guidance", 1, 0, 1e6)
			if err == nil && g == 0 {
				err = fmt.Errorf("%w: %s: 0 (want > 0; 1 turns guidance off)", ErrConfig, hn.child("guidance"))
			}
			if err != nil {
				return "", nil, err
			}
			if hn.has("guidance") {
				g32 := float32(g)
				h.Guidance = &g32
			}
		case "apg":
			b, err := hn.optBool("apg", false)
			if err != nil {
				return "", nil, err
			}
			h.APG = b
		default:
			return "", nil, fmt.Errorf("%w: %s: unknown key (want steps, guidance, apg)", ErrConfig, hn.child(k))
		}
	}
	if h.Steps == 0 && h.Guidance == nil {
		return "", nil, fmt.Errorf("%w: %s: gives neither steps nor guidance", ErrConfig, HintsKey)
	}
	return name, h, nil
}
