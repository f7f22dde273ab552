//go:build !noweights && (wasip1 || arweights)

package defaultmodel

import (
	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/service"
)

// AR returns the embedded default AR model (models.DefaultAR): the GOOS=wasip1 module embeds
// it, and the GOOS=js module built with -tags arweights.
func AR() *service.ARCheckpoint {
	d := models.DefaultAR()
	return &service.ARCheckpoint{Config: d.Config, Weights: d.Weights}
}
