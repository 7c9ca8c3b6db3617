package groups

import (
	"context"
	"database/sql"
	"encoding/json"
	"maps"
	"reflect"
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
	js jetstream.JetStream
	s  *Service
}

// start runs the groups service; materialize runs the materializer, the
// only writer of agent_groups_derived.
func start(t *testing.T, materialize bool) *env {
	t.Helper()
	n := nodetest.Start(t)
	nc := n.Conn(t)
	s, err := Start(context.Background(), Options{Conn: nc, DB: n.DB, Logger: n.Logger, Materialize: materialize, MaterializeEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return &env{n: n, nc: nc, js: n.JetStream(t), s: s}
}

func (e *env) call(t *testing.T, subject, body string, hdr ...string) (string, string) {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = []byte(body)
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	r, err := e.nc.RequestMsg(m, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	return r.Header.Get("Nats-Service-Error-Code"), string(r.Data)
}

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

func TestMembershipPerPC(t *testing.T) {
	e := start(t, false)
	kv, _ := e.js.KeyValue(context.Background(), wire.BucketAgentGroups)
	rev := func(pc string) uint64 {
		en, err := kv.Get(context.Background(), pc)
		if err != nil {
			return 0
		}
		return en.Revision()
	}
	steps := []struct{ subject, body, code, want string }{
		{"kanade.groups.pc_get", `{"pc_id":"PC1"}`, "", `{"groups":[]}`},
		// PUT sorts and dedups only: no trim, empty names kept.
		{"kanade.groups.pc_put", `{"pc_id":"PC1","groups":["lab","desk"," x","lab",""]}`, "", `{"groups":[""," x","desk","lab"]}`},
		{"kanade.groups.pc_put", `{"pc_id":"PC1"}`, "422", "missing field `groups`"},
		{"kanade.groups.pc_put", `{"pc_id":"PC1","groups":["desk","lab"]}`, "", `{"groups":["desk","lab"]}`},
		{"kanade.groups.pc_add", `{"pc_id":"PC1","group":"  "}`, "400", "group name must not be empty"},
		{"kanade.groups.pc_add", `{"pc_id":"PC1","group":"ops"}`, "", `{"groups":["desk","lab","ops"]}`},
		{"kanade.groups.pc_add", `{"pc_id":"PC2","group":"ops"}`, "", `{"groups":["ops"]}`}, // create
		{"kanade.groups.pc_remove", `{"pc_id":"PC1","group":"desk"}`, "", `{"groups":["lab","ops"]}`},
		{"kanade.groups.pc_get", `{"pc_id":"PC1"}`, "", `{"groups":["lab","ops"]}`},
		{"kanade.groups.pc_put", `{"pc_id":"a b","groups":[]}`, "400", `invalid pc_id "a b"`},
	}
	for _, s := range steps {
		code, body := e.call(t, s.subject, s.body)
		if code != s.code || body != s.want {
			t.Errorf("%s %s: %s %q, want %s %q", s.subject, s.body, code, body, s.code, s.want)
		}
	}
	// No-ops do not write.
	before := rev("PC1")
	e.call(t, "kanade.groups.pc_add", `{"pc_id":"PC1","group":"lab"}`)
	e.call(t, "kanade.groups.pc_remove", `{"pc_id":"PC1","group":"nope"}`)
	if rev("PC1") != before {
		t.Errorf("a no-op wrote: revision %d -> %d", before, rev("PC1"))
	}
	// The stored value is upstream's shape.
	if en, _ := kv.Get(context.Background(), "PC1"); string(en.Value()) != `{"groups":["lab","ops"]}` {
		t.Errorf("stored %s", en.Value())
	}
	// The roster sees the edits (and a legacy bare list).
	kv.Put(context.Background(), "PC3", []byte(`["ops"]`))
	eventually(t, "the roster to follow", func() bool {
		return slices.Equal(e.s.Roster.Members("ops"), []string{"PC1", "PC2", "PC3"})
	})
	if got := e.s.Roster.EmptyGroups(context.Background(), []string{"ops", "typo"}); !slices.Equal(got, []string{"typo"}) {
		t.Errorf("empty groups %v", got)
	}
}

func TestRosterResolves(t *testing.T) {
	e := start(t, false)
	now := time.Now()
	err := e.n.DB.WriteTx(context.Background(), func(tx *sql.Tx) error {
		for pc, at := range map[string]time.Time{"PC1": now, "PC2": now.Add(-time.Hour), "PC3": now} {
			if _, err := tx.Exec(`INSERT INTO agents (pc_id, last_heartbeat) VALUES (?, ?)`, pc, store.FormatTime(at)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	manual, _ := e.js.KeyValue(context.Background(), wire.BucketAgentGroups)
	derived, _ := e.js.KeyValue(context.Background(), wire.BucketAgentGroupsDerived)
	manual.Put(context.Background(), "PC1", Encode([]string{"lab"}))
	manual.Put(context.Background(), "PC2", Encode([]string{"lab"}))
	derived.Put(context.Background(), "PC3", Encode([]string{"win"}))
	r := e.s.Roster
	if err := r.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, c := range map[string]struct {
		all    bool
		groups []string
		pcs    []string
		alive  bool
		want   []string
	}{
		"all alive":            {all: true, alive: true, want: []string{"PC1", "PC3"}},
		"group alive":          {groups: []string{"lab"}, alive: true, want: []string{"PC1"}},
		"group roster":         {groups: []string{"lab"}, want: []string{"PC1", "PC2"}},
		"derived group":        {groups: []string{"win"}, alive: true, want: []string{"PC3"}},
		"pcs verbatim":         {pcs: []string{"PC9"}, alive: true, want: []string{"PC9"}},
		"groups and pcs union": {groups: []string{"lab", "win"}, pcs: []string{"PC1"}, alive: true, want: []string{"PC1", "PC3"}},
	} {
		if got := r.Resolve(ctx, c.all, c.groups, c.pcs, c.alive); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
	if got := r.GroupsOf("PC3"); !slices.Equal(got, []string{"win"}) {
		t.Errorf("groups of PC3 %v", got)
	}
	if n := r.Count(ctx, false, []string{"nobody"}, nil); n != 1 {
		t.Errorf("count has a floor of 1: %d", n)
	}
}

func TestGroupDefsAndMaterializer(t *testing.T) {
	e := start(t, true)
	err := e.n.DB.WriteTx(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO agents (pc_id, os_family, last_heartbeat) VALUES ('W1','windows','x'), ('W2','windows','x'), ('L1','linux','x')`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// A missing bucket lists nothing.
	if _, body := e.call(t, "kanade.groups.defs_list", ``); body != `[]` {
		t.Errorf("no defs: %s", body)
	}
	yamlDef := "id: windows\ndescription: every Windows PC\nquery: SELECT pc_id FROM agents WHERE os_family = 'windows'\nrefresh: 1m\n"
	code, body := e.call(t, "kanade.groups.defs_put", yamlDef, "Content-Type", "application/yaml")
	if code != "" || body != `{"id":"windows","description":"every Windows PC","kind":"dynamic","member_count":null,"tags":[]}` {
		t.Fatalf("put dynamic: %s %s", code, body)
	}
	code, body = e.call(t, "kanade.groups.defs_put", `{"id":"core","members":["L1","W1","L1"],"tags":["infra"]}`, "Content-Type", "application/json")
	if code != "" || body != `{"id":"core","description":null,"kind":"static","member_count":3,"tags":["infra"]}` {
		t.Fatalf("put static: %s %s", code, body)
	}
	bad := map[string]string{
		`{"id":"x","members":["a"],"query":"SELECT 1"}`:                                            "invalid group: exactly one of",
		`{"id":"x y","members":["a"]}`:                                                             "invalid group: id",
		`{"id":"x","members":["a"],"nope":1}`:                                                      "parse JSON body: json: unknown field",
		`{"id":"x","query":"DELETE FROM agents"}`:                                                  "invalid group: query is not a read-only query: must start with SELECT",
		`{"id":"x","query":"SELECT 1; DELETE FROM agents"}`:                                        "invalid group: query is not a read-only query: one statement only",
		`{"id":"x","query":"SELECT pc_id FROM no_such_table"}`:                                     "invalid group: query is not a read-only query: ",
		`{"id":"x","query":"WITH a AS (SELECT 1) DELETE FROM agents"}`:                             "invalid group: query is not a read-only query: the statement writes",
		`{"id":"x","query":"WITH a AS (SELECT 1) UPDATE agents SET hostname = 1 WHERE pc_id = 2"}`: "invalid group: query is not a read-only query: the statement writes",
		`{"id":"x","members":["a"],"refresh":"soon"}`:                                              "invalid group: refresh",
	}
	for b, want := range bad {
		if code, body := e.call(t, "kanade.groups.defs_put", b, "Content-Type", "application/json"); code != "400" || !strings.HasPrefix(body, want) {
			t.Errorf("%s: %s %q, want 400 %q", b, code, body, want)
		}
	}
	if code, body := e.call(t, "kanade.groups.defs_put", "id: x\nmembers: [a]\nextra: 1\n", "Content-Type", "text/yaml"); code != "400" || !strings.HasPrefix(body, "parse YAML body:") {
		t.Errorf("unknown YAML key: %s %s", code, body)
	}
	if _, body := e.call(t, "kanade.groups.defs_members", `{"id":"windows"}`); body != `{"id":"windows","kind":"dynamic","count":2,"members":["W1","W2"]}` {
		t.Errorf("dynamic members: %s", body)
	}
	if _, body := e.call(t, "kanade.groups.defs_members", `{"id":"core"}`); body != `{"id":"core","kind":"static","count":2,"members":["L1","W1"]}` {
		t.Errorf("static members: %s", body)
	}
	if _, body := e.call(t, "kanade.groups.defs_yaml", `{"id":"windows"}`); body != yamlDef {
		t.Errorf("yaml mirror: %q", body)
	}
	if code, body := e.call(t, "kanade.groups.defs_yaml", `{"id":"nope"}`); code != "404" || body != "group 'nope' not found" {
		t.Errorf("yaml of unknown: %s %s", code, body)
	}

	// The materializer writes the per-PC union to agent_groups_derived and
	// the roster follows it.
	eventually(t, "derived membership", func() bool {
		return slices.Equal(e.s.Roster.Members("windows"), []string{"W1", "W2"}) &&
			slices.Equal(e.s.Roster.Members("core"), []string{"L1", "W1"})
	})
	derived, _ := e.js.KeyValue(context.Background(), wire.BucketAgentGroupsDerived)
	if en, err := derived.Get(context.Background(), "W1"); err != nil || string(en.Value()) != `{"groups":["core","windows"]}` {
		t.Errorf("derived W1: %v %v", err, en)
	}
	// Deleting a definition empties the sets it made: keys deleted.
	if code, _ := e.call(t, "kanade.groups.defs_delete", `{"id":"core"}`); code != "" {
		t.Fatalf("delete: %s", code)
	}
	if code, body := e.call(t, "kanade.groups.defs_delete", `{"id":"core"}`); code != "404" || body != "group 'core' not found" {
		t.Errorf("delete again: %s %s", code, body)
	}
	eventually(t, "L1 to leave its derived groups", func() bool {
		_, err := derived.Get(context.Background(), "L1")
		return err != nil && len(e.s.Roster.Members("core")) == 0
	})

	// The overview: membership, config keys and contacts, by name.
	cfg, _ := e.js.KeyValue(context.Background(), wire.BucketAgentConfig)
	cfg.Put(context.Background(), "groups.empty-but-configured", []byte(`{}`))
	manual, _ := e.js.KeyValue(context.Background(), wire.BucketAgentGroups)
	manual.Put(context.Background(), "L1", Encode([]string{"windows"}))
	e.s.Roster.Sync(context.Background())
	_, body = e.call(t, "kanade.groups.list", ``)
	want := `{"groups":[{"name":"empty-but-configured","members":[],"has_config":true,"emails":[]},{"name":"windows","members":["L1","W1","W2"],"has_config":false,"emails":[]}]}`
	if body != want {
		t.Errorf("overview:\n%s\nwant\n%s", body, want)
	}
}

func TestGroupContacts(t *testing.T) {
	e := start(t, false)
	steps := []struct{ subject, body, code, want string }{
		{"kanade.groups.email_get", `{"name":"lab"}`, "", `{"emails":[]}`},
		{"kanade.groups.email_put", `{"name":"lab","emails":[" Ops@Example.com ","","a@localhost","ops@example.com"]}`, "", `{"emails":["a@localhost","ops@example.com"]}`},
		{"kanade.groups.email_put", `{"name":"lab","emails":["not an address"]}`, "400", `not a valid email address: "not an address"`},
		{"kanade.groups.email_put", `{"name":"lab"}`, "422", "missing field `emails`"},
		{"kanade.groups.email_get", `{"name":"lab"}`, "", `{"emails":["a@localhost","ops@example.com"]}`},
	}
	for _, s := range steps {
		if code, body := e.call(t, s.subject, s.body); code != s.code || body != s.want {
			t.Errorf("%s %s: %s %q, want %s %q", s.subject, s.body, code, body, s.code, s.want)
		}
	}
	// A group named only by its contacts is in the overview.
	if _, body := e.call(t, "kanade.groups.list", ``); body != `{"groups":[{"name":"lab","members":[],"has_config":false,"emails":["a@localhost","ops@example.com"]}]}` {
		t.Errorf("overview %s", body)
	}
}

// TestGroupDefSchemaFollowsTheType: the schema served at
// /api/schemas/group-def.json names exactly GroupDef's and Origin's
// fields, over NATS as the gateway asks for it.
func TestGroupDefSchemaFollowsTheType(t *testing.T) {
	e := start(t, true)
	code, body := e.call(t, "kanade.schemas.group_def", ``)
	if code != "" {
		t.Fatalf("schema: %s %s", code, body)
	}
	var s struct {
		Properties map[string]any `json:"properties"`
		Defs       struct {
			Origin struct {
				Properties map[string]any `json:"properties"`
			} `json:"Origin"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	fields := func(v any) []string {
		var out []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			out = append(out, strings.Split(rt.Field(i).Tag.Get("json"), ",")[0])
		}
		slices.Sort(out)
		return out
	}
	keys := func(m map[string]any) []string {
		out := slices.Collect(maps.Keys(m))
		slices.Sort(out)
		return out
	}
	if got, want := keys(s.Properties), fields(GroupDef{}); !slices.Equal(got, want) {
		t.Errorf("schema properties %v, GroupDef fields %v", got, want)
	}
	if got, want := keys(s.Defs.Origin.Properties), fields(Origin{}); !slices.Equal(got, want) {
		t.Errorf("schema Origin properties %v, Origin fields %v", got, want)
	}
}
