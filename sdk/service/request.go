package service

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// request is a decoded request map. seen records which keys it had, so that absent options
// fall back to their defaults and keys another op would use are refused.
type request struct {
	seen map[string]bool

	Op     string
	ID     *uint64
	Handle int64 // model handle
	Stream int64 // stream handle

	Name      string
	Weights   []byte
	Config    []byte
	VAEConfig []byte
	Payload   []byte
	Header    []byte
	Chunk     []byte
	Image     []byte
	Filter    string
	Orient    *bool // encode: apply the image's EXIF orientation (default true)

	Manifest  []byte // open_graphs: the web model package's manifest.json
	Files     string // open_graphs: the key of the package's files in the front end
	Provider  string // open_graphs: "auto", "wasm" or "webgpu"
	Precision string // open_graphs: "auto", "fp32" or "fp16"

	decodeParams
	genParams
	Decode *bool // stream_chunk: decode after adding the chunk (default true)
}

// decodeParams are the decode options of a request; nil means "not given".
type decodeParams struct {
	K        *int64
	Size     *int64 // image side in pixels (0 or absent: the payload's size)
	Steps    *int64
	Guidance *float64
	APG      *bool
	Seed     *uint64
	Output   []string
}

// genParams are the fields of the AR ops; nil means "not given".
type genParams struct {
	AR           int64 // AR model handle
	Generation   int64 // generation handle
	Class        *int64
	ClassName    *string
	N            *int64
	CFG          *float64
	GuidedTokens *int64
	Temperature  *float64
	TopK         *int64
	TopP         *float64
	Greedy       *bool
	Max          *int64 // generate_next: at most this many token positions
}

// fields lists the keys each op accepts besides "op" and "id".
var fields = map[string][]string{
	"version":      nil,
	"open":         {"name", "weights", "config", "vae_config"},
	"close":        {"handle"},
	"info":         {"handle"},
	"decode":       {"handle", "payload", "k", "size", "steps", "guidance", "apg", "seed", "output"},
	"encode":       {"handle", "image", "k", "size", "filter", "exif_orientation"},
	"stream_open":  {"handle", "header", "size", "steps", "guidance", "apg", "seed", "output"},
	"stream_chunk": {"stream", "chunk", "size", "steps", "guidance", "apg", "seed", "output", "decode"},
	"stream_close": {"stream"},
	"ar_open":      {"handle", "config", "weights"},
	"generate_open": {"ar", "class", "n", "k", "seed", "cfg", "guided_tokens", "temperature",
		"top_k", "top_p", "greedy"},
	"generate_next":  {"generation", "max"},
	"generate_close": {"generation"},
	"open_graphs":    {"manifest", "files", "name", "provider", "precision"},
}

// only refuses a key that the request's op does not take (a typo, or a field of another op).
func (r *request) only(keys ...string) error {
	for k := range r.seen {
		if k == "op" || k == "id" {
			continue
		}
		ok := false
		for _, a := range keys {
			ok = ok || a == k
		}
		if !ok {
			return errorf(CodeBadRequest, "field %q is not a field of op %q", k, r.Op)
		}
	}
	return nil
}

// parse decodes a request: a msgpack map with string keys and nothing after it.
func parse(data []byte) (*request, error) {
	if len(data) == 0 {
		return nil, errorf(CodeBadRequest, "empty request")
	}
	c := data[0]
	if !msgpcode.IsFixedMap(c) && c != msgpcode.Map16 && c != msgpcode.Map32 {
		return nil, errorf(CodeBadRequest, "a request is a msgpack map (first byte 0x%02x)", c)
	}
	rd := bytes.NewReader(data)
	d := msgpack.NewDecoder(rd)
	n, err := d.DecodeMapLen()
	if err != nil {
		return nil, wireErr("", err)
	}
	if n > 32 { // more keys than every field there is: refuse before reading them
		return nil, errorf(CodeBadRequest, "a request map of %d keys", n)
	}
	r := &request{seen: make(map[string]bool, n)}
	for i := 0; i < n; i++ {
		if err := expect(d, isStr, "a string key"); err != nil {
			return r, wireErr("", errors.New("map keys must be strings"))
		}
		kb, err := sized(d)
		if err != nil {
			return r, wireErr("", err)
		}
		key := string(kb)
		if r.seen[key] {
			return r, errorf(CodeBadRequest, "duplicate field %q", key)
		}
		r.seen[key] = true
		if err := r.field(d, key); err != nil {
			return r, wireErr(key, err)
		}
	}
	if rd.Len() > 0 {
		return r, errorf(CodeBadRequest, "%d bytes after the request map", rd.Len())
	}
	if r.Op != "" {
		keys, ok := fields[r.Op]
		if !ok {
			return r, errorf(CodeUnknownOp, "unknown op %q", r.Op)
		}
		if err := r.only(keys...); err != nil {
			return r, err
		}
	}
	return r, nil
}

