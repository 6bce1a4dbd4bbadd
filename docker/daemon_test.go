package docker

import (
	"errors"
	"os"
	"slices"
	"testing"
)

func TestExecRoot(t *testing.T) {
	cfg := map[string]string{
		"/etc/docker/daemon.json": `{"exec-root": "/run/from-default-config"}`,
		"/lab/daemon.json":        `{"exec-root": "/run/from-lab-config/"}`,
	}
	read := func(p string) ([]byte, error) {
		if s, ok := cfg[p]; ok {
			return []byte(s), nil
		}
		return nil, os.ErrNotExist
	}
	none := func(string) ([]byte, error) { return nil, os.ErrNotExist }
	for _, c := range []struct {
		args []string
		read func(string) ([]byte, error)
		want string
	}{
		{[]string{"dockerd"}, none, "/var/run/docker"},
		{[]string{"dockerd"}, read, "/run/from-default-config"},
		{[]string{"dockerd", "--exec-root", "/x/exec"}, read, "/x/exec"},
		{[]string{"dockerd", "--exec-root=/y/exec/"}, read, "/y/exec"},
		{[]string{"dockerd", "--config-file", "/lab/daemon.json"}, read, "/run/from-lab-config"},
		{[]string{"dockerd", "--config-file=/missing.json"}, read, "/var/run/docker"},
	} {
		if got := execRoot(c.args, c.read); got != c.want {
			t.Errorf("execRoot(%q) = %s, want %s", c.args, got, c.want)
		}
	}
}

func TestFlagValues(t *testing.T) {
	args := []string{"dockerd", "-H", "unix:///a.sock", "--host=tcp://1.2.3.4:2375", "-H=fd://", "--host"}
	got := flagValues(args, "-H", "--host")
	if want := []string{"unix:///a.sock", "tcp://1.2.3.4:2375", "fd://"}; !slices.Equal(got, want) {
		t.Errorf("flagValues = %q, want %q", got, want)
	}
}

func TestFindDaemonNeedsUnixSocket(t *testing.T) {
	_, err := findDaemon(t.Context(), "tcp://127.0.0.1:2375", nil)
	if err == nil || errors.Is(err, ErrUnreachable) {
		t.Fatalf("findDaemon(tcp): %v, want a unix-socket error", err)
	}
}
