package agentconfig

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/wire"
)

func str(s string) *string { return &s }

func TestResolveOrderAndWarnings(t *testing.T) {
	one := uint32(1)
	e, w := Resolve(Layers{
		Global: &Scope{HeartbeatInterval: str("20s"), TargetVersion: str("0.44.0"), MaxLocalConcurrent: &one},
		Groups: map[string]Scope{
			"zeta":  {HeartbeatInterval: str("10s"), ClientDisplayName: str("Z")},
			"alpha": {HeartbeatInterval: str("15s"), TargetVersion: str("0.45.0")},
		},
		PC: &Scope{ClientDisplayName: str("Mine")},
	})
	if e.HeartbeatInterval != "10s" || *e.TargetVersion != "0.45.0" || *e.ClientDisplayName != "Mine" ||
		*e.MaxLocalConcurrent != 1 || e.HostPerfInterval != "60s" || e.ProcessPerfTopN != 20 {
		t.Errorf("effective %+v", e)
	}
	want := "multi-group conflict on `heartbeat_interval` — set by [alpha, zeta]; alphabetical last wins (=> 10s)"
	if len(w) != 1 || w[0] != want {
		t.Errorf("warnings %q, want [%q]", w, want)
	}
	b, _ := json.Marshal(Defaults())
	if string(b) != `{"max_local_concurrent":null,"target_version":null,"target_version_jitter":"10m","heartbeat_interval":"30s","host_perf_interval":"60s","process_perf_enabled":false,"process_perf_expires_at":null,"process_perf_top_n":20,"client_display_name":null}` {
		t.Errorf("defaults %s", b)
	}
}

func TestSetFieldGrammar(t *testing.T) {
	var s Scope
	bad := map[[2]string]string{
		{"nope", "1"}:                    "unknown field 'nope' — supported: max_local_concurrent, ",
		{"heartbeat_interval", "often"}:  "invalid duration",
		{"process_perf_enabled", "yes"}:  "expected true|false",
		{"process_perf_expires_at", "x"}: "expected an RFC 3339 timestamp",
		{"max_local_concurrent", "0"}:    "expected an integer >= 1",
		{"process_perf_top_n", "-1"}:     "expected positive integer",
	}
	for in, want := range bad {
		if err := s.SetField(in[0], in[1]); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%v: %v, want %q", in, err, want)
		}
	}
	for f, v := range map[string]string{"heartbeat_interval": "1h 30m", "process_perf_enabled": "true", "max_local_concurrent": "3", "process_perf_expires_at": "2026-06-01T00:00:00+02:00"} {
		if err := s.SetField(f, v); err != nil {
			t.Errorf("%s=%s: %v", f, v, err)
		}
	}
	if b, _ := json.Marshal(s); string(b) != `{"max_local_concurrent":3,"heartbeat_interval":"1h 30m","process_perf_enabled":true,"process_perf_expires_at":"2026-05-31T22:00:00Z"}` {
		t.Errorf("scope %s", b)
	}
}

func TestScopesOverNATS(t *testing.T) {
	n := nodetest.Start(t)
	nc := n.Conn(t)
	s, err := Start(context.Background(), Options{Conn: nc, Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	call := func(subject, body string, hdr ...string) (string, string) {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Data = []byte(body)
		for i := 0; i+1 < len(hdr); i += 2 {
			m.Header.Set(hdr[i], hdr[i+1])
		}
		r, err := nc.RequestMsg(m, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		return r.Header.Get("Nats-Service-Error-Code"), string(r.Data)
	}
	groups, _ := n.JetStream(t).KeyValue(context.Background(), wire.BucketAgentGroups)
	groups.Put(context.Background(), "PC1", []byte(`{"groups":["lab"]}`))

	steps := []struct {
		subject, body string
		hdr           []string
		code, want    string
	}{
		{"kanade.config.global_get", ``, nil, "", `{}`},
		{"kanade.config.global_put", `{"heartbeat_interval":"20s","future_field":1}`, nil, "", `{"heartbeat_interval":"20s","future_field":1}`},
		{"kanade.config.global_put", `{"max_local_concurrent":0}`, nil, "422", ""},
		{"kanade.config.global_put", `{"process_perf_enabled":"yes"}`, nil, "422", ""},
		// Through the gateway: the body is the scope, the name a header.
		{"kanade.config.group_put", `{"heartbeat_interval":"15s"}`, []string{"Kanade-Param-name", "lab"}, "", `{"heartbeat_interval":"15s"}`},
		// Over NATS: the name beside the fields, and not stored.
		{"kanade.config.pc_put", `{"pc_id":"PC1","client_display_name":"Front desk"}`, nil, "", `{"client_display_name":"Front desk"}`},
		{"kanade.config.pc_get", `{"pc_id":"PC1"}`, nil, "", `{"client_display_name":"Front desk"}`},
		{"kanade.config.pc_field_set", `{"pc_id":"PC1","field":"heartbeat_interval","value":"5s"}`, nil, "", `{"scope":{"heartbeat_interval":"5s","client_display_name":"Front desk"},"changed":true}`},
		{"kanade.config.pc_field_set", `{"pc_id":"PC1","field":"heartbeat_interval","value":"5s"}`, nil, "", `{"scope":{"heartbeat_interval":"5s","client_display_name":"Front desk"},"changed":false}`},
		{"kanade.config.pc_field_set", `{"pc_id":"PC1","field":"heartbeat_interval","value":"soon"}`, nil, "400", ""},
		{"kanade.config.pc_field_unset", `{"pc_id":"PC1","field":"client_display_name"}`, nil, "", `{"scope":{"heartbeat_interval":"5s"},"changed":true}`},
		{"kanade.config.group_inherited", `{"name":"lab"}`, nil, "", `{"max_local_concurrent":null,"target_version":null,"target_version_jitter":"10m","heartbeat_interval":"20s","host_perf_interval":"60s","process_perf_enabled":false,"process_perf_expires_at":null,"process_perf_top_n":20,"client_display_name":null}`},
		{"kanade.config.pc_inherited", `{"pc_id":"PC1"}`, nil, "", `{"max_local_concurrent":null,"target_version":null,"target_version_jitter":"10m","heartbeat_interval":"15s","host_perf_interval":"60s","process_perf_enabled":false,"process_perf_expires_at":null,"process_perf_top_n":20,"client_display_name":null}`},
		{"kanade.config.effective", `{"pc_id":"PC1"}`, nil, "", `{"pc_id":"PC1","effective":{"max_local_concurrent":null,"target_version":null,"target_version_jitter":"10m","heartbeat_interval":"5s","host_perf_interval":"60s","process_perf_enabled":false,"process_perf_expires_at":null,"process_perf_top_n":20,"client_display_name":null},"warnings":[],"my_groups":["lab"]}`},
		{"kanade.config.pc_delete", `{"pc_id":"PC1"}`, nil, "", ``},
		{"kanade.config.pc_get", `{"pc_id":"PC1"}`, nil, "", `{}`},
		{"kanade.config.group_get", `{"name":"a.b"}`, nil, "400", ""},
	}
	for _, st := range steps {
		code, body := call(st.subject, st.body, st.hdr...)
		if code != st.code || (st.want != "" || code == "") && body != st.want {
			t.Errorf("%s %s: %s %q, want %s %q", st.subject, st.body, code, body, st.code, st.want)
		}
	}
}
