package scheduler

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// verifyRaw checks m's signature as the spec defines it, without the
// signing package: Ed25519 over 8-byte big-endian at_ms ‖ body.
func verifyRaw(t *testing.T, s *signing.Signer, h nats.Header, body []byte) {
	t.Helper()
	if h.Get(signing.HeaderKid) != s.Kid() || h.Get(signing.HeaderAlg) != "ed25519" {
		t.Fatalf("headers %v", h)
	}
	at, err := strconv.ParseInt(h.Get(signing.HeaderAt), 10, 64)
	if err != nil || time.Since(time.UnixMilli(at)).Abs() > time.Minute {
		t.Fatalf("Kanade-Sig-At %q", h.Get(signing.HeaderAt))
	}
	sig, err := base64.StdEncoding.DecodeString(h.Get(signing.HeaderSig))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := base64.StdEncoding.DecodeString(s.PublicKey())
	msg := binary.BigEndian.AppendUint64(nil, uint64(at))
	if !ed25519.Verify(pub, append(msg, body...), sig) {
		t.Fatalf("signature does not verify over at_ms ‖ body: %s", body)
	}
}

func sigHeaders(h nats.Header) []string {
	var out []string
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "kanade-sig") {
			out = append(out, k)
		}
	}
	return out
}

// lastInExec reads the Command EXEC keeps for subject, with its headers.
func lastInExec(t *testing.T, js jetstream.JetStream, subject string) *jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, wire.StreamExec)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		t.Fatalf("EXEC %s: %v", subject, err)
	}
	return m
}

func TestExecSignedInEXEC(t *testing.T) {
	n := nodetest.Start(t)
	s, _, err := signing.Generate("backend-test")
	if err != nil {
		t.Fatal(err)
	}
	sch, err := Start(context.Background(), Options{Conn: n.Conn(t), DB: n.DB, NodeName: "sig", Logger: n.Logger, Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sch.Stop() })
	nc := n.Conn(t)
	js := n.JetStream(t)
	mustCall(t, nc, "kanade.jobs.put", "", echoJob)
	inGroup(t, js, "PC3", "lab") // an exec on a group nobody is in is refused
	cmds := subscribeCommands(t, nc, "commands.>")
	var rep ExecReply
	json.Unmarshal([]byte(mustCall(t, nc, "kanade.jobs.exec", "", `{"job_id":"echo","target":{"groups":["lab"],"pcs":["PC1","PC2"]}}`)), &rep)
	if len(rep.Subjects) != 3 {
		t.Fatalf("subjects %v", rep.Subjects)
	}
	var body []byte
	for _, subject := range rep.Subjects {
		m := lastInExec(t, js, subject)
		verifyRaw(t, s, m.Header, m.Data)
		if m.Header.Get("Nats-Msg-Id") != rep.ExecID+"/"+subject {
			t.Errorf("%s: msg id %q", subject, m.Header.Get("Nats-Msg-Id"))
		}
		// One body for every subject of the fan-out, each signed.
		if body != nil && string(body) != string(m.Data) {
			t.Fatalf("bodies differ between subjects:\n%s\n%s", body, m.Data)
		}
		body = m.Data
		_, live := cmds.next(t)
		verifyRaw(t, s, live.Header, live.Data)
	}
	// The execution record is not a Command and is not signed.
	st, _ := js.Stream(context.Background(), streams.StreamExecutions)
	rec, err := st.GetLastMsgForSubject(context.Background(), streams.ExecutionSubject(rep.ExecID))
	if err != nil || len(sigHeaders(rec.Header)) != 0 {
		t.Fatalf("execution record: %v %v", err, rec.Header)
	}
}

func TestExecUnsignedWithoutKey(t *testing.T) {
	n := nodetest.Start(t)
	startScheduler(t, n, "nokey", nil)
	nc := n.Conn(t)
	mustCall(t, nc, "kanade.jobs.put", "", echoJob)
	cmds := subscribeCommands(t, nc, "commands.>")
	var rep ExecReply
	json.Unmarshal([]byte(mustCall(t, nc, "kanade.jobs.exec", "", `{"job_id":"echo","target":{"all":true}}`)), &rep)
	m := lastInExec(t, n.JetStream(t), wire.SubjectCommandsAll)
	if h := sigHeaders(m.Header); len(h) != 0 {
		t.Fatalf("a node without a key sent %v", h)
	}
	if _, live := cmds.next(t); len(sigHeaders(live.Header)) != 0 {
		t.Fatalf("live message signed: %v", live.Header)
	}
}

