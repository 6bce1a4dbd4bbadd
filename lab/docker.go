package lab

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Docker mode: the same underlay (sw, n1, n2), but the overlay is a real
// Docker Swarm. One dockerd runs in each node namespace, started with
// `nsenter --net=` (`ip netns exec` remounts /sys and dockerd then fails on
// the devices cgroup). Everything a daemon writes lives under
// DockerDir(prefix)/<node>: its data-root, exec-root, socket, pid file, log
// and config, so that two labs never share a daemon file and Down can remove
// the whole tree. Its containers go into their own cgroup parent
// (vxlab-<prefix>-<node>), which Down also uses to find container processes
// that outlive a killed daemon.
//
// The swarm: n1 is the manager (swarm init --advertise-addr N1IP), n2 joins
// as a worker. One attachable overlay network DockerNetwork (subnet
// 10.0.1.0/24, the netns lab's) carries c1 (10.0.1.3, on n1) and c2
// (10.0.1.4, on n2); both run busybox `sleep` from an image made with
// `docker import` from the static busybox. The TCP listener of c2 is the
// same host process as in the netns lab, run inside c2's namespace.
// The roles map onto Docker's namespaces: ov1/ov2 are the overlay sandboxes
// EXEC_ROOT/netns/1-<network id prefix>, c1/c2 the container sandboxes.

// Docker mode names.
const (
	DockerNetwork = "vxnet"
	DockerSubnet  = "10.0.1.0/24"
	DockerGateway = "10.0.1.1"
	DockerImage   = "vxlab/busybox:1"
	dockerVXLANID = "com.docker.network.driver.overlay.vxlanid_list"
	// swarmPort is the manager's control-plane port.
	swarmPort = 2377
)

// dockerCLI is Debian's docker.io client. /usr/local/bin/docker may be a
// newer CLI that refuses the 20.10 engine's API.
var dockerCLI = "/usr/bin/docker"

// imageApplets are linked to busybox in the lab image.
var imageApplets = []string{"sh", "ping", "ip", "wget", "nc", "sleep", "ifconfig", "cat", "echo", "true", "kill", "ps", "hostname"}

// dockerContainers says which node runs which container, and its address.
var dockerContainers = []struct {
	role Role
	node Role
	ip   string
}{
	{RoleC1, RoleN1, "10.0.1.3"},
	{RoleC2, RoleN2, "10.0.1.4"},
}

// DockerDir is the directory holding everything of a Docker-mode lab's
// daemons.
func DockerDir(prefix string) string { return filepath.Join(StateDir, prefix) }

// dockerState is Docker mode's part of State (State.DockerState).
type dockerState struct {
	Dir        string                `json:"dir"`
	Nodes      map[Role]*dockerNode  `json:"nodes"`
	NetworkID  string                `json:"network_id,omitempty"`
	Containers map[Role]dockerCtrRec `json:"containers,omitempty"`
	// OverlayIDs are the swarm's overlay networks (ingress and
	// DockerNetwork) and ContainerIDs every container seen on the nodes:
	// Down removes files Docker keeps for them outside the lab's dirs.
	OverlayIDs   []string `json:"overlay_ids,omitempty"`
	ContainerIDs []string `json:"container_ids,omitempty"`
}

// dockerNode is one dockerd.
type dockerNode struct {
	Role         Role   `json:"role"`
	NS           string `json:"netns"`
	Dir          string `json:"dir"`
	DataRoot     string `json:"data_root"`
	ExecRoot     string `json:"exec_root"`
	PIDFile      string `json:"pid_file"`
	Socket       string `json:"socket"`
	Log          string `json:"log"`
	Config       string `json:"config"`
	CgroupParent string `json:"cgroup_parent"`
	PID          int    `json:"pid,omitempty"`
	Cmdline      string `json:"cmdline,omitempty"`
}

type dockerCtrRec struct {
	Node Role   `json:"node"`
	Name string `json:"name"`
	ID   string `json:"id"`
}

// Host is the Docker host address of the node's daemon.
func (n *dockerNode) Host() string { return "unix://" + n.Socket }

