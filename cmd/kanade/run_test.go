package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/sim"
	"github.com/kanade-go/kanade/wire"
)

// `kanade run` against a running node: the script's output on stdout and
// stderr, its exit code as the process's, and --json the ExecResult.
func TestRunCommand(t *testing.T) {
	node := startKanade(t, t.TempDir())
	nc, err := nats.Connect(node.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	f, err := sim.Start(context.Background(), sim.Options{Conn: nc, Agents: 2, Exec: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	pc := f.PCIDs()[0]

	runIt := func(args ...string) (string, string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary(t), append([]string{"run", "--nats-url", node.NATS, "--pc", pc, "--shell", "sh", "--timeout", "20"}, args...)...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return out.String(), errOut.String(), 0
		case errors.As(err, &ee):
			return out.String(), errOut.String(), ee.ExitCode()
		}
		t.Fatalf("kanade run: %v", err)
		return "", "", -1
	}

	stdout, stderr, code := runIt("--script", "echo out-$((6*7)); echo warn >&2; exit 4")
	if stdout != "out-42\n" || stderr != "warn\n" || code != 4 {
		t.Fatalf("stdout %q stderr %q exit %d", stdout, stderr, code)
	}
	stdout, _, code = runIt("--script", "echo json", "--json")
	res, err := wire.DecodeResult([]byte(stdout))
	if err != nil || code != 0 || res.Stdout != "json\n" || res.PCID != pc || res.ManifestID == nil || *res.ManifestID != wire.AdhocRunID {
		t.Fatalf("--json: %q exit %d (%v)", stdout, code, err)
	}
	if _, stderr, code := runIt("--script", "true", "--shell", "bash"); code != 1 || !bytes.Contains([]byte(stderr), []byte("unknown shell")) {
		t.Fatalf("bad shell: exit %d %q", code, stderr)
	}
}
