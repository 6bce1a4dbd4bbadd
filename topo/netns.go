package topo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Directories holding network-namespace bind mounts. /var/run is usually a
// symlink to /run; duplicates collapse when namespaces are deduplicated by
// inode.
const (
	RunNetNSDir    = "/run/netns"            // ip netns add
	DockerNetNSDir = "/var/run/docker/netns" // dockerd's default exec-root
)

// HostName is the name given to the init network namespace.
const HostName = "host"

// NetNSInode returns the inode of the network namespace that path opens,
// failing when path is not a network namespace.
func NetNSInode(path string) (uint32, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("opening %s: %w", path, err)
	}
	defer unix.Close(fd)
	return netnsInodeFd(fd, path)
}

// CurrentNetNSInode returns the inode of the calling thread's network
// namespace. It is the thread's, not the process's, so that a goroutine
// that locked its thread and switched namespace sees where it is.
func CurrentNetNSInode() (uint32, error) {
	return NetNSInode("/proc/thread-self/ns/net")
}

// netnsInodeFd checks that fd is a network namespace and returns its inode.
func netnsInodeFd(fd int, path string) (uint32, error) {
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return 0, fmt.Errorf("checking %s: %w", path, err)
	}
	if sfs.Type != unix.NSFS_MAGIC {
		// An empty file in /run/netns is what a failed or half-deleted
		// "ip netns add" leaves behind: say so rather than just "wrong type".
		return 0, fmt.Errorf("checking %s: not a namespace (filesystem magic %#x, not nsfs; an unmounted bind-mount target?)", path, sfs.Type)
	}
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return 0, fmt.Errorf("checking namespace type of %s: %w", path, err)
	}
	if typ != unix.CLONE_NEWNET {
		return 0, fmt.Errorf("checking %s: a %s namespace, not a network namespace", path, nsTypeName(typ))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("reading inode of %s: %w", path, err)
	}
	return uint32(st.Ino), nil
}

func nsTypeName(t int) string {
	switch t {
	case unix.CLONE_NEWNS:
		return "mount"
	case unix.CLONE_NEWUTS:
		return "uts"
	case unix.CLONE_NEWIPC:
		return "ipc"
	case unix.CLONE_NEWUSER:
		return "user"
	case unix.CLONE_NEWPID:
		return "pid"
	case unix.CLONE_NEWCGROUP:
		return "cgroup"
	case unix.CLONE_NEWTIME:
		return "time"
	}
	return fmt.Sprintf("type %#x", t)
}

// procNetNSInode stats a /proc/PID/ns/net link. Stat is enough there (the
// kernel only ever links it to a network namespace) and avoids an open per
// process.
func procNetNSInode(path string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return uint32(st.Ino), nil
}

// InitNetNSInode returns the inode of the init network namespace. PID 1's
// namespace may be unreadable (a sandboxed init, or no ptrace access), so it
// falls back to kthreadd (PID 2): kernel threads always live in init_net.
func InitNetNSInode() (uint32, error) {
	var errs []error
	for _, p := range []string{"/proc/1/ns/net", "/proc/2/ns/net"} {
		ino, err := procNetNSInode(p)
		if err == nil {
			return ino, nil
		}
		errs = append(errs, err)
	}
	return 0, fmt.Errorf("finding the init network namespace: %w", errors.Join(errs...))
}

