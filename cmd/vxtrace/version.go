package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/vxtrace/vxtrace/tracer"
)

// version is set with -ldflags "-X main.version=..."; otherwise the module
// build info says what it can.
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	features := fs.Bool("features", false, "probe the kernel: which BPF attach types work, and which hops would be blind")
	asJSON := fs.Bool("json", false, "with --features: JSON output")
	if err := parseFlags(fs, args, "Usage: vxtrace version [--features] [--json]"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "vxtrace %s\n", versionString())
	if !*features {
		return nil
	}
	if err := preflight(); err != nil {
		return err
	}
	r, err := tracer.Probe()
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	r.Print(stdout)
	return nil
}