func newDockerState(prefix string) *dockerState {
	ds := &dockerState{Dir: DockerDir(prefix), Nodes: map[Role]*dockerNode{}, Containers: map[Role]dockerCtrRec{}}
	for _, r := range []Role{RoleN1, RoleN2} {
		d := filepath.Join(ds.Dir, string(r))
		ds.Nodes[r] = &dockerNode{
			Role:         r,
			NS:           NSName(prefix, r),
			Dir:          d,
			DataRoot:     filepath.Join(d, "data"),
			ExecRoot:     filepath.Join(d, "exec"),
			PIDFile:      filepath.Join(d, "dockerd.pid"),
			Socket:       filepath.Join(d, "docker.sock"),
			Log:          filepath.Join(d, "dockerd.log"),
			Config:       filepath.Join(d, "daemon.json"),
			CgroupParent: "/vxlab-" + prefix + "-" + string(r),
		}
	}
	return ds
}

func loadDockerState(st *State) *dockerState {
	ds := newDockerState(st.Prefix)
	if len(st.DockerState) > 0 {
		var rec dockerState
		if err := json.Unmarshal(st.DockerState, &rec); err == nil && rec.Dir != "" {
			// Fill in what an early failure did not record yet.
			for r, n := range ds.Nodes {
				if rn, ok := rec.Nodes[r]; ok && rn != nil {
					*n = *rn
				}
			}
			ds.NetworkID = rec.NetworkID
			ds.OverlayIDs = rec.OverlayIDs
			ds.ContainerIDs = rec.ContainerIDs
			for r, c := range rec.Containers {
				ds.Containers[r] = c
			}
		}
	}
	return ds
}

func (l *Lab) saveDocker(ds *dockerState) error {
	b, err := json.Marshal(ds)
	if err != nil {
		return fmt.Errorf("encoding docker state: %w", err)
	}
	l.st.DockerState = b
	return l.save()
}

// DockerHost is the Docker host address (unix://...) of node n1's or n2's
// daemon; "" when the lab is not in Docker mode.
func (l *Lab) DockerHost(node Role) string {
	if !l.st.Docker {
		return ""
	}
	if n, ok := loadDockerState(&l.st).Nodes[node]; ok {
		return n.Host()
	}
	return ""
}

// DockerNetworkID is the overlay network's ID ("" outside Docker mode).
func (l *Lab) DockerNetworkID() string {
	if !l.st.Docker {
		return ""
	}
	return loadDockerState(&l.st).NetworkID
}

// ContainerName is the Docker name of c1 or c2 and the node role whose
// daemon runs it.
func (l *Lab) ContainerName(r Role) (name string, node Role) {
	for _, c := range dockerContainers {
		if c.role == r {
			return string(r), c.node
		}
	}
	return "", ""
}

// checkDockerTools fails early, with the package to install, when a tool
// Docker mode needs is missing.
func checkDockerTools() error {
	for _, t := range []struct{ path, pkg string }{
		{dockerCLI, "docker.io"},
		{"dockerd", "docker.io"},
		{"containerd", "containerd"},
		{"runc", "runc"},
		{busybox, "busybox-static"},
		{"nsenter", "util-linux"},
		{"iptables", "iptables"},
	} {
		if _, err := exec.LookPath(t.path); err != nil {
			return fmt.Errorf("docker mode needs %s (apt-get install %s): %w", t.path, t.pkg, err)
		}
	}
	return nil
}

