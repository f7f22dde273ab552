//go:build !noweights

package defaultmodel

import (
	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/service"
)

// Checkpoint returns the embedded default model.
func Checkpoint() *service.Checkpoint {
	d := models.Default()
	return &service.Checkpoint{Weights: d.Weights, Config: d.Config, VAEConfig: d.VAEConfig}
}
