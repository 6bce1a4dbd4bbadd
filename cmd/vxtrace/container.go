package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/vxtrace/vxtrace/docker"
	"github.com/vxtrace/vxtrace/report"
	"github.com/vxtrace/vxtrace/topo"
	"github.com/vxtrace/vxtrace/tracer"
)

// containerScope is what --container resolved to.
type containerScope struct {
	eng        docker.Engine
	scope      *docker.NodeScope
	namespaces []topo.NetNS
	netnsDirs  []string
	dst        netip.Prefix

	mu      sync.Mutex
	stopMsg string
}

func dockerError(err error) error {
	switch {
	case errors.Is(err, docker.ErrNotFound), errors.Is(err, docker.ErrNotRunning),
		errors.Is(err, docker.ErrNoNetwork), errors.Is(err, docker.ErrUnreachable):
		return usageError{err.Error()}
	}
	return err
}

func resolveContainer(ctx context.Context, f *filterFlags, progress func(string)) (*containerScope, error) {
	progress("asking Docker about " + f.container)
	eng, err := docker.Open(ctx, f.dockerHost)
	if err != nil {
		return nil, dockerError(err)
	}
	cs := &containerScope{eng: eng}
	cs.scope, err = docker.Scope(ctx, eng, f.container)
	if err != nil {
		eng.Close()
		return nil, dockerError(err)
	}
	cs.namespaces = cs.scope.NetNS
	if d := cs.scope.Daemon; d.ExecRoot != "" {
		cs.netnsDirs = append(cs.netnsDirs, d.Path(filepath.Join(d.ExecRoot, "netns")))
	}
	if f.to != "" {
		var overlays []string
		for _, ep := range cs.scope.Container.Endpoints {
			if ep.Driver == "overlay" {
				overlays = append(overlays, ep.NetworkID)
			}
		}
		ips, err := docker.Resolve(ctx, eng, f.to, overlays...)
		if err != nil {
			eng.Close()
			return nil, usagef("--to %s: %v", f.to, err)
		}
		cs.dst = netip.PrefixFrom(ips[0], ips[0].BitLen())
	}
	return cs, nil
}

// watch ends the trace when the container stops: its namespace and veth go
// away, and tracing a dead path would only ever say "vanished".
func (c *containerScope) watch(ctx context.Context, stderr io.Writer) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	id := c.scope.Container.ID
	go func() {
		defer cancel()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		down := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cur, err := c.eng.Container(ctx, id)
			if ctx.Err() != nil {
				return
			}
			if err == nil && down {
				down = false
				fmt.Fprintf(stderr, "vxtrace: Docker daemon reachable again\n")
			}
			var msg string
			switch {
			case errors.Is(err, docker.ErrNotFound):
				msg = fmt.Sprintf("container %s was removed", c.scope.Container.Name)
			case err != nil:
				// A daemon restart is not the container stopping: say it
				// once, and go on with the namespaces known last.
				if !down {
					down = true
					fmt.Fprintf(stderr, "vxtrace: Docker daemon unreachable (%v): tracing the last known namespaces\n", err)
				}
				continue
			case !cur.Running:
				// A restart stops the container briefly: give it a
				// moment to come back before ending the trace.
				if back := c.waitRunning(ctx, id, restartGrace); back {
					continue
				}
				msg = fmt.Sprintf("container %s stopped (state %s)", c.scope.Container.Name, cur.State)
			default:
				continue
			}
			c.mu.Lock()
			c.stopMsg = msg
			c.mu.Unlock()
			return
		}
	}()
	return ctx
}

// apply narrows a trace to the container: its namespaces before extra (what
// --netns added), the daemon's namespace directory, and --to as the
// destination unless --dst was given. A nil receiver changes nothing.
func (c *containerScope) apply(extra []topo.NetNS, tcfg *tracer.Config, rf *report.Filter) (scope []topo.NetNS, netnsDirs []string) {
	if c == nil {
		return extra, nil
	}
	scope = append(append([]topo.NetNS(nil), c.namespaces...), extra...)
	if c.dst.IsValid() && !tcfg.Dst.IsValid() {
		tcfg.Dst = c.dst
		rf.Dst = c.dst.String()
	}
	return scope, c.netnsDirs
}

// list is the namespaces --container resolved to; nil-safe.
func (c *containerScope) list() []topo.NetNS {
	if c == nil {
		return nil
	}
	return c.namespaces
}

// rescope resolves the container again on each refresh: after a restart
// its namespace and veth are new. extra is what --netns added. A nil
// receiver means no container scope: the session's default applies.
func (c *containerScope) rescope(ctx context.Context, extra []topo.NetNS) func() ([]topo.NetNS, error) {
	if c == nil {
		return nil
	}
	return func() ([]topo.NetNS, error) {
		sc, err := docker.Scope(ctx, c.eng, c.scope.Container.ID)
		if err != nil {
			return append(c.namespaces, extra...), nil // keep the last known scope
		}
		c.namespaces = sc.NetNS
		return append(sc.NetNS, extra...), nil
	}
}

func (c *containerScope) stopped() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopMsg
}

const restartGrace = 3 * time.Second

func (c *containerScope) waitRunning(ctx context.Context, id string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(250 * time.Millisecond):
		}
		if cur, err := c.eng.Container(ctx, id); err == nil && cur.Running {
			return true
		}
	}
	return false
}

func (c *containerScope) Close() error { return c.eng.Close() }