func wireErr(key string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		if key == "" {
			return errorf(CodeBadRequest, "truncated request")
		}
		return errorf(CodeBadRequest, "truncated request in field %q", key)
	}
	var se *Error
	if errors.As(err, &se) {
		return se
	}
	if key == "" {
		return errorf(CodeBadRequest, "%v", err)
	}
	return errorf(CodeBadRequest, "field %q: %v", key, err)
}

func (r *request) field(d *msgpack.Decoder, key string) error {
	var err error
	switch key {
	case "op":
		r.Op, err = str(d)
	case "id":
		var v uint64
		v, err = uintValue(d)
		r.ID = &v
	case "handle":
		r.Handle, err = handleValue(d)
	case "stream":
		r.Stream, err = handleValue(d)
	case "name":
		r.Name, err = str(d)
	case "filter":
		r.Filter, err = str(d)
	case "manifest":
		r.Manifest, err = bin(d)
	case "files":
		r.Files, err = str(d)
	case "provider":
		r.Provider, err = str(d)
	case "precision":
		r.Precision, err = str(d)
	case "weights":
		r.Weights, err = bin(d)
	case "config":
		r.Config, err = bin(d)
	case "vae_config":
		r.VAEConfig, err = bin(d)
	case "payload":
		r.Payload, err = bin(d)
	case "header":
		r.Header, err = bin(d)
	case "chunk":
		r.Chunk, err = bin(d)
	case "image":
		r.Image, err = bin(d)
	case "k":
		var v uint64
		v, err = uintValue(d)
		k := int64(min(v, math.MaxInt32))
		r.K = &k
	case "size":
		var v uint64
		v, err = uintValue(d)
		sz := int64(min(v, math.MaxInt32))
		r.Size = &sz
	case "steps":
		var v uint64
		v, err = uintValue(d)
		st := int64(min(v, math.MaxInt32))
		r.Steps = &st
	case "seed":
		var v uint64
		v, err = uintValue(d)
		r.Seed = &v
	case "guidance":
		var v float64
		if v, err = floatValue(d); err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
			err = errors.New("not a finite number")
		}
		r.Guidance = &v
	case "apg":
		var v bool
		v, err = boolValue(d)
		r.APG = &v
	case "decode":
		var v bool
		v, err = boolValue(d)
		r.Decode = &v
	case "exif_orientation":
		var v bool
		v, err = boolValue(d)
		r.Orient = &v
	case "output":
		r.Output, err = strs(d)
	case "ar":
		r.AR, err = handleValue(d)
	case "generation":
		r.Generation, err = handleValue(d)
	case "class":
		if c, _ := d.PeekCode(); isStr(c) {
			var v string
			v, err = str(d)
			r.ClassName = &v
		} else {
			var v uint64
			if err = expect(d, isInt, "a class name (str) or id (uint)"); err == nil {
				v, err = uintValue(d)
			}
			c := int64(min(v, math.MaxInt32))
			r.Class = &c
		}
	case "n", "guided_tokens", "top_k", "max":
		var v uint64
		v, err = uintValue(d)
		x := int64(min(v, math.MaxInt32))
		switch key {
		case "n":
			r.N = &x
		case "guided_tokens":
			r.GuidedTokens = &x
		case "top_k":
			r.TopK = &x
		default:
			if err == nil && x == 0 {
				err = errors.New("max = 0: want ≥ 1")
			}
			r.Max = &x
		}
	case "cfg", "temperature", "top_p":
		var v float64
		if v, err = floatValue(d); err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
			err = errors.New("not a finite number")
		}
		switch key {
		case "cfg":
			r.CFG = &v
		case "temperature":
			r.Temperature = &v
		default:
			r.TopP = &v
		}
	case "greedy":
		var v bool
		v, err = boolValue(d)
		r.Greedy = &v
	default:
		return errorf(CodeBadRequest, "unknown field %q", key)
	}
	return err
}