// UpDocker builds the lab on a real two-node Docker Swarm. Like Up, it
// refuses a prefix in use and removes everything on failure.
func UpDocker(ctx context.Context, cfg Config, progress func(string)) (_ *Lab, err error) {
	if progress, err = cfg.start(progress); err != nil {
		return nil, err
	}
	if cfg.Layout != "" && cfg.Layout != DockerLayout {
		return nil, fmt.Errorf("docker mode has Docker's own layout (%s), not %s", DockerLayout, cfg.Layout)
	}
	for _, f := range cfg.Faults {
		if _, err := LookupFault(string(f)); err != nil {
			return nil, err
		}
	}
	if err := checkDockerTools(); err != nil {
		return nil, err
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
	l := newLab(cfg.Prefix, DockerLayout)
	l.st.Docker = true
	l.st.VXLANDev = dockerVXLAN
	ds := newDockerState(cfg.Prefix)
	// Recorded before anything is started, so that Down after a crash
	// knows where to look.
	if err := l.saveDocker(ds); err != nil {
		return nil, err
	}
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

	if err := step("building underlay (sw, n1, n2)", func() error {
		u, err := BuildUnderlay(ctx, cfg.Prefix)
		if err != nil {
			return err
		}
		for _, r := range []Role{RoleSW, RoleN1, RoleN2} {
			l.st.Namespaces[r] = Namespace{Name: u.NS(r), Path: nsPath(u.NS(r))}
		}
		return l.save()
	}); err != nil {
		return nil, err
	}
	noteSharedPaths()
	for _, r := range []Role{RoleN1, RoleN2} {
		n := ds.Nodes[r]
		if err := step("starting dockerd in "+n.NS, func() error { return l.startDockerd(ctx, ds, n) }); err != nil {
			return nil, err
		}
	}
	for _, r := range []Role{RoleN1, RoleN2} {
		n := ds.Nodes[r]
		if err := step("waiting for dockerd in "+n.NS, func() error { return waitDockerd(ctx, n) }); err != nil {
			return nil, err
		}
	}
	if err := step("importing busybox image "+DockerImage, func() error {
		img, err := busyboxImage()
		if err != nil {
			return err
		}
		for _, r := range []Role{RoleN1, RoleN2} {
			if _, err := ds.Nodes[r].docker(ctx, bytes.NewReader(img), "import", "-", DockerImage); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := step("forming swarm (n1 manager, n2 worker)", func() error { return formSwarm(ctx, ds) }); err != nil {
		return nil, err
	}
	if err := step("creating overlay network "+DockerNetwork, func() error {
		out, err := ds.Nodes[RoleN1].docker(ctx, nil, "network", "create", "--driver", "overlay", "--attachable",
			"--subnet", DockerSubnet, "--gateway", DockerGateway, DockerNetwork)
		if err != nil {
			return err
		}
		ds.NetworkID = strings.TrimSpace(out)
		if err := l.saveDocker(ds); err != nil {
			return err
		}
		out, err = ds.Nodes[RoleN1].docker(ctx, nil, "network", "inspect", "--format",
			fmt.Sprintf("{{index .Options %q}}", dockerVXLANID), DockerNetwork)
		if err != nil {
			return err
		}
		first, _, _ := strings.Cut(strings.TrimSpace(out), ",")
		vni, err := strconv.ParseUint(first, 10, 32)
		if err != nil {
			return fmt.Errorf("reading the VNI of %s: %q: %w", DockerNetwork, out, err)
		}
		l.st.VNI = uint32(vni)
		out, err = ds.Nodes[RoleN1].docker(ctx, nil, "network", "ls", "--quiet", "--no-trunc", "--filter", "driver=overlay")
		if err != nil {
			return err
		}
		ds.OverlayIDs = strings.Fields(out)
		return l.saveDocker(ds)
	}); err != nil {
		return nil, err
	}
	for _, c := range dockerContainers {
		n := ds.Nodes[c.node]
		if err := step(fmt.Sprintf("starting container %s on %s", c.role, n.NS), func() error {
			return l.runContainer(ctx, ds, n, c.role, c.ip)
		}); err != nil {
			return nil, err
		}
	}
	if err := step("waiting for the overlay (ping c1 -> c2)", func() error { return l.waitOverlay(ctx) }); err != nil {
		return nil, err
	}
	if !slices.Contains(cfg.Faults, FaultNoListener) {
		if err := step(fmt.Sprintf("starting TCP listener on c2:%d", ListenPort), func() error { return l.startListener(ctx) }); err != nil {
			return nil, err
		}
	}
	for _, f := range cfg.Faults {
		if err := step("injecting fault "+string(f), func() error {
			if f == FaultNoListener {
				// Up simply does not start the listener.
				l.st.Faults = append(l.st.Faults, f)
				return nil
			}
			return l.SetFault(f, true)
		}); err != nil {
			return nil, err
		}
	}
	if err := l.saveDocker(ds); err != nil {
		return nil, err
	}
	return l, nil
}

// startDockerd starts one daemon in its node namespace. nsenter execs
// dockerd, so the child's PID is the daemon's.
func (l *Lab) startDockerd(ctx context.Context, ds *dockerState, n *dockerNode) error {
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", n.Dir, err)
	}
	// Its own config file keeps /etc/docker/daemon.json out of the lab, and
	// the key path keeps dockerd from writing /etc/docker/key.json.
	cfg := map[string]any{"deprecated-key-path": filepath.Join(n.Dir, "key.json")}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(n.Config, b, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", n.Config, err)
	}
	args := []string{"dockerd",
		"--config-file", n.Config,
		"--data-root", n.DataRoot,
		"--exec-root", n.ExecRoot,
		"--pidfile", n.PIDFile,
		"--host", n.Host(),
		"--cgroup-parent", n.CgroupParent,
		"--userland-proxy=false",
	}
	logf, err := os.OpenFile(n.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("creating %s: %w", n.Log, err)
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=" + nsPath(n.NS), "--"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: a ^C meant for vxlab must not stop the daemons, and
	// they outlive `vxlab up`.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting dockerd in %s: %w", n.NS, err)
	}
	// Reaped here so that a long test run leaves no zombie; Down stops it.
	go func() { _ = cmd.Wait() }()
	n.PID = cmd.Process.Pid
	n.Cmdline = strings.Join(args, " ")
	l.st.Processes = append(l.st.Processes, Process{PID: n.PID, Role: n.Role, What: "dockerd", Cmdline: n.Cmdline})
	return l.saveDocker(ds)
}

// waitDockerd waits until the daemon answers on its socket.
func waitDockerd(ctx context.Context, n *dockerNode) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var last error
	for {
		if n.PID > 0 && !processAlive(n.PID, "") {
			return fmt.Errorf("dockerd in %s exited at start: %s", n.NS, logTail(n.Log))
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.docker(cctx, nil, "version", "--format", "{{.Server.APIVersion}}")
		ccancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("dockerd in %s not answering on %s: %v: %s", n.NS, n.Socket, last, logTail(n.Log))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return "log " + path + ": " + strings.Join(lines, " | ")
}

// docker runs the docker CLI against this node's daemon.
func (n *dockerNode) docker(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	full := append([]string{dockerCLI, "--host", n.Host()}, args...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	// The CLI's own config (contexts, credentials) stays in the lab.
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(n.Dir, "cli"))
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), cmdError(full, err, append(stderr.Bytes(), stdout.Bytes()...))
	}
	return stdout.String(), nil
}

// busyboxImage is a tar of a root file system holding only the static
// busybox and its applet links: there is no registry to pull from.
func busyboxImage() ([]byte, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("reading %s (apt-get install busybox-static): %w", busybox, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	hdrs := []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: now},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb)), ModTime: now},
	}
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(bb); err != nil {
				return nil, err
			}
		}
	}
	for _, a := range imageApplets {
		if err := tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: now}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func formSwarm(ctx context.Context, ds *dockerState) error {
	n1, n2 := ds.Nodes[RoleN1], ds.Nodes[RoleN2]
	if _, err := n1.docker(ctx, nil, "swarm", "init", "--advertise-addr", N1IP,
		"--listen-addr", fmt.Sprintf("%s:%d", N1IP, swarmPort)); err != nil {
		return err
	}
	tok, err := n1.docker(ctx, nil, "swarm", "join-token", "--quiet", "worker")
	if err != nil {
		return err
	}
	_, err = n2.docker(ctx, nil, "swarm", "join", "--token", strings.TrimSpace(tok),
		"--advertise-addr", N2IP, "--listen-addr", fmt.Sprintf("%s:%d", N2IP, swarmPort),
		fmt.Sprintf("%s:%d", N1IP, swarmPort))
	return err
}

