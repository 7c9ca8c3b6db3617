package agents

import (
	"context"
	"database/sql"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

type env struct {
	n  *nodetest.Node
	nc *nats.Conn
	kv jetstream.KeyValue // agent_meta
	s  *Service
}

func start(t *testing.T) *env { return startB(t) }

func startB(t testing.TB) *env {
	t.Helper()
	n := nodetest.Start(t)
	nc := n.Conn(t)
	s, err := Start(context.Background(), Options{Conn: nc, DB: n.DB, Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	kv, err := n.JetStream(t).KeyValue(context.Background(), wire.BucketAgentMeta)
	if err != nil {
		t.Fatal(err)
	}
	return &env{n: n, nc: nc, kv: kv, s: s}
}

// call sends a request and returns the error code ("" on success), the
// body and the reply headers.
func (e *env) call(t *testing.T, subject, body string) (string, string, nats.Header) {
	t.Helper()
	m, err := e.nc.Request(subject, []byte(body), 15*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	return m.Header.Get("Nats-Service-Error-Code"), string(m.Data), m.Header
}

type agentRec struct {
	pc, host, ver, user string
	beat                time.Time
	quarantined, keys   string
	enforcing           any
}

func insertAgents(t *testing.T, db *store.DB, recs ...agentRec) {
	t.Helper()
	null := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	err := db.WriteTx(context.Background(), func(tx *sql.Tx) error {
		for i, r := range recs {
			if _, err := tx.Exec(`INSERT INTO agents (pc_id, hostname, agent_version, last_logon_user, last_heartbeat, updated_at,
				quarantined_versions, command_keys, enforcing) VALUES (?,?,?,?,?,?,?,?,?)`,
				r.pc, null(r.host), null(r.ver), null(r.user), store.FormatTime(r.beat),
				store.FormatTime(r.beat.Add(time.Duration(i)*time.Millisecond)), null(r.quarantined), null(r.keys), r.enforcing); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func pcs(t *testing.T, body string) []string {
	t.Helper()
	var rows []Row
	if err := json.Unmarshal([]byte(body), &rows); err != nil {
		t.Fatalf("%v in %s", err, body)
	}
	var out []string
	for _, r := range rows {
		out = append(out, r.PCID)
	}
	return out
}

func TestListFiltersSortAndPaging(t *testing.T) {
	e := start(t)
	now := time.Now().UTC()
	insertAgents(t, e.n.DB,
		agentRec{pc: "PC1", host: "alpha", ver: "0.43.6", user: "ann", beat: now.Add(-10 * time.Second), quarantined: `["0.43.62"]`, keys: `[]`, enforcing: 1},
		agentRec{pc: "PC2", host: "beta", ver: "0.43.62", user: "bob", beat: now.Add(-5 * time.Minute), quarantined: `["0.43.6"]`},
		agentRec{pc: "PC3", ver: "", beat: now.Add(-time.Second), keys: `["k1"]`},
		agentRec{pc: "LAB9", host: "lab-pc", ver: "0.44.0", beat: now.Add(-time.Hour), quarantined: `not json`},
	)
	for pc, v := range map[string]string{
		"PC1":  `{"entries":[{"key":"site","value":"Berlin"},{"key":"rack","value":"r1"}]}`,
		"PC2":  `{"entries":[{"key":"site","value":"berlin-2"},{"key":"owner","value":""}]}`,
		"LAB9": `{"entries":[{"key":"site","value":"Tokyo"}]}`,
	} {
		if _, err := e.kv.Put(context.Background(), pc, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "metadata mirrored", func() bool { return len(e.s.Meta.Keys()) == 3 })

	cases := []struct {
		body  string
		want  []string
		total string
		on    string
	}{
		{`{"limit":10}`, []string{"PC3", "PC1", "PC2", "LAB9"}, "4", "2"},       // updated_at desc
		{`{}`, []string{"LAB9", "PC1", "PC2", "PC3"}, "4", ""},                  // the whole list: pc_id, which heartbeats do not move
		{`{"sort":"pc_id"}`, []string{"LAB9", "PC1", "PC2", "PC3"}, "4", ""},    // asc by default
		{`{"sort":"hostname"}`, []string{"PC1", "PC2", "LAB9", "PC3"}, "4", ""}, // NULLs last
		{`{"sort":"hostname","dir":"desc"}`, []string{"LAB9", "PC2", "PC1", "PC3"}, "4", ""},
		{`{"q":"lab"}`, []string{"LAB9"}, "1", ""}, // hostname or pc_id
		{`{"q":"^PC[12]$","sort":"pc_id"}`, []string{"PC1", "PC2"}, "2", ""},
		{`{"user":"^b"}`, []string{"PC2"}, "1", ""},
		{`{"version":"^0\\.43","sort":"pc_id"}`, []string{"PC1", "PC2"}, "2", ""},
		{`{"quarantined":"0.43.6"}`, []string{"PC2"}, "1", ""}, // exact token
		{`{"status":"online","sort":"pc_id","limit":10}`, []string{"PC1", "PC3"}, "2", "2"},
		{`{"status":"offline","sort":"pc_id","limit":1}`, []string{"LAB9"}, "2", "2"},
		{`{"sort":"pc_id","limit":2,"offset":1}`, []string{"PC1", "PC2"}, "4", "2"},
		{`{"sort":"pc_id","offset":3}`, []string{"PC3"}, "4", ""}, // no limit: offset + rows
		{`{"limit":0}`, nil, "4", "2"},                            // the counts alone
		{`{"meta.site.contains":"erlin","sort":"pc_id"}`, []string{"PC1", "PC2"}, "2", ""},
		{`{"meta.site.eq":"Tokyo"}`, []string{"LAB9"}, "1", ""},
		{`{"meta.site.neq":"Tokyo","sort":"pc_id"}`, []string{"PC1", "PC2"}, "2", ""}, // never PCs without the key
		{`{"meta.site.starts":"ber"}`, []string{"PC2"}, "1", ""},
		{`{"meta.owner.empty":"","sort":"pc_id"}`, []string{"PC2"}, "1", ""},
		{`{"meta.rack.set":""}`, []string{"PC1"}, "1", ""},
		{`{"meta.rack.absent":"","sort":"pc_id"}`, []string{"LAB9", "PC2", "PC3"}, "3", ""},    // PCs with no metadata too
		{`{"meta.site.eq":"","sort":"pc_id"}`, []string{"LAB9", "PC1", "PC2", "PC3"}, "4", ""}, // blank value drops it
		{`{"meta_any":"r1"}`, []string{"PC1"}, "1", ""},
		{`{"meta_key":"owner","sort":"pc_id"}`, []string{"PC2"}, "1", ""},
		{`{"sort":"meta:site"}`, []string{"PC1", "PC2", "LAB9", "PC3"}, "4", ""}, // case-insensitive, missing last
		{`{"sort":"meta:site","dir":"desc","limit":2}`, []string{"LAB9", "PC2"}, "4", "2"},
	}
	for _, c := range cases {
		code, body, hdr := e.call(t, "kanade.agents.list", c.body)
		if code != "" {
			t.Errorf("%s: %s %s", c.body, code, body)
			continue
		}
		got := pcs(t, body)
		if !slices.Equal(got, c.want) || hdr.Get("X-Total-Count") != c.total || hdr.Get("X-Online-Count") != c.on {
			t.Errorf("%s: %v total %q online %q, want %v %s %q", c.body, got, hdr.Get("X-Total-Count"), hdr.Get("X-Online-Count"), c.want, c.total, c.on)
		}
	}

	// The row: command_keys and enforcing three-state, quarantine, meta.
	_, body, _ := e.call(t, "kanade.agents.list", `{"sort":"pc_id"}`)
	var rows []map[string]any
	json.Unmarshal([]byte(body), &rows)
	byPC := map[string]map[string]any{}
	for _, r := range rows {
		byPC[r["pc_id"].(string)] = r
	}
	if k, ok := byPC["PC1"]["command_keys"]; !ok || len(k.([]any)) != 0 || byPC["PC1"]["enforcing"] != true {
		t.Errorf("PC1 keys/enforcing: %v", byPC["PC1"])
	}
	if _, ok := byPC["PC2"]["command_keys"]; ok {
		t.Errorf("PC2 never reported keys: %v", byPC["PC2"])
	}
	if _, ok := byPC["PC2"]["enforcing"]; ok {
		t.Errorf("PC2 never reported enforcing: %v", byPC["PC2"])
	}
	if _, ok := byPC["LAB9"]["quarantined_versions"]; ok {
		t.Errorf("malformed quarantine must read as none: %v", byPC["LAB9"])
	}
	if _, ok := byPC["PC3"]["meta"]; ok || byPC["PC3"]["agent_version"] != nil {
		t.Errorf("PC3: %v", byPC["PC3"])
	}
	if m := byPC["PC1"]["meta"].([]any); len(m) != 2 || m[0].(map[string]any)["key"] != "rack" {
		t.Errorf("PC1 meta sorted by key: %v", m)
	}

	bad := map[string]string{
		`{"status":"x"}`:         "status must be 'online' or 'offline'",
		`{"sort":"cpu"}`:         "unknown sort field `cpu`",
		`{"sort":"meta:"}`:       "sort=meta: requires a key (meta:<key>)",
		`{"dir":"up"}`:           "sort direction must be asc/desc, got `up`",
		`{"user":"["}`:           "invalid regex `[`: ",
		`{"meta.site":"x"}`:      "malformed meta filter `meta.site` — expected meta.<key>.<op>",
		`{"meta..eq":"x"}`:       "meta filter `meta..eq` has an empty key",
		`{"meta.site.like":"x"}`: "unknown meta filter operator `like` in `meta.site.like`",
		`{"limit":"ten"}`:        "parameter limit: must be an integer",
	}
	for req, want := range bad {
		if code, body, _ := e.call(t, "kanade.agents.list", req); code != "400" || !strings.HasPrefix(body, want) {
			t.Errorf("%s: %s %q, want 400 %q", req, code, body, want)
		}
	}

	// A metadata key may itself contain dots: split on the last one.
	e.kv.Put(context.Background(), "PC3", []byte(`{"entries":[{"key":"os.build","value":"22631"}]}`))
	eventually(t, "dotted key mirrored", func() bool { return slices.Contains(e.s.Meta.Keys(), "os.build") })
	if _, body, _ := e.call(t, "kanade.agents.list", `{"meta.os.build.eq":"22631"}`); !slices.Equal(pcs(t, body), []string{"PC3"}) {
		t.Errorf("dotted meta key: %s", body)
	}
}

func TestDetailVersionsMetaAndForget(t *testing.T) {
	e := start(t)
	now := time.Now().UTC()
	insertAgents(t, e.n.DB,
		agentRec{pc: "PC1", ver: "0.44.0", beat: now},
		agentRec{pc: "PC2", ver: "0.44.0", beat: now.Add(-time.Hour)},
		agentRec{pc: "PC3", ver: "0.45.0", beat: now},
		agentRec{pc: "PC4", beat: now},
	)
	if code, body, _ := e.call(t, "kanade.agents.detail", `{"pc_id":"PC1"}`); code != "" || !strings.Contains(body, `"pc_id":"PC1"`) || strings.Contains(body, `"meta"`) || strings.Contains(body, `"groups"`) {
		t.Errorf("detail: %s %s", code, body)
	}
	// Rows carry the PC's effective groups: set by hand and derived.
	js := e.n.JetStream(t)
	manual, _ := js.KeyValue(context.Background(), wire.BucketAgentGroups)
	derived, _ := js.KeyValue(context.Background(), wire.BucketAgentGroupsDerived)
	manual.Put(context.Background(), "PC1", []byte(`{"groups":["lab"]}`))
	derived.Put(context.Background(), "PC1", []byte(`{"groups":["win"]}`))
	eventually(t, "groups in the row", func() bool {
		_, body, _ := e.call(t, "kanade.agents.detail", `{"pc_id":"PC1"}`)
		_, list, _ := e.call(t, "kanade.agents.list", `{"q":"^PC1$"}`)
		return strings.Contains(body, `"groups":["lab","win"]`) && strings.Contains(list, `"groups":["lab","win"]`)
	})
	if code, body, _ := e.call(t, "kanade.agents.detail", `{"pc_id":"nope"}`); code != "404" || body != "" {
		t.Errorf("unknown detail: %s %q", code, body)
	}
	_, body, _ := e.call(t, "kanade.agents.versions", ``)
	if body != `[{"version":"0.44.0","total":2,"active":1},{"version":null,"total":1,"active":1},{"version":"0.45.0","total":1,"active":1}]` {
		t.Errorf("versions: %s", body)
	}

	// Metadata: PUT normalises, key CAS reports changed, bulk omits PCs without.
	_, body, _ = e.call(t, "kanade.agents.meta_put", `{"pc_id":"PC1","entries":[{"key":" site ","value":" a "},{"key":"","value":"x"},{"key":"rack","value":"1"},{"key":"site","value":"b"}]}`)
	if body != `{"entries":[{"key":"site","value":"b"},{"key":"rack","value":"1"}]}` {
		t.Errorf("meta put: %s", body)
	}
	_, body, _ = e.call(t, "kanade.agents.meta_set", `{"pc_id":"PC1","key":"rack","value":"1"}`)
	if !strings.HasSuffix(body, `"changed":false}`) {
		t.Errorf("unchanged set: %s", body)
	}
	_, body, _ = e.call(t, "kanade.agents.meta_set", `{"pc_id":"PC2","key":"owner","value":"<ops & co>"}`)
	if body != `{"meta":{"entries":[{"key":"owner","value":"<ops & co>"}]},"changed":true}` {
		t.Errorf("set: %s", body)
	}
	if code, body, _ := e.call(t, "kanade.agents.meta_set", `{"pc_id":"PC2","key":" "}`); code != "400" || body != "metadata key must not be empty" {
		t.Errorf("blank key: %s %s", code, body)
	}
	_, body, _ = e.call(t, "kanade.agents.meta_rm", `{"pc_id":"PC1","key":"site"}`)
	if body != `{"meta":{"entries":[{"key":"rack","value":"1"}]},"changed":true}` {
		t.Errorf("rm: %s", body)
	}
	_, body, _ = e.call(t, "kanade.agents.meta_bulk", `{"pcs":"PC2,PC1,PC3"}`)
	if body != `{"PC1":[{"key":"rack","value":"1"}],"PC2":[{"key":"owner","value":"<ops & co>"}]}` {
		t.Errorf("bulk: %s", body)
	}
	_, body, _ = e.call(t, "kanade.agents.meta_keys", ``)
	if body != `["owner","rack"]` {
		t.Errorf("keys: %s", body)
	}
	if _, body, _ := e.call(t, "kanade.agents.meta_get", `{"pc_id":"PC9"}`); body != `{"entries":[]}` {
		t.Errorf("meta of a PC without: %s", body)
	}

	// Forget: 204 whether or not there was a row.
	for range 2 {
		if code, body, _ := e.call(t, "kanade.agents.delete", `{"pc_id":"PC2"}`); code != "" || body != "" {
			t.Errorf("delete: %s %s", code, body)
		}
	}
	if code, _, _ := e.call(t, "kanade.agents.detail", `{"pc_id":"PC2"}`); code != "404" {
		t.Errorf("forgotten PC still there: %s", code)
	}
}

func TestPingAndLogsErrors(t *testing.T) {
	e := start(t)
	// Nobody listens: ping 408 at once, logs 502, with upstream's texts.
	code, body, _ := e.call(t, "kanade.agents.ping", `{"pc_id":"PCX"}`)
	if code != "408" || !strings.HasPrefix(body, "nats request agents.PCX.ping: ") {
		t.Errorf("ping no responders: %s %q", code, body)
	}
	code, body, _ = e.call(t, "kanade.agents.logs", `{"pc_id":"PCX"}`)
	if code != "502" || !strings.HasPrefix(body, "logs.fetch.PCX: ") {
		t.Errorf("logs no responders: %s %q", code, body)
	}
	if code, _, _ := e.call(t, "kanade.agents.ping", `{"pc_id":"a.b"}`); code != "400" {
		t.Errorf("ping of a non-token pc_id: %s", code)
	}
	// An agent that answers: the request carries tail_lines, the reply is
	// relayed as text.
	var asked []byte
	sub, err := e.nc.Subscribe(wire.LogsFetch("PC1"), func(m *nats.Msg) {
		asked = m.Data
		m.Respond([]byte("line 1\nline <2> & more\n"))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	sub2, _ := e.nc.Subscribe(wire.Ping("PC1"), func(m *nats.Msg) {
		m.Respond([]byte(`{"pc_id":"PC1","at":"2026-05-16T00:00:00Z","agent_version":"0.45.0"}`))
	})
	defer sub2.Unsubscribe()
	e.nc.Flush()
	code, body, hdr := e.call(t, "kanade.agents.logs", `{"pc_id":"PC1","tail":7}`)
	if code != "" || body != "line 1\nline <2> & more\n" || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") || string(asked) != `{"tail_lines":7}` {
		t.Errorf("logs: %s %q %v asked %s", code, body, hdr, asked)
	}
	e.call(t, "kanade.agents.logs", `{"pc_id":"PC1"}`)
	if string(asked) != `{"tail_lines":500}` {
		t.Errorf("default tail asked %s", asked)
	}
	if _, body, _ := e.call(t, "kanade.agents.ping", `{"pc_id":"PC1","wait_secs":0}`); body != `{"heartbeat":{"pc_id":"PC1","at":"2026-05-16T00:00:00Z","agent_version":"0.45.0"}}` {
		t.Errorf("ping: %s", body)
	}
	// A silent agent: 408 after wait_secs, not before.
	sub3, _ := e.nc.Subscribe(wire.Ping("PC2"), func(*nats.Msg) {})
	defer sub3.Unsubscribe()
	e.nc.Flush()
	start := time.Now()
	code, body, _ = e.call(t, "kanade.agents.ping", `{"pc_id":"PC2","wait_secs":1}`)
	if took := time.Since(start); code != "408" || body != "no ping reply from PC2 within 1s" || took < time.Second {
		t.Errorf("silent: %s %q after %v", code, body, took)
	}
}

// eventually polls cond until it holds, for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Each node keeps its own projection: forgetting a PC through one node's
// agents service forgets it on the others too.
func TestForgetReachesEveryNode(t *testing.T) {
	e := start(t)
	other := nodetest.OpenStore(t, e.n.Dir+"/other.db")
	s2, err := Start(context.Background(), Options{Conn: e.n.Conn(t), DB: other, Logger: e.n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Stop()
	now := time.Now().UTC()
	insertAgents(t, e.n.DB, agentRec{pc: "PC1", beat: now})
	insertAgents(t, other, agentRec{pc: "PC1", beat: now})
	if code, _, _ := e.call(t, "kanade.agents.delete", `{"pc_id":"PC1"}`); code != "" {
		t.Fatalf("delete: %s", code)
	}
	count := func(db *store.DB) int {
		var n int
		db.R.QueryRow(`SELECT count(*) FROM agents WHERE pc_id = 'PC1'`).Scan(&n)
		return n
	}
	eventually(t, "both nodes to forget PC1", func() bool { return count(e.n.DB) == 0 && count(other) == 0 })
}
