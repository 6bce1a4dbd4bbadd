package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Option names used by the Docker network drivers.
const (
	optVXLANIDs   = "com.docker.network.driver.overlay.vxlanid_list"
	optBridgeName = "com.docker.network.bridge.name"
)

// pingTimeout bounds the first contact with the daemon, so an absent daemon
// is reported at once rather than when the first real call hangs.
const pingTimeout = 5 * time.Second

type engine struct {
	cli  *client.Client
	host string

	mu       sync.Mutex
	networks map[string]netInfo // by network ID
	daemon   *Daemon
}

type netInfo struct {
	driver string
	vni    uint32
	bridge string
}

// Open connects to the Docker daemon at host, or, when host is empty, at
// DOCKER_HOST (falling back to the default unix socket). The API version is
// negotiated: the engines vxtrace meets speak API 1.41 and newer. Open pings
// the daemon, so an unreachable daemon is an error here (ErrUnreachable).
func Open(ctx context.Context, host string) (Engine, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	cli, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating Docker client: %w", err)
	}
	e := &engine{cli: cli, host: cli.DaemonHost(), networks: make(map[string]netInfo)}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := cli.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		return nil, e.wrap(err)
	}
	return e, nil
}

func (e *engine) Host() string { return e.host }

func (e *engine) Close() error { return e.cli.Close() }

// wrap turns SDK errors into one-line errors that name the daemon.
func (e *engine) wrap(err error) error {
	if err == nil {
		return nil
	}
	var op *net.OpError
	if client.IsErrConnectionFailed(err) || errors.As(err, &op) || errors.Is(err, context.DeadlineExceeded) {
		cause := err.Error()
		if op != nil {
			cause = op.Error()
		} else if i := strings.LastIndex(cause, "dial "); i >= 0 {
			// The SDK's sentence around it repeats the host.
			cause = cause[i:]
		}
		return fmt.Errorf("%w at %s (is dockerd running? set DOCKER_HOST or --docker-host): %s", ErrUnreachable, e.host, cause)
	}
	return err
}

func (e *engine) Container(ctx context.Context, nameOrID string) (Container, error) {
	if nameOrID == "" {
		return Container{}, fmt.Errorf("%w: empty name", ErrNotFound)
	}
	r, err := e.cli.ContainerInspect(ctx, nameOrID, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		// A swarm task container is named SERVICE.SLOT.TASKID; people say
		// SERVICE.SLOT.
		id, ferr := e.findTask(ctx, nameOrID)
		if ferr != nil {
			return Container{}, ferr
		}
		if id == "" {
			return Container{}, fmt.Errorf("%w %q on the Docker daemon at %s", ErrNotFound, nameOrID, e.host)
		}
		r, err = e.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	}
	if err != nil {
		return Container{}, fmt.Errorf("inspecting container %q: %w", nameOrID, e.wrap(err))
	}
	return e.convert(ctx, r.Container)
}

// findTask returns the ID of the one container named nameOrID+".<task id>",
// or "" when there is none or more than one.
func (e *engine) findTask(ctx context.Context, nameOrID string) (string, error) {
	l, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return "", fmt.Errorf("listing containers: %w", e.wrap(err))
	}
	var found []string
	for _, s := range l.Items {
		for _, n := range s.Names {
			rest, ok := strings.CutPrefix(strings.TrimPrefix(n, "/"), nameOrID+".")
			if ok && rest != "" && !strings.Contains(rest, ".") {
				found = append(found, s.ID)
			}
		}
	}
	if len(found) != 1 {
		return "", nil
	}
	return found[0], nil
}