// runContainer starts c1 or c2 and records its namespaces: the container's
// sandbox and the node's overlay sandbox (ov1/ov2).
func (l *Lab) runContainer(ctx context.Context, ds *dockerState, n *dockerNode, r Role, ipAddr string) error {
	name := string(r)
	out, err := n.docker(ctx, nil, "run", "--detach", "--name", name, "--hostname", name,
		"--network", DockerNetwork, "--ip", ipAddr, DockerImage, "sleep", "1000000000")
	if err != nil {
		return err
	}
	ds.Containers[r] = dockerCtrRec{Node: n.Role, Name: name, ID: strings.TrimSpace(out)}
	ds.ContainerIDs = append(ds.ContainerIDs, strings.TrimSpace(out))
	if err := l.saveDocker(ds); err != nil {
		return err
	}
	out, err = n.docker(ctx, nil, "inspect", "--format",
		fmt.Sprintf(`{{.NetworkSettings.SandboxKey}} {{(index .NetworkSettings.Networks %q).MacAddress}}`, DockerNetwork), name)
	if err != nil {
		return err
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		return fmt.Errorf("inspecting %s: unexpected %q", name, out)
	}
	l.st.Namespaces[r] = Namespace{Name: filepath.Base(f[0]), Path: f[0]}
	l.st.ContainerIPs[r] = ipAddr
	l.st.ContainerMACs[r] = f[1]
	ov := RoleOV1
	if n.Role == RoleN2 {
		ov = RoleOV2
	}
	sb, err := overlaySandbox(n, ds.NetworkID)
	if err != nil {
		return err
	}
	l.st.Namespaces[ov] = Namespace{Name: filepath.Base(sb), Path: sb}
	return l.saveDocker(ds)
}

