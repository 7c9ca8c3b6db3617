package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/wire"
)

// The spec's test vector key (32 bytes 0x01).
const (
	vectorSeed        = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	vectorFingerprint = "34750f98bd59fcfc"
)

func TestKeygen(t *testing.T) {
	out, err := exec.Command(binary(t), "keygen", "--kid", "backend-test").Output()
	if err != nil {
		t.Fatal(err)
	}
	field := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("no %s in:\n%s", re, out)
		}
		return m[1]
	}
	key, kid := field(`(?m)^KANADE_COMMAND_SIGNING_KEY=(\S+)$`), field(`(?m)^KANADE_COMMAND_SIGNING_KID=(\S+)$`)
	fp, pub := field(`(?m)^fingerprint\s+(\S+)$`), field(`(?m)^public key\s+(\S+)$`)
	s, err := signing.Config{Key: key, Kid: kid}.Load()
	if err != nil || s.Kid() != "backend-test" || s.Fingerprint() != fp || s.PublicKey() != pub {
		t.Fatalf("printed settings load as %v (%v):\n%s", s, err, out)
	}
	ring, err := signing.ParseKeyring([]byte(field(`(?m)^(\[\{.*\}\])$`)))
	if err != nil || ring.CommandKeys()[0] != "backend-test:"+fp {
		t.Fatalf("keyring entry: %v\n%s", err, out)
	}

	// With a key file, the secret goes to the file only, and a second run
	// does not overwrite it.
	file := filepath.Join(t.TempDir(), "command-signing.key")
	out, err = exec.Command(binary(t), "keygen", "--key-file", file).Output()
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 || strings.Contains(string(out), "KANADE_COMMAND_SIGNING_KEY=") {
		t.Fatalf("key file %v %v:\n%s", st, err, out)
	}
	seed, _ := os.ReadFile(file)
	if err := exec.Command(binary(t), "keygen", "--key-file", file).Run(); err == nil {
		t.Fatal("keygen replaced an existing key file without --rotate")
	}
	if again, _ := os.ReadFile(file); !bytes.Equal(seed, again) {
		t.Fatal("the key file changed")
	}
	if err := exec.Command(binary(t), "keygen", "--key-file", file, "--rotate", "--kid", "backend-next").Run(); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(file); bytes.Equal(seed, again) {
		t.Fatal("--rotate kept the old key")
	}
	if _, err := (signing.Config{KeyFile: file, Kid: "k"}).Load(); err != nil {
		t.Fatal(err)
	}
}

func TestServeSigningSettings(t *testing.T) {
	serve := func(env []string, args ...string) (error, string) {
		t.Helper()
		cmd := exec.Command(binary(t), append([]string{"serve", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--nats-listen", "off"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			return err, stderr.String()
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("serve %v did not refuse to start:\n%s", args, stderr.String())
			return nil, ""
		}
	}
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"KANADE_COMMAND_SIGNING_KEY=" + vectorSeed}, nil, "set both or neither"},
		{[]string{"KANADE_COMMAND_SIGNING_KID=backend-1"}, nil, "set both or neither"},
		{nil, []string{"--command-signing-key", "bm90IGEga2V5", "--command-signing-kid", "k"}, "32-byte"},
		{nil, []string{"--command-envelope", "v2"}, "needs a signing key"},
		{[]string{"KANADE_COMMAND_SIGNING_KEY=" + vectorSeed, "KANADE_COMMAND_SIGNING_KID=k"}, []string{"--command-envelope", "v3"}, "off or v2"},
	} {
		err, stderr := serve(c.env, c.args...)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("%v %v: %v %q, want an error naming %q", c.env, c.args, err, stderr, c.want)
		}
	}
}