func (e *engine) Containers(ctx context.Context) ([]Container, error) {
	l, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", e.wrap(err))
	}
	out := make([]Container, 0, len(l.Items))
	for _, s := range l.Items {
		r, err := e.cli.ContainerInspect(ctx, s.ID, client.ContainerInspectOptions{})
		if cerrdefs.IsNotFound(err) {
			continue // removed since the list
		}
		if err != nil {
			return nil, fmt.Errorf("inspecting container %s: %w", shortID(s.ID), e.wrap(err))
		}
		c, err := e.convert(ctx, r.Container)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (e *engine) convert(ctx context.Context, r container.InspectResponse) (Container, error) {
	c := Container{ID: r.ID, Name: strings.TrimPrefix(r.Name, "/")}
	if r.State != nil {
		c.State = string(r.State.Status)
		c.Running = r.State.Running
		c.Pid = r.State.Pid
	}
	if r.HostConfig != nil {
		c.NetworkMode = string(r.HostConfig.NetworkMode)
	}
	if r.NetworkSettings == nil {
		return c, nil
	}
	c.SandboxKey = r.NetworkSettings.SandboxKey
	names := make([]string, 0, len(r.NetworkSettings.Networks))
	for n := range r.NetworkSettings.Networks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := r.NetworkSettings.Networks[n]
		if s == nil {
			continue
		}
		ep := Endpoint{
			Network:   n,
			NetworkID: s.NetworkID,
			IP:        valid(s.IPAddress),
			PrefixLen: s.IPPrefixLen,
			IPv6:      valid(s.GlobalIPv6Address),
			MAC:       s.MacAddress.String(),
			Gateway:   valid(s.Gateway),
		}
		if ep.NetworkID != "" {
			ni, err := e.network(ctx, ep.NetworkID)
			if err != nil {
				return Container{}, err
			}
			ep.Driver, ep.VNI, ep.Bridge = ni.driver, ni.vni, ni.bridge
		}
		c.Endpoints = append(c.Endpoints, ep)
	}
	return c, nil
}

func valid(a netip.Addr) netip.Addr {
	if !a.IsValid() || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a.Unmap()
}

// network inspects a network once per engine: drivers and VNIs do not change
// under a running container.
func (e *engine) network(ctx context.Context, id string) (netInfo, error) {
	e.mu.Lock()
	ni, ok := e.networks[id]
	e.mu.Unlock()
	if ok {
		return ni, nil
	}
	r, err := e.cli.NetworkInspect(ctx, id, client.NetworkInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		// A container can outlive the network it was attached to.
		return netInfo{}, nil
	}
	if err != nil {
		return netInfo{}, fmt.Errorf("inspecting network %s: %w", shortID(id), e.wrap(err))
	}
	ni.driver = r.Network.Driver
	if s := r.Network.Options[optVXLANIDs]; s != "" {
		// One VNI per subnet, comma separated; vxtrace's overlays have one.
		first, _, _ := strings.Cut(s, ",")
		if v, err := strconv.ParseUint(strings.TrimSpace(first), 10, 32); err == nil {
			ni.vni = uint32(v)
		}
	}
	switch ni.driver {
	case "bridge":
		ni.bridge = r.Network.Options[optBridgeName]
		if ni.bridge == "" {
			ni.bridge = "br-" + shortID(r.Network.ID)
		}
	}
	e.mu.Lock()
	e.networks[id] = ni
	e.mu.Unlock()
	return ni, nil
}

// Peers lists the containers (swarm tasks) attached to an overlay network
// on every node, as this node's network database knows them. It asks the
// API directly: engines write "VIP": "<nil>" for containers attached
// without a service, which the SDK's typed address field refuses to decode.
func (e *engine) Peers(ctx context.Context, networkID string) ([]Peer, error) {
	dial := e.cli.Dialer()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
	}}
	defer hc.CloseIdleConnections()
	u := "http://docker/v" + e.cli.ClientVersion() + "/networks/" + url.PathEscape(networkID) + "?verbose=true"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("inspecting network %s: %w", shortID(networkID), e.wrap(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("inspecting network %s: %s", shortID(networkID), resp.Status)
	}
	var raw struct {
		Services map[string]struct {
			Tasks []struct {
				Name       string
				EndpointIP string
				Info       map[string]string
			}
		}
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&raw); err != nil {
		return nil, fmt.Errorf("decoding network %s: %w", shortID(networkID), err)
	}
	var out []Peer
	for _, svc := range raw.Services {
		for _, t := range svc.Tasks {
			ip, _ := netip.ParseAddr(t.EndpointIP)
			out = append(out, Peer{Name: t.Name, IP: valid(ip), Host: t.Info["Host IP"]})
		}
	}
	return out, nil
}

func (e *engine) NodeNetNS(ctx context.Context) (string, error) {
	d, err := e.Daemon(ctx)
	if err != nil {
		return "", err
	}
	return d.NetNS, nil
}

func (e *engine) Daemon(ctx context.Context) (Daemon, error) {
	e.mu.Lock()
	if e.daemon != nil {
		d := *e.daemon
		e.mu.Unlock()
		return d, nil
	}
	e.mu.Unlock()
	d, err := findDaemon(ctx, e.host, e.cli.Dialer())
	if err != nil {
		return Daemon{}, err
	}
	d.APIVersion = e.cli.ClientVersion()
	e.mu.Lock()
	e.daemon = &d
	e.mu.Unlock()
	return d, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// exists reports whether p can be stat'ed.
func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
