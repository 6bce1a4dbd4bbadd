// Package lab owns the overlay labs vxtrace is run and tested against: it
// builds VXLAN overlay topologies out of network namespaces (no Docker
// needed), switches named faults on and off in them, sends test traffic
// through them, and tears them down leaving nothing behind. The Docker Swarm
// variant (lab/docker.go) reuses the underlay built here.
//
// Every lab has a name prefix P (default "vxlab"); all its namespaces are
// named P-<role> and its state lives in /run/vxlab/P.json, so labs with
// different prefixes never collide and Down(P) can find a lab's pieces even
// after a crash, from the names alone.
//
// Underlay (both layouts): a router namespace P-sw (ip_forward=1) with one
// veth to each node namespace. Node n1's NIC eth0 is 10.99.1.2/24 (sw side
// "to-n1", 10.99.1.1), node n2's eth0 is 10.99.2.2/24 (sw side "to-n2",
// 10.99.2.1); each node's default route points at sw. The node addresses are
// the VTEP addresses. VXLAN uses VNI 4097 on UDP 4789.
//
// docker-layout mirrors Docker's overlay driver: each node has a sandbox
// P-ov1/P-ov2 holding br0 and vxlan0 (nolearning, proxy ARP, static FDB and
// neighbour entries for the remote container). vxlan0 is created in the node
// namespace and then moved into the sandbox, so its UDP socket stays in the
// node namespace. Containers P-c1 (10.0.1.3/24) and P-c2 (10.0.1.4/24) share
// one L2 overlay subnet; their eth0 (MTU 1450) is a veth whose peer "veth0"
// is a port of br0.
//
// flannel-layout mirrors flannel's vxlan backend: no bridge and no sandbox.
// Each node owns a /24: n1 has 10.0.1.0/24 with c1 = 10.0.1.3, n2 has
// 10.0.2.0/24 with c2 = 10.0.2.4. The container veth peer ("vethc1",
// "vethc2") stays in the node namespace and holds the container's gateway
// (10.0.N.1/32); the node routes 10.0.N.x/32 to it. Each node has a routed
// "vxlan100" holding 10.0.N.0/32; the remote /24 is routed via the remote
// vxlan100 address with onlink, resolved by a permanent neighbour entry and
// a static FDB entry to the remote VTEP, as flannel programs them.
//
// Tests should read addresses through the Lab accessors rather than
// hardcoding them: they differ between layouts.
package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sync"
	"time"
)

// DefaultPrefix names the lab when the caller gives no prefix.
const DefaultPrefix = "vxlab"

// Overlay constants shared by both layouts.
const (
	VNI        uint32 = 4097
	WrongVNI   uint32 = 4098 // what the wrong-vni fault gives node 2
	VXLANPort         = 4789
	OverlayMTU        = 1450
	// ListenPort is where the lab's TCP listener in c2 waits; the
	// no-listener fault stops it.
	ListenPort = 8080
	// BigPayload makes an ICMP echo whose IP packet is exactly OverlayMTU
	// bytes, so that encapsulated it needs a 1500-byte underlay.
	BigPayload = OverlayMTU - 20 - 8
)

// Underlay addressing (DESIGN-NOTES "Lab addressing").
const (
	N1IP        = "10.99.1.2"
	N2IP        = "10.99.2.2"
	SWN1IP      = "10.99.1.1"
	SWN2IP      = "10.99.2.1"
	NodeNIC     = "eth0"  // the node's underlay interface
	SWPortN1    = "to-n1" // sw's interface towards n1
	SWPortN2    = "to-n2"
	UnderlayMTU = 1500
)

// Layout selects how the overlay is wired inside the nodes.
type Layout string

const (
	DockerLayout  Layout = "docker-layout"
	FlannelLayout Layout = "flannel-layout"
)

// Layouts lists the layouts Up knows.
func Layouts() []Layout { return []Layout{DockerLayout, FlannelLayout} }

// ParseLayout checks a layout name; "" means the default docker-layout.
func ParseLayout(s string) (Layout, error) {
	if s == "" {
		return DockerLayout, nil
	}
	for _, l := range Layouts() {
		if string(l) == s {
			return l, nil
		}
	}
	return "", fmt.Errorf("unknown layout %q (want %s or %s)", s, DockerLayout, FlannelLayout)
}

