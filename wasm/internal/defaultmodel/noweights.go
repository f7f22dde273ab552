//go:build noweights

package defaultmodel

import "github.com/flextok-sdk/flextok/sdk/service"

// Checkpoint returns nil: this module embeds no model, so "open" needs weights.
func Checkpoint() *service.Checkpoint { return nil }
