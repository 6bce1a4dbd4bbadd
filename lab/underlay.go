package lab

import (
	"context"
	"errors"
	"fmt"
)

// Underlay is the physical part of a lab: the router namespace sw and the
// two node namespaces n1, n2, each node's eth0 a veth into sw. It is what
// both the netns layouts and Docker mode stand on.
type Underlay struct {
	Prefix string
}

// NS is the namespace name of sw, n1 or n2.
func (u *Underlay) NS(r Role) string { return NSName(u.Prefix, r) }

// BuildUnderlay creates sw, n1 and n2 with the fixed underlay addressing
// (N1IP, N2IP behind SWN1IP, SWN2IP). On failure it removes what it made.
func BuildUnderlay(ctx context.Context, prefix string) (_ *Underlay, err error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	u := &Underlay{Prefix: prefix}
	for _, r := range []Role{RoleSW, RoleN1, RoleN2} {
		if nsExists(u.NS(r)) {
			return nil, fmt.Errorf("namespace %s already exists", u.NS(r))
		}
	}
	defer func() {
		if err != nil {
			if terr := u.Teardown(); terr != nil {
				err = fmt.Errorf("%w (and tearing down: %v)", err, terr)
			}
		}
	}()
	sw := u.NS(RoleSW)
	for _, r := range []Role{RoleSW, RoleN1, RoleN2} {
		if err := newNS(ctx, u.NS(r)); err != nil {
			return nil, err
		}
	}
	if err := sysctl(ctx, sw, "net.ipv4.ip_forward=1"); err != nil {
		return nil, fmt.Errorf("enabling forwarding in %s: %w", sw, err)
	}
	links := []struct {
		node         Role
		port         string
		swIP, nodeIP string
	}{
		{RoleN1, SWPortN1, SWN1IP, N1IP},
		{RoleN2, SWPortN2, SWN2IP, N2IP},
	}
	for _, lk := range links {
		node := u.NS(lk.node)
		// Both ends are born in their namespaces, so no name is ever taken
		// in the caller's namespace and parallel labs cannot collide.
		if err := ip(ctx, sw, "link", "add", lk.port, "mtu", fmt.Sprint(UnderlayMTU), "type", "veth",
			"peer", "name", NodeNIC, "mtu", fmt.Sprint(UnderlayMTU), "netns", node); err != nil {
			return nil, fmt.Errorf("creating veth %s/%s - %s/%s: %w", sw, lk.port, node, NodeNIC, err)
		}
		if err := ip(ctx, sw, "addr", "add", lk.swIP+"/24", "dev", lk.port); err != nil {
			return nil, fmt.Errorf("addressing %s/%s: %w", sw, lk.port, err)
		}
		if err := ip(ctx, sw, "link", "set", lk.port, "up"); err != nil {
			return nil, fmt.Errorf("bringing up %s/%s: %w", sw, lk.port, err)
		}
		if err := ip(ctx, node, "addr", "add", lk.nodeIP+"/24", "dev", NodeNIC); err != nil {
			return nil, fmt.Errorf("addressing %s/%s: %w", node, NodeNIC, err)
		}
		if err := ip(ctx, node, "link", "set", NodeNIC, "up"); err != nil {
			return nil, fmt.Errorf("bringing up %s/%s: %w", node, NodeNIC, err)
		}
		if err := ip(ctx, node, "route", "add", "default", "via", lk.swIP); err != nil {
			return nil, fmt.Errorf("adding default route in %s: %w", node, err)
		}
	}
	return u, nil
}

// Teardown removes sw, n1 and n2 and anything still running in them.
func (u *Underlay) Teardown() error {
	var errs []error
	for _, r := range []Role{RoleN2, RoleN1, RoleSW} {
		if err := deleteNS(u.NS(r)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// newNS makes a namespace with lo up and IPv6 off. IPv6 is off because its
// router and multicast chatter (MLD, DAD, RS) floods to vxlan devices that
// have no default remote and shows up as a steady trickle of NO_TX_TARGET
// drops, which is noise for a tracer under test. "default" is set as well
// as "all" so that interfaces created or moved in later inherit it.
func newNS(ctx context.Context, name string) error {
	if err := ip(ctx, "", "netns", "add", name); err != nil {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	if err := sysctl(ctx, name,
		"net.ipv6.conf.all.disable_ipv6=1",
		"net.ipv6.conf.default.disable_ipv6=1"); err != nil {
		return fmt.Errorf("disabling IPv6 in %s: %w", name, err)
	}
	if err := ip(ctx, name, "link", "set", "lo", "up"); err != nil {
		return fmt.Errorf("bringing up lo in %s: %w", name, err)
	}
	return nil
}
