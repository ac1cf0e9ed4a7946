package main

import (
	"context"
	"fmt"
	"os/exec"
	"testing"

	"github.com/chimera-fabric/fabric/internal/fabricdtest"
	"github.com/chimera-fabric/fabric/internal/fixture"
)

// fixtureFlags are the fabricd flags a fixture's config asks for; ok is
// false for configs the command line cannot express (they are replayed
// in-process by the server's tests).
func fixtureFlags(c fixture.Config) (flags []string, ok bool) {
	if c.OutboundQueue != 0 || c.Draining {
		return nil, false
	}
	add := func(name string, v int64) {
		if v != 0 {
			flags = append(flags, "--"+name, fmt.Sprint(v))
		}
	}
	add("max-in-flight", int64(c.MaxInFlight))
	add("workers", int64(c.Workers))
	add("max-queued", int64(c.MaxQueued))
	add("max-module-bytes", c.MaxModuleBytes)
	add("max-input-bytes", c.MaxInputBytes)
	if c.Workers == 0 {
		flags = append(flags, "--workers", "2")
	}
	return flags, true
}

// TestFixturesAgainstTheBinary replays the fixture conversations against
// the real fabricd: over a WebSocket to `fabricd serve`, and over the pipes
// of `fabricd stdio`.
func TestFixturesAgainstTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	all, err := fixture.Glob("../../testdata/fixtures/*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range all {
		flags, ok := fixtureFlags(f.Config)
		if !ok {
			continue
		}
		if f.On(fixture.WebSocket) {
			t.Run(f.Name+"/websocket", func(t *testing.T) {
				args := append([]string{"--data", ":memory:"}, flags...)
				if f.Config.Token != "" {
					args = append(args, "--token", f.Config.Token)
				}
				s := fabricdtest.Start(t, args...)
				conn, closeConn, err := f.Dial(context.Background(), s.URL)
				if err != nil {
					t.Fatal(err)
				}
				defer closeConn()
				f.Run(t, conn)
			})
		}
		if f.On(fixture.Stdio) && f.Config.Token == "" {
			t.Run(f.Name+"/stdio", func(t *testing.T) {
				cmd := exec.Command(fabricdtest.Binary(t), append([]string{"stdio", "--data", ":memory:", "--log-format", "json"}, flags...)...)
				stdin, _ := cmd.StdinPipe()
				stdout, _ := cmd.StdoutPipe()
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				conn := fixture.NewStreamConn(stdout, stdin, false)
				f.Run(t, conn)
				stdin.Close()
				if err := cmd.Wait(); err != nil {
					t.Errorf("fabricd stdio: %v", err)
				}
				conn.Close()
			})
		}
	}
}
