package lab

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// In docker mode the overlay devices are Docker's: its sandbox namespaces
// have no /run/netns name, so faults on them go through netlink handles
// opened on the sandbox paths.

func handleAtPath(path string) (*netlink.Handle, netns.NsHandle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, 0, fmt.Errorf("opening namespace %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, 0, fmt.Errorf("netlink in %s: %w", path, err)
	}
	return h, ns, nil
}

// node1VXLAN opens Docker's vxlan0 in node 1's sandbox, where the FDB and
// neighbour faults take out what it knows of container 2, and that
// container's MAC. done releases the handle.
func (l *Lab) node1VXLAN() (h *netlink.Handle, vx netlink.Link, c2MAC net.HardwareAddr, done func(), err error) {
	h, ns, err := handleAtPath(l.NSPath(RoleOV1))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	done = func() {
		h.Close()
		ns.Close()
	}
	if vx, err = h.LinkByName(dockerVXLAN); err != nil {
		done()
		return nil, nil, nil, nil, fmt.Errorf("finding Docker's %s in node 1's sandbox: %w", dockerVXLAN, err)
	}
	if c2MAC, err = net.ParseMAC(l.ContainerMAC(RoleC2)); err != nil {
		done()
		return nil, nil, nil, nil, fmt.Errorf("container 2's MAC %q: %w", l.ContainerMAC(RoleC2), err)
	}
	return h, vx, c2MAC, done, nil
}

// dockerFDB removes (on) or restores node 1's FDB entry for container 2's
// MAC on Docker's vxlan0.
func (l *Lab) dockerFDB(on bool) error {
	h, vx, mac, done, err := l.node1VXLAN()
	if err != nil {
		return err
	}
	defer done()
	entry := &netlink.Neigh{
		LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
		State: netlink.NUD_PERMANENT, HardwareAddr: mac, IP: net.ParseIP(l.VTEPIP(RoleN2)),
	}
	if on {
		if err := h.NeighDel(entry); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("deleting FDB entry %s: %w", mac, err)
		}
		return nil
	}
	if err := h.NeighSet(entry); err != nil {
		return fmt.Errorf("restoring FDB entry %s: %w", mac, err)
	}
	return nil
}

// dockerNeigh removes (on) or restores node 1's neighbour entry for
// container 2 on Docker's vxlan0, and flushes c1's cache entry for it either
// way, for the reasons the netns lab does (applyFault).
func (l *Lab) dockerNeigh(on bool) error {
	h, vx, mac, done, err := l.node1VXLAN()
	if err != nil {
		return err
	}
	defer done()
	dst := net.ParseIP(l.ContainerIP(RoleC2))
	if dst == nil {
		return fmt.Errorf("container 2's IP %q is not an address", l.ContainerIP(RoleC2))
	}
	entry := &netlink.Neigh{
		LinkIndex: vx.Attrs().Index, Family: unix.AF_INET,
		State: netlink.NUD_PERMANENT, HardwareAddr: mac, IP: dst,
	}
	if on {
		if err := h.NeighDel(entry); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("deleting neighbour entry %s: %w", dst, err)
		}
	} else if err := h.NeighSet(entry); err != nil {
		return fmt.Errorf("restoring neighbour entry %s: %w", dst, err)
	}

	ch, cns, err := handleAtPath(l.NSPath(RoleC1))
	if err != nil {
		return err
	}
	defer cns.Close()
	defer ch.Close()
	cached, err := ch.NeighList(0, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("listing container 1's neighbour entries: %w", err)
	}
	for _, e := range cached {
		if !e.IP.Equal(dst) || e.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 {
			continue
		}
		if err := ch.NeighDel(&e); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("flushing container 1's neighbour entry %s: %w", dst, err)
		}
	}
	return nil
}

// dockerVNI replaces Docker's vxlan0 in node 2's sandbox with one that uses
// vni, keeping everything else: MAC, MTU, bridge port, FDB and neighbour
// entries. It is created in the node namespace and moved, as Docker does,
// so that its UDP socket stays in the node namespace.
func (l *Lab) dockerVNI(vni uint32) error {
	sh, sns, err := handleAtPath(l.NSPath(RoleOV2))
	if err != nil {
		return err
	}
	defer sns.Close()
	defer sh.Close()
	nh, nns, err := handleAtPath(l.NSPath(RoleN2))
	if err != nil {
		return err
	}
	defer nns.Close()
	defer nh.Close()

	old, err := sh.LinkByName(dockerVXLAN)
	if err != nil {
		return fmt.Errorf("finding Docker's %s in node 2's sandbox: %w", dockerVXLAN, err)
	}
	ovx, ok := old.(*netlink.Vxlan)
	if !ok {
		return fmt.Errorf("%s in node 2's sandbox is a %s, not a vxlan", dockerVXLAN, old.Type())
	}
	if uint32(ovx.VxlanId) == vni {
		return nil
	}
	fdb, err := sh.NeighList(old.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("listing FDB entries: %w", err)
	}
	neigh, err := sh.NeighList(old.Attrs().Index, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("listing neighbour entries: %w", err)
	}
	master := old.Attrs().MasterIndex
	if err := sh.LinkDel(old); err != nil {
		return fmt.Errorf("deleting %s: %w", dockerVXLAN, err)
	}
	nvx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: dockerVXLAN, MTU: old.Attrs().MTU, HardwareAddr: old.Attrs().HardwareAddr},
		VxlanId:   int(vni), SrcAddr: ovx.SrcAddr, Port: ovx.Port,
		Learning: ovx.Learning, Proxy: ovx.Proxy, L2miss: ovx.L2miss, L3miss: ovx.L3miss,
	}
	if err := nh.LinkAdd(nvx); err != nil {
		return fmt.Errorf("creating %s with VNI %d in node 2: %w", dockerVXLAN, vni, err)
	}
	if err := nh.LinkSetNsFd(nvx, int(sns)); err != nil {
		_ = nh.LinkDel(nvx)
		return fmt.Errorf("moving %s into node 2's sandbox: %w", dockerVXLAN, err)
	}
	link, err := sh.LinkByName(dockerVXLAN)
	if err != nil {
		return err
	}
	if err := sh.LinkSetMasterByIndex(link, master); err != nil {
		return fmt.Errorf("attaching %s to its bridge: %w", dockerVXLAN, err)
	}
	if err := sh.LinkSetUp(link); err != nil {
		return err
	}
	for _, e := range append(fdb, neigh...) {
		if e.HardwareAddr == nil || (e.Family == unix.AF_BRIDGE && e.IP == nil) {
			continue // the device's own and learned-without-remote entries
		}
		e.LinkIndex = link.Attrs().Index
		if err := sh.NeighSet(&e); err != nil {
			return fmt.Errorf("restoring entry %s %s: %w", e.HardwareAddr, e.IP, err)
		}
	}
	return nil
}
