package fmath

import "math"

const (
	ln2Hi     = 6.93147180369123816490e-01 // high bits of ln 2
	ln2Lo     = 1.90821492927058770002e-10 // low bits of ln 2
	log2e     = 1.44269504088896338700e+00
	expOver   = 7.09782712893383973096e+02
	expUnder  = -7.45133219101941108420e+02
	nearZero  = 1.0 / (1 << 28)
	expP1     = 1.66666666666666657415e-01
	expP2     = -2.77777777770155933842e-03
	expP3     = 6.61375632143793436117e-05
	expP4     = -1.65339022054652515390e-06
	expP5     = 4.13813679705723846039e-08
	logL1     = 6.666666666666735130e-01
	logL2     = 3.999999999940941908e-01
	logL3     = 2.857142874366239149e-01
	logL4     = 2.222219843214978396e-01
	logL5     = 1.818357216161805012e-01
	logL6     = 1.531383769920937332e-01
	logL7     = 1.479819860511658591e-01
	tanhMaxLn = 22.0 // tanh(22) rounds to 1 in float64
)

// Exp returns e**x.
func Exp(x float64) float64 {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 1):
		return x
	case math.IsInf(x, -1):
		return 0
	case x > expOver:
		return math.Inf(1)
	case x < expUnder:
		return 0
	case -nearZero < x && x < nearZero:
		return 1 + x
	}
	// Reduce: x = k*ln2 + r, |r| <= 0.5*ln2.
	var k int
	switch {
	case x < 0:
		k = int(float64(log2e*x) - 0.5)
	default:
		k = int(float64(log2e*x) + 0.5)
	}
	hi := x - float64(float64(k)*ln2Hi)
	lo := float64(float64(k) * ln2Lo)
	r := hi - lo
	t := float64(r * r)
	p := expP4 + float64(t*expP5)
	p = expP3 + float64(t*p)
	p = expP2 + float64(t*p)
	p = expP1 + float64(t*p)
	c := r - float64(t*p)
	y := 1 - ((lo - float64(float64(r*c)/(2-c))) - hi)
	return math.Ldexp(y, k)
}

// Log returns the natural logarithm of x.
func Log(x float64) float64 {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 1):
		return x
	case x < 0:
		return math.NaN()
	case x == 0:
		return math.Inf(-1)
	}
	f1, ki := math.Frexp(x)
	if f1 < math.Sqrt2/2 {
		f1 *= 2
		ki--
	}
	f := f1 - 1
	k := float64(ki)
	s := f / (2 + f)
	s2 := float64(s * s)
	s4 := float64(s2 * s2)
	t1 := float64(s2 * (logL1 + float64(s4*(logL3+float64(s4*(logL5+float64(s4*logL7)))))))
	t2 := float64(s4 * (logL2 + float64(s4*(logL4+float64(s4*logL6)))))
	R := t1 + t2
	hfsq := float64(0.5 * float64(f*f))
	return float64(k*ln2Hi) - ((hfsq - (float64(s*(hfsq+R)) + float64(k*ln2Lo))) - f)
}

// Tanh returns the hyperbolic tangent of x.
func Tanh(x float64) float64 {
	// Cephes rational approximation on |x| < 0.625.
	const (
		p0 = -9.64399179425052238628e-1
		p1 = -9.92877231001918586564e1
		p2 = -1.61468768441708447952e3
		q0 = 1.12811678491632931402e2
		q1 = 2.23548839060100448583e3
		q2 = 4.84406305325125486048e3
	)
	z := math.Abs(x)
	switch {
	case math.IsNaN(x):
		return x
	case z > tanhMaxLn:
		if x < 0 {
			return -1
		}
		return 1
	case z >= 0.625:
		s := Exp(2 * z)
		z = 1 - 2/(s+1)
		if x < 0 {
			z = -z
		}
		return z
	case x == 0:
		return x
	}
	s := float64(x * x)
	num := float64(float64(float64(p0*s)+p1)*s) + p2
	den := float64(float64(float64(float64(s+q0)*s)+q1)*s) + q2
	return x + float64(x*float64(s*num/den))
}

// Atanh returns the inverse hyperbolic tangent of x, for |x| < 1.
func Atanh(x float64) float64 {
	if x <= -1 || x >= 1 || math.IsNaN(x) {
		switch {
		case x == 1:
			return math.Inf(1)
		case x == -1:
			return math.Inf(-1)
		}
		return math.NaN()
	}
	return 0.5 * Log((1+x)/(1-x))
}

// Sigmoid returns 1/(1+e**-x).
func Sigmoid(x float64) float64 { return 1 / (1 + Exp(-x)) }

// ExpF returns e**x for uses that round the result to float32 (softmax, sigmoid, SiLU), with a
// relative error below 2e-12, so float32(ExpF(x)) is the correctly rounded float32 of e**x but
// in vanishingly rare cases. It reduces x = (32m + j)·ln2/32 + r with |r| <= ln2/64, looks up
// 2^(j/32) in a table built at start-up with Exp, and evaluates e^r with a degree-4 polynomial:
// several times faster than Exp, and, like every function here, the same bits on every
// platform. Results saturate where float32 does: +Inf above 89, 0 below -104.
func ExpF(x float64) float64 {
	const (
		inv   = 32 * log2e // 32/ln2
		hi    = ln2Hi / 32
		lo    = ln2Lo / 32
		c3    = 1.0 / 6
		c4    = 1.0 / 24
		bias  = 1023
		steps = 32
	)
	switch {
	case x > 89:
		return math.Inf(1)
	case x < -104:
		return 0
	case x != x: // NaN
		return x
	}
	var k int
	if x < 0 {
		k = int(float64(inv*x) - 0.5)
	} else {
		k = int(float64(inv*x) + 0.5)
	}
	r := (x - float64(float64(k)*hi)) - float64(float64(k)*lo)
	r2 := float64(r * r)
	p := (1 + r) + float64(r2*(0.5+float64(r*c3))) + float64(float64(r2*r2)*c4)
	j, m := k&(steps-1), k>>5 // k = 32m + j, 0 <= j < 32 (arithmetic shift floors)
	return float64(float64(p*exp2Table[j]) * math.Float64frombits(uint64(m+bias)<<52))
}

// exp2Table[j] = 2^(j/32), computed with the portable Exp so it is identical everywhere.
var exp2Table = func() (t [32]float64) {
	for j := range t {
		t[j] = Exp(float64(j) / 32 * Ln2)
	}
	return t
}()

// Ln2 is the natural logarithm of 2.
const Ln2 = 0.693147180559945309417232121458176568
