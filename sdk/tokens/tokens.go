package tokens

import (
	"errors"
	"fmt"
)

// Sentinel errors; every error returned by this package wraps one of them.
var (
	ErrEmpty    = errors.New("flextok/tokens: empty sequence")
	ErrTooLong  = errors.New("flextok/tokens: sequence longer than the model's maximum")
	ErrIDRange  = errors.New("flextok/tokens: id outside the codebook")
	ErrPrefix   = errors.New("flextok/tokens: invalid prefix length")
	ErrBadLimit = errors.New("flextok/tokens: invalid limits")
)

// Limits are the properties of a model that constrain its token sequences.
type Limits struct {
	CodebookSize int // ids are in [0, CodebookSize); 64,000 for FSQ levels 8,8,8,5,5,5
	MaxLen       int // the longest sequence the model takes; 256 for the released models
}

// DefaultLimits are those of every released FlexTok model.
var DefaultLimits = Limits{CodebookSize: 64000, MaxLen: 256}

// Validate checks the limits themselves.
func (l Limits) Validate() error {
	if l.CodebookSize < 1 || l.MaxLen < 1 {
		return fmt.Errorf("%w: codebook size %d, max length %d", ErrBadLimit, l.CodebookSize, l.MaxLen)
	}
	return nil
}

// Check validates ids against the limits: 1 <= len(ids) <= MaxLen and every id below
// CodebookSize. The error names the first offending position.
func (l Limits) Check(ids []uint32) error {
	if err := l.Validate(); err != nil {
		return err
	}
	if len(ids) == 0 {
		return ErrEmpty
	}
	if len(ids) > l.MaxLen {
		return fmt.Errorf("%w: %d tokens, maximum %d", ErrTooLong, len(ids), l.MaxLen)
	}
	for i, id := range ids {
		if uint64(id) >= uint64(l.CodebookSize) {
			return fmt.Errorf("%w: id %d at position %d, codebook size %d", ErrIDRange, id, i, l.CodebookSize)
		}
	}
	return nil
}

// Sequence is a validated, ordered token sequence. The zero value is not valid; make one with New.
type Sequence struct {
	ids    []uint32
	limits Limits
}

// New validates ids against limits and returns a sequence holding a copy of them.
func New(ids []uint32, limits Limits) (Sequence, error) {
	if err := limits.Check(ids); err != nil {
		return Sequence{}, err
	}
	return Sequence{ids: append([]uint32(nil), ids...), limits: limits}, nil
}

// Len is the number of tokens.
func (s Sequence) Len() int { return len(s.ids) }

// Limits returns the limits the sequence was validated against.
func (s Sequence) Limits() Limits { return s.limits }

// IDs returns a copy of the ids, coarse to fine.
func (s Sequence) IDs() []uint32 { return append([]uint32(nil), s.ids...) }

// At returns the i-th id.
func (s Sequence) At(i int) uint32 { return s.ids[i] }

// Prefix returns the first k tokens: the coarser description of the same image.
// k must be in [1, Len()].
func (s Sequence) Prefix(k int) (Sequence, error) {
	if k < 1 || k > len(s.ids) {
		return Sequence{}, fmt.Errorf("%w: k = %d, sequence has %d tokens", ErrPrefix, k, len(s.ids))
	}
	return Sequence{ids: s.ids[:k:k], limits: s.limits}, nil
}

// Truncate returns the first min(k, Len()) tokens; k must be at least 1.
func (s Sequence) Truncate(k int) (Sequence, error) {
	if k > len(s.ids) {
		k = len(s.ids)
	}
	return s.Prefix(k)
}

// Padded returns the ids right-padded with pad to MaxLen, as the official detokenize does
// (pad id 0): the positions >= Len() are replaced by the decoder's mask token anyway.
func (s Sequence) Padded(pad uint32) []uint32 {
	out := make([]uint32, s.limits.MaxLen)
	copy(out, s.ids)
	for i := len(s.ids); i < len(out); i++ {
		out[i] = pad
	}
	return out
}

// String shows the length and the first few ids.
func (s Sequence) String() string {
	const show = 8
	if len(s.ids) <= show {
		return fmt.Sprintf("tokens%v", s.ids)
	}
	return fmt.Sprintf("tokens%v…(%d)", s.ids[:show], len(s.ids))
}
