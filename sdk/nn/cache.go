package nn

import (
	"fmt"

	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
)

// CachedOps is the append-to-cache form of attention that an autoregressive model (the AR
// model over the tokens, next issue) needs, as an optional interface of an executor: C is its
// key/value cache of one attention layer.
type CachedOps[T, L, C any] interface {
	Ops[T, L]
	// AttendCached appends the k and v rows of qkv (new tokens, the same number for every
	// sequence of the cache) to cache and returns the attention of the new queries over every
	// cached key: new token j of a sequence sees its cached keys and the new tokens up to j.
	AttendCached(qkv T, cache C, heads, headDim int, scale float32) T
}

// KVCache is Eager's cache of one attention layer: per sequence, the keys and values of the
// tokens seen so far, [len, heads·headDim] each (grown as needed). Sequences may hold
// different lengths (a batch that sequences join and leave while others are under way: Grow,
// Keep); each attends over its own.
type KVCache struct {
	N    int // sequences
	Len  int // tokens cached per sequence (the longest, when the sequences' lengths differ)
	k, v [][]float32
	lens []int // tokens cached, per sequence
}

// NewKVCache returns an empty cache for n sequences.
func NewKVCache(n int) *KVCache {
	return &KVCache{N: n, k: make([][]float32, n), v: make([][]float32, n), lens: make([]int, n)}
}

// Grow appends n empty sequences (they start at position 0 while the others go on).
func (c *KVCache) Grow(n int) {
	for range n {
		c.k, c.v, c.lens = append(c.k, nil), append(c.v, nil), append(c.lens, 0)
	}
	c.N += n
}

// Keep keeps the sequences i with keep[i], in order, and drops the others (len(keep) = N).
func (c *KVCache) Keep(keep []bool) {
	if len(keep) != c.N {
		panic(fmt.Sprintf("flextok/nn: Keep of %d flags on a cache of %d sequences", len(keep), c.N))
	}
	j := 0
	for i, ok := range keep {
		if ok {
			c.k[j], c.v[j], c.lens[j] = c.k[i], c.v[i], c.lens[i]
			j++
		}
	}
	clear(c.k[j:])
	clear(c.v[j:])
	c.k, c.v, c.lens, c.N = c.k[:j], c.v[:j], c.lens[:j], j
	c.Len = 0
	for _, n := range c.lens {
		c.Len = max(c.Len, n)
	}
}

var _ CachedOps[Tensor, *Linear, *KVCache] = (*Eager)(nil)

// AttendCached implements CachedOps. Per sequence it is Attention over the cached and new keys
// with the causal mask shifted by the sequence's cached length, so a token decoded step by
// step gets the values of a causal pass over the whole sequence (bit for bit on the portable
// path: masked keys add exact zeros), whatever the other sequences of the cache hold.
func (e *Eager) AttendCached(qkv Tensor, c *KVCache, heads, headDim int, scale float32) Tensor {
	W := heads * headDim
	if qkv.Cols != 3*W || c.N < 1 || qkv.Rows%c.N != 0 {
		panic(fmt.Sprintf("flextok/nn: AttendCached of %d×%d heads on [%d, %d] for %d sequences", heads, headDim, qkv.Rows, qkv.Cols, c.N))
	}
	m := qkv.Rows / c.N
	out := e.alloc(qkv.Rows, W)
	for q := 0; q < c.N; q++ {
		past := c.lens[q]
		c.lens[q] += m
		for j := 0; j < m; j++ {
			row := qkv.Data[(q*m+j)*3*W:]
			c.k[q] = append(c.k[q], row[W:2*W]...)
			c.v[q] = append(c.v[q], row[2*W:3*W]...)
		}
		c.Len = max(c.Len, past+m)
		mask := kernels.Mask{Kind: kernels.MaskFunc, Allow: func(qi, ki int) bool { return ki <= past+qi }}
		d := kernels.AttnDims{Batch: 1, Heads: heads, SeqQ: m, SeqK: past + m, HeadDim: headDim, LdQ: 3 * W, LdK: W, LdV: W, LdO: W}
		kernels.Attention(e.o, out.Data[q*m*W:(q+1)*m*W], qkv.Data[q*m*3*W:(q+1)*m*3*W], c.k[q], c.v[q], d, scale, mask)
	}
	return out
}