// overlaySandbox finds the overlay network's sandbox namespace on a node.
// Docker names it "1-" and the network ID's first ten characters.
func overlaySandbox(n *dockerNode, netID string) (string, error) {
	if len(netID) < 10 {
		return "", fmt.Errorf("network id %q too short", netID)
	}
	p := filepath.Join(n.ExecRoot, "netns", "1-"+netID[:10])
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("finding the overlay sandbox on %s: %w", n.NS, err)
	}
	return p, nil
}

// waitOverlay pings c1 -> c2 until the swarm has told each node about the
// other's endpoint (gossip takes a moment after the second container).
func (l *Lab) waitOverlay(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		err := Ping(ctx, l.NSPath(RoleC1), l.ContainerIP(RoleC2), 1, 0)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("overlay not carrying c1 -> c2: %w", err)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// downDocker removes the Docker part of a lab: containers and swarm first
// (so dockerd undoes its own interfaces, mounts and iptables rules), then
// the daemons, then whatever a killed daemon left: container processes,
// containerd and its shims, mounts, cgroups, files. It works from whatever
// the state recorded, so it also cleans up after a failed Up. Down removes
// the namespaces afterwards.
func downDocker(st *State) error {
	ds := loadDockerState(st)
	var errs []error
	nodes := []*dockerNode{ds.Nodes[RoleN2], ds.Nodes[RoleN1]}
	for _, n := range nodes {
		if !daemonUp(n) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if out, err := n.docker(ctx, nil, "network", "ls", "--quiet", "--no-trunc", "--filter", "driver=overlay"); err == nil {
			ds.OverlayIDs = append(ds.OverlayIDs, strings.Fields(out)...)
		}
		if out, err := n.docker(ctx, nil, "ps", "--all", "--quiet", "--no-trunc"); err == nil {
			ids := strings.Fields(out)
			ds.ContainerIDs = append(ds.ContainerIDs, ids...)
			if len(ids) > 0 {
				if _, err := n.docker(ctx, nil, append([]string{"rm", "--force", "--volumes"}, ids...)...); err != nil {
					errs = append(errs, err)
				}
			}
		}
		// Leaving may fail (never joined); that is fine.
		_, _ = n.docker(ctx, nil, "swarm", "leave", "--force")
		cancel()
	}
	for _, n := range nodes {
		if err := stopDockerd(n); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range nodes {
		killLeftovers(n)
		if err := unmountUnder(n.Dir); err != nil {
			errs = append(errs, err)
		}
		removeCgroup(n.CgroupParent)
	}
	for _, id := range append(ds.OverlayIDs, ds.NetworkID) {
		if id != "" && !strings.ContainsAny(id, "/.") {
			// libnetwork writes a load-balancer sandbox's hosts and
			// resolv.conf under the default data root, whatever
			// --data-root says.
			os.RemoveAll(filepath.Join("/var/lib/docker/network/files", "lb_"+id))
		}
	}
	for _, c := range ds.Containers {
		ds.ContainerIDs = append(ds.ContainerIDs, c.ID)
	}
	removeShimSockets(ds)
	if err := unmountUnder(ds.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(ds.Dir); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", ds.Dir, err))
	}
	cleanSharedPaths()
	return errors.Join(errs...)
}

// removeShimSockets removes the sockets containerd's runc shims leave in
// /run/containerd/s, which is fixed whatever containerd's own paths are. A
// shim names its socket sha256(<containerd address>/<namespace>/<id>).
func removeShimSockets(ds *dockerState) {
	for _, n := range ds.Nodes {
		addr := filepath.Join(n.ExecRoot, "containerd", "containerd.sock")
		for _, id := range ds.ContainerIDs {
			if id == "" {
				continue
			}
			sum := sha256.Sum256([]byte(filepath.Join(addr, "moby", id)))
			_ = os.Remove(filepath.Join("/run/containerd/s", hex.EncodeToString(sum[:])))
		}
	}
}

// daemonUp reports whether a daemon answers within a second.
func daemonUp(n *dockerNode) bool {
	if _, err := os.Stat(n.Socket); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := n.docker(ctx, nil, "version", "--format", "{{.Server.APIVersion}}")
	return err == nil
}

// stopDockerd stops one daemon by its pid file (or the recorded PID),
// politely, then by force. A PID is only signalled while it still runs
// dockerd with this lab's exec-root: PIDs get reused.
func stopDockerd(n *dockerNode) error {
	pids := map[int]bool{}
	if b, err := os.ReadFile(n.PIDFile); err == nil {
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids[p] = true
		}
	}
	if n.PID > 0 {
		pids[n.PID] = true
	}
	for pid := range pids {
		if !ownedBy(pid, n.ExecRoot) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		// dockerd stops its containerd on the way out; give it time.
		if waitGone(pid, n.ExecRoot, 30*time.Second) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if !waitGone(pid, n.ExecRoot, 5*time.Second) {
			return fmt.Errorf("stopping dockerd %d in %s: still running", pid, n.NS)
		}
	}
	return nil
}

// ownedBy reports whether pid runs with path on its command line, i.e. is
// one of this lab's dockerd, containerd or shims.
func ownedBy(pid int, path string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return false
	}
	for _, a := range strings.Split(string(b), "\x00") {
		if a == path || strings.HasPrefix(a, path+"/") || strings.Contains(a, "="+path+"/") {
			return true
		}
	}
	return false
}

