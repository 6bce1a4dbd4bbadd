package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"

	"github.com/vxtrace/vxtrace/topo"
)

const topologyUsage = `Usage: vxtrace topology [--container NAME | --netns NS ...] [--json]

Prints the hop chain a trace would watch: each hop's namespace, interface,
MTU, and for vxlan devices the VNI, port and the FDB and neighbour entries.`

func runTopology(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f filterFlags
	fs := flag.NewFlagSet("topology", flag.ContinueOnError)
	f.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args, topologyUsage); err != nil {
		return err
	}
	tcfg, _, err := f.tracerConfig()
	if err != nil {
		return err
	}
	scope, err := f.scope()
	if err != nil {
		return err
	}
	var t *topo.Topology
	var path []*topo.Hop
	if f.container != "" {
		cs, err := resolveContainer(ctx, &f, func(string) {})
		if err != nil {
			return err
		}
		defer cs.Close()
		t, path = cs.scope.Topology, cs.scope.Path
		if cs.dst.IsValid() && !tcfg.Dst.IsValid() {
			tcfg.Dst = cs.dst
		}
	} else {
		if len(scope) == 0 {
			if scope, err = topo.ListNamespaces(); err != nil {
				return err
			}
		}
		if t, err = topo.Discover(scope); err != nil {
			return err
		}
		for i := range t.Hops {
			path = append(path, &t.Hops[i])
		}
	}
	if *asJSON {
		hops := make([]topo.Hop, 0, len(path))
		for _, h := range path {
			hops = append(hops, *h)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Schema string     `json:"schema"`
			Hops   []topo.Hop `json:"hops"`
		}{"vxtrace.topology/v1", hops})
	}
	if len(path) == 0 {
		fmt.Fprintln(stdout, "no hops found in scope")
		return nil
	}
	// A destination narrows vxlan hops to the entries that carry it.
	var dst net.IP
	if tcfg.Dst.IsValid() && tcfg.Dst.IsSingleIP() {
		dst = net.IP(tcfg.Dst.Addr().AsSlice())
	}
	return t.FormatTo(stdout, path, dst)
}
