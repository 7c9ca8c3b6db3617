package results

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/kanade-go/kanade/store"
)

// AliveWithin is how recent a heartbeat must be for an agent to count as
// alive: agents beat about every 30 s, so four missed beats.
const AliveWithin = 2 * time.Minute

// Agent is an agent seen by heartbeat.
type Agent struct {
	PCID          string  `json:"pc_id"`
	Hostname      *string `json:"hostname"`
	OSFamily      *string `json:"os_family"`
	AgentVersion  *string `json:"agent_version"`
	LastHeartbeat *string `json:"last_heartbeat"`
	Alive         bool    `json:"alive"`
}

// ListAgents lists every agent ever heard from, by pc_id.
func ListAgents(ctx context.Context, db *store.DB, now time.Time) ([]Agent, error) {
	rows, err := db.R.QueryContext(ctx, `SELECT pc_id, hostname, os_family, agent_version, last_heartbeat FROM agents ORDER BY pc_id`)
	if err != nil {
		return nil, queryError(ctx, "list agents", err)
	}
	defer rows.Close()
	out := []Agent{}
	for rows.Next() {
		var a Agent
		var host, osf, ver, beat sql.NullString
		if err := rows.Scan(&a.PCID, &host, &osf, &ver, &beat); err != nil {
			return nil, fmt.Errorf("list agents: %w", err)
		}
		a.Hostname, a.OSFamily, a.AgentVersion = nullString(host), nullString(osf), nullString(ver)
		a.LastHeartbeat = store.APITime(beat)
		if t, err := store.ParseTime(beat.String); err == nil && beat.Valid {
			a.Alive = now.Sub(t) <= AliveWithin
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, queryError(ctx, "list agents", err)
	}
	return out, nil
}