func waitGone(pid int, path string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !ownedBy(pid, path) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return !ownedBy(pid, path)
}

// killLeftovers kills what a daemon that died uncleanly leaves running:
// container processes (found by the lab's cgroup parent), then containerd
// and its shims (found by the lab's exec-root on their command line).
func killLeftovers(n *dockerNode) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	var ctrs, daemons []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if inCgroup(pid, n.CgroupParent) {
			ctrs = append(ctrs, pid)
		} else if ownedBy(pid, n.ExecRoot) || ownedBy(pid, n.Dir) {
			daemons = append(daemons, pid)
		}
	}
	for _, pids := range [][]int{ctrs, daemons} {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, pid := range pids {
			for i := 0; i < 50 && procExists(pid) && procState(pid) != 'Z'; i++ {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

func procExists(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && len(b) > 0
}

func inCgroup(pid int, parent string) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 && (parts[2] == parent || strings.HasPrefix(parts[2], parent+"/")) {
			return true
		}
	}
	return false
}

// unmountUnder detaches every mount at or below dir, deepest first:
// overlay2 layers, shm, netns bind mounts of a daemon that died.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("reading mountinfo: %w", err)
	}
	var mps []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mps = append(mps, mp)
		}
	}
	slices.SortFunc(mps, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, mp := range mps {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeCgroup removes the lab's cgroup parent from every hierarchy (v1
// controllers and the v2 tree), children first. A container's cgroup is
// busy until the last of its killed processes has finished exiting, a
// moment after the kill: the removal is tried again until it is gone (a
// test once found one left behind, empty, after a Down).
func removeCgroup(parent string) {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if removeCgroupOnce(parent) || time.Now().After(deadline) {
			return
		}
	}
}

// removeCgroupOnce says whether nothing of parent is left.
func removeCgroupOnce(parent string) bool {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	gone := true
	for _, root := range roots {
		dir := filepath.Join(root, parent)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				gone = false
			}
		}
	}
	return gone
}

