package payload

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package is an *Error wrapping one of them, so
// callers test with errors.Is and read the field with errors.As.
var (
	ErrFormat        = errors.New("not a FlexTok token payload")
	ErrVersion       = errors.New("unsupported version")
	ErrType          = errors.New("wrong type")
	ErrMissing       = errors.New("missing field")
	ErrDuplicate     = errors.New("duplicate field")
	ErrRange         = errors.New("value out of range")
	ErrTooLong       = errors.New("sequence longer than the model's maximum")
	ErrTruncated     = errors.New("truncated data")
	ErrTrailing      = errors.New("trailing bytes")
	ErrTooLarge      = errors.New("input over the size limit")
	ErrModelMismatch = errors.New("payload made by another model")
	ErrStream        = errors.New("stream out of order")
)

// codes name the sentinels for errors sent as data (across the wasm boundary, in JSON).
var codes = map[error]string{
	ErrFormat:        "format",
	ErrVersion:       "version",
	ErrType:          "type",
	ErrMissing:       "missing",
	ErrDuplicate:     "duplicate",
	ErrRange:         "range",
	ErrTooLong:       "too_long",
	ErrTruncated:     "truncated",
	ErrTrailing:      "trailing",
	ErrTooLarge:      "too_large",
	ErrModelMismatch: "model_mismatch",
	ErrStream:        "stream",
}

// Error is a payload error: which field, what kind (a sentinel), and a detail.
type Error struct {
	Field  string // dotted path of the field, e.g. "model.digest" or "ids"; "" for the whole input
	Err    error  // one of the sentinel errors
	Detail string // human-readable specifics
}

func (e *Error) Error() string {
	msg := "flextok/payload: "
	if e.Field != "" {
		msg += "field " + e.Field + ": "
	}
	msg += e.Err.Error()
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Code is the stable short name of the error's kind ("range", "truncated", ...), for errors sent
// as data across a boundary.
func (e *Error) Code() string { return codes[e.Err] }

// Code returns the stable short name of err's kind if it is a payload error, else "internal".
func Code(err error) string {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Code()
	}
	return "internal"
}

func errf(field string, kind error, format string, args ...any) *Error {
	return &Error{Field: field, Err: kind, Detail: fmt.Sprintf(format, args...)}
}
