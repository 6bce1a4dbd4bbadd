package main

import (
	"context"
	"io"
)

func runTUI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return usagef("the TUI is not wired yet; use 'vxtrace trace'")
}
