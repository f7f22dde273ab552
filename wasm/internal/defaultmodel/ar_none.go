//go:build noweights || !(wasip1 || arweights)

package defaultmodel

import "github.com/flextok-sdk/flextok/sdk/service"

// AR returns nil: this module embeds no AR model, so "ar_open" needs the files (the
// TypeScript package sends its own copy: bindings/README.md).
func AR() *service.ARCheckpoint { return nil }
