package run_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/projector"
	"github.com/kanade-go/kanade/services/run"
	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/sim"
	"github.com/kanade-go/kanade/wire"
)

// request calls kanade.run and returns the status (200 for a reply) and body.
func request(t *testing.T, nc *nats.Conn, body string, wait time.Duration) (int, string) {
	t.Helper()
	m, err := nc.Request(run.Subject, []byte(body), wait)
	if err != nil {
		t.Fatalf("request %s: %v", run.Subject, err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		n, err := strconv.Atoi(code)
		if err != nil {
			t.Fatalf("error code %q", code)
		}
		return n, string(m.Data)
	}
	return 200, string(m.Data)
}

func startRun(t *testing.T, n *nodetest.Node, grace time.Duration, signer ...*signing.Signer) {
	t.Helper()
	o := run.Options{Conn: n.Conn(t), Logger: n.Logger, Grace: grace}
	if len(signer) > 0 {
		o.Signer = signer[0]
	}
	r, err := run.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop() })
}

// An ad-hoc sh script on one PC answers with the agent's result, which the
// projector also stores (job_id adhoc-run); the other PC runs nothing.
func TestRunReturnsTheOutputOfOnePC(t *testing.T) {
	n := nodetest.Start(t)
	p, err := projector.Start(context.Background(), projector.Options{Conn: n.Conn(t), DB: n.DB, Logger: n.Logger, NoService: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	startRun(t, n, 5*time.Second)
	f, err := sim.Start(context.Background(), sim.Options{Conn: n.Conn(t), Agents: 2, Exec: true, Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	pc := f.PCIDs()[1]

	start := time.Now()
	status, body := request(t, n.Conn(t), `{"pc_id":"`+pc+`","shell":"sh","script":"echo run-$((40+2)); echo oops >&2; exit 3","timeout_secs":10}`, 30*time.Second)
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("answered after %v, past the run's timeout", d)
	}
	res, err := wire.DecodeResult([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if res.PCID != pc || res.Stdout != "run-42\n" || res.Stderr != "oops\n" || res.ExitCode != 3 {
		t.Fatalf("result %+v", res)
	}
	if res.ManifestID == nil || *res.ManifestID != wire.AdhocRunID || res.ExecID != nil {
		t.Fatalf("manifest_id %v exec_id %v, want adhoc-run and none", res.ManifestID, res.ExecID)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil || raw["result_id"] != res.ResultID {
		t.Fatalf("the reply is not the agent's JSON: %s", body)
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		var job, pcID string
		var exit int
		err := n.DB.R.QueryRow(`SELECT job_id, pc_id, exit_code FROM execution_results WHERE result_id = ?`, res.ResultID).Scan(&job, &pcID, &exit)
		if err == nil {
			if job != wire.AdhocRunID || pcID != pc || exit != 3 {
				t.Fatalf("projected row job=%s pc=%s exit=%d", job, pcID, exit)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("result not projected: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := f.Stats(); st.Commands != 1 {
		t.Fatalf("the fleet accepted %d Commands, want 1 (one PC)", st.Commands)
	}
}

// A PC that never answers: 408 after timeout_secs plus the grace.
func TestRunOnASilentPCTimesOut(t *testing.T) {
	n := nodetest.Start(t)
	startRun(t, n, 300*time.Millisecond)
	start := time.Now()
	status, body := request(t, n.Conn(t), `{"pc_id":"nobody-here","shell":"sh","script":"true","timeout_secs":1}`, 10*time.Second)
	if status != 408 || !strings.HasPrefix(body, "timeout waiting for result on results.") {
		t.Fatalf("status %d: %s", status, body)
	}
	if d := time.Since(start); d < 1300*time.Millisecond {
		t.Fatalf("408 after %v, before timeout_secs + grace", d)
	}
}

// Upstream's rejections: 422 for a missing field, 400 for a bad shell.
func TestRunRejectsBadBodies(t *testing.T) {
	n := nodetest.Start(t)
	startRun(t, n, time.Second)
	nc := n.Conn(t)
	for _, c := range []struct {
		body   string
		status int
		text   string
	}{
		{`{"script":"x"}`, 422, "missing field `pc_id`"},
		{`{"pc_id":"PC1"}`, 422, "missing field `script`"},
		{`{"pc_id":"PC1","script":"x","shell":"bash"}`, 400, `unknown shell "bash" (use powershell, pwsh, cmd, or sh)`},
		{`{"pc_id":"PC.1","script":"x"}`, 400, "invalid pc_id"},
		{`{"pc_id":"PC1","script":"x","timeout_secs":86400}`, 400, "timeout_secs 86400 is over 3600"},
		{`{"pc_id":"PC1","script":"x","run_as":"root"}`, 422, "run_as"},
	} {
		status, body := request(t, nc, c.body, 5*time.Second)
		if status != c.status || !strings.Contains(body, c.text) {
			t.Errorf("%s: %d %q, want %d %q", c.body, status, body, c.status, c.text)
		}
	}
}

// The Command as agents get it: upstream's fields for an ad-hoc run.
func TestRunCommand(t *testing.T) {
	script := "Get-Date"
	cmd, err := run.Request{PCID: "PC1", Shell: "ps", Script: &script, JobID: "e1"}.Command()
	if err != nil {
		t.Fatal(err)
	}
	if cmd.ID != "adhoc-run" || cmd.Version != "0.0.0" || cmd.Shell != "powershell" || cmd.TimeoutSecs != 60 ||
		cmd.RunAs != "system" || cmd.Staleness.Mode != "cached" || cmd.ExecID == nil || *cmd.ExecID != "e1" ||
		cmd.DeadlineAt != nil || cmd.RequestID == "" {
		t.Fatalf("command %+v", cmd)
	}
}

// With a signing key the Command is signed: agents that enforce run it,
// and refuse (123) one from a backend with another key.
func TestRunIsSigned(t *testing.T) {
	n := nodetest.Start(t)
	key, _, err := signing.Generate("run-test")
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := signing.Generate("other")
	if err != nil {
		t.Fatal(err)
	}
	ring, err := signing.NewKeyring([]signing.KeyringEntry{key.KeyringEntry()})
	if err != nil {
		t.Fatal(err)
	}
	f, err := sim.Start(context.Background(), sim.Options{Conn: n.Conn(t), Agents: 1, Exec: true, Keyring: ring, Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	body := `{"pc_id":"` + f.PCIDs()[0] + `","shell":"sh","script":"echo signed","timeout_secs":10}`

	startRun(t, n, 5*time.Second, key)
	status, reply := request(t, n.Conn(t), body, 30*time.Second)
	res, err := wire.DecodeResult([]byte(reply))
	if status != 200 || err != nil || res.ExitCode != 0 || res.Stdout != "signed\n" {
		t.Fatalf("signed run: %d %s", status, reply)
	}

	n2 := nodetest.Start(t)
	f2, err := sim.Start(context.Background(), sim.Options{Conn: n2.Conn(t), Agents: 1, Exec: true, Keyring: ring, Logger: n2.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f2.Stop)
	startRun(t, n2, 5*time.Second, other)
	status, reply = request(t, n2.Conn(t), body, 30*time.Second)
	res, err = wire.DecodeResult([]byte(reply))
	if status != 200 || err != nil || res.ExitCode != wire.ExitRefused {
		t.Fatalf("run signed by an unknown key: %d %s, want the agent's refusal (123)", status, reply)
	}
}
