package main

import (
	"context"
	"fmt"
	"runtime/debug"
)

// runVersion prints the module version and the VCS revision authd was
// built from, as the Go toolchain stamped them into the binary.
func runVersion(_ context.Context, c *cli, _ []string) error {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(c.stdout, "authd: no build information in this binary")
		return nil
	}
	vcs := map[string]string{}
	for _, s := range bi.Settings {
		vcs[s.Key] = s.Value
	}
	orUnknown := func(s string) string {
		if s == "" {
			return "unknown (built without VCS information)"
		}
		return s
	}
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	fmt.Fprintf(c.stdout, "authd %s\n", version)
	fmt.Fprintf(c.stdout, "revision:  %s\n", orUnknown(vcs["vcs.revision"]))
	if vcs["vcs.revision"] != "" {
		fmt.Fprintf(c.stdout, "modified:  %s\n", map[string]string{"true": "yes (uncommitted changes)", "false": "no"}[vcs["vcs.modified"]])
		fmt.Fprintf(c.stdout, "committed: %s\n", orUnknown(vcs["vcs.time"]))
	}
	fmt.Fprintf(c.stdout, "go:        %s\n", bi.GoVersion)
	return nil
}
