package docker_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vxtrace/vxtrace/docker"
)

// fakeEngine looks containers up as dockerd does: full ID, then name, then
// ID prefix. Only Container and Peers are used by Resolve.
type fakeEngine struct {
	docker.Engine
	local []docker.Container
	peers []docker.Peer
}

func (e fakeEngine) Container(_ context.Context, arg string) (docker.Container, error) {
	for _, match := range []func(c docker.Container) bool{
		func(c docker.Container) bool { return c.ID == arg },
		func(c docker.Container) bool { return c.Name == arg },
		func(c docker.Container) bool { return strings.HasPrefix(c.ID, arg) },
	} {
		if i := slices.IndexFunc(e.local, match); i >= 0 {
			return e.local[i], nil
		}
	}
	return docker.Container{}, docker.ErrNotFound
}

func (e fakeEngine) Peers(context.Context, string) ([]docker.Peer, error) { return e.peers, nil }

// TestResolvePrefersRemoteNameOverLocalIDPrefix: "c2" is hex. When a local
// container's ID starts with it and c2 runs on the other node, --to c2 means
// c2 (CI once traced c1's own address instead).
func TestResolvePrefersRemoteNameOverLocalIDPrefix(t *testing.T) {
	c1IP, c2IP, webIP := netip.MustParseAddr("10.0.1.3"), netip.MustParseAddr("10.0.1.4"), netip.MustParseAddr("10.0.1.9")
	running := func(id, name string, ip netip.Addr) docker.Container {
		return docker.Container{ID: id, Name: name, State: "running", Running: true,
			Endpoints: []docker.Endpoint{{IP: ip}}}
	}
	c1 := running("c2a9f0e1d2c3b4a5", "c1", c1IP)
	e := fakeEngine{
		local: []docker.Container{c1},
		peers: []docker.Peer{{Name: "c1", IP: c1IP}, {Name: "c2", IP: c2IP}, {Name: "web.1.x7k2", IP: webIP}},
	}
	ctx := context.Background()
	for _, c := range []struct {
		arg  string
		want netip.Addr
	}{
		{"c2", c2IP},     // a remote name beats a local ID prefix
		{"c2a9", c1IP},   // an ID prefix nothing is named: the local container
		{"c1", c1IP},     // a local name
		{"web.1", webIP}, // a remote task without its task ID
		{c1.ID, c1IP},    // a full local ID
		{"10.0.1.7", netip.MustParseAddr("10.0.1.7")},
	} {
		got, err := docker.Resolve(ctx, e, c.arg, "overlay")
		if err != nil || !slices.Equal(got, []netip.Addr{c.want}) {
			t.Errorf("Resolve(%q) = %v, %v; want %v", c.arg, got, err, c.want)
		}
	}
	if _, err := docker.Resolve(ctx, e, "nosuch", "overlay"); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("Resolve(nosuch): %v, want ErrNotFound", err)
	}
}
