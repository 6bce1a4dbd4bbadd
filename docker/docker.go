// Package docker owns vxtrace's view of a Docker engine. It talks to the
// daemon through the Docker Go client, kept behind the small Engine interface
// so that nothing else in vxtrace imports the SDK, and it turns a container
// into the network namespaces that its packets cross on that node (Scope) and
// a --to argument into addresses (Resolve).
package docker

import (
	"context"
	"errors"
	"net/netip"
)

// Errors that callers tell apart with errors.Is. The wrapped messages are
// one line and name the container or daemon.
var (
	ErrNotFound    = errors.New("no such container")
	ErrNotRunning  = errors.New("not running")
	ErrNoNetwork   = errors.New("on no network")
	ErrUnreachable = errors.New("cannot reach the Docker daemon")
)

// Endpoint is one network attachment of a container.
type Endpoint struct {
	Network   string // name, e.g. "vxnet" or "bridge"
	NetworkID string
	Driver    string // "overlay", "bridge", "host", "null", ...
	IP        netip.Addr
	PrefixLen int
	IPv6      netip.Addr
	MAC       string
	Gateway   netip.Addr
	// VNI of an overlay network, from the driver option
	// com.docker.network.driver.overlay.vxlanid_list; 0 when the API does
	// not say (a worker that has not yet joined the network).
	VNI uint32
	// Bridge is the Linux bridge of a bridge network (docker0, br-<id>,
	// docker_gwbridge).
	Bridge string
}

// Container is what vxtrace needs to know of one container.
type Container struct {
	ID          string
	Name        string // without Docker's leading "/"
	State       string // "running", "exited", "created", ...
	Running     bool
	Pid         int
	SandboxKey  string // bind mount of its network namespace, EXEC_ROOT/netns/<id12>
	NetworkMode string
	Endpoints   []Endpoint
}

// IPs returns the container's addresses, IPv4 first.
func (c Container) IPs() []netip.Addr {
	var v4, v6 []netip.Addr
	for _, e := range c.Endpoints {
		if e.IP.IsValid() {
			v4 = append(v4, e.IP)
		}
		if e.IPv6.IsValid() {
			v6 = append(v6, e.IPv6)
		}
	}
	return append(v4, v6...)
}

// Daemon describes the dockerd process behind an Engine.
type Daemon struct {
	Host       string // the address the client uses, e.g. unix:///var/run/docker.sock
	APIVersion string // negotiated
	PID        int    // dockerd, as seen from this process's PID namespace
	NetNS      string // /proc/PID/ns/net: the node namespace
	ExecRoot   string // --exec-root; EXEC_ROOT/netns holds the sandboxes
	// Root prefixes dockerd's paths when it lives in another mount
	// namespace ("/proc/PID/root"); empty when it shares ours.
	Root string
}

// Path returns p (a path as dockerd sees it) as this process can open it.
func (d Daemon) Path(p string) string {
	if d.Root == "" || p == "" {
		return p
	}
	return d.Root + p
}

// Peer is a container on an overlay network, possibly on another node.
type Peer struct {
	Name string     // container or task name ("c2", "web.1.<task id>")
	IP   netip.Addr // its address on the network
	Host string     // the node's underlay address (its VTEP)
}

// Engine is the part of the Docker API that vxtrace uses.
type Engine interface {
	// Container inspects one container by name, ID or ID prefix. A swarm
	// task may also be named without its task ID suffix ("web.1").
	Container(ctx context.Context, nameOrID string) (Container, error)
	// Containers lists every container, stopped ones included.
	Containers(ctx context.Context) ([]Container, error)
	// NodeNetNS is a path that opens the network namespace dockerd runs in.
	NodeNetNS(ctx context.Context) (string, error)
	// Daemon finds the dockerd process (PID, namespace, exec-root).
	Daemon(ctx context.Context) (Daemon, error)
	// Peers lists the containers on an overlay network across the
	// cluster, including those on other nodes.
	Peers(ctx context.Context, networkID string) ([]Peer, error)
	// Host is the daemon address in use.
	Host() string
	Close() error
}
