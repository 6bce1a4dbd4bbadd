package topo

import "errors"

// Change is what one Refresh saw: hops that appeared and hops that went.
type Change struct {
	Added []*Hop
	Gone  []*Hop
}

// Empty reports whether nothing changed.
func (c Change) Empty() bool { return len(c.Added) == 0 && len(c.Gone) == 0 }

// Refresh discovers again in the namespaces the topology was discovered in
// (nss replaces them when given) and updates it in place: hops that no
// longer exist are marked Gone and kept, so that IDs already handed out
// stay valid; new ones are appended. An interface whose index now names a
// different device counts as gone and added. Refresh is not safe to run
// concurrently with readers of t.
func (t *Topology) Refresh(nss ...NetNS) (Change, error) {
	fresh, err := t.Rediscover(nss...)
	if err != nil {
		return Change{}, err
	}
	return t.Merge(fresh), nil
}

// Rediscover is Refresh's slow half: the discovery, which only reads t. A
// caller that shares t with readers runs it without their lock and holds
// the lock only for Merge: discovery takes netlink dumps in every namespace,
// tens of milliseconds on a busy node, and a reader held that long falls
// behind the events.
func (t *Topology) Rediscover(nss ...NetNS) (*Topology, error) {
	if len(nss) == 0 {
		nss = t.nss
	}
	if len(nss) == 0 {
		return nil, errors.New("refreshing topology: no namespaces to discover in")
	}
	return Discover(nss)
}

// Merge is Refresh's quick half: it updates t from a fresh discovery.
func (t *Topology) Merge(fresh *Topology) Change {
	var ch Change
	current := make(map[Key]*Hop, len(fresh.Hops))
	for i := range fresh.Hops {
		current[fresh.Hops[i].Key()] = &fresh.Hops[i]
	}
	// Indexes, not pointers: Add may move the slice.
	var gone []int
	for i := range t.Hops {
		h := &t.Hops[i]
		if h.Gone {
			continue
		}
		if n, ok := current[h.Key()]; ok && n.Ifname == h.Ifname && n.LinkType == h.LinkType {
			// Still there: take what discovery sees now. An interface
			// found while its container was being wired (its peer not
			// yet a bridge port) is classified right the next time.
			id, blind := h.ID, h.Blind
			*h = *n
			h.ID, h.Blind = id, blind
			continue
		}
		h.Gone = true
		gone = append(gone, i)
	}
	var added []int
	for i := range fresh.Hops {
		n := fresh.Hops[i]
		if old, ok := t.Lookup(n.NetNS.Inode, n.Ifindex); ok && !old.Gone {
			continue
		}
		added = append(added, t.Add(n).ID)
	}
	for _, i := range gone {
		ch.Gone = append(ch.Gone, &t.Hops[i])
	}
	for _, i := range added {
		ch.Added = append(ch.Added, &t.Hops[i])
	}
	t.nss = fresh.nss
	return ch
}