// Role is a namespace's part in the lab.
type Role string

const (
	RoleSW  Role = "sw"
	RoleN1  Role = "n1"
	RoleN2  Role = "n2"
	RoleOV1 Role = "ov1"
	RoleOV2 Role = "ov2"
	RoleC1  Role = "c1"
	RoleC2  Role = "c2"
)

// allRoles is every role a lab may have, in build order.
var allRoles = []Role{RoleSW, RoleN1, RoleN2, RoleOV1, RoleOV2, RoleC1, RoleC2}

// NSName is the namespace name of a role in the lab with this prefix.
func NSName(prefix string, r Role) string { return prefix + "-" + string(r) }

// Config says what lab to build.
type Config struct {
	Prefix string // "" = DefaultPrefix
	Layout Layout // "" = DockerLayout
	Faults []Fault
}

// Namespace is one namespace of a lab. Path opens it: /run/netns/NAME for
// the netns lab, Docker's own sandbox paths in Docker mode.
type Namespace struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

// Process is a process the lab started and must stop on Down.
type Process struct {
	PID  int    `json:"pid"`
	Role Role   `json:"role"` // namespace it runs in
	What string `json:"what"` // e.g. "listener"
	// Cmdline is matched against /proc/PID/cmdline before a signal is
	// sent, so that a recycled PID is never killed.
	Cmdline string `json:"cmdline"`
}

// State is everything Down and Open need to know about a lab; it is what
// /run/vxlab/<prefix>.json holds.
type State struct {
	Version    int                `json:"version"`
	Prefix     string             `json:"prefix"`
	Layout     Layout             `json:"layout"`
	Docker     bool               `json:"docker,omitempty"`
	Created    time.Time          `json:"created"`
	Namespaces map[Role]Namespace `json:"namespaces"`
	// Per container role (c1, c2).
	ContainerIPs  map[Role]string `json:"container_ips"`
	ContainerMACs map[Role]string `json:"container_macs"`
	// Per node role (n1, n2): the VTEP (underlay) address.
	VTEPIPs map[Role]string `json:"vtep_ips"`
	VNI     uint32          `json:"vni"`
	Port    int             `json:"port"`
	// VXLANDev is the vxlan device's name ("vxlan0" or "vxlan100"); it
	// lives in ov1/ov2 in the docker layout and in n1/n2 in flannel's.
	VXLANDev  string    `json:"vxlan_dev"`
	Faults    []Fault   `json:"faults,omitempty"`
	Processes []Process `json:"processes,omitempty"`
	// DockerState is opaque to this file: Docker mode keeps its own
	// bookkeeping (daemons, swarm, network ids) here.
	DockerState []byte `json:"docker_state,omitempty"`
}

const stateVersion = 1

// Lab is a running lab. Its methods keep the state file in step.
type Lab struct {
	mu sync.Mutex
	st State
	// reap holds processes started by this process, so they can be
	// waited for (no zombies in a long test run).
	reap map[int]chan struct{}
}

// testHookStep lets tests make Up fail at a chosen step.
var testHookStep func(step string) error

var prefixRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}$`)

func checkPrefix(p string) error {
	if !prefixRE.MatchString(p) {
		return fmt.Errorf("invalid prefix %q: use 1-31 of a-z, 0-9, '-', starting with a letter or digit", p)
	}
	return nil
}

// start fills in the defaults that both kinds of lab share and checks the
// prefix; it returns a progress callback that is never nil.
func (c *Config) start(progress func(string)) (func(string), error) {
	if progress == nil {
		progress = func(string) {}
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	return progress, checkPrefix(c.Prefix)
}

// Up builds a lab. It refuses to touch a prefix that is already in use, and
// on any failure removes everything it created before returning the error.
func Up(ctx context.Context, cfg Config, progress func(string)) (_ *Lab, err error) {
	if progress, err = cfg.start(progress); err != nil {
		return nil, err
	}
	layout, err := ParseLayout(string(cfg.Layout))
	if err != nil {
		return nil, err
	}
	for _, f := range cfg.Faults {
		if _, err := LookupFault(string(f)); err != nil {
			return nil, err
		}
	}
	if err := claim(cfg.Prefix); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			progress("removing what was built")
			if derr := Down(cfg.Prefix); derr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v)", err, derr)
			}
		}
	}()
	l := newLab(cfg.Prefix, layout)
	step := func(name string, f func() error) error {
		progress(name)
		if err := f(); err != nil {
			return err
		}
		if testHookStep != nil {
			return testHookStep(name)
		}
		return nil
	}
	var u *Underlay
	if err := step("building underlay (sw, n1, n2)", func() error {
		var err error
		u, err = BuildUnderlay(ctx, cfg.Prefix)
		return err
	}); err != nil {
		return nil, err
	}
	for _, r := range []Role{RoleSW, RoleN1, RoleN2} {
		l.st.Namespaces[r] = Namespace{Name: u.NS(r), Path: nsPath(u.NS(r))}
	}
	if err := l.save(); err != nil {
		return nil, err
	}
	switch layout {
	case DockerLayout:
		err = step("building docker-layout overlay (ov1, ov2, c1, c2)", func() error { return l.buildDocker(ctx) })
	case FlannelLayout:
		err = step("building flannel-layout overlay (c1, c2)", func() error { return l.buildFlannel(ctx) })
	}
	if err != nil {
		return nil, err
	}
	if err := l.save(); err != nil {
		return nil, err
	}
	if err := step(fmt.Sprintf("starting TCP listener on c2:%d", ListenPort), func() error { return l.startListener(ctx) }); err != nil {
		return nil, err
	}
	for _, f := range cfg.Faults {
		if err := step("injecting fault "+string(f), func() error { return l.SetFault(f, true) }); err != nil {
			return nil, err
		}
	}
	if err := l.save(); err != nil {
		return nil, err
	}
	return l, nil
}

func newLab(prefix string, layout Layout) *Lab {
	st := State{
		Version:       stateVersion,
		Prefix:        prefix,
		Layout:        layout,
		Created:       time.Now().UTC().Truncate(time.Second),
		Namespaces:    map[Role]Namespace{},
		ContainerIPs:  map[Role]string{},
		ContainerMACs: map[Role]string{},
		VTEPIPs:       map[Role]string{RoleN1: N1IP, RoleN2: N2IP},
		VNI:           VNI,
		Port:          VXLANPort,
	}
	return &Lab{st: st, reap: map[int]chan struct{}{}}
}

// NewFromState wraps a state (Docker mode builds its own) in a Lab.
func NewFromState(st *State) *Lab {
	return &Lab{st: *st, reap: map[int]chan struct{}{}}
}

// Open returns the lab recorded under prefix.
func Open(prefix string) (*Lab, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	st, err := readState(prefix)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no lab with prefix %q (`vxlab up --prefix %s` makes one): %w", prefix, prefix, os.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	return NewFromState(st), nil
}

// Down removes this lab.
func (l *Lab) Down() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for pid, done := range l.reap {
		killProcess(pid, "")
		<-done
	}
	return Down(l.st.Prefix)
}

// Down removes the lab with this prefix: its processes, its namespaces (and
// with them every interface and iptables rule it had) and its state file. It
// works from the state file and, failing that, from the namespace names, so
// it also cleans up after a crashed Up. Removing a lab that is not there is
// not an error.
func Down(prefix string) error {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	var errs []error
	st, err := readState(prefix)
	switch {
	case errors.Is(err, os.ErrNotExist):
		st = nil
	case err != nil:
		// A corrupt state file must not keep the namespaces alive.
		errs = append(errs, err)
		st = nil
	}
	if st != nil && st.Docker {
		if err := downDocker(st); err != nil {
			errs = append(errs, fmt.Errorf("removing docker lab %s: %w", prefix, err))
		}
	}
	if st != nil {
		for _, p := range st.Processes {
			killProcess(p.PID, p.Cmdline)
		}
	}
	names, err := labNamespaces(prefix)
	if err != nil {
		errs = append(errs, err)
	}
	if st != nil {
		for _, ns := range st.Namespaces {
			if nsPath(ns.Name) == ns.Path && !slices.Contains(names, ns.Name) && nsExists(ns.Name) {
				names = append(names, ns.Name)
			}
		}
	}
	// Containers first, the router last: the reverse of building.
	slices.SortFunc(names, func(a, b string) int { return roleRank(prefix, b) - roleRank(prefix, a) })
	for _, name := range names {
		if err := deleteNS(name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeState(prefix); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func roleRank(prefix, name string) int {
	for i, r := range allRoles {
		if NSName(prefix, r) == name {
			return i
		}
	}
	return len(allRoles)
}

// LabStatus describes a lab as found on the machine.
type LabStatus struct {
	Prefix string `json:"prefix"`
	// State is nil when there is no state file.
	State *State `json:"state,omitempty"`
	// Namespaces are the namespaces of this prefix that exist.
	Namespaces []string `json:"namespaces"`
	// Missing are namespaces the state file lists that are gone.
	Missing []string `json:"missing,omitempty"`
	// Dead are recorded processes that are no longer running.
	Dead []Process `json:"dead,omitempty"`
}

// Exists reports whether anything of the lab is on the machine.
func (s *LabStatus) Exists() bool { return s.State != nil || len(s.Namespaces) > 0 }

// Healthy reports whether the lab is complete: state, all namespaces, all
// processes (faults may still be on).
func (s *LabStatus) Healthy() bool {
	return s.State != nil && len(s.Missing) == 0 && len(s.Dead) == 0
}

// Status looks at what of the lab with this prefix exists.
func Status(prefix string) (*LabStatus, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	s := &LabStatus{Prefix: prefix}
	st, err := readState(prefix)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err == nil {
		s.State = st
	}
	names, err := labNamespaces(prefix)
	if err != nil {
		return nil, err
	}
	s.Namespaces = names
	if s.State != nil {
		for _, r := range allRoles {
			ns, ok := s.State.Namespaces[r]
			if !ok {
				continue
			}
			if _, err := os.Stat(ns.Path); err != nil {
				s.Missing = append(s.Missing, ns.Name)
			}
		}
		for _, p := range s.State.Processes {
			if !processAlive(p.PID, p.Cmdline) {
				s.Dead = append(s.Dead, p)
			}
		}
	}
	return s, nil
}

// State returns a copy of the lab's state.
func (l *Lab) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.st
	st.Faults = slices.Clone(st.Faults)
	st.Processes = slices.Clone(st.Processes)
	return st
}

func (l *Lab) Prefix() string { return l.st.Prefix }
func (l *Lab) Layout() Layout { return l.st.Layout }
func (l *Lab) Docker() bool   { return l.st.Docker }
func (l *Lab) VNI() uint32    { return l.st.VNI }
func (l *Lab) Port() int      { return l.st.Port }

// Roles lists the roles this lab has, in build order.
func (l *Lab) Roles() []Role {
	var out []Role
	for _, r := range allRoles {
		if _, ok := l.st.Namespaces[r]; ok {
			out = append(out, r)
		}
	}
	return out
}

// NS is the name of a role's namespace ("" if the layout has no such role).
func (l *Lab) NS(r Role) string { return l.st.Namespaces[r].Name }

// NSPath is the path that opens a role's namespace.
func (l *Lab) NSPath(r Role) string { return l.st.Namespaces[r].Path }

// ContainerIP is c1's or c2's overlay address.
func (l *Lab) ContainerIP(r Role) string { return l.st.ContainerIPs[r] }

// ContainerMAC is c1's or c2's eth0 MAC.
func (l *Lab) ContainerMAC(r Role) string { return l.st.ContainerMACs[r] }

// VTEPIP is n1's or n2's underlay (VTEP) address.
func (l *Lab) VTEPIP(r Role) string { return l.st.VTEPIPs[r] }

// VXLANDev says where a node's vxlan device is: the namespace role holding
// it (ov1/ov2 for docker-layout, n1/n2 for flannel-layout) and its name.
func (l *Lab) VXLANDev(node Role) (Role, string) {
	if l.st.Layout == DockerLayout {
		if node == RoleN1 {
			return RoleOV1, l.st.VXLANDev
		}
		return RoleOV2, l.st.VXLANDev
	}
	return node, l.st.VXLANDev
}

// Faults lists the faults that are on.
func (l *Lab) Faults() []Fault {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.st.Faults)
}

func (l *Lab) faultOn(f Fault) bool { return slices.Contains(l.st.Faults, f) }
