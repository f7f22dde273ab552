package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/sdk/payload"
)

// version is set at link time (-ldflags "-X main.version=v0.1.0"); otherwise the module
// version or VCS revision from the build info is shown.
var version = ""

func versionString() string {
	v := version
	if info, ok := debug.ReadBuildInfo(); ok && v == "" {
		v = info.Main.Version
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 && (v == "" || v == "(devel)") {
				v = "devel+" + s.Value[:12]
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	return fmt.Sprintf("flextok %s (%s, %s/%s; payload format %d.%d)", v, runtime.Version(), runtime.GOOS, runtime.GOARCH, payload.Major, payload.Minor)
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  exactArgs(0),
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), versionString())
		},
	}
}
