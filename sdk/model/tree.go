package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/flextok-sdk/flextok/sdk/internal/pyliteral"
)

// node is a config tree node with its key path, for error messages.
type node struct {
	v    pyliteral.Value
	path string
}

func (n node) child(key string) string {
	if n.path == "" {
		return key
	}
	return n.path + "." + key
}

// has reports whether the dict n has key k with a value other than None.
func (n node) has(k string) bool {
	v, ok := n.v.Get(k)
	return ok && v.Kind != pyliteral.None
}

// isNone reports whether the dict n has key k set to None. Where None means something other
// than the default (a module turned off rather than left at its default), the caller must look.
func (n node) isNone(k string) bool {
	v, ok := n.v.Get(k)
	return ok && v.Kind == pyliteral.None
}

// strs returns the list of strings at key k.
func (n node) strs(k string) ([]string, error) {
	c, err := n.get(k)
	if err != nil {
		return nil, err
	}
	if c.v.Kind != pyliteral.List && c.v.Kind != pyliteral.Tuple {
		return nil, c.typeErr("a list of strings")
	}
	out := make([]string, len(c.v.Items))
	for i, it := range c.v.Items {
		if it.Kind != pyliteral.Str {
			return nil, node{it, c.path + "[" + strconv.Itoa(i) + "]"}.typeErr("a string")
		}
		out[i] = it.Str
	}
	return out, nil
}

func (n node) get(k string) (node, error) {
	if n.v.Kind != pyliteral.Dict {
		return node{}, fmt.Errorf("%w: %s: expected a dict, got %s", ErrConfig, pathOr(n.path), n.v.Kind)
	}
	v, ok := n.v.Get(k)
	if !ok {
		return node{}, fmt.Errorf("%w: %s: missing", ErrConfig, n.child(k))
	}
	return node{v, n.child(k)}, nil
}

func pathOr(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}

func (n node) typeErr(want string) error {
	return fmt.Errorf("%w: %s: expected %s, got %s %s", ErrConfig, pathOr(n.path), want, n.v.Kind, trunc(n.v.String()))
}

func trunc(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

func (n node) str(k string) (string, error) {
	c, err := n.get(k)
	if err != nil {
		return "", err
	}
	if c.v.Kind != pyliteral.Str {
		return "", c.typeErr("a string")
	}
	return c.v.Str, nil
}

// optStr returns def when k is absent or None.
func (n node) optStr(k, def string) (string, error) {
	if !n.has(k) {
		return def, nil
	}
	return n.str(k)
}

func (n node) int(k string) (int, error) {
	c, err := n.get(k)
	if err != nil {
		return 0, err
	}
	return c.asInt()
}

func (n node) asInt() (int, error) {
	if n.v.Kind != pyliteral.Int || n.v.Big != nil || n.v.Int < -1<<31 || n.v.Int > 1<<31-1 {
		return 0, n.typeErr("an int")
	}
	return int(n.v.Int), nil
}

func (n node) optInt(k string, def int) (int, error) {
	if !n.has(k) {
		return def, nil
	}
	return n.int(k)
}

func (n node) optFloat(k string, def float64) (float64, error) {
	if !n.has(k) {
		return def, nil
	}
	c, _ := n.get(k)
	switch c.v.Kind {
	case pyliteral.Int:
		if c.v.Big != nil {
			f, _ := new(big.Float).SetInt(c.v.Big).Float64()
			return f, nil
		}
		return float64(c.v.Int), nil
	case pyliteral.Float:
		return c.v.Float, nil
	}
	return 0, c.typeErr("a number")
}

func (n node) optBool(k string, def bool) (bool, error) {
	if !n.has(k) {
		return def, nil
	}
	c, _ := n.get(k)
	if c.v.Kind != pyliteral.Bool {
		return false, c.typeErr("True or False")
	}
	return c.v.Bool, nil
}

func (n node) ints(k string) ([]int, error) {
	c, err := n.get(k)
	if err != nil {
		return nil, err
	}
	if c.v.Kind != pyliteral.List && c.v.Kind != pyliteral.Tuple {
		return nil, c.typeErr("a list of ints")
	}
	out := make([]int, len(c.v.Items))
	for i, it := range c.v.Items {
		x, err := node{it, c.path + "[" + strconv.Itoa(i) + "]"}.asInt()
		if err != nil {
			return nil, err
		}
		out[i] = x
	}
	return out, nil
}

// target returns the class name (last dotted component) of n's _target_.
func (n node) target() (string, error) {
	t, err := n.str("_target_")
	if err != nil {
		return "", err
	}
	return t[strings.LastIndexByte(t, '.')+1:], nil
}

// ParseJSONTree parses JSON into an ordered tree (null, true, false, numbers,
// strings, arrays as lists, objects as dicts with their key order).
func parseJSONTree(data []byte) (pyliteral.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := jsonValue(dec, 0)
	if err != nil {
		return pyliteral.Value{}, fmt.Errorf("%w: config.json: %v", ErrConfig, err)
	}
	if _, err := dec.Token(); err == nil {
		return pyliteral.Value{}, fmt.Errorf("%w: config.json: trailing data", ErrConfig)
	}
	return v, nil
}

func jsonValue(dec *json.Decoder, depth int) (pyliteral.Value, error) {
	if depth > pyliteral.MaxDepth {
		return pyliteral.Value{}, fmt.Errorf("nested more than %d levels", pyliteral.MaxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return pyliteral.Value{}, err
	}
	switch t := tok.(type) {
	case nil:
		return pyliteral.Value{Kind: pyliteral.None}, nil
	case bool:
		return pyliteral.Value{Kind: pyliteral.Bool, Bool: t}, nil
	case string:
		return pyliteral.StrValue(t), nil
	case json.Number:
		// JSON numbers keep Python's int/float distinction: ints have no
		// '.', 'e' or 'E'.
		v, err := pyliteral.Parse(string(t))
		if err != nil || !v.IsNumber() {
			return pyliteral.Value{}, fmt.Errorf("bad number %s", t)
		}
		return v, nil
	case json.Delim:
		switch t {
		case '[':
			out := pyliteral.Value{Kind: pyliteral.List, Items: []pyliteral.Value{}}
			for dec.More() {
				it, err := jsonValue(dec, depth+1)
				if err != nil {
					return pyliteral.Value{}, err
				}
				out.Items = append(out.Items, it)
			}
			_, err := dec.Token()
			return out, err
		case '{':
			out := pyliteral.Value{Kind: pyliteral.Dict, Dict: []pyliteral.Entry{}}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return pyliteral.Value{}, err
				}
				k, _ := kt.(string)
				val, err := jsonValue(dec, depth+1)
				if err != nil {
					return pyliteral.Value{}, err
				}
				replaced := false
				for i := range out.Dict { // Python's json keeps the last value
					if out.Dict[i].Key.Str == k {
						out.Dict[i].Value, replaced = val, true
					}
				}
				if !replaced {
					out.Dict = append(out.Dict, pyliteral.Entry{Key: pyliteral.StrValue(k), Value: val})
				}
			}
			_, err := dec.Token()
			return out, err
		}
	}
	return pyliteral.Value{}, fmt.Errorf("unexpected %v", tok)
}