// sharedPaths are created by any dockerd at fixed places, whatever its
// data-root and exec-root say (plugin sockets, containerd's shim sockets,
// libnetwork's load-balancer files). A lab that finds one missing notes it
// in sharedMarker; the last lab down removes the noted ones that are empty.
var sharedPaths = []string{
	"/run/docker/plugins", "/run/docker",
	"/run/containerd/s", "/run/containerd",
	"/var/lib/docker/network/files", "/var/lib/docker/network", "/var/lib/docker",
}

var sharedMarker = filepath.Join(StateDir, "docker-created")

func noteSharedPaths() {
	var missing []string
	for _, p := range sharedPaths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return
	}
	f, err := os.OpenFile(sharedMarker, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(strings.Join(missing, "\n") + "\n")
}

// cleanSharedPaths removes the noted shared paths once no dockerd runs on
// the machine any more; a path that is not empty stays (someone uses it).
func cleanSharedPaths() {
	b, err := os.ReadFile(sharedMarker)
	if err != nil || anyDockerd() {
		return
	}
	noted := map[string]bool{}
	for _, p := range strings.Fields(string(b)) {
		noted[p] = true
	}
	for _, p := range sharedPaths { // deepest first
		if noted[p] {
			_ = os.Remove(p)
		}
	}
	_ = os.Remove(sharedMarker)
}

func anyDockerd() bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if !procExists(pid) {
			continue // zombies wait for init; they hold nothing
		}
		if c, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
			switch strings.TrimSpace(string(c)) {
			case "dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2":
				return true
			}
		}
	}
	return false
}

// DockerLeftovers lists what of a Docker-mode lab is still on the machine:
// its state file and directory, namespaces, processes (daemons, shims,
// container processes), mounts and cgroups. Empty after a clean Down.
func DockerLeftovers(prefix string) []string {
	var out []string
	ds := newDockerState(prefix)
	for _, p := range []string{StatePath(prefix), ds.Dir} {
		if _, err := os.Lstat(p); err == nil {
			out = append(out, "file "+p)
		}
	}
	if names, err := labNamespaces(prefix); err == nil {
		for _, n := range names {
			out = append(out, "netns "+n)
		}
	}
	if ents, err := os.ReadDir("/proc"); err == nil {
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			// A zombie holds nothing but its PID until init reaps it;
			// a killed container process re-parented to a slow PID 1
			// stays one for a while.
			if procState(pid) == 'Z' {
				continue
			}
			for _, n := range ds.Nodes {
				if ownedBy(pid, n.Dir) || ownedBy(pid, n.ExecRoot) || inCgroup(pid, n.CgroupParent) {
					out = append(out, fmt.Sprintf("process %d (%s)", pid, comm(pid)))
					break
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 4 {
				if mp := unescapeMount(f[4]); mp == ds.Dir || strings.HasPrefix(mp, ds.Dir+"/") {
					out = append(out, "mount "+mp)
				}
			}
		}
	}
	for _, n := range ds.Nodes {
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", n.CgroupParent))
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", n.CgroupParent)); err == nil {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", n.CgroupParent))
		}
		for _, d := range dirs {
			out = append(out, "cgroup "+d)
		}
	}
	slices.Sort(out)
	return out
}

func comm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