func TestServeCommandSigningRoute(t *testing.T) {
	// Upstream's own settings carry over.
	t.Setenv("KANADE_COMMAND_SIGNING_KEY", vectorSeed)
	t.Setenv("KANADE_COMMAND_SIGNING_KID", "backend-1")
	p := startKanade(t, t.TempDir())
	if r := httpCall(t, "GET", p.HTTP+"/api/command-signing", "", ""); r.status != 200 ||
		r.body != `{"kid":"backend-1","fingerprint":"`+vectorFingerprint+`"}` {
		t.Fatalf("signing: %d %s", r.status, r.body)
	}
	p.stop(t)

	os.Unsetenv("KANADE_COMMAND_SIGNING_KEY")
	os.Unsetenv("KANADE_COMMAND_SIGNING_KID")
	p = startKanade(t, t.TempDir())
	if r := httpCall(t, "GET", p.HTTP+"/api/command-signing", "", ""); r.status != 200 || r.body != `{"kid":null,"fingerprint":null}` {
		t.Fatalf("not signing: %d %s", r.status, r.body)
	}
	if n := strings.Count(p.Stderr(), "command signing: no key"); n != 1 {
		t.Fatalf("%d warnings about the missing key:\n%s", n, p.Stderr())
	}
	p.stop(t)
}