// ListNamespaces returns every network namespace it can reach: the bind
// mounts in /run/netns and in Docker's netns directory (plus extraDirs, e.g.
// a dockerd --exec-root's netns), and the namespace of every process,
// including the caller's. Each namespace appears once. A namespace is named
// after its first bind mount, the init namespace "host"; namespaces held
// only by a process have no name and a /proc path.
//
// Missing directories, stale bind-mount targets and processes that exit or
// cannot be inspected are skipped: the listing races with everything that
// creates and deletes namespaces, and a partial answer is the useful one.
func ListNamespaces(extraDirs ...string) ([]NetNS, error) {
	byIno := make(map[uint32]int)
	var out []NetNS
	add := func(ns NetNS) {
		if i, ok := byIno[ns.Inode]; ok {
			if out[i].Name == "" && ns.Name != "" {
				out[i].Name = ns.Name
				out[i].Path = ns.Path
			}
			return
		}
		byIno[ns.Inode] = len(out)
		out = append(out, ns)
	}

	initIno, initErr := InitNetNSInode()
	if initErr == nil {
		// Named first so that a bind mount of the init namespace (often
		// /run/netns/default) does not rename the host.
		add(NetNS{Inode: initIno, Name: HostName, Path: initNetNSPath()})
	}
	selfPath := fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
	selfIno, err := procNetNSInode(selfPath)
	if err != nil {
		return nil, fmt.Errorf("reading own network namespace: %w", err)
	}

	dirs := append([]string{RunNetNSDir, DockerNetNSDir}, extraDirs...)
	for _, d := range dirs {
		for _, ns := range bindMounts(d) {
			add(ns)
		}
	}

	add(NetNS{Inode: selfIno, Path: selfPath})

	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing /proc: %w", err)
	}
	for _, e := range procs {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		p := filepath.Join("/proc", e.Name(), "ns", "net")
		ino, err := procNetNSInode(p)
		if err != nil {
			continue
		}
		add(NetNS{Inode: ino, Path: p})
	}

	sortNetNS(out, initIno)
	return out, nil
}

func initNetNSPath() string {
	if _, err := procNetNSInode("/proc/1/ns/net"); err == nil {
		return "/proc/1/ns/net"
	}
	return "/proc/2/ns/net"
}

// bindMounts lists the network namespaces mounted in dir, in name order.
func bindMounts(dir string) []NetNS {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []NetNS
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		ino, err := NetNSInode(p)
		if err != nil {
			continue
		}
		out = append(out, NetNS{Inode: ino, Name: e.Name(), Path: p})
	}
	return out
}

// sortNetNS orders host first, then named namespaces by name, then the
// unnamed ones by inode, so that listings are stable between runs.
func sortNetNS(nss []NetNS, initIno uint32) {
	sort.SliceStable(nss, func(i, j int) bool {
		a, b := nss[i], nss[j]
		if (a.Inode == initIno) != (b.Inode == initIno) {
			return a.Inode == initIno
		}
		if (a.Name != "") != (b.Name != "") {
			return a.Name != ""
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Inode < b.Inode
	})
}

// ResolveNetNS turns a --netns argument into a namespace: a path (anything
// with a slash), or a name looked up in /run/netns, then in Docker's netns
// directory. "host" names the init namespace unless /run/netns has a
// namespace of that name.
func ResolveNetNS(arg string) (NetNS, error) {
	if arg == "" {
		return NetNS{}, errors.New("resolving netns: empty name")
	}
	if strings.Contains(arg, "/") {
		ino, err := NetNSInode(arg)
		if err != nil {
			return NetNS{}, fmt.Errorf("resolving netns %q: %w", arg, err)
		}
		return NetNS{Inode: ino, Name: nameOfInode(ino), Path: arg}, nil
	}
	var tried []string
	for _, d := range []string{RunNetNSDir, DockerNetNSDir} {
		p := filepath.Join(d, arg)
		tried = append(tried, d)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		ino, err := NetNSInode(p)
		if err != nil {
			return NetNS{}, fmt.Errorf("resolving netns %q: %w", arg, err)
		}
		return NetNS{Inode: ino, Name: arg, Path: p}, nil
	}
	if arg == HostName {
		ino, err := InitNetNSInode()
		if err != nil {
			return NetNS{}, fmt.Errorf("resolving netns %q: %w", arg, err)
		}
		return NetNS{Inode: ino, Name: HostName, Path: initNetNSPath()}, nil
	}
	return NetNS{}, fmt.Errorf("resolving netns %q: no namespace of that name in %s", arg, strings.Join(tried, " or "))
}

// nameOfInode finds a name for a namespace given by path.
func nameOfInode(ino uint32) string {
	if initIno, err := InitNetNSInode(); err == nil && initIno == ino {
		return HostName
	}
	for _, d := range []string{RunNetNSDir, DockerNetNSDir} {
		for _, ns := range bindMounts(d) {
			if ns.Inode == ino {
				return ns.Name
			}
		}
	}
	return ""
}

// DisplayName is the namespace's name, or the kernel's netns:[inode] form
// for a namespace that has none.
func (n NetNS) DisplayName() string {
	if n.Name != "" {
		return n.Name
	}
	return fmt.Sprintf("netns:[%d]", n.Inode)
}
