package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/sdk/model"
)

func newInspectModel() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect-model PATH",
		Short: "Print a checkpoint's architecture, parameter counts, dtypes and licence notice",
		Long: "PATH is a model.safetensors file or a directory holding it (and optionally config.json\n" +
			"and the VAE's config under the config's hf_hub_path).",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := model.LoadFile(args[0])
			if err != nil {
				return about("inspect-model", args[0], err)
			}
			defer m.Weights.Close()
			id, err := m.Identity() // what payloads made with this model carry
			if err != nil {
				return about("inspect-model", args[0], err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "name %s\ndigest sha256:%x (payloads made with this model carry it)\n", id.Name, id.Digest)
			if h := m.Hints; h != nil {
				fmt.Fprintf(out, "decode hints: steps %d", h.Steps)
				if h.Guidance != nil {
					fmt.Fprintf(out, ", guidance %g, apg %v", *h.Guidance, h.APG)
				}
				fmt.Fprintln(out)
			}
			fmt.Fprintln(out, model.Summarize(m).String())
			return nil
		},
	}
}