// The demo signs and its agents enforce: an exec on a group completes with
// every member's run, and a Command that is not the backend's is refused
// in a way the results show.
func TestServeDemoSignedExec(t *testing.T) {
	p := startKanade(t, t.TempDir(), "--demo")
	nc, err := nats.Connect(p.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var info struct {
		Kid         *string `json:"kid"`
		Fingerprint *string `json:"fingerprint"`
	}
	r := httpCall(t, "GET", p.HTTP+"/api/command-signing", "", "")
	if json.Unmarshal([]byte(r.body), &info) != nil || info.Kid == nil || !strings.HasPrefix(*info.Kid, "demo-") {
		t.Fatalf("demo signing: %d %s", r.status, r.body)
	}

	// Agents report the key they hold and that they enforce.
	hb := make(chan *nats.Msg, 64)
	sub, _ := nc.ChanSubscribe(wire.SubjectHeartbeatsAll, hb)
	defer sub.Unsubscribe()
	select {
	case m := <-hb:
		h, _ := wire.DecodeHeartbeat(m.Data)
		if h.Enforcing == nil || !*h.Enforcing || len(h.CommandKeys) != 1 || h.CommandKeys[0] != *info.Kid+":"+*info.Fingerprint {
			t.Fatalf("demo heartbeat %s", m.Data)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no demo heartbeat")
	}

	// The exec counts the alive members of the group: wait for all of
	// them to be projected and grouped.
	groups, _ := js.KeyValue(context.Background(), wire.BucketAgentGroups)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var agents []json.RawMessage
		json.Unmarshal([]byte(httpCall(t, "GET", p.HTTP+"/api/agents", "", "").body), &agents)
		keys, _ := groups.Keys(context.Background())
		if len(agents) == 25 && len(keys) == 25 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo agents: %d projected, %d grouped", len(agents), len(keys))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(1100 * time.Millisecond) // the exec's alive-agents cache lives a second

	// A quick job, so no simulated hang keeps the exec open.
	if r := httpCall(t, "POST", p.HTTP+"/api/jobs", "application/json",
		`{"id":"quick","version":"1.0.0","execute":{"shell":"sh","script":"# sim: outcome=success duration=50ms\nuname -a","timeout":"30s"}}`); r.status/100 != 2 {
		t.Fatalf("put job: %d %s", r.status, r.body)
	}
	r = httpCall(t, "POST", p.HTTP+"/api/exec/quick", "application/json", `{"target":{"groups":["office"]}}`)
	var ex struct {
		ExecID      string `json:"exec_id"`
		TargetCount int    `json:"target_count"`
	}
	if json.Unmarshal([]byte(r.body), &ex) != nil || ex.ExecID == "" {
		t.Fatalf("exec: %d %s", r.status, r.body)
	}
	type detail struct {
		Execution struct {
			Status       string `json:"status"`
			SuccessCount int    `json:"success_count"`
			FailureCount int    `json:"failure_count"`
		} `json:"execution"`
		Results []struct {
			ExitCode *int `json:"exit_code"`
		} `json:"results"`
	}
	var d detail
	deadline = time.Now().Add(30 * time.Second)
	for {
		r = httpCall(t, "GET", p.HTTP+"/api/executions/"+ex.ExecID, "", "")
		d = detail{}
		json.Unmarshal([]byte(r.body), &d)
		if d.Execution.Status == "completed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exec on office never completed: %s\n%s", r.body, p.Stderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d.Execution.SuccessCount != (sim13()) || d.Execution.FailureCount != 0 || len(d.Results) != sim13() {
		t.Fatalf("office exec: %s", r.body)
	}
	m, err := js.Stream(context.Background(), wire.StreamExec)
	if err != nil {
		t.Fatal(err)
	}
	last, err := m.GetLastMsgForSubject(context.Background(), wire.CommandsGroup("office"))
	if err != nil || last.Header.Get(signing.HeaderKid) != *info.Kid {
		t.Fatalf("EXEC commands.group.office: %v %v", err, last.Header)
	}

	// Something the backend did not sign is refused, and reads so.
	execID := "forged-exec"
	forged := wire.Command{ID: "quick", Version: "1.0.0", RequestID: "forged-request", ExecID: &execID, Shell: "sh",
		Script: "rm -rf /", TimeoutSecs: 30, RunAs: "system", Staleness: wire.Staleness{Mode: "cached"}}
	b, _ := json.Marshal(forged)
	if _, err := js.Publish(context.Background(), wire.CommandsPC("sim-pc-0001"), b); err != nil {
		t.Fatal(err)
	}
	id := signing.RefusalResultID(forged.RequestID, "sim-pc-0001")
	var row struct {
		ExitCode *int   `json:"exit_code"`
		Stderr   string `json:"stderr"`
	}
	for {
		r = httpCall(t, "GET", p.HTTP+"/api/results/"+id, "", "")
		if r.status == 200 {
			json.Unmarshal([]byte(r.body), &row)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no refusal row: %d %s", r.status, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if row.ExitCode == nil || *row.ExitCode != 123 || !strings.HasPrefix(row.Stderr, "refused: command carried no signature") {
		t.Fatalf("refusal row: %s", r.body)
	}
	p.stop(t)
}

// sim13 is how many demo agents are in "office": every other one of 25.
func sim13() int { return 13 }

// With envelopes on, an agent that reports v2 gets an envelope for it and
// runs it.
func TestServeDemoEnvelopes(t *testing.T) {
	t.Setenv("KANADE_COMMAND_SIGNING_KEY", vectorSeed)
	t.Setenv("KANADE_COMMAND_SIGNING_KID", "backend-1")
	p := startKanade(t, t.TempDir(), "--demo", "--command-envelope", "v2")
	nc, err := nats.Connect(p.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if r := httpCall(t, "POST", p.HTTP+"/api/jobs", "application/json",
		`{"id":"quick","version":"1.0.0","execute":{"shell":"sh","script":"# sim: outcome=success duration=50ms","timeout":"30s"}}`); r.status/100 != 2 {
		t.Fatalf("put job: %d %s", r.status, r.body)
	}
	st, _ := js.Stream(context.Background(), wire.StreamExec)
	deadline := time.Now().Add(30 * time.Second)
	var execID string
	for {
		// The node learns v2 from the first heartbeats, sent as the demo
		// starts: until then the PC gets a bare Command.
		r := httpCall(t, "POST", p.HTTP+"/api/exec/quick", "application/json", `{"target":{"pcs":["sim-pc-0002"]}}`)
		var ex struct {
			ExecID string `json:"exec_id"`
		}
		json.Unmarshal([]byte(r.body), &ex)
		m, err := st.GetLastMsgForSubject(context.Background(), wire.CommandsPC("sim-pc-0002"))
		if err == nil && signing.IsEnvelope(m.Data) {
			var e signing.Envelope
			json.Unmarshal(m.Data, &e)
			if e.TargetPCID != "sim-pc-0002" || m.Header.Get(signing.HeaderKid) != "backend-1" {
				t.Fatalf("envelope %s %v", m.Data, m.Header)
			}
			execID = ex.ExecID
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no envelope on commands.pc.sim-pc-0002 (%v)\n%s", err, p.Stderr())
		}
		time.Sleep(200 * time.Millisecond)
	}
	for {
		r := httpCall(t, "GET", p.HTTP+"/api/executions/"+execID, "", "")
		if strings.Contains(r.body, `"status":"completed"`) {
			if !strings.Contains(r.body, `"success_count":1`) {
				t.Fatalf("envelope exec: %s", r.body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("envelope exec never completed: %s", r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.stop(t)
}

func TestSimCommandKeys(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"--command-keys []", "keyring is empty"},
		{"--command-keys nope", "--command-keys"},
		{`--command-keys [{"kid":"a","public_key":"AQID"}]`, "public_key is 3 bytes"},
		{"--command-keys-file /nonexistent/keys.json", "--command-keys-file"},
	} {
		err, stderr := runKanade(t, 30*time.Second, append([]string{"sim", "--nats-url", "nats://127.0.0.1:1"}, strings.Fields(c.args)...)...)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("sim %s: %v %q, want an error naming %q", c.args, err, stderr, c.want)
		}
	}

	// A fleet given the backend's keyring file runs what the backend
	// signed and refuses what it did not.
	t.Setenv("KANADE_COMMAND_SIGNING_KEY", vectorSeed)
	t.Setenv("KANADE_COMMAND_SIGNING_KID", "backend-1")
	p := startKanade(t, t.TempDir())
	keys := filepath.Join(t.TempDir(), "command-keys.json")
	os.WriteFile(keys, []byte(`[{"kid":"backend-1","public_key":"iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=","label":"backend"}]`), 0o600)
	cmd := exec.Command(binary(t), "sim", "--nats-url", p.NATS, "--agents", "2", "--prefix", "kpc-", "--command-keys-file", keys,
		"--duration", "10ms", "--mix", "success=1", "--summary", "100ms")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	nc, err := nats.Connect(p.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := nc.Request(wire.Ping("kpc-0002"), nil, time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sim agents never answered\n%s", stderr.String())
		}
	}
	httpCall(t, "POST", p.HTTP+"/api/jobs", "application/json", `{"id":"quick","version":"1","execute":{"shell":"sh","script":"true","timeout":"30s"}}`)
	r := httpCall(t, "POST", p.HTTP+"/api/exec/quick", "application/json", `{"target":{"pcs":["kpc-0001","kpc-0002"]}}`)
	var ex struct {
		ExecID string `json:"exec_id"`
	}
	json.Unmarshal([]byte(r.body), &ex)
	js, _ := jetstream.New(nc)
	execID := "unsigned-exec"
	b, _ := json.Marshal(wire.Command{ID: "quick", Version: "1", RequestID: "unsigned-request", ExecID: &execID, Shell: "sh", Script: "true", Staleness: wire.Staleness{Mode: "cached"}})
	if _, err := js.Publish(context.Background(), wire.CommandsPC("kpc-0001"), b); err != nil {
		t.Fatal(err)
	}
	for {
		r = httpCall(t, "GET", p.HTTP+"/api/executions/"+ex.ExecID, "", "")
		refusal := httpCall(t, "GET", p.HTTP+"/api/results/"+signing.RefusalResultID("unsigned-request", "kpc-0001"), "", "")
		if strings.Contains(r.body, `"status":"completed"`) && refusal.status == 200 {
			if !strings.Contains(r.body, `"success_count":2`) || !strings.Contains(refusal.body, `"exit_code":123`) {
				t.Fatalf("signed exec %s\nrefusal %s", r.body, refusal.body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exec %s\n%s", r.body, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	if out := stderr.String(); !strings.Contains(out, "enforcing signatures, keys [backend-1:"+vectorFingerprint+"]") || !strings.Contains(out, " refused=1") {
		t.Fatalf("sim output:\n%s", out)
	}
	p.stop(t)
}
