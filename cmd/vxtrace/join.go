package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/vxtrace/vxtrace/report"
)

const joinUsage = `Usage: vxtrace join [--json FILE|-] TRACE.json TRACE.json...

Joins the JSON traces of several nodes by packet id (a packet has the same id
on every node) and gives each packet one verdict across the cluster: dropped
(on which node, why), delivered, lost_between_nodes (it left one node's NIC
and no traced node saw it arrive: the network between them lost it), or
vanished.

Example, one trace per node, then:
  vxtrace join node1.json node2.json`

func runJoin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("join", flag.ContinueOnError)
	out := fs.String("json", "", "write the joined document (schema vxtrace.join/v1) to FILE (- for stdout)")
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			printUsage(stdout, fs, joinUsage)
			return err
		}
		return usagef("%v (see 'vxtrace join -h')", err)
	}
	if fs.NArg() < 2 {
		return usagef("join needs at least two trace files (see 'vxtrace join -h')")
	}
	if err := checkWritable("json", *out); err != nil {
		return err
	}
	var docs []*report.Doc
	for _, path := range fs.Args() {
		f, err := os.Open(path)
		if err != nil {
			return usagef("%v", err)
		}
		d, err := report.Read(f)
		f.Close()
		if err != nil {
			return usagef("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
	j, err := report.Join(docs)
	if err != nil {
		return usagef("%v", err)
	}
	textOut := stdout
	if *out == "-" {
		textOut = stderr
	}
	if err := report.WriteJoinedText(textOut, j); err != nil {
		return err
	}
	if *out == "" {
		return nil
	}
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	if *out == "-" {
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	return report.WriteBytes(*out, append(b, '\n'))
}