// Limits of the integers and floats a config may hold. They are far above any released
// model's and only keep a corrupt or hostile config from asking for millions of layers or
// impossible shapes before a weight is read.
const (
	maxDim      = 1 << 16 // widths, channels, register counts
	maxDepth    = 1024    // transformer blocks
	maxVAEDepth = 64      // VAE resnets per block
)

// inRange returns an error naming key k of n when v is outside [lo, hi].
func (n node) inRange(k string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("%w: %s: %d outside [%d, %d]", ErrConfig, n.child(k), v, lo, hi)
	}
	return nil
}

// optIntIn is optInt limited to [lo, hi].
func (n node) optIntIn(k string, def, lo, hi int) (int, error) {
	v, err := n.optInt(k, def)
	if err == nil {
		err = n.inRange(k, v, lo, hi)
	}
	return v, err
}

// optFloatIn is optFloat limited to finite values in [lo, hi].
func (n node) optFloatIn(k string, def, lo, hi float64) (float64, error) {
	v, err := n.optFloat(k, def)
	if err == nil && !(v >= lo && v <= hi) { // also false for NaN
		err = fmt.Errorf("%w: %s: %v outside [%v, %v]", ErrConfig, n.child(k), v, lo, hi)
	}
	return v, err
}

// A field reads one key of a config dict into a Go value, or checks one. The module parsers
// list their keys as tables of fields, which [node.read] applies in order, stopping at the
// first error, so that the first problem of a module is the one reported. A field named like a
// node method (optStr, optIntIn, ...) is exactly that method, stored into p.
type field func(n node) error

// read applies the fields in order and returns the first error.
func (n node) read(fields ...field) error {
	for _, f := range fields {
		if err := f(n); err != nil {
			return err
		}
	}
	return nil
}

// reqStr reads the required string k into p.
func reqStr(k string, p *string) field {
	return func(n node) (err error) { *p, err = n.str(k); return err }
}

// reqInt reads the required int k into p.
func reqInt(k string, p *int) field {
	return func(n node) (err error) { *p, err = n.int(k); return err }
}

// optStr reads the string k into p, def when absent or None.
func optStr(k string, p *string, def string) field {
	return func(n node) (err error) { *p, err = n.optStr(k, def); return err }
}

// optInt reads the int k into p, def when absent or None.
func optInt(k string, p *int, def int) field {
	return func(n node) (err error) { *p, err = n.optInt(k, def); return err }
}

// optIntIn reads the int k into p, def when absent or None, limited to [lo, hi].
func optIntIn(k string, p *int, def, lo, hi int) field {
	return func(n node) (err error) { *p, err = n.optIntIn(k, def, lo, hi); return err }
}

// optFloatIn reads the number k into p, def when absent or None, limited to finite values in [lo, hi].
func optFloatIn(k string, p *float64, def, lo, hi float64) field {
	return func(n node) (err error) { *p, err = n.optFloatIn(k, def, lo, hi); return err }
}

// optBool reads the bool k into p, def when absent or None.
func optBool(k string, p *bool, def bool) field {
	return func(n node) (err error) { *p, err = n.optBool(k, def); return err }
}

// wantBool refuses the bool k (def when absent or None) unless it is want: "path.k: msg".
func wantBool(k string, def, want bool, msg string) field {
	return func(n node) error {
		b, err := n.optBool(k, def)
		if err == nil && b != want {
			err = fmt.Errorf("%w: %s: %s", ErrConfig, n.child(k), msg)
		}
		return err
	}
}

// refuseKey refuses k when it is set (to anything but None): "path.k: msg".
func refuseKey(k, msg string) field {
	return func(n node) error {
		if n.has(k) {
			return fmt.Errorf("%w: %s: %s", ErrConfig, n.child(k), msg)
		}
		return nil
	}
}

// refuseNone refuses k when it is set to None, where None switches a module off rather than
// meaning the default: "path.k: None why".
func refuseNone(k, why string) field {
	return func(n node) error {
		if n.isNone(k) {
			return fmt.Errorf("%w: %s: None %s", ErrConfig, n.child(k), why)
		}
		return nil
	}
}