func expect(d *msgpack.Decoder, ok func(byte) bool, want string) error {
	c, err := d.PeekCode()
	if err != nil {
		return err
	}
	if !ok(c) {
		return errors.New("want " + want)
	}
	return nil
}

func isStr(c byte) bool {
	return msgpcode.IsFixedString(c) || c == msgpcode.Str8 || c == msgpcode.Str16 || c == msgpcode.Str32
}

func isBin(c byte) bool { return c == msgpcode.Bin8 || c == msgpcode.Bin16 || c == msgpcode.Bin32 }

func isUint(c byte) bool {
	return msgpcode.IsFixedNum(c) && c <= msgpcode.PosFixedNumHigh ||
		c == msgpcode.Uint8 || c == msgpcode.Uint16 || c == msgpcode.Uint32 || c == msgpcode.Uint64
}

func isInt(c byte) bool {
	return isUint(c) || msgpcode.IsFixedNum(c) ||
		c == msgpcode.Int8 || c == msgpcode.Int16 || c == msgpcode.Int32 || c == msgpcode.Int64
}

func str(d *msgpack.Decoder) (string, error) {
	if err := expect(d, isStr, "a string"); err != nil {
		return "", err
	}
	b, err := sized(d)
	return string(b), err
}

func bin(d *msgpack.Decoder) ([]byte, error) {
	if err := expect(d, isBin, "bytes (msgpack bin)"); err != nil {
		return nil, err
	}
	return sized(d)
}

// sized reads a string or binary whose length has been checked against the bytes the request
// has left: the msgpack library allocates the announced length before reading, so a 45-byte
// request announcing 4 GB would otherwise allocate 4 GB.
func sized(d *msgpack.Decoder) ([]byte, error) {
	n, err := d.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, nil // nil
	}
	if left, ok := d.Buffered().(interface{ Len() int }); ok && n > left.Len() {
		return nil, fmt.Errorf("%d bytes announced, %d left: %w", n, left.Len(), io.ErrUnexpectedEOF)
	}
	b := make([]byte, n)
	if err := d.ReadFull(b); err != nil {
		return nil, err
	}
	return b, nil
}

func uintValue(d *msgpack.Decoder) (uint64, error) {
	if err := expect(d, isInt, "an unsigned integer"); err != nil {
		return 0, err
	}
	c, _ := d.PeekCode()
	if isUint(c) {
		return d.DecodeUint64()
	}
	v, err := d.DecodeInt64()
	if err == nil && v < 0 {
		err = errors.New("want an unsigned integer, got a negative one")
	}
	return uint64(v), err
}

// handleValue reads a handle: any integer (a negative one simply names no handle).
func handleValue(d *msgpack.Decoder) (int64, error) {
	if err := expect(d, isInt, "an integer handle"); err != nil {
		return 0, err
	}
	c, _ := d.PeekCode()
	if c == msgpcode.Uint64 {
		v, err := d.DecodeUint64()
		return int64(min(v, math.MaxInt64)), err
	}
	return d.DecodeInt64()
}

func floatValue(d *msgpack.Decoder) (float64, error) {
	ok := func(c byte) bool { return isInt(c) || c == msgpcode.Float || c == msgpcode.Double }
	if err := expect(d, ok, "a number"); err != nil {
		return 0, err
	}
	return d.DecodeFloat64()
}

func boolValue(d *msgpack.Decoder) (bool, error) {
	if err := expect(d, func(c byte) bool { return c == msgpcode.True || c == msgpcode.False }, "a boolean"); err != nil {
		return false, err
	}
	return d.DecodeBool()
}

func strs(d *msgpack.Decoder) ([]string, error) {
	ok := func(c byte) bool {
		return msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32
	}
	if err := expect(d, ok, "an array of strings"); err != nil {
		return nil, err
	}
	n, err := d.DecodeArrayLen()
	if err != nil {
		return nil, err
	}
	if n > 8 {
		return nil, errors.New("more than 8 entries")
	}
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		v, err := str(d)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
