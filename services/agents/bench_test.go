package agents

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/kanade-go/kanade/store"
)

// BenchmarkList50k lists a fleet of 50,000 agents (a fifth with
// metadata) over NATS the ways the dashboard does:
//
//	go test ./services/agents -run '^$' -bench List50k -benchtime 200x
func BenchmarkList50k(b *testing.B) {
	e := startB(b)
	now := time.Now().UTC()
	const n = 50_000
	err := e.n.DB.WriteTx(context.Background(), func(tx *sql.Tx) error {
		st, err := tx.Prepare(`INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, updated_at) VALUES (?,?,?,?,?,?)`)
		if err != nil {
			return err
		}
		for i := range n {
			at := now.Add(-time.Duration(i%600) * time.Second) // a fifth offline
			if _, err := st.Exec(fmt.Sprintf("PC%05d", i), fmt.Sprintf("host-%05d.corp", i), "windows",
				fmt.Sprintf("0.44.%d", i%40), store.FormatTime(at), store.FormatTime(at)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += 5 {
		e.s.Meta.set(fmt.Sprintf("PC%05d", i), []Entry{{"site", fmt.Sprintf("site-%d", i%50)}})
	}
	for _, c := range []struct{ name, body string }{
		{"default-page", `{"limit":50}`},
		{"by-pc_id-page-100", `{"limit":50,"offset":5000,"sort":"pc_id"}`},
		{"online-page", `{"limit":50,"status":"online","sort":"last_heartbeat","dir":"desc"}`},
		{"q-regex", `{"limit":50,"q":"^PC4[0-9]{2}7"}`},
		{"meta-eq", `{"limit":50,"meta.site.eq":"site-10"}`},
		{"sort-meta", `{"limit":50,"sort":"meta:site"}`},
		{"versions", ``},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				subject := "kanade.agents.list"
				if c.name == "versions" {
					subject = "kanade.agents.versions"
				}
				m, err := e.nc.Request(subject, []byte(c.body), 30*time.Second)
				if err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
					b.Fatalf("%v %s", err, m.Data)
				}
				b.SetBytes(int64(len(m.Data)))
			}
		})
	}
}
