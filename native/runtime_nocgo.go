//go:build !cgo

package native

import "context"

// Without cgo there is no ONNX Runtime: the API is the same, and every constructor returns
// ErrNoCgo.

// Init returns ErrNoCgo.
func Init(o Options) error { return ErrNoCgo }

// RuntimeVersion returns ErrNoCgo.
func RuntimeVersion() (string, error) { return "", ErrNoCgo }

// Session is an ONNX Runtime session; without cgo none can be made.
type Session struct {
	inputs, outputs []string
}

// NewSession returns ErrNoCgo.
func NewSession(modelPath string, inputs, outputs []string, o Options) (*Session, error) {
	return nil, ErrNoCgo
}

// NewSessionFromBytes returns ErrNoCgo.
func NewSessionFromBytes(model []byte, inputs, outputs []string, o Options) (*Session, error) {
	return nil, ErrNoCgo
}

// Provider returns "".
func (s *Session) Provider() Provider { return "" }

// Inputs returns the input names.
func (s *Session) Inputs() []string { return append([]string(nil), s.inputs...) }

// Outputs returns the output names.
func (s *Session) Outputs() []string { return append([]string(nil), s.outputs...) }

// Close does nothing.
func (s *Session) Close() error { return nil }

// Run returns ErrNoCgo.
func (s *Session) Run(ctx context.Context, in []Tensor) ([]Tensor, error) { return nil, ErrNoCgo }
