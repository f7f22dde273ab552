package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/sdk/payload"
)

func newInspect() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect PAYLOAD",
		Short: "Print a token payload or stream as readable JSON ('-' reads stdin)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readLimited(args[0], int64(payload.DefaultLimits.MaxBytes))
			if err != nil {
				return err
			}
			view, err := inspect(data)
			if err != nil {
				return about("inspect", args[0], err)
			}
			_, err = cmd.OutOrStdout().Write(view)
			return err
		},
	}
}

// inspect decodes a whole payload or, failing that because it is another format, a stream, and
// returns its JSON view.
func inspect(data []byte) ([]byte, error) {
	var p payload.Payload
	err := payload.Unmarshal(data, &p)
	if err == nil {
		return p.JSON()
	}
	var pe *payload.Error
	if errors.As(err, &pe) && errors.Is(err, payload.ErrFormat) && pe.Field == "format" {
		s, serr := payload.DecodeStream(data, payload.Options{})
		if serr == nil {
			return s.JSON()
		}
		if !errors.Is(serr, payload.ErrFormat) {
			return nil, serr
		}
	}
	return nil, err
}

// readLimited reads a file (or stdin for "-") of at most limit bytes.
func readLimited(name string, limit int64) ([]byte, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read %s: larger than the %d-byte limit", name, limit)
	}
	return data, nil
}
