package tensor

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
)

// MaxElements is the largest number of values a Tensor may hold (2^31 - 1). It keeps element
// counts representable as int32 in every executor and turns absurd shapes into errors, not
// out-of-memory crashes.
const MaxElements = 1<<31 - 1

// Tensor is a dense row-major float32 tensor.
type Tensor struct {
	Shape []int     // dimensions, outermost first; every dimension >= 0
	Data  []float32 // len(Data) == product of Shape (1 for a scalar with empty Shape)
}

// NumElements returns the product of shape, or an error when a dimension is negative or the
// product exceeds MaxElements.
func NumElements(shape []int) (int, error) {
	n := 1
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("flextok/tensor: dimension %d of shape %v is negative", i, shape)
		}
		if d != 0 && n > MaxElements/d {
			return 0, fmt.Errorf("flextok/tensor: shape %v has more than %d elements", shape, MaxElements)
		}
		n *= d
	}
	return n, nil
}

// New returns a zero-filled tensor of the given shape. The shape is copied.
func New(shape ...int) (Tensor, error) {
	n, err := NumElements(shape)
	if err != nil {
		return Tensor{}, err
	}
	return Tensor{Shape: append([]int(nil), shape...), Data: make([]float32, n)}, nil
}

// FromData wraps data (not copied) in a tensor of the given shape (copied), checking that the
// lengths agree.
func FromData(data []float32, shape ...int) (Tensor, error) {
	t := Tensor{Shape: append([]int(nil), shape...), Data: data}
	if err := t.Check(); err != nil {
		return Tensor{}, err
	}
	return t, nil
}

// Check reports whether len(t.Data) equals the product of t.Shape.
func (t Tensor) Check() error {
	n, err := NumElements(t.Shape)
	if err != nil {
		return err
	}
	if len(t.Data) != n {
		return fmt.Errorf("flextok/tensor: shape %v needs %d values, got %d", t.Shape, n, len(t.Data))
	}
	return nil
}

// Len returns the number of values, len(t.Data).
func (t Tensor) Len() int { return len(t.Data) }

// Clone returns a deep copy of t.
func (t Tensor) Clone() Tensor {
	return Tensor{Shape: append([]int(nil), t.Shape...), Data: append([]float32(nil), t.Data...)}
}

// SameShape reports whether a and b have identical shapes.
func SameShape(a, b Tensor) bool {
	if len(a.Shape) != len(b.Shape) {
		return false
	}
	for i := range a.Shape {
		if a.Shape[i] != b.Shape[i] {
			return false
		}
	}
	return true
}

// Stack joins tensors of one shape into one with a new leading axis: [len(ts), shape...]. It
// copies the data; an empty list or differing shapes are errors.
func Stack(ts []Tensor) (Tensor, error) {
	if len(ts) == 0 {
		return Tensor{}, fmt.Errorf("flextok/tensor: Stack of no tensors")
	}
	for i, t := range ts {
		if !SameShape(t, ts[0]) || len(t.Data) != len(ts[0].Data) {
			return Tensor{}, fmt.Errorf("flextok/tensor: Stack: tensor %d has shape %v, tensor 0 %v", i, t.Shape, ts[0].Shape)
		}
	}
	out := Tensor{Shape: append([]int{len(ts)}, ts[0].Shape...), Data: make([]float32, 0, len(ts)*len(ts[0].Data))}
	for _, t := range ts {
		out.Data = append(out.Data, t.Data...)
	}
	return out, nil
}

// Unstack splits t along its leading axis into views (no copy) of shape t.Shape[1:].
func Unstack(t Tensor) []Tensor {
	if len(t.Shape) == 0 || t.Shape[0] == 0 {
		return nil
	}
	n := len(t.Data) / t.Shape[0]
	out := make([]Tensor, t.Shape[0])
	for i := range out {
		out[i] = Tensor{Shape: append([]int(nil), t.Shape[1:]...), Data: t.Data[i*n : (i+1)*n : (i+1)*n]}
	}
	return out
}

// MaxAbsDiff returns max_i |a[i] - b[i]| computed in float64. It returns +Inf when the lengths
// differ and NaN when any difference is NaN (so that `MaxAbsDiff(a, b) <= tol` fails), and 0
// for two empty slices.
func MaxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range a {
		d := math.Abs(float64(a[i]) - float64(b[i]))
		if d != d {
			return math.NaN()
		}
		if d > m {
			m = d
		}
	}
	return m
}

// RelErr returns the relative L2 error ||got - want|| / ||want|| computed in float64. When want is
// all zeros it returns 0 if got is too and +Inf otherwise; it returns +Inf when the lengths
// differ and NaN when a value is NaN.
func RelErr(got, want []float32) float64 {
	e := NMSE(got, want)
	return math.Sqrt(e)
}

// NMSE returns the normalised mean squared error sum((got-want)^2) / sum(want^2) computed in
// float64, i.e. RelErr squared; the same special cases as RelErr apply.
func NMSE(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		d := g - w
		num += d * d
		den += w * w
	}
	if num != num || den != den {
		return math.NaN()
	}
	if den == 0 {
		if num == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return num / den
}

// Bytes returns the IEEE 754 bits of data as little-endian bytes (4 per value), the layout every
// golden hash and wire format of the project uses.
func Bytes(data []float32) []byte {
	b := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// SHA256 returns the lowercase hex sha256 of Bytes(data). Equal hashes mean bit-identical data,
// including the sign of zeros and NaN payloads.
func SHA256(data []float32) string {
	h := sha256.New()
	var buf [4096]byte
	for len(data) > 0 {
		n := min(len(data), len(buf)/4)
		for i := 0; i < n; i++ {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(data[i]))
		}
		h.Write(buf[:4*n])
		data = data[n:]
	}
	return hex.EncodeToString(h.Sum(nil))
}
