package tokens

import (
	"errors"
	"slices"
	"testing"
)

func TestNewValidates(t *testing.T) {
	lim := DefaultLimits
	long := make([]uint32, 257)
	cases := []struct {
		ids  []uint32
		want error
	}{
		{nil, ErrEmpty},
		{[]uint32{}, ErrEmpty},
		{long, ErrTooLong},
		{[]uint32{1, 63999, 64000}, ErrIDRange},
		{[]uint32{1 << 31}, ErrIDRange},
		{[]uint32{0}, nil},
		{long[:256], nil},
	}
	for _, c := range cases {
		_, err := New(c.ids, lim)
		if !errors.Is(err, c.want) && !(c.want == nil && err == nil) {
			t.Errorf("New(len %d) err = %v, want %v", len(c.ids), err, c.want)
		}
	}
	if _, err := New([]uint32{1}, Limits{}); !errors.Is(err, ErrBadLimit) {
		t.Errorf("zero limits err = %v", err)
	}
}

func TestPrefixTruncatePadded(t *testing.T) {
	s, err := New([]uint32{5, 6, 7, 8}, Limits{CodebookSize: 10, MaxLen: 6})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Prefix(2)
	if err != nil || !slices.Equal(p.IDs(), []uint32{5, 6}) {
		t.Fatalf("Prefix(2) = %v, %v", p, err)
	}
	for _, k := range []int{0, -1, 5} {
		if _, err := s.Prefix(k); !errors.Is(err, ErrPrefix) {
			t.Errorf("Prefix(%d) err = %v", k, err)
		}
	}
	tr, err := s.Truncate(100)
	if err != nil || tr.Len() != 4 {
		t.Fatalf("Truncate(100) = %v, %v", tr, err)
	}
	if got := p.Padded(0); !slices.Equal(got, []uint32{5, 6, 0, 0, 0, 0}) {
		t.Fatalf("Padded = %v", got)
	}
	// A prefix must not alias appends into the parent.
	ids := p.IDs()
	ids[0] = 9
	if s.At(0) != 5 {
		t.Fatal("IDs() aliases the sequence")
	}
}
