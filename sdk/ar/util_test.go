package ar

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"

	"github.com/flextok-sdk/flextok/sdk/payload"
)

const seedGolden = "e13f5e3f1ec8eebd"

func hashIDs(ids []uint32) string {
	h := sha256.New()
	for _, id := range ids {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], id)
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// fakeTok is the tiny checkpoint's fictional tokenizer (conformance/testdata/ar/README.md).
type fakeTok struct{ id payload.Model }

func (f fakeTok) Identity() payload.Model { return f.id }
func (f fakeTok) ImageSize() (int, int)   { return 64, 64 }
func (f fakeTok) Hints() *payload.Hints   { return nil }

func fictional() fakeTok {
	var d [32]byte
	hex.Decode(d[:], []byte("7afed3a02044f845fe09ebf1c2195490fb9d59fbbc22dd614256a23ecb1f414e"))
	return fakeTok{payload.Model{Name: "conformance-fictional-fsq1000", Digest: d, Levels: []int{8, 5, 5, 5}, MaxTokens: 16}}
}