// A publish that failed is sent again, signed again: each copy that
// reaches the agents carries its own good signature.
func TestExecRetrySignedAgain(t *testing.T) {
	n := nodetest.Start(t)
	nc := n.Conn(t)
	js := n.JetStream(t)
	ctx := context.Background()
	cfg, err := js.Stream(ctx, wire.StreamExec)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := cfg.Info(ctx)
	if err := js.DeleteStream(ctx, wire.StreamExec); err != nil {
		t.Fatal(err)
	}
	s, _, _ := signing.Generate("backend-retry")
	p := &Firer{JS: js, Agents: &AgentCounter{}, Signer: s, RetryFor: 20 * time.Second, Log: n.Logger}
	cmds := subscribeCommands(t, nc, "commands.>")
	done := make(chan error, 1)
	go func() {
		_, err := p.Publish(ctx, Fire{ExecID: "e-retry", RequestID: "r-retry", Job: Manifest{ID: "j", Version: "1",
			Execute: Execute{Shell: "sh", Script: "true", Timeout: "5s"}}, Target: Target{PCs: []string{"PC1"}}, InitiatedAt: time.Now()})
		done <- err
	}()
	// The first publish reaches the subscribers but no stream acks it.
	_, first := cmds.next(t)
	verifyRaw(t, s, first.Header, first.Data)
	if _, err := js.CreateStream(ctx, info.Config); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// EXEC holds the copy that was acked, with its own signature; every
	// copy before it reached the subscribers signed too.
	stored := lastInExec(t, js, wire.CommandsPC("PC1"))
	verifyRaw(t, s, stored.Header, stored.Data)
	copies := 1
	for first.Header.Get(signing.HeaderSig) != stored.Header.Get(signing.HeaderSig) {
		_, first = cmds.next(t)
		verifyRaw(t, s, first.Header, first.Data)
		copies++
	}
	if copies < 2 {
		t.Fatal("the first publish, which no stream acked, was stored")
	}
}

// With envelopes on, a PC that reports v2 gets its Command wrapped for it
// on commands.pc.{pc}; the others and the broadcasts stay bare.
func TestExecEnvelopeForV2Agents(t *testing.T) {
	n := nodetest.Start(t)
	s, _, _ := signing.Generate("backend-v2")
	env, err := signing.NewEnvelopes(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	env.Observe(wire.Heartbeat{PCID: "PC1", CommandProtocols: []string{signing.ProtocolLegacy, signing.KindV2}})
	sch, err := Start(context.Background(), Options{Conn: n.Conn(t), DB: n.DB, NodeName: "v2", Logger: n.Logger, Signer: s, Envelopes: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sch.Stop() })
	nc := n.Conn(t)
	js := n.JetStream(t)
	mustCall(t, nc, "kanade.jobs.put", "", echoJob)
	inGroup(t, js, "PC3", "lab")
	var rep ExecReply
	json.Unmarshal([]byte(mustCall(t, nc, "kanade.jobs.exec", "", `{"job_id":"echo","target":{"groups":["lab"],"pcs":["PC1","PC2"]}}`)), &rep)
	ring, _ := signing.NewKeyring([]signing.KeyringEntry{s.KeyringEntry()})
	for _, subject := range rep.Subjects {
		m := lastInExec(t, js, subject)
		verifyRaw(t, s, m.Header, m.Data)
		if subject != wire.CommandsPC("PC1") {
			if signing.IsEnvelope(m.Data) {
				t.Errorf("%s got an envelope", subject)
			}
			continue
		}
		var e signing.Envelope
		if err := json.Unmarshal(m.Data, &e); err != nil || e.Kind != signing.KindV2 || e.TargetPCID != "PC1" {
			t.Fatalf("PC1: %s", m.Data)
		}
		now := time.Now()
		inner, v := signing.CheckEnvelope(ring.Verify(m.Header, m.Data, now), m.Data, "PC1", now)
		var c wire.Command
		if v.Outcome != signing.OK || json.Unmarshal(inner, &c) != nil || c.RequestID == "" || *c.ExecID != rep.ExecID {
			t.Fatalf("PC1's envelope: %s %s", v.Outcome, v.Detail)
		}
		exp, _ := time.Parse(time.RFC3339, e.ExpiresAt)
		if d := time.Until(exp); d < 58*time.Minute || d > time.Hour {
			t.Fatalf("expires_at %s for a 1h TTL", e.ExpiresAt)
		}
		if _, v := signing.CheckEnvelope(ring.Verify(m.Header, m.Data, now), m.Data, "PC2", now); v.Outcome != signing.Misaddressed {
			t.Fatalf("PC1's envelope on PC2: %s", v.Outcome)
		}
	}
}
