// Package nsexec owns running a function inside another network namespace
// on a locked OS thread, for the calls (tcx links, netlink lookups by name)
// that resolve interfaces in the caller's namespace.
package nsexec

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn with the calling thread moved into the namespace at path, and
// moves it back. The ifindex of a tcx link or a netlink request is resolved
// in the namespace of the thread that makes it.
func Do(path string, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("opening namespace %s: %w", path, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("entering namespace %s: %w", path, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// A thread left in another namespace must not be reused.
			panic(fmt.Sprintf("returning to the original namespace: %v", err))
		}
	}()
	return fn()
}
