package sim_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/sim"
	"github.com/kanade-go/kanade/wire"
)

// The agents' gates, as upstream's: a Command of another version than
// script_current pins is skipped with 124, a REVOKED id with 126: skipped,
// not run, no started event.
func TestAgentsHonourPinAndRevoke(t *testing.T) {
	n := nodetest.Start(t)
	f := startFleet(t, n, sim.Options{Agents: 3})
	js := n.JetStream(t)
	ctx := context.Background()
	pins, err := js.KeyValue(ctx, wire.BucketScriptCurrent)
	if err != nil {
		t.Fatal(err)
	}
	status, err := js.KeyValue(ctx, wire.BucketScriptStatus)
	if err != nil {
		t.Fatal(err)
	}
	want := func(cmd wire.Command, exit int64, reason string) {
		t.Helper()
		var got map[string]wire.ExecResult
		waitFor(t, "3 results of "+cmd.ID, func() bool { got = results(t, js, cmd.RequestID); return len(got) == 3 })
		for pc, r := range got {
			if r.ExitCode != exit || r.Skipped != (exit != 0) || !strings.Contains(r.Stderr, reason) {
				t.Fatalf("%s: exit %d skipped %v stderr %q, want %d %q", pc, r.ExitCode, r.Skipped, r.Stderr, exit, reason)
			}
		}
	}
	script := "# sim: outcome=success duration=10ms output=64"

	pinned := command(script, true)
	if _, err := pins.Put(ctx, pinned.ID, []byte("2.0.0")); err != nil {
		t.Fatal(err)
	}
	publish(t, js, pinned, wire.SubjectCommandsAll) // version 1.0.0
	want(pinned, wire.ExitVersionPin, "script_current["+pinned.ID+"] = 2.0.0")
	current := command(script, true)
	current.ID, current.Version = pinned.ID, "2.0.0"
	publish(t, js, current, wire.SubjectCommandsAll)
	want(current, 0, "")

	revoked := command(script, true)
	if _, err := status.Put(ctx, revoked.ID, []byte(wire.ScriptRevoked)); err != nil {
		t.Fatal(err)
	}
	publish(t, js, revoked, wire.SubjectCommandsAll)
	want(revoked, wire.ExitRevoked, "skipped: command was revoked (script_status["+revoked.ID+"] = revoked)")

	// Anything but exactly REVOKED runs.
	active := command(script, true)
	if _, err := status.Put(ctx, active.ID, []byte("revoked")); err != nil {
		t.Fatal(err)
	}
	publish(t, js, active, wire.SubjectCommandsAll)
	want(active, 0, "")

	if st := f.Stats(); st.StartedPublished != 6 {
		t.Fatalf("%d started events: a gated Command sends none", st.StartedPublished)
	}
}
